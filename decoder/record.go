package decoder

import (
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"flowlens/schema"
)

// Enterprise numbers whose fields we map.
const (
	penNtop     = 35632 // nProbe
	penReverse  = 29305 // RFC 5103 reverse information elements
	penPaloAlto = 25461
)

// nProbe's own fields have an ntop id (L7_PROTO_NAME 119, ...). In NetFlow
// v9 nProbe sends NTOP_BASE_ID (57472) + id as a plain field type (the
// nprobe-dpi capture: L7_PROTO_NAME is 57591). In IPFIX it sends enterprise
// 35632 with the element id; nProbe's documentation gives the plain ntop
// id, some versions put the v9 type with the enterprise bit stripped
// (57591 - 0x8000): both are accepted, they cannot collide.
const (
	ntopBase         = 57472
	ntopL7ProtoName  = 119
	ntopL7ProtoCat   = 501
	ntopTLSServer    = 188
	ntopDNSQuery     = 205
	ntopDNSQType     = 207
	ntopDNSRetCode   = 208
	ntopL7Confidence = 560
	ntopIPFIXStrided = ntopBase - 0x8000

	ntopL7ProtoNameV9  = ntopBase + ntopL7ProtoName
	ntopL7ProtoCatV9   = ntopBase + ntopL7ProtoCat
	ntopTLSServerV9    = ntopBase + ntopTLSServer
	ntopDNSQueryV9     = ntopBase + ntopDNSQuery
	ntopDNSQTypeV9     = ntopBase + ntopDNSQType
	ntopDNSRetCodeV9   = ntopBase + ntopDNSRetCode
	ntopL7ConfidenceV9 = ntopBase + ntopL7Confidence
)

// nDPI's ndpi_confidence_t as nProbe sends it in L7_CONFIDENCE (one byte),
// numbered as in nDPI 4.8 and later; our sensor uses the same numbers.
const (
	ndpiConfidenceUnknown     = 0
	ndpiConfidenceMatchByPort = 1
	ndpiConfidenceDPICache    = 5
	ndpiConfidenceDPI         = 6
	ndpiConfidenceMatchByIP   = 7
)

// Palo Alto App-ID: field type 56701 in NetFlow v9 (a plain type above
// 32768); under enterprise 25461 in IPFIX, with the top bit stripped.
const (
	panAppIDV9    = 56701
	panAppIDIPFIX = panAppIDV9 - 0x8000
)

// NTP era offset: dateTimeMicroseconds/Nanoseconds count from 1900.
const ntpEpochOffset = 2208988800

// recordState collects the fields of one data record that are combined
// into Flow fields only once the whole record is read.
type recordState struct {
	octets, packets          uint64 // IE 1, 2
	outOctets, outPackets    uint64 // IE 23, 24
	totOctets, totPackets    uint64 // IE 85, 86
	initOctets, respOctets   uint64 // IE 231, 232
	initPackets, respPackets uint64 // IE 298, 299
	have                     uint32 // have* bits
	samplingInterval         uint64 // IE 34
	samplerRandom            uint64 // IE 50
	pktInterval, pktSpace    uint64 // IE 305, 306
	samplerID                uint64 // IE 48 / 302
	appID                    uint64 // IE 95
	sysInit                  uint64 // IE 160
	upStart, upEnd           uint32 // IE 22, 21 (ms of sysUptime)
	absStart, absEnd         int64  // unix ms from IEs 150-157
	deltaStartUs, deltaEndUs uint64 // IE 158, 159
	nextHopPrio              uint8
	srcMACPrio, dstMACPrio   uint8
	icmpFromIE               bool
	srcVlanPrio, dstVlanPrio uint8
	labelFromApp             bool
	samplingSwapped          bool
	revOctets, revPackets    uint64 // RFC 5103 (29305, 1), (29305, 2)
	revTCPFlags              uint8
	l7Confidence             uint8 // ntop L7_CONFIDENCE, when haveL7Confidence
	haveL7Confidence         bool
}

const (
	haveOctets = 1 << iota
	havePackets
	haveOutOctets
	haveOutPackets
	haveTotOctets
	haveTotPackets
	haveInitOctets
	haveRespOctets
	haveInitPackets
	haveRespPackets
	haveSamplerID
	haveAppID
	haveSysInit
	haveUpStart
	haveUpEnd
	haveAbsStart
	haveAbsEnd
	haveDeltaStart
	haveDeltaEnd
)

