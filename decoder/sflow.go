package decoder

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/sflow"

	"flowlens/schema"
)

// maxSFlowRecords bounds the records of one flow sample; goflow2 allocates
// the count it reads before reading them (and does not bound expanded
// samples at all).
const maxSFlowRecords = 1000

// sfScratch is reused between sFlow samples.
type sfScratch struct {
	hdr sflow.SampleHeader
}

// sflowInterface returns the ifIndex of an sFlow interface value, 0 when
// the value is a discard reason or a count of interfaces.
func sflowInterface(format, value uint32) uint32 {
	if format != 0 {
		return 0
	}
	return value
}

// decodeSFlow walks an sFlow v5 datagram: the datagram and sample headers
// here, the sample records with goflow2.
func (d *Decoder) decodeSFlow(payload []byte, addr netip.Addr, received time.Time, emit func(*schema.Flow)) error {
	p := payload[4:]
	if len(p) < 4 {
		return fmt.Errorf("sflow header: %w", ErrTruncated)
	}
	var agentLen int
	switch binary.BigEndian.Uint32(p) {
	case 1:
		agentLen = 4
	case 2:
		agentLen = 16
	default:
		return fmt.Errorf("sflow agent address type %d: %w", binary.BigEndian.Uint32(p), ErrMalformed)
	}
	p = p[4:]
	if len(p) < agentLen+16 {
		return fmt.Errorf("sflow header: %w", ErrTruncated)
	}
	agent, _ := addrAny(p[:agentLen])
	p = p[agentLen:]
	subAgent := binary.BigEndian.Uint32(p)
	samples := binary.BigEndian.Uint32(p[12:])
	p = p[16:]
	for i := uint32(0); i < samples && len(p) > 0; i++ {
		if len(p) < 8 {
			return fmt.Errorf("sflow sample header: %w", ErrTruncated)
		}
		format := binary.BigEndian.Uint32(p)
		length := binary.BigEndian.Uint32(p[4:])
		p = p[8:]
		if uint64(length) > uint64(len(p)) {
			return fmt.Errorf("sflow sample length %d > %d: %w", length, len(p), ErrTruncated)
		}
		body := p[:length]
		p = p[length:]
		switch format {
		case sflow.SAMPLE_FORMAT_FLOW, sflow.SAMPLE_FORMAT_EXPANDED_FLOW:
			if err := d.decodeFlowSample(format, body, addr, subAgent, received, emit); err != nil {
				return err
			}
		case sflow.SAMPLE_FORMAT_COUNTER, sflow.SAMPLE_FORMAT_EXPANDED_COUNTER:
			d.stats.sfCounters.Add(1)
			if d.onCounters != nil {
				if err := d.decodeCounterSample(format, body, addr, agent, subAgent, received); err != nil {
					return err
				}
			}
		case sflow.SAMPLE_FORMAT_DROP:
			d.stats.sfDrops.Add(1)
		default:
			d.stats.sfOther.Add(1)
		}
	}
	return nil
}

