package decoder

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"

	"flowlens/schema"
)

const (
	v5HeaderLen = 24
	v5RecordLen = 48
)

// decodeV5 decodes a NetFlow v5 datagram: a 24-byte header and count
// 48-byte records, read in place (netflowlegacy, kept as the reference
// path, allocates the record slice and reads through a variadic
// interface{} decoder: see BenchmarkDecodeV5).
func (d *Decoder) decodeV5(payload []byte, addr netip.Addr, received time.Time, emit func(*schema.Flow)) error {
	if len(payload) < v5HeaderLen {
		return fmt.Errorf("v5 header: %w", ErrTruncated)
	}
	count := int(binary.BigEndian.Uint16(payload[2:]))
	if count*v5RecordLen+v5HeaderLen > len(payload) {
		return fmt.Errorf("v5 count %d for %d bytes: %w", count, len(payload), ErrTruncated)
	}
	d.cur.noteSkew(binary.BigEndian.Uint32(payload[8:]), received)
	if d.useGoflow2 {
		return d.decodeV5Goflow2(payload, addr, received, emit)
	}
	h := v5Header{
		sysUptime:  binary.BigEndian.Uint32(payload[4:]),
		unixSecs:   binary.BigEndian.Uint32(payload[8:]),
		unixNSecs:  binary.BigEndian.Uint32(payload[12:]),
		engineType: payload[20],
		engineID:   payload[21],
		sampling:   binary.BigEndian.Uint16(payload[22:]),
	}
	recs := payload[v5HeaderLen : v5HeaderLen+count*v5RecordLen]
	for len(recs) >= v5RecordLen {
		b := recs[:v5RecordLen]
		recs = recs[v5RecordLen:]
		d.emitV5(&h, &v5Record{
			srcAddr:  binary.BigEndian.Uint32(b[0:]),
			dstAddr:  binary.BigEndian.Uint32(b[4:]),
			nextHop:  binary.BigEndian.Uint32(b[8:]),
			input:    binary.BigEndian.Uint16(b[12:]),
			output:   binary.BigEndian.Uint16(b[14:]),
			dPkts:    binary.BigEndian.Uint32(b[16:]),
			dOctets:  binary.BigEndian.Uint32(b[20:]),
			first:    binary.BigEndian.Uint32(b[24:]),
			last:     binary.BigEndian.Uint32(b[28:]),
			srcPort:  binary.BigEndian.Uint16(b[32:]),
			dstPort:  binary.BigEndian.Uint16(b[34:]),
			tcpFlags: b[37],
			proto:    b[38],
			tos:      b[39],
			srcAS:    binary.BigEndian.Uint16(b[40:]),
			dstAS:    binary.BigEndian.Uint16(b[42:]),
			srcMask:  b[44],
			dstMask:  b[45],
		}, addr, received, emit)
	}
	return nil
}

// decodeV5Goflow2 is the reference path: goflow2's netflowlegacy.
func (d *Decoder) decodeV5Goflow2(payload []byte, addr netip.Addr, received time.Time, emit func(*schema.Flow)) error {
	d.buf = *bytes.NewBuffer(payload[2:])
	pkt := &d.v5
	if err := netflowlegacy.DecodeMessage(&d.buf, pkt); err != nil {
		return malformed("v5", err)
	}
	h := v5Header{
		sysUptime: pkt.SysUptime, unixSecs: pkt.UnixSecs, unixNSecs: pkt.UnixNSecs,
		engineType: pkt.EngineType, engineID: pkt.EngineId, sampling: pkt.SamplingInterval,
	}
	for i := range pkt.Records {
		r := &pkt.Records[i]
		d.emitV5(&h, &v5Record{
			srcAddr: uint32(r.SrcAddr), dstAddr: uint32(r.DstAddr), nextHop: uint32(r.NextHop),
			input: r.Input, output: r.Output, dPkts: r.DPkts, dOctets: r.DOctets,
			first: r.First, last: r.Last, srcPort: r.SrcPort, dstPort: r.DstPort,
			tcpFlags: r.TCPFlags, proto: r.Proto, tos: r.Tos,
			srcAS: r.SrcAS, dstAS: r.DstAS, srcMask: r.SrcMask, dstMask: r.DstMask,
		}, addr, received, emit)
	}
	return nil
}

// v5Header and v5Record are the fields of the v5 wire format we map.
type v5Header struct {
	sysUptime, unixSecs, unixNSecs uint32
	engineType, engineID           uint8
	sampling                       uint16
	// rate and rateSrc are decided once per datagram (rate 0: not yet).
	rate    uint32
	rateSrc schema.SamplingSource
}

type v5Record struct {
	srcAddr, dstAddr, nextHop   uint32
	input, output               uint16
	dPkts, dOctets, first, last uint32
	srcPort, dstPort            uint16
	tcpFlags, proto, tos        uint8
	srcAS, dstAS                uint16
	srcMask, dstMask            uint8
}

// emitV5 maps one v5 record, for both paths.
func (d *Decoder) emitV5(h *v5Header, r *v5Record, addr netip.Addr, received time.Time, emit func(*schema.Flow)) {
	// Sampling interval: the low 14 bits; the top two give the mode.
	if h.rate == 0 {
		h.rate, h.rateSrc = d.sampling(d.cur, uint64(h.sampling&0x3fff), schema.SamplingHeader)
	}
	rate, src := h.rate, h.rateSrc
	exportMs := int64(h.unixSecs)*1000 + int64(h.unixNSecs/1e6)
	f := &d.flow
	f.Reset()
	f.TimeReceived = receivedSeconds(received)
	f.Source = schema.SourceNetFlowV5
	f.ExporterAddr = addr
	f.ObservationDomainID = uint32(h.engineType)<<8 | uint32(h.engineID)
	f.SamplingRate, f.SamplingSource = rate, src
	f.Bytes = uint64(r.dOctets) * uint64(rate)
	f.Packets = uint64(r.dPkts) * uint64(rate)
	f.EType = etypeIPv4
	f.SrcAddr = addrFromU32(r.srcAddr)
	f.DstAddr = addrFromU32(r.dstAddr)
	f.NextHop = addrFromU32(r.nextHop)
	f.SrcPort, f.DstPort = r.srcPort, r.dstPort
	f.IPProtocol, f.TCPFlags, f.IPTos = r.proto, r.tcpFlags, r.tos
	f.InIf, f.OutIf = uint32(r.input), uint32(r.output)
	f.SrcAS, f.DstAS = uint32(r.srcAS), uint32(r.dstAS)
	f.SrcMask, f.DstMask = r.srcMask, r.dstMask
	f.FlowStartMs = max(0, exportMs-int64(int32(h.sysUptime-r.first)))
	f.FlowEndMs = max(0, exportMs-int64(int32(h.sysUptime-r.last)))
	if s, e := f.FlowStartMs, f.FlowEndMs; s > e || e > exportMs+maxFlowFutureMs || s < exportMs-maxFlowAgeMs {
		d.clampTimes(f, exportMs)
	}
	d.noteRate(d.cur, f)
	if f.IPProtocol == 1 {
		f.ICMPType, f.ICMPCode = uint8(f.DstPort>>8), uint8(f.DstPort)
	}
	if d.rawHook != nil {
		d.rawHook(uint64(r.dOctets), uint64(r.dPkts), true, true)
	}
	d.emitFlow(emit)
}

func addrFromU32(x uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}