// be returns the big-endian unsigned value of up to the last 8 bytes of v.
func be(v []byte) uint64 {
	if len(v) > 8 {
		v = v[len(v)-8:]
	}
	var x uint64
	for _, c := range v {
		x = x<<8 | uint64(c)
	}
	return x
}

func addr4(v []byte) (netip.Addr, bool) {
	if len(v) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(v)), true
}

func addr16(v []byte) (netip.Addr, bool) {
	if len(v) != 16 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16([16]byte(v)), true
}

func ntpToMs(v uint64) int64 {
	secs := int64(v >> 32)
	frac := int64(((v & 0xffffffff) * 1000) >> 32)
	return (secs-ntpEpochOffset)*1000 + frac
}

// beginRecord resets d.flow for one NetFlow v9 / IPFIX data record. The
// record's fields are then given to mapField one by one, in template
// order, and finishRecord combines them. Both data-record paths (our
// template walker in walk.go and goflow2's DecodeDataSet in mapRecord) go
// through these three, so there is one mapping table.
func (d *Decoder) beginRecord(addr netip.Addr, hdr msgHeader, received time.Time) {
	f := &d.flow
	f.Reset()
	d.rec = recordState{}
	f.TimeReceived = receivedSeconds(received)
	f.ExporterAddr = addr
	f.ObservationDomainID = hdr.obsDomain
	if hdr.version == 9 {
		f.Source = schema.SourceNetFlowV9
	} else {
		f.Source = schema.SourceIPFIX
	}
}

// mapField maps one field of a data record: information element ie, with
// enterprise number pen when hasPen (an IPFIX field with the enterprise
// bit; ie has the bit stripped). Empty values are ignored.
func (d *Decoder) mapField(ie uint16, pen uint32, hasPen bool, v []byte) {
	if len(v) == 0 {
		return
	}
	if hasPen {
		d.mapEnterprise(ie, pen, v)
		return
	}
	d.applyField(ie, v)
}

// mapEnterprise maps an enterprise-specific field (kept out of mapField so
// that mapField stays inlined in the walker's per-field loop).
func (d *Decoder) mapEnterprise(ie uint16, pen uint32, v []byte) {
	{
		switch pen {
		case penReverse:
			switch ie {
			case 1:
				d.rec.revOctets = be(v)
			case 2:
				d.rec.revPackets = be(v)
			case 6:
				d.rec.revTCPFlags = uint8(be(v))
			}
		case penNtop:
			switch ie {
			case ntopL7ProtoName, ntopL7ProtoNameV9 - 0x8000:
				d.setLabel(v)
			case ntopL7ProtoCat, ntopL7ProtoCatV9 - 0x8000:
				d.setString(&d.labels, &d.flow.AppCategory, v)
			case ntopTLSServer, ntopTLSServerV9 - 0x8000:
				d.setString(&d.names, &d.flow.ServerName, v)
			case ntopDNSQuery, ntopDNSQueryV9 - 0x8000:
				d.setString(&d.names, &d.flow.DNSQuery, v)
			case ntopDNSQType, ntopDNSQTypeV9 - 0x8000:
				d.flow.DNSQType = uint16(be(v))
			case ntopDNSRetCode, ntopDNSRetCodeV9 - 0x8000:
				setDNSRetCode(&d.flow, be(v))
			case ntopL7Confidence, ntopL7ConfidenceV9 - 0x8000:
				d.rec.l7Confidence, d.rec.haveL7Confidence = uint8(be(v)), true
			}
		case penPaloAlto:
			if ie == panAppIDIPFIX {
				d.setLabel(v)
			}
		}
	}
}

// mapRecord fills d.flow from one data record as goflow2 decodes it (the
// reference path, see Decoder.useGoflow2).
func (d *Decoder) mapRecord(ex *exporterState, addr netip.Addr, hdr msgHeader, received time.Time, values []netflow.DataField) {
	d.beginRecord(addr, hdr, received)
	for i := range values {
		v, _ := values[i].Value.([]byte)
		d.mapField(values[i].Type, values[i].Pen, values[i].PenProvided, v)
	}
	d.finishRecord(ex, hdr)
}

