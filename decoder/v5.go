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

// decodeV5 decodes a NetFlow v5 datagram with goflow2's netflowlegacy.
func (d *Decoder) decodeV5(payload []byte, addr netip.Addr, received time.Time, emit func(*schema.Flow)) error {
	if len(payload) < v5HeaderLen {
		return fmt.Errorf("v5 header: %w", ErrTruncated)
	}
	// goflow2 allocates count records before reading them: check first.
	count := int(binary.BigEndian.Uint16(payload[2:]))
	if count*v5RecordLen+v5HeaderLen > len(payload) {
		return fmt.Errorf("v5 count %d for %d bytes: %w", count, len(payload), ErrTruncated)
	}
	d.buf = *bytes.NewBuffer(payload[2:])
	pkt := &d.v5
	if err := netflowlegacy.DecodeMessage(&d.buf, pkt); err != nil {
		return malformed("v5", err)
	}
	// Sampling interval: the low 14 bits; the top two give the mode.
	rate := uint32(pkt.SamplingInterval & 0x3fff)
	if rate == 0 {
		rate = 1
	}
	exportMs := int64(pkt.UnixSecs)*1000 + int64(pkt.UnixNSecs/1e6)
	f := &d.flow
	for i := range pkt.Records {
		r := &pkt.Records[i]
		f.Reset()
		f.TimeReceived = receivedSeconds(received)
		f.Source = schema.SourceNetFlowV5
		f.ExporterAddr = addr
		f.ObservationDomainID = uint32(pkt.EngineType)<<8 | uint32(pkt.EngineId)
		f.SamplingRate = rate
		f.Bytes = uint64(r.DOctets) * uint64(rate)
		f.Packets = uint64(r.DPkts) * uint64(rate)
		f.EType = etypeIPv4
		f.SrcAddr = addrFromU32(uint32(r.SrcAddr))
		f.DstAddr = addrFromU32(uint32(r.DstAddr))
		f.NextHop = addrFromU32(uint32(r.NextHop))
		f.SrcPort, f.DstPort = r.SrcPort, r.DstPort
		f.IPProtocol, f.TCPFlags, f.IPTos = r.Proto, r.TCPFlags, r.Tos
		f.InIf, f.OutIf = uint32(r.Input), uint32(r.Output)
		f.SrcAS, f.DstAS = uint32(r.SrcAS), uint32(r.DstAS)
		f.SrcMask, f.DstMask = r.SrcMask, r.DstMask
		f.FlowStartMs = max(0, exportMs-int64(int32(pkt.SysUptime-r.First)))
		f.FlowEndMs = max(0, exportMs-int64(int32(pkt.SysUptime-r.Last)))
		if f.IPProtocol == 1 {
			f.ICMPType, f.ICMPCode = uint8(f.DstPort>>8), uint8(f.DstPort)
		}
		if d.rawHook != nil {
			d.rawHook(uint64(r.DOctets), uint64(r.DPkts), true, true)
		}
		d.emitFlow(emit)
	}
	return nil
}

func addrFromU32(x uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}