func (d *Decoder) decodeFlowSample(format uint32, body []byte, addr netip.Addr, subAgent uint32, received time.Time, emit func(*schema.Flow)) error {
	countAt := 28 // seq, source id, rate, pool, drops, input, output
	if format == sflow.SAMPLE_FORMAT_EXPANDED_FLOW {
		countAt = 40 // seq, source type+index, rate, pool, drops, 2×(format, value)
	}
	if len(body) < countAt+4 {
		return fmt.Errorf("sflow flow sample: %w", ErrTruncated)
	}
	if n := binary.BigEndian.Uint32(body[countAt:]); n > maxSFlowRecords {
		return fmt.Errorf("sflow flow sample with %d records: %w", n, ErrMalformed)
	}
	d.sf.hdr = sflow.SampleHeader{Format: format, Length: uint32(len(body))}
	d.buf = *bytes.NewBuffer(body)
	sample, err := sflow.DecodeSample(&d.sf.hdr, &d.buf)
	if err != nil {
		return malformed("sflow flow sample", err)
	}
	f := &d.flow
	f.Reset()
	f.TimeReceived = receivedSeconds(received)
	f.Source = schema.SourceSFlowV5
	f.ExporterAddr = addr
	f.ObservationDomainID = subAgent
	var records []sflow.FlowRecord
	switch s := sample.(type) {
	case sflow.FlowSample:
		records = s.Records
		f.SamplingRate = s.SamplingRate
		f.InIf = sflowInterface(s.Input>>30, s.Input&0x3fffffff)
		f.OutIf = sflowInterface(s.Output>>30, s.Output&0x3fffffff)
	case sflow.ExpandedFlowSample:
		records = s.Records
		f.SamplingRate = s.SamplingRate
		f.InIf = sflowInterface(s.InputIfFormat, s.InputIfValue)
		f.OutIf = sflowInterface(s.OutputIfFormat, s.OutputIfValue)
	default:
		return nil
	}
	// An sFlow sample always announces sampling: rate 0 is unknown.
	if f.SamplingRate == 0 {
		f.SamplingRate, f.SamplingSource = d.sampling(d.cur, 0, schema.SamplingUnknown)
	} else {
		f.SamplingRate, f.SamplingSource = d.sampling(d.cur, uint64(f.SamplingRate), schema.SamplingHeader)
	}
	var frameLen, ipLen uint64
	haveHeader, parsed, nextHopFromRouter := false, false, false
	for i := range records {
		switch r := records[i].Data.(type) {
		case sflow.SampledHeader:
			if haveHeader {
				continue
			}
			haveHeader = true
			frameLen = uint64(r.FrameLength)
			parsed = ParseHeader(r.Protocol, r.HeaderData, f)
		case sflow.SampledIPv4:
			ipLen = uint64(r.Length)
			if !parsed {
				d.sampledIP(&r.SampledIPBase, f)
				f.EType, f.IPTos = etypeIPv4, uint8(r.Tos)
			}
		case sflow.SampledIPv6:
			ipLen = uint64(r.Length)
			if !parsed {
				d.sampledIP(&r.SampledIPBase, f)
				f.EType, f.IPTos = etypeIPv6, uint8(r.Priority)
			}
		case sflow.SampledEthernet:
			if f.SrcMAC == 0 && len(r.SrcMac) == 6 && len(r.DstMac) == 6 {
				f.SrcMAC, f.DstMAC = mac48(r.SrcMac), mac48(r.DstMac)
			}
		case sflow.ExtendedSwitch:
			f.SrcVlan, f.DstVlan = uint16(r.SrcVlan&0x0fff), uint16(r.DstVlan&0x0fff)
		case sflow.ExtendedRouter:
			if a, ok := addrAny(r.NextHop); ok {
				f.NextHop, nextHopFromRouter = a, true
			}
			f.SrcMask, f.DstMask = uint8(r.SrcMaskLen), uint8(r.DstMaskLen)
		case sflow.ExtendedGateway:
			if a, ok := addrAny(r.NextHop); ok && !nextHopFromRouter {
				f.NextHop = a
			}
			f.SrcAS = r.SrcAS
			if len(r.ASPath) > 0 {
				f.DstAS = r.ASPath[len(r.ASPath)-1]
			} else {
				f.DstAS = r.AS
			}
		}
	}
	if !parsed {
		d.stats.sfUnparsed.Add(1)
	}
	if !haveHeader {
		frameLen = ipLen
	}
	if d.rawHook != nil {
		d.rawHook(frameLen, 1, haveHeader, true)
	}
	f.Bytes = frameLen * uint64(f.SamplingRate)
	f.Packets = uint64(f.SamplingRate)
	d.noteRate(d.cur, f)
	d.emitFlow(emit)
	return nil
}

func (d *Decoder) sampledIP(r *sflow.SampledIPBase, f *schema.Flow) {
	if a, ok := addrAny(r.SrcIP); ok {
		f.SrcAddr = a
	}
	if a, ok := addrAny(r.DstIP); ok {
		f.DstAddr = a
	}
	f.IPProtocol = uint8(r.Protocol)
	f.SrcPort, f.DstPort = uint16(r.SrcPort), uint16(r.DstPort)
	f.TCPFlags = uint8(r.TcpFlags)
}

// OnCounters sets the function that receives the interface counters of
// sFlow counter samples (generic interface counters, counters_sample
// record format 1, with the Ethernet counters of format 2 from the same
// sample when present), called synchronously from Decode with a reused
// record that fn must not keep. Without it counter samples are only counted
// (Stats.SFlowCounterSamples). Other counter records are skipped.
func (d *Decoder) OnCounters(fn func(*schema.InterfaceCounters)) { d.onCounters = fn }