// setString interns v into *dst through in; the names table is emptied
// when full (its content keeps changing), the labels table is not.
func (d *Decoder) setString(in *interner, dst *string, v []byte) {
	s, ok := in.get(v)
	if !ok {
		if in != &d.names {
			d.stats.labelsDropped.Add(1)
			return
		}
		clear(in.m)
		d.stats.namesResets.Add(1)
		s, _ = in.get(v)
	}
	if s != "" {
		*dst = s
	}
}

func (d *Decoder) setLabel(v []byte) {
	s, ok := d.labels.get(v)
	if !ok {
		d.stats.labelsDropped.Add(1)
		return
	}
	if s != "" {
		d.flow.Protocol = s
		d.flow.ProtocolConfidence = schema.ConfidenceExporter
	}
}

// applyField maps one information element of a data record.
func (d *Decoder) applyField(typ uint16, v []byte) {
	f := &d.flow
	rs := &d.rec
	switch typ {
	case 1:
		rs.octets, rs.have = be(v), rs.have|haveOctets
	case 2:
		rs.packets, rs.have = be(v), rs.have|havePackets
	case 23:
		rs.outOctets, rs.have = be(v), rs.have|haveOutOctets
	case 24:
		rs.outPackets, rs.have = be(v), rs.have|haveOutPackets
	case 85:
		rs.totOctets, rs.have = be(v), rs.have|haveTotOctets
	case 86:
		rs.totPackets, rs.have = be(v), rs.have|haveTotPackets
	case 231:
		rs.initOctets, rs.have = be(v), rs.have|haveInitOctets
	case 232:
		rs.respOctets, rs.have = be(v), rs.have|haveRespOctets
	case 298:
		rs.initPackets, rs.have = be(v), rs.have|haveInitPackets
	case 299:
		rs.respPackets, rs.have = be(v), rs.have|haveRespPackets
	case 4:
		f.IPProtocol = uint8(be(v))
	case 5:
		f.IPTos = uint8(be(v))
	case 6:
		f.TCPFlags = uint8(be(v))
	case 7:
		f.SrcPort = uint16(be(v))
	case 11:
		f.DstPort = uint16(be(v))
	case 8:
		if a, ok := addr4(v); ok && (!a.IsUnspecified() || !f.SrcAddr.IsValid()) {
			f.SrcAddr = a
		}
	case 12:
		if a, ok := addr4(v); ok && (!a.IsUnspecified() || !f.DstAddr.IsValid()) {
			f.DstAddr = a
		}
	case 27:
		if a, ok := addr16(v); ok && (!a.IsUnspecified() || !f.SrcAddr.IsValid()) {
			f.SrcAddr = a
		}
	case 28:
		if a, ok := addr16(v); ok && (!a.IsUnspecified() || !f.DstAddr.IsValid()) {
			f.DstAddr = a
		}
	case 9, 29:
		f.SrcMask = uint8(be(v))
	case 13, 30:
		f.DstMask = uint8(be(v))
	case 10:
		f.InIf = uint32(be(v))
	case 14:
		f.OutIf = uint32(be(v))
	case 16:
		f.SrcAS = uint32(be(v))
	case 17:
		f.DstAS = uint32(be(v))
	case 15, 62: // ipNextHop: preferred over the BGP next hop
		if a, ok := addrAny(v); ok {
			f.NextHop, rs.nextHopPrio = a, 2
		}
	case 18, 63:
		if a, ok := addrAny(v); ok && rs.nextHopPrio < 2 {
			f.NextHop, rs.nextHopPrio = a, 1
		}
	case 58:
		f.SrcVlan, rs.srcVlanPrio = uint16(be(v))&0x0fff, 2
	case 243:
		if rs.srcVlanPrio < 2 {
			f.SrcVlan, rs.srcVlanPrio = uint16(be(v))&0x0fff, 1
		}
	case 59:
		f.DstVlan, rs.dstVlanPrio = uint16(be(v))&0x0fff, 2
	case 254:
		if rs.dstVlanPrio < 2 {
			f.DstVlan, rs.dstVlanPrio = uint16(be(v))&0x0fff, 1
		}
	case 56: // sourceMacAddress / IN_SRC_MAC
		if len(v) == 6 {
			f.SrcMAC, rs.srcMACPrio = be(v), 2
		}
	case 81: // postSourceMacAddress / OUT_SRC_MAC
		if len(v) == 6 && rs.srcMACPrio < 2 {
			f.SrcMAC, rs.srcMACPrio = be(v), 1
		}
	case 80: // destinationMacAddress / IN_DST_MAC
		if len(v) == 6 {
			f.DstMAC, rs.dstMACPrio = be(v), 2
		}
	case 57: // postDestinationMacAddress / OUT_DST_MAC
		if len(v) == 6 && rs.dstMACPrio < 2 {
			f.DstMAC, rs.dstMACPrio = be(v), 1
		}
	case 60:
		switch be(v) {
		case 4:
			f.EType = etypeIPv4
		case 6:
			f.EType = etypeIPv6
		}
	case 61:
		switch be(v) {
		case 0:
			f.Direction = schema.DirectionIngress
		case 1:
			f.Direction = schema.DirectionEgress
		}
	case 89:
		x := be(v)
		if len(v) == 4 { // RFC 5102's unsigned32 encoding: status in the top byte
			x >>= 24
		}
		f.ForwardingStatus = uint8(x)
	case 70, 71, 72, 73, 74, 75, 76, 77, 78, 79:
		i := typ - 70
		f.MPLSLabels[i] = uint32(be(v) >> 4 & 0xfffff)
		// Templates list all ten label fields; unused ones are zero.
		if f.MPLSLabels[i] != 0 && uint8(i+1) > f.MPLSLabelsLen {
			f.MPLSLabelsLen = uint8(i + 1)
		}
	case 32, 139:
		x := be(v)
		f.ICMPType, f.ICMPCode, rs.icmpFromIE = uint8(x>>8), uint8(x), true
	case 176, 178:
		f.ICMPType, rs.icmpFromIE = uint8(be(v)), true
	case 177, 179:
		f.ICMPCode, rs.icmpFromIE = uint8(be(v)), true
	case 192:
		f.IPTTL = uint8(be(v))
	case 225: // postNATSourceIPv4Address
		if a, ok := addr4(v); ok {
			f.PostNATSrcAddr = a
		}
	case 226:
		if a, ok := addr4(v); ok {
			f.PostNATDstAddr = a
		}
	case 281:
		if a, ok := addr16(v); ok {
			f.PostNATSrcAddr = a
		}
	case 282:
		if a, ok := addr16(v); ok {
			f.PostNATDstAddr = a
		}
	case 227:
		f.PostNATSrcPort = uint16(be(v))
	case 228:
		f.PostNATDstPort = uint16(be(v))
	case 34:
		rs.samplingInterval, rs.samplingSwapped = rateField(v)
	case 50:
		rs.samplerRandom, rs.samplingSwapped = rateField(v)
	case 305:
		rs.pktInterval = be(v)
	case 306:
		rs.pktSpace = be(v)
	case 48, 302:
		rs.samplerID, rs.have = be(v), rs.have|haveSamplerID
	case 95:
		rs.appID, rs.have = be(v), rs.have|haveAppID
	case 96:
		d.setLabel(v)
		rs.labelFromApp = true
	case 160:
		rs.sysInit, rs.have = be(v), rs.have|haveSysInit
	case 22:
		rs.upStart, rs.have = uint32(be(v)), rs.have|haveUpStart
	case 21:
		rs.upEnd, rs.have = uint32(be(v)), rs.have|haveUpEnd
	case 150:
		rs.absStart, rs.have = int64(be(v))*1000, rs.have|haveAbsStart
	case 151:
		rs.absEnd, rs.have = int64(be(v))*1000, rs.have|haveAbsEnd
	case 152:
		rs.absStart, rs.have = int64(be(v)), rs.have|haveAbsStart
	case 153:
		rs.absEnd, rs.have = int64(be(v)), rs.have|haveAbsEnd
	case 154, 156:
		rs.absStart, rs.have = ntpToMs(be(v)), rs.have|haveAbsStart
	case 155, 157:
		rs.absEnd, rs.have = ntpToMs(be(v)), rs.have|haveAbsEnd
	case 158:
		rs.deltaStartUs, rs.have = be(v), rs.have|haveDeltaStart
	case 159:
		rs.deltaEndUs, rs.have = be(v), rs.have|haveDeltaEnd
	default:
		if typ > 306 {
			d.applyRareField(typ, v)
		}
	}
}

