package export

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"flowlens/decoder"
	"flowlens/schema"
)

// fuzzReader hands out the fuzz input as flow fields; past its end it
// returns zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) u8() uint8 {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fuzzReader) u16() uint16 { return uint16(r.u8())<<8 | uint16(r.u8()) }
func (r *fuzzReader) u64() uint64 {
	return uint64(r.u16())<<48 | uint64(r.u16())<<32 | uint64(r.u16())<<16 | uint64(r.u16())
}

func (r *fuzzReader) bytes(n int) []byte {
	n = min(n, len(r.b))
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// str is a string of up to 400 arbitrary bytes (invalid UTF-8, NULs and
// long forms included).
func (r *fuzzReader) str() string {
	n := int(r.u16()) % 401
	return string(r.bytes(n))
}

func (r *fuzzReader) addr() netip.Addr {
	switch r.u8() % 4 {
	case 0:
		return netip.AddrFrom4([4]byte(append(r.bytes(4), make([]byte, 4)...)[:4]))
	case 1:
		return netip.AddrFrom16([16]byte(append(r.bytes(16), make([]byte, 16)...)[:16]))
	case 2: // IPv4-mapped
		return netip.AddrFrom16(netip.AddrFrom4([4]byte(append(r.bytes(4), make([]byte, 4)...)[:4])).As16())
	}
	return netip.Addr{}
}

func (r *fuzzReader) flow() Flow {
	return Flow{
		Client: r.addr(), Server: r.addr(), ClientPort: r.u16(), ServerPort: r.u16(), Protocol: r.u8(), VLAN: r.u16(),
		ClientOctets: r.u64(), ClientPackets: r.u64(), ServerOctets: r.u64(), ServerPackets: r.u64(),
		Start: time.UnixMilli(int64(r.u64())), End: time.UnixMilli(int64(r.u64())),
		ClientTCPFlags: r.u8(), ServerTCPFlags: r.u8(), EndReason: EndReason(r.u8()),
		Application: r.str(), ApplicationID: uint32(r.u64()), Category: r.str(), Confidence: Confidence(r.u8() % 6),
		ServerName: r.str(), DNSQuery: r.str(),
	}
}

// FuzzEncode: whatever the flows and the (valid) configuration, every
// message stays within the MTU, our decoder accepts it, and it reads back
// one flow per direction with the exported addresses, ports and counters.
func FuzzEncode(f *testing.F) {
	seed := func(cfg []byte, fl Flow) []byte {
		b := append([]byte(nil), cfg...)
		b = append(b, 0)
		b = append(b, fl.Client.AsSlice()...)
		return append(b, "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"...)
	}
	f.Add(seed([]byte{0, 5, 120, 0, 64, 0, 253}, testFlow()))
	f.Add(seed([]byte{3, 2, 0, 1, 44, 1, 44, 4}, testFlow()))
	f.Add([]byte{1, 0xff, 0xff, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{b: data}
		cfg := DefaultConfig()
		opts := r.u8()
		cfg.Unidirectional, cfg.Ntop = opts&1 != 0, opts&2 == 0
		if opts&4 != 0 {
			cfg.ApplicationEngine = EngineNDPI
		}
		cfg.MTU = 256 + int(r.u16())%9000
		cfg.MaxLabelLen = 1 + int(r.u16())%400
		cfg.MaxNameLen = 1 + int(r.u16())%400
		e, err := NewEncoder(cfg)
		if err != nil {
			return // the configuration check refused it: nothing is encodable then
		}
		var flows []Flow
		for range 1 + int(r.u8())%6 {
			flows = append(flows, r.flow())
		}
		var msgs [][]byte
		var records []int
		e.Begin(time.Unix(1_700_000_000, 0), true)
		for i := range flows {
			if e.Add(&flows[i]) {
				continue
			}
			next := func() {
				records = append(records, e.Records())
				msgs = append(msgs, append([]byte(nil), e.Finish()...))
				e.Begin(time.Unix(1_700_000_000, 0), false)
			}
			next()
			if e.Add(&flows[i]) {
				continue
			}
			// Two long records: one message each, as the Exporter does.
			if !cfg.Unidirectional || !e.AddRecord(&flows[i], false) {
				t.Fatalf("flow %d does not fit an empty %d-byte message", i, cfg.MTU)
			}
			next()
			if !e.AddRecord(&flows[i], true) {
				t.Fatalf("flow %d: the server→client record does not fit an empty %d-byte message", i, cfg.MTU)
			}
		}
		records = append(records, e.Records())
		msgs = append(msgs, append([]byte(nil), e.Finish()...))

		d := decoder.New(decoder.DefaultConfig())
		var got []schema.Flow
		seq := uint32(0)
		for i, m := range msgs {
			if len(m) > cfg.MTU || int(binary.BigEndian.Uint16(m[2:])) != len(m) {
				t.Fatalf("message %d: %d bytes, header says %d, MTU %d", i, len(m), binary.BigEndian.Uint16(m[2:]), cfg.MTU)
			}
			if s := binary.BigEndian.Uint32(m[8:]); s != seq {
				t.Fatalf("message %d: sequence %d, want %d", i, s, seq)
			}
			err := d.Decode(m, netip.MustParseAddrPort("192.0.2.1:4739"), time.Unix(1_700_000_000, 0), func(f *schema.Flow) { got = append(got, *f) })
			if err != nil {
				t.Fatalf("message %d rejected: %v", i, err)
			}
			seq += uint32(records[i])
		}
		var want []schema.Flow
		for _, fl := range flows {
			c, s := fl.Client.Unmap(), fl.Server.Unmap()
			v6 := c.Is6() || s.Is6()
			norm := func(a netip.Addr) netip.Addr {
				switch {
				case v6 && a.IsValid():
					return netip.AddrFrom16(a.As16())
				case v6:
					return netip.IPv6Unspecified()
				case a.IsValid():
					return a
				}
				return netip.IPv4Unspecified()
			}
			c, s = norm(c), norm(s)
			want = append(want, schema.Flow{SrcAddr: c, DstAddr: s, SrcPort: fl.ClientPort, DstPort: fl.ServerPort,
				Bytes: fl.ClientOctets, Packets: fl.ClientPackets, TCPFlags: fl.ClientTCPFlags})
			if fl.ServerOctets != 0 || fl.ServerPackets != 0 {
				want = append(want, schema.Flow{SrcAddr: s, DstAddr: c, SrcPort: fl.ServerPort, DstPort: fl.ClientPort,
					Bytes: fl.ServerOctets, Packets: fl.ServerPackets, TCPFlags: fl.ServerTCPFlags})
			}
		}
		if len(got) != len(want) {
			t.Fatalf("decoded %d flows, want %d", len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.SrcAddr != w.SrcAddr || g.DstAddr != w.DstAddr || g.SrcPort != w.SrcPort || g.DstPort != w.DstPort ||
				g.Bytes != w.Bytes || g.Packets != w.Packets || g.TCPFlags != w.TCPFlags {
				t.Fatalf("flow %d:\n got %v %v:%d>%v:%d %d/%d %x\nwant %v %v:%d>%v:%d %d/%d %x", i,
					g.EType, g.SrcAddr, g.SrcPort, g.DstAddr, g.DstPort, g.Bytes, g.Packets, g.TCPFlags,
					w.EType, w.SrcAddr, w.SrcPort, w.DstAddr, w.DstPort, w.Bytes, w.Packets, w.TCPFlags)
			}
		}
	})
}