// decodeCounterSample hands the generic interface counters of one counter
// sample to d.onCounters. goflow2 decodes it (counter samples are rare:
// one per interface and polling interval) after the record count is
// bounded here.
func (d *Decoder) decodeCounterSample(format uint32, body []byte, addr, agent netip.Addr, subAgent uint32, received time.Time) error {
	countAt := 8 // seq, source id
	if format == sflow.SAMPLE_FORMAT_EXPANDED_COUNTER {
		countAt = 12 // seq, source type, source index
	}
	if len(body) < countAt+4 {
		return fmt.Errorf("sflow counter sample: %w", ErrTruncated)
	}
	if n := binary.BigEndian.Uint32(body[countAt:]); n > maxSFlowRecords || uint64(n)*8 > uint64(len(body)) {
		return fmt.Errorf("sflow counter sample with %d records: %w", n, ErrMalformed)
	}
	d.sf.hdr = sflow.SampleHeader{Format: format, Length: uint32(len(body))}
	d.buf = *bytes.NewBuffer(body)
	sample, err := sflow.DecodeSample(&d.sf.hdr, &d.buf)
	if err != nil {
		return malformed("sflow counter sample", err)
	}
	cs, ok := sample.(sflow.CounterSample)
	if !ok {
		return nil
	}
	// A counter sample describes one interface (its source id): its
	// Ethernet record, if any, belongs with its generic one.
	var eth *sflow.EthernetCounters
	for i := range cs.Records {
		if e, ok := cs.Records[i].Data.(sflow.EthernetCounters); ok {
			eth = &e
		}
	}
	for i := range cs.Records {
		ic, ok := cs.Records[i].Data.(sflow.IfCounters)
		if !ok {
			continue
		}
		c := &d.counters
		*c = schema.InterfaceCounters{
			TimeReceived:     receivedSeconds(received),
			ExporterAddr:     addr,
			AgentAddr:        agent,
			SubAgentID:       subAgent,
			IfIndex:          ic.IfIndex,
			IfType:           ic.IfType,
			IfSpeed:          ic.IfSpeed,
			IfDirection:      ic.IfDirection,
			IfStatus:         ic.IfStatus,
			Promiscuous:      ic.IfPromiscuousMode,
			InOctets:         ic.IfInOctets,
			InUcastPkts:      uint64(ic.IfInUcastPkts),
			InMulticastPkts:  uint64(ic.IfInMulticastPkts),
			InBroadcastPkts:  uint64(ic.IfInBroadcastPkts),
			InDiscards:       ic.IfInDiscards,
			InErrors:         ic.IfInErrors,
			InUnknownProtos:  ic.IfInUnknownProtos,
			OutOctets:        ic.IfOutOctets,
			OutUcastPkts:     uint64(ic.IfOutUcastPkts),
			OutMulticastPkts: uint64(ic.IfOutMulticastPkts),
			OutBroadcastPkts: uint64(ic.IfOutBroadcastPkts),
			OutDiscards:      ic.IfOutDiscards,
			OutErrors:        ic.IfOutErrors,
		}
		if eth != nil {
			c.Ethernet = true
			c.AlignmentErrors, c.FCSErrors = eth.Dot3StatsAlignmentErrors, eth.Dot3StatsFCSErrors
			c.SingleCollisionFrames, c.MultipleCollisions = eth.Dot3StatsSingleCollisionFrames, eth.Dot3StatsMultipleCollisionFrames
			c.SQETestErrors, c.DeferredTransmissions = eth.Dot3StatsSQETestErrors, eth.Dot3StatsDeferredTransmissions
			c.LateCollisions, c.ExcessiveCollisions = eth.Dot3StatsLateCollisions, eth.Dot3StatsExcessiveCollisions
			c.InternalMACTransmitErrors, c.CarrierSenseErrors = eth.Dot3StatsInternalMacTransmitErrors, eth.Dot3StatsCarrierSenseErrors
			c.FrameTooLongs, c.InternalMACReceiveErrors = eth.Dot3StatsFrameTooLongs, eth.Dot3StatsInternalMacReceiveErrors
			c.SymbolErrors = eth.Dot3StatsSymbolErrors
		}
		d.stats.sfCountersDecoded.Add(1)
		d.onCounters(c)
	}
	return nil
}