// applyRareField maps the field types above the IANA range most exporters
// use, kept out of applyField so that its switch stays one dense table.
func (d *Decoder) applyRareField(typ uint16, v []byte) {
	f := &d.flow
	switch typ {
	case 372: // applicationCategoryName
		d.setString(&d.labels, &f.AppCategory, v)
	case 40001: // Cisco ASA XLATE_SRC_ADDR_IPV4
		if a, ok := addr4(v); ok {
			f.PostNATSrcAddr = a
		}
	case 40002:
		if a, ok := addr4(v); ok {
			f.PostNATDstAddr = a
		}
	case 40003:
		f.PostNATSrcPort = uint16(be(v))
	case 40004:
		f.PostNATDstPort = uint16(be(v))
	case ntopL7ProtoNameV9, panAppIDV9:
		d.setLabel(v)
	case ntopL7ProtoCatV9:
		d.setString(&d.labels, &f.AppCategory, v)
	case ntopTLSServerV9:
		d.setString(&d.names, &f.ServerName, v)
	case ntopDNSQueryV9:
		d.setString(&d.names, &f.DNSQuery, v)
	case ntopDNSQTypeV9:
		f.DNSQType = uint16(be(v))
	case ntopDNSRetCodeV9:
		setDNSRetCode(f, be(v))
	case ntopL7ConfidenceV9:
		d.rec.l7Confidence, d.rec.haveL7Confidence = uint8(be(v)), true
	}
}

// labelConfidence grades an exporter's label by the nDPI confidence it
// sent with it (ntop L7_CONFIDENCE: nProbe, and our sensor), the plainest
// reading of what the exporter said about how it got the label:
//   - DPI: this flow's payload was inspected: dpi;
//   - MATCH_BY_PORT: a guess from the port, as our enrich stage makes:
//     port;
//   - DPI_CACHE: the label came from earlier flows (our sensor: the DNS
//     answer cache): dns_cache;
//   - MATCH_BY_IP: an application address list: ip_list;
//   - UNKNOWN: the exporter has no label (nProbe then sends "Unknown"):
//     the label is dropped, so that enrich guesses from the port, or
//     stores Unknown/none, as for a flow nobody labelled;
//   - anything else (partial or aggressive DPI, nBPF, a custom rule, a
//     value we do not know): exporter, the label stands on the
//     exporter's word.
//
// nDPI before 4.8 numbered the enum differently (4.2: DPI 4, DPI_CACHE 3,
// MATCH_BY_IP 2); under this rule such an exporter's labels read as
// exporter, never as a grade stronger than what it meant.
func labelConfidence(f *schema.Flow, c uint8) {
	switch c {
	case ndpiConfidenceDPI:
		f.ProtocolConfidence = schema.ConfidenceDPI
	case ndpiConfidenceMatchByPort:
		f.ProtocolConfidence = schema.ConfidencePort
	case ndpiConfidenceDPICache:
		f.ProtocolConfidence = schema.ConfidenceDNSCache
	case ndpiConfidenceMatchByIP:
		f.ProtocolConfidence = schema.ConfidenceIPList
	case ndpiConfidenceUnknown:
		f.Protocol, f.ProtocolConfidence = "", schema.ConfidenceNone
	default:
		f.ProtocolConfidence = schema.ConfidenceExporter
	}
}

func addrAny(v []byte) (netip.Addr, bool) {
	switch len(v) {
	case 4:
		return netip.AddrFrom4([4]byte(v)), true
	case 16:
		return netip.AddrFrom16([16]byte(v)), true
	}
	return netip.Addr{}, false
}

// finishRecord combines the collected fields: sampling, counters, times.
func (d *Decoder) finishRecord(ex *exporterState, hdr msgHeader) {
	f := &d.flow
	rs := &d.rec

	// Sampling: per-record fields first, then the sampler the record names
	// (or the exporter's default sampler id 0) from options data.
	rate, src := uint64(0), schema.SamplingNone
	switch {
	case rs.samplingInterval > 0:
		rate, src = rs.samplingInterval, schema.SamplingInRecord
	case rs.samplerRandom > 0:
		rate, src = rs.samplerRandom, schema.SamplingInRecord
	case rs.pktInterval > 0:
		rate, src = (rs.pktInterval+rs.pktSpace)/rs.pktInterval, schema.SamplingInRecord
	case len(ex.samplers) > 0 || ex.announced || rs.samplerID != 0:
		r, ok := ex.samplers[samplerKey{hdr.version, hdr.obsDomain, rs.samplerID}]
		if !ok && rs.samplerID != 0 {
			r, ok = ex.samplers[samplerKey{hdr.version, hdr.obsDomain, 0}]
		}
		if ok {
			rate, src = uint64(r), schema.SamplingOptions
		} else {
			src = schema.SamplingUnknown
		}
	}
	if rs.samplingSwapped && src == schema.SamplingInRecord {
		d.stats.samplingSwapped.Add(1)
	}
	if ex.override == 0 && rate-1 < 1<<31 && src != schema.SamplingUnknown {
		f.SamplingRate, f.SamplingSource = uint32(rate), src // the common case, without a call
	} else {
		f.SamplingRate, f.SamplingSource = d.samplingSlow(ex, rate, src)
		rate = uint64(f.SamplingRate)
	}
	d.noteRate(ex, f)
	f.SamplerID = uint32(rs.samplerID)

	var octets, packets uint64
	switch {
	case rs.have&haveOctets != 0:
		octets = rs.octets
	case rs.have&(haveInitOctets|haveRespOctets) != 0:
		octets = rs.initOctets + rs.respOctets
	case rs.have&haveTotOctets != 0:
		octets = rs.totOctets
	case rs.have&haveOutOctets != 0:
		octets = rs.outOctets
	}
	switch {
	case rs.have&havePackets != 0:
		packets = rs.packets
	case rs.have&(haveInitPackets|haveRespPackets) != 0:
		packets = rs.initPackets + rs.respPackets
	case rs.have&haveTotPackets != 0:
		packets = rs.totPackets
	case rs.have&haveOutPackets != 0:
		packets = rs.outPackets
	}
	if d.rawHook != nil {
		d.rawHook(rs.octets, rs.packets, rs.have&haveOctets != 0, rs.have&havePackets != 0)
	}
	f.Bytes = octets * rate
	f.Packets = packets * rate

	if f.EType == 0 {
		switch {
		case f.SrcAddr.Is4():
			f.EType = etypeIPv4
		case f.SrcAddr.Is6():
			f.EType = etypeIPv6
		}
	}
	if !rs.icmpFromIE && (f.IPProtocol == 1 || f.IPProtocol == 58) {
		// Exporters without ICMP IEs put type<<8|code in the destination port.
		f.ICMPType, f.ICMPCode = uint8(f.DstPort>>8), uint8(f.DstPort)
	}

	if f.Protocol == "" && rs.have&haveAppID != 0 && len(ex.apps) > 0 {
		if s, ok := ex.apps[appKey{hdr.obsDomain, rs.appID}]; ok {
			f.Protocol, f.ProtocolConfidence = s, schema.ConfidenceExporter
		}
	}
	if rs.haveL7Confidence && f.Protocol != "" {
		labelConfidence(f, rs.l7Confidence)
	}

	// Times.
	if rs.have&haveAbsStart != 0 {
		f.FlowStartMs = rs.absStart
	}
	if rs.have&haveAbsEnd != 0 {
		f.FlowEndMs = rs.absEnd
	}
	exportMs := int64(hdr.unixSecs) * 1000
	if rs.have&haveDeltaStart != 0 {
		f.FlowStartMs = exportMs - int64(rs.deltaStartUs/1000)
	}
	if rs.have&haveDeltaEnd != 0 {
		f.FlowEndMs = exportMs - int64(rs.deltaEndUs/1000)
	}
	if rs.have&(haveUpStart|haveUpEnd) != 0 {
		if hdr.version == 9 {
			// Relative to sysUptime at export; the signed difference
			// survives the 2^32 ms (49.7 days) wrap of both counters.
			if rs.have&haveUpStart != 0 {
				f.FlowStartMs = exportMs - int64(int32(hdr.sysUptime-rs.upStart))
			}
			if rs.have&haveUpEnd != 0 {
				f.FlowEndMs = exportMs - int64(int32(hdr.sysUptime-rs.upEnd))
			}
		} else {
			init, ok := rs.sysInit, rs.have&haveSysInit != 0
			if !ok {
				init, ok = ex.sysInit[domainKey{hdr.version, hdr.obsDomain}]
			}
			if ok {
				if rs.have&haveUpStart != 0 {
					f.FlowStartMs = int64(init) + int64(rs.upStart)
				}
				if rs.have&haveUpEnd != 0 {
					f.FlowEndMs = int64(init) + int64(rs.upEnd)
				}
			}
		}
	}
	if f.FlowStartMs < 0 {
		f.FlowStartMs = 0
	}
	if f.FlowEndMs < 0 {
		f.FlowEndMs = 0
	}
	if s, e := f.FlowStartMs, f.FlowEndMs; s > e || e > exportMs+maxFlowFutureMs || s < exportMs-maxFlowAgeMs {
		d.clampTimes(f, exportMs)
	}
}

// Bounds of plausible flow times around the export time: a flow cannot
// end after it was exported (beyond clock granularity and the exporter's
// own rounding), and no exporter keeps a flow open for months.
const (
	maxFlowFutureMs = 60 * 1000
	maxFlowAgeMs    = 30 * 24 * 3600 * 1000
)

// clampTimes replaces absurd flow times by the export time, counted: a
// wrong uptime base (IPFIX relative times with a bad
// systemInitTimeMilliseconds, a wrapped or reset sysUptime) must not put
// flows in the future or months back. Unknown (0) times stay unknown.
// Callers test plausibility inline first (start <= end, end <= export +
// maxFlowFutureMs, start >= export - maxFlowAgeMs): the function is only
// called for implausible or unknown times.
//
//go:noinline
func (d *Decoder) clampTimes(f *schema.Flow, exportMs int64) {
	if exportMs <= 0 {
		return
	}
	bad := false
	for _, t := range [2]*int64{&f.FlowStartMs, &f.FlowEndMs} {
		if *t != 0 && (*t > exportMs+maxFlowFutureMs || *t < exportMs-maxFlowAgeMs) {
			*t, bad = exportMs, true
		}
	}
	if f.FlowStartMs != 0 && f.FlowEndMs != 0 && f.FlowStartMs > f.FlowEndMs {
		f.FlowStartMs, bad = f.FlowEndMs, true
	}
	if bad {
		d.stats.timesClamped.Add(1)
	}
}

// rateField reads a sampling interval from a data or options record.
//
// MikroTik RouterOS v6 writes samplingInterval (IE 34) little-endian in
// its data records: a rate of 100 arrives as 0x64000000 (1677721600). A
// rate is plausible up to 2^24 (sFlow agents use up to 1:2^20; NetFlow
// samplers up to 1:65535), so a 4-byte value above 2^24 whose byte-swapped
// value is a plausible rate (1..65535) is taken swapped. A little-endian
// rate whose low byte is zero (512 → 0x00020000 = 131072) stays below
// 2^24; it is caught by the second rule: a value above 65535 with its low
// 16 bits all zero is no sampler's configured rate, while its swap is.
// Rates that pass neither rule are kept as read.
func rateField(v []byte) (uint64, bool) {
	x := be(v)
	if len(v) != 4 || (x <= 1<<24 && (x <= 0xffff || x&0xffff != 0)) {
		return x, false
	}
	sw := uint64(v[0]) | uint64(v[1])<<8 | uint64(v[2])<<16 | uint64(v[3])<<24
	if sw >= 1 && sw <= 0xffff {
		return sw, true
	}
	return x, false
}

// emitReverse emits the reverse flow of an RFC 5103 biflow record, after
// its forward flow; the walkers call it when the record's reverse octets
// or packets are non-zero (emitRecord).
//
// Biflows (ipfixprobe, YAF, some firewalls) carry the reverse direction's
// counters in the same record as enterprise 29305 elements. When the
// reverse octets or packets are non-zero, a second Flow is emitted after
// the forward one: source and destination (addresses, ports, interfaces,
// MACs, ASes, masks, VLANs, post-NAT) swapped, the reverse octets, packets
// and TCP flags, the same times, sampling and labels. Stats.BiflowReverse
// counts them.
//
//go:noinline
func (d *Decoder) emitReverse(emit func(*schema.Flow)) {
	rs := &d.rec
	f := &d.flow
	f.SrcAddr, f.DstAddr = f.DstAddr, f.SrcAddr
	f.SrcPort, f.DstPort = f.DstPort, f.SrcPort
	f.InIf, f.OutIf = f.OutIf, f.InIf
	f.SrcMAC, f.DstMAC = f.DstMAC, f.SrcMAC
	f.SrcAS, f.DstAS = f.DstAS, f.SrcAS
	f.SrcMask, f.DstMask = f.DstMask, f.SrcMask
	f.SrcVlan, f.DstVlan = f.DstVlan, f.SrcVlan
	f.PostNATSrcAddr, f.PostNATDstAddr = f.PostNATDstAddr, f.PostNATSrcAddr
	f.PostNATSrcPort, f.PostNATDstPort = f.PostNATDstPort, f.PostNATSrcPort
	f.TCPFlags = rs.revTCPFlags
	f.Bytes = rs.revOctets * uint64(f.SamplingRate)
	f.Packets = rs.revPackets * uint64(f.SamplingRate)
	if d.rawHook != nil {
		d.rawHook(rs.revOctets, rs.revPackets, true, true)
	}
	d.stats.biflowReverse.Add(1)
	d.reversing = true
	d.emitFlow(emit)
	d.reversing = false
}

// applyOptions learns sampling rates, application names and the system
// init time from one options data record.
func (d *Decoder) applyOptions(ex *exporterState, hdr msgHeader, scopes, options []netflow.DataField) {
	d.stats.options.Add(1)
	var interval, random, pktInterval, pktSpace, samplerID, appID, sysInit uint64
	var haveApp, haveInit bool
	var appName []byte
	visit := func(values []netflow.DataField) {
		for i := range values {
			v, ok := values[i].Value.([]byte)
			if !ok || len(v) == 0 || values[i].PenProvided {
				continue
			}
			switch values[i].Type {
			case 34:
				interval, _ = rateField(v)
			case 50:
				random, _ = rateField(v)
			case 305:
				pktInterval = be(v)
			case 306:
				pktSpace = be(v)
			case 48, 302:
				samplerID = be(v)
			case 95:
				appID, haveApp = be(v), true
			case 96:
				appName = v
			case 160:
				sysInit, haveInit = be(v), true
			}
		}
	}
	visit(scopes)
	visit(options)

	rate := uint64(0)
	switch {
	case interval > 0:
		rate = interval
	case random > 0:
		rate = random
	case pktInterval > 0:
		rate = (pktInterval + pktSpace) / pktInterval
	}
	if rate > 0 && rate <= 1<<31 {
		k := samplerKey{hdr.version, hdr.obsDomain, samplerID}
		if _, ok := ex.samplers[k]; ok || len(ex.samplers) < d.cfg.MaxSamplersPerExporter {
			ex.samplers[k] = uint32(rate)
		}
	}
	if haveInit {
		k := domainKey{hdr.version, hdr.obsDomain}
		if _, ok := ex.sysInit[k]; ok || len(ex.sysInit) < d.cfg.MaxSamplersPerExporter {
			ex.sysInit[k] = sysInit
		}
	}
	if haveApp && appName != nil {
		k := appKey{hdr.obsDomain, appID}
		if _, ok := ex.apps[k]; ok || len(ex.apps) < d.cfg.MaxApplicationsPerExporter {
			if s, ok := d.labels.get(appName); ok && s != "" {
				ex.apps[k] = s
			} else if !ok {
				d.stats.labelsDropped.Add(1)
			}
		}
	}
}

// setDNSRetCode reads ntop's DNS_RET_CODE: a response code (4 bits, 12
// with EDNS), or our sensor's 0xffff for "no answer seen". nProbe sends 0
// for unanswered queries too, which cannot be told from NOERROR.
func setDNSRetCode(f *schema.Flow, v uint64) {
	if v <= 0xfff {
		f.DNSRCode, f.DNSAnswered = uint8(min(v, 255)), true
	}
}
