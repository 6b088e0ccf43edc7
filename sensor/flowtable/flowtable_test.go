package flowtable

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"flowlens/sensor/packet"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func pkt(proto uint8, src string, sport uint16, dst string, dport uint16, flags uint8, ipLen int) *packet.Packet {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	return &packet.Packet{Proto: proto, SrcIP: s, DstIP: d, SrcPort: sport, DstPort: dport, TCPFlags: flags,
		IPLen: ipLen, IsIPv6: s.Is6()}
}

func tcpPkt(src string, sport uint16, dst string, dport uint16, flags uint8) *packet.Packet {
	return pkt(packet.ProtoTCP, src, sport, dst, dport, flags, 60)
}

// state is the per-flow data of the tests: it must survive slices and be
// zero for a new flow.
type state struct {
	label string
	seen  int
}

type emitted struct {
	reason  Reason
	client  netip.AddrPort
	server  netip.AddrPort
	packets [2]uint64
	bytes   [2]uint64
	flags   [2]uint8
	first   time.Time
	last    time.Time
	slice   uint32
	state   state
}

func newTable(t testing.TB, cfg Config) (*Table[state], *[]emitted) {
	t.Helper()
	var out []emitted
	tab, err := New(cfg, func(e *Entry[state], r Reason) {
		out = append(out, emitted{r, e.Client(), e.Server(), e.Packets, e.Bytes, e.TCPFlags,
			e.FirstSeen().UTC(), e.LastSeen().UTC(), e.Slice, e.State})
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab, &out
}

func TestBothDirectionsMergeAndClientSide(t *testing.T) {
	tab, out := newTable(t, DefaultConfig())
	a, b := "192.0.2.10", "198.51.100.1"
	e, dir := tab.Packet(tcpPkt(a, 40000, b, 443, packet.TCPSyn), at(0))
	if dir != FromClient {
		t.Errorf("first packet dir = %v", dir)
	}
	e.State.label = "TLS"
	if _, dir = tab.Packet(tcpPkt(b, 443, a, 40000, packet.TCPSyn|packet.TCPAck), at(time.Millisecond)); dir != FromServer {
		t.Errorf("reply dir = %v", dir)
	}
	tab.Packet(tcpPkt(a, 40000, b, 443, packet.TCPAck), at(2*time.Millisecond))
	if tab.Len() != 1 {
		t.Fatalf("%d flows, want 1", tab.Len())
	}
	tab.Flush()
	if len(*out) != 1 {
		t.Fatalf("%d emitted", len(*out))
	}
	got := (*out)[0]
	want := emitted{ReasonFlush, netip.MustParseAddrPort(a + ":40000"), netip.MustParseAddrPort(b + ":443"),
		[2]uint64{2, 1}, [2]uint64{120, 60}, [2]uint8{packet.TCPSyn | packet.TCPAck, packet.TCPSyn | packet.TCPAck},
		at(0), at(2 * time.Millisecond), 0, state{label: "TLS"}}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if tab.Len() != 0 || tab.Stats().Flows != 0 {
		t.Errorf("table not empty after flush: %d", tab.Len())
	}
}

func TestClientFromSynAck(t *testing.T) {
	tab, out := newTable(t, DefaultConfig())
	tab.Packet(tcpPkt("198.51.100.1", 443, "192.0.2.10", 40000, packet.TCPSyn|packet.TCPAck), at(0))
	tab.Flush()
	if c := (*out)[0].client; c.Port() != 40000 {
		t.Errorf("client = %v, want the SYN-ACK's receiver", c)
	}
	if p := (*out)[0].packets; p != [2]uint64{0, 1} {
		t.Errorf("packets = %v, want the SYN-ACK from the server", p)
	}
}

func TestFlowKeyParts(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	base := pkt(packet.ProtoUDP, "192.0.2.1", 53, "192.0.2.2", 5353, 0, 80)
	tab.Packet(base, at(0))
	v := *base
	v.VLAN = 10
	tab.Packet(&v, at(0))
	n := *base
	n.Tunnel, n.TunnelID = packet.TunnelVXLAN, 5001
	tab.Packet(&n, at(0))
	tl := *base
	tl.Tunnel, tl.TunnelID = packet.TunnelGTPU, 77 // TEIDs differ per direction: not a network
	tab.Packet(&tl, at(0))
	pr := *base
	pr.Proto = packet.ProtoUDPLite
	tab.Packet(&pr, at(0))
	if tab.Len() != 4 {
		t.Errorf("%d flows, want 4 (base+GTP, VLAN, VNI, protocol)", tab.Len())
	}
	// IPv4 and its IPv4-mapped IPv6 form are different flows.
	m := *base
	m.SrcIP, m.DstIP, m.IsIPv6 = netip.AddrFrom16(base.SrcIP.As16()), netip.AddrFrom16(base.DstIP.As16()), true
	tab.Packet(&m, at(0))
	if tab.Len() != 5 {
		t.Errorf("%d flows, want 5", tab.Len())
	}
}

func TestIdleTimeoutsByClass(t *testing.T) {
	tab, out := newTable(t, DefaultConfig())
	tab.Packet(tcpPkt("192.0.2.1", 1000, "192.0.2.2", 22, packet.TCPAck), at(0))
	tab.Packet(pkt(packet.ProtoUDP, "192.0.2.1", 1000, "192.0.2.2", 53, 0, 70), at(0))
	tab.Packet(pkt(packet.ProtoICMP, "192.0.2.1", 0, "192.0.2.2", 0, 0, 84), at(0))
	// Packet time drives expiry: an unrelated packet 16 s later ends UDP
	// and ICMP (15 s), not TCP (30 s).
	tab.Packet(pkt(packet.ProtoUDP, "192.0.2.3", 1, "192.0.2.4", 2, 0, 30), at(16*time.Second))
	if len(*out) != 2 || (*out)[0].reason != ReasonIdle || (*out)[1].reason != ReasonIdle {
		t.Fatalf("after 16 s: %+v", *out)
	}
	// A packet of the TCP flow after its timeout, before any sweep: the old
	// flow ends, a new one starts.
	tab.Packet(tcpPkt("192.0.2.2", 22, "192.0.2.1", 1000, packet.TCPAck), at(16*time.Second+30*time.Second))
	if len(*out) != 4 { // the UDP flow of 16 s also timed out at 31 s
		t.Fatalf("after 46 s: %d emitted: %+v", len(*out), *out)
	}
	var tcpEnded bool
	for _, o := range (*out)[2:] {
		if o.server.Port() == 22 && o.reason == ReasonIdle && o.packets == [2]uint64{1, 0} {
			tcpEnded = true
		}
	}
	if !tcpEnded {
		t.Errorf("TCP flow not ended idle: %+v", *out)
	}
	tab.Flush()
	last := (*out)[len(*out)-1]
	if last.client.Port() != 22 || last.packets != [2]uint64{1, 0} {
		t.Errorf("new flow after the timeout: %+v (client is the sender of its first packet)", last)
	}
}

func TestExpireWithWallClock(t *testing.T) {
	tab, out := newTable(t, DefaultConfig())
	tab.Packet(pkt(packet.ProtoUDP, "192.0.2.1", 1, "192.0.2.2", 2, 0, 30), at(0))
	tab.Expire(at(14 * time.Second))
	if len(*out) != 0 {
		t.Fatalf("expired early: %+v", *out)
	}
	tab.Expire(at(-time.Hour)) // a clock behind the packets changes nothing
	tab.Expire(at(15 * time.Second))
	if len(*out) != 1 || (*out)[0].reason != ReasonIdle {
		t.Fatalf("not expired at 15 s: %+v", *out)
	}
}

func TestActiveTimeoutSlices(t *testing.T) {
	tab, out := newTable(t, DefaultConfig())
	for i := range 16 { // a packet every 10 s for 150 s
		e, _ := tab.Packet(tcpPkt("192.0.2.1", 1000, "192.0.2.2", 443, packet.TCPAck), at(time.Duration(i)*10*time.Second))
		if i == 0 {
			e.State.label = "TLS.YouTube"
		}
		e.State.seen++
	}
	tab.Flush()
	slices := append([]emitted(nil), *out...)
	if len(slices) != 3 {
		t.Fatalf("%d records, want 2 slices and the flush: %+v", len(slices), slices)
	}
	for i, s := range slices {
		wantReason := ReasonActive
		if i == 2 {
			wantReason = ReasonFlush
		}
		if s.reason != wantReason || s.slice != uint32(i) || s.state.label != "TLS.YouTube" {
			t.Errorf("slice %d: %+v", i, s)
		}
	}
	// Slices hold 6, 6 and 4 packets: [0,50], [60,110], [120,150].
	for i, n := range []uint64{6, 6, 4} {
		if slices[i].packets[0] != n {
			t.Errorf("slice %d has %d packets, want %d", i, slices[i].packets[0], n)
		}
	}
	if slices[1].first != at(60*time.Second) || slices[1].last != at(110*time.Second) {
		t.Errorf("slice 1 spans %v..%v", slices[1].first, slices[1].last)
	}
	if slices[2].state.seen != 16 {
		t.Errorf("state counted %d packets across slices, want 16", slices[2].state.seen)
	}
}

func TestTCPEnd(t *testing.T) {
	a, b := "192.0.2.1", "192.0.2.2"
	t.Run("fin both ways then linger", func(t *testing.T) {
		tab, out := newTable(t, DefaultConfig())
		tab.Packet(tcpPkt(a, 1000, b, 80, packet.TCPSyn), at(0))
		tab.Packet(tcpPkt(a, 1000, b, 80, packet.TCPFin|packet.TCPAck), at(time.Second))
		tab.Expire(at(5 * time.Second))
		if len(*out) != 0 {
			t.Fatalf("one FIN ended the flow: %+v", *out)
		}
		tab.Packet(tcpPkt(b, 80, a, 1000, packet.TCPFin|packet.TCPAck), at(6*time.Second))
		tab.Packet(tcpPkt(a, 1000, b, 80, packet.TCPAck), at(6*time.Second+time.Millisecond)) // the last ACK stays in the flow
		tab.Expire(at(7 * time.Second))
		if len(*out) != 0 {
			t.Fatalf("ended before the linger: %+v", *out)
		}
		tab.Expire(at(8*time.Second + time.Millisecond))
		if len(*out) != 1 || (*out)[0].reason != ReasonEnd || (*out)[0].packets != [2]uint64{3, 1} {
			t.Fatalf("after linger: %+v", *out)
		}
	})
	t.Run("rst", func(t *testing.T) {
		tab, out := newTable(t, DefaultConfig())
		tab.Packet(tcpPkt(a, 1000, b, 80, packet.TCPSyn), at(0))
		tab.Packet(tcpPkt(b, 80, a, 1000, packet.TCPRst|packet.TCPAck), at(time.Millisecond))
		tab.Packet(pkt(packet.ProtoUDP, "192.0.2.9", 1, "192.0.2.8", 2, 0, 30), at(3*time.Second)) // packet time passes
		if len(*out) != 1 || (*out)[0].reason != ReasonEnd {
			t.Fatalf("after RST: %+v", *out)
		}
	})
	t.Run("syn reuses closing ports", func(t *testing.T) {
		tab, out := newTable(t, DefaultConfig())
		tab.Packet(tcpPkt(a, 1000, b, 80, packet.TCPSyn), at(0))
		tab.Packet(tcpPkt(b, 80, a, 1000, packet.TCPRst|packet.TCPAck), at(time.Millisecond))
		tab.Packet(tcpPkt(a, 1000, b, 80, packet.TCPSyn), at(100*time.Millisecond))
		if len(*out) != 1 || (*out)[0].reason != ReasonEnd {
			t.Fatalf("new SYN did not end the closed flow: %+v", *out)
		}
		tab.Flush()
		if (*out)[1].packets != [2]uint64{1, 0} {
			t.Errorf("new flow: %+v", (*out)[1])
		}
	})
}

func TestEvictionBound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxFlows = 10
	tab, out := newTable(t, cfg)
	for i := range 15 {
		e, _ := tab.Packet(pkt(packet.ProtoUDP, "192.0.2.1", uint16(1000+i), "192.0.2.2", 53, 0, 50), at(time.Duration(i)*time.Millisecond))
		if e.State != (state{}) {
			t.Fatalf("flow %d reuses an entry with state %+v", i, e.State)
		}
		e.State.label = fmt.Sprint(i)
	}
	if tab.Len() != 10 {
		t.Fatalf("%d flows, bound 10", tab.Len())
	}
	if len(*out) != 5 {
		t.Fatalf("%d evicted, want 5", len(*out))
	}
	for i, o := range *out {
		if o.reason != ReasonEvicted || o.client.Port() != uint16(1000+i) || o.state.label != fmt.Sprint(i) {
			t.Errorf("eviction %d: %+v, want the oldest flows first", i, o)
		}
	}
	st := tab.Stats()
	if st.Emitted[ReasonEvicted] != 5 || st.Created != 15 || st.Flows != 10 {
		t.Errorf("stats %+v", st)
	}
	// A TCP flow touched recently outlives older UDP flows even though its
	// own timeout is longer; the nearest deadline goes.
	tab.Packet(tcpPkt("192.0.2.1", 1, "192.0.2.2", 2, packet.TCPAck), at(time.Second))
	if o := (*out)[len(*out)-1]; o.client.Port() != 1005 {
		t.Errorf("evicted %+v, want the oldest UDP flow", o)
	}
}

func TestNoAllocationForExistingFlows(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	pkts := make([]*packet.Packet, 100)
	for i := range pkts {
		pkts[i] = tcpPkt("192.0.2.1", uint16(1000+i), "198.51.100.1", 443, packet.TCPAck)
		tab.Packet(pkts[i], at(0))
	}
	ts := at(time.Second)
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range pkts {
			tab.Packet(p, ts)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per 100 packets of existing flows", allocs)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.MaxFlows = 0 },
		func(c *Config) { c.IdleTimeout = 0 },
		func(c *Config) { c.UDPIdleTimeout = -1 },
		func(c *Config) { c.ActiveTimeout = 0 },
		func(c *Config) { c.TCPLinger = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if _, err := New(c, func(*Entry[state], Reason) {}); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// model is the flow table written the obvious way: a map, linear scans.
// TestAgainstModel feeds both the same random packets.
type model struct {
	cfg   Config
	now   int64
	seq   int
	flows map[Key]*modelFlow
	out   []record
}

type modelFlow struct {
	clientIsLo bool
	packets    [2]uint64
	bytes      [2]uint64
	flags      [2]uint8
	first      int64
	last       int64
	start      int64
	slice      uint32
	sliceStart int64
	touch      int64
	seq        int // order of the last touch: ties in touch go to the earlier
	class      int
	fin        uint8
	closing    bool
}

type record struct {
	key     Key
	reason  Reason
	client  bool
	packets [2]uint64
	bytes   [2]uint64
	flags   [2]uint8
	first   int64
	last    int64
	start   int64
	slice   uint32
}

func (m *model) timeout(f *modelFlow) int64 {
	switch {
	case f.closing:
		return int64(m.cfg.TCPLinger)
	case f.class == classTCP:
		return int64(m.cfg.IdleTimeout)
	case f.class == classUDP:
		return int64(m.cfg.UDPIdleTimeout)
	}
	return int64(m.cfg.OtherIdleTimeout)
}

func (m *model) emit(k Key, f *modelFlow, r Reason) {
	m.out = append(m.out, record{k, r, f.clientIsLo, f.packets, f.bytes, f.flags, f.first, f.last, f.start, f.slice})
}

func (m *model) end(k Key, f *modelFlow, r Reason) {
	m.emit(k, f, r)
	delete(m.flows, k)
}

func (m *model) expireAll() {
	for k, f := range m.flows {
		if m.now-f.touch >= m.timeout(f) {
			r := ReasonIdle
			if f.closing {
				r = ReasonEnd
			}
			m.end(k, f, r)
		}
	}
}

func (m *model) packet(p *packet.Packet, ts int64) {
	if ts > m.now {
		m.now = ts
	}
	k, fromLo := KeyOf(p)
	f := m.flows[k]
	if f != nil {
		switch {
		case m.now-f.touch >= m.timeout(f):
			r := ReasonIdle
			if f.closing {
				r = ReasonEnd
			}
			m.end(k, f, r)
			f = nil
		case f.closing && p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn:
			m.end(k, f, ReasonEnd)
			f = nil
		case m.now-f.sliceStart >= int64(m.cfg.ActiveTimeout):
			m.emit(k, f, ReasonActive)
			f.packets, f.bytes, f.flags = [2]uint64{}, [2]uint64{}, [2]uint8{}
			f.slice++
			f.sliceStart = m.now
		}
	}
	if f == nil {
		if len(m.flows) >= m.cfg.MaxFlows {
			m.expireAll()
		}
		if len(m.flows) >= m.cfg.MaxFlows {
			// Evict the nearest deadline; ties go to the lower class, then
			// the older packet, as the table's list heads do.
			var vk Key
			var v *modelFlow
			for k2, f2 := range m.flows {
				d, vd := f2.touch+m.timeout(f2), int64(0)
				if v != nil {
					vd = v.touch + m.timeout(v)
				}
				c2, vc := f2.class, 0
				if f2.closing {
					c2 = classClosing
				}
				if v != nil {
					vc = v.class
					if v.closing {
						vc = classClosing
					}
				}
				if v == nil || d < vd || d == vd && (c2 < vc || c2 == vc && f2.seq < v.seq) {
					vk, v = k2, f2
				}
			}
			m.end(vk, v, ReasonEvicted)
		}
		f = &modelFlow{clientIsLo: fromLo, start: ts, sliceStart: m.now}
		if p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck {
			f.clientIsLo = !fromLo
		}
		switch p.Proto {
		case packet.ProtoTCP:
			f.class = classTCP
		case packet.ProtoUDP:
			f.class = classUDP
		default:
			f.class = classOther
		}
		m.flows[k] = f
	}
	dir := 1
	if fromLo == f.clientIsLo {
		dir = 0
	}
	if f.packets[0]+f.packets[1] == 0 {
		f.first, f.last = ts, ts
	} else if ts > f.last {
		f.last = ts
	}
	f.packets[dir]++
	f.bytes[dir] += uint64(p.IPLen)
	if p.Proto == packet.ProtoTCP {
		f.flags[dir] |= p.TCPFlags
		if p.TCPFlags&packet.TCPFin != 0 {
			f.fin |= 1 << dir
		}
		if p.TCPFlags&packet.TCPRst != 0 || f.fin == 3 {
			f.closing = true
		}
	}
	f.touch = m.now
	m.seq++
	f.seq = m.seq
}

// TestAgainstModel replays random traffic (few endpoints, so flows collide,
// end, time out, slice and get evicted) into the table and the model, and
// requires the same records.
func TestAgainstModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			cfg := Config{
				MaxFlows:         1 + rng.IntN(20),
				IdleTimeout:      time.Duration(5+rng.IntN(30)) * time.Second,
				UDPIdleTimeout:   time.Duration(3+rng.IntN(20)) * time.Second,
				OtherIdleTimeout: time.Duration(3+rng.IntN(20)) * time.Second,
				ActiveTimeout:    time.Duration(10+rng.IntN(60)) * time.Second,
				TCPLinger:        time.Duration(1+rng.IntN(3)) * time.Second,
			}
			var got []record
			tab, err := New(cfg, func(e *Entry[struct{}], r Reason) {
				got = append(got, record{e.Key, r, e.clientIsLo, e.Packets, e.Bytes, e.TCPFlags, e.First, e.Last, e.Start, e.Slice})
			})
			if err != nil {
				t.Fatal(err)
			}
			// The model is exact LRU: move on every packet.
			tab.lruStep = 0
			m := &model{cfg: cfg, flows: map[Key]*modelFlow{}}
			addrs := []string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "192.0.2.3"}
			ts := t0.UnixNano()
			for step := range 5000 {
				// Mostly small steps, sometimes a long silence, sometimes the
				// same instant; rarely a step back in time.
				switch r := rng.IntN(100); {
				case r < 2:
					ts += int64(time.Duration(rng.IntN(60)) * time.Second)
				case r < 5:
					ts -= int64(time.Duration(rng.IntN(500)) * time.Millisecond)
				case r < 20:
				default:
					ts += int64(time.Duration(rng.IntN(400)) * time.Millisecond)
				}
				src, dst := addrs[rng.IntN(len(addrs))], addrs[rng.IntN(len(addrs))]
				if netip.MustParseAddr(src).Is4() != netip.MustParseAddr(dst).Is4() {
					continue
				}
				var p *packet.Packet
				switch rng.IntN(3) {
				case 0:
					flags := []uint8{packet.TCPSyn, packet.TCPSyn | packet.TCPAck, packet.TCPAck, packet.TCPAck | packet.TCPPsh,
						packet.TCPAck, packet.TCPFin | packet.TCPAck, packet.TCPRst}[rng.IntN(7)]
					p = pkt(packet.ProtoTCP, src, uint16(1+rng.IntN(3)), dst, uint16(1+rng.IntN(3)), flags, 40+rng.IntN(1460))
				case 1:
					p = pkt(packet.ProtoUDP, src, uint16(1+rng.IntN(3)), dst, uint16(1+rng.IntN(3)), 0, 28+rng.IntN(500))
				default:
					p = pkt(packet.ProtoICMP, src, 0, dst, 0, 0, 84)
				}
				tab.Packet(p, time.Unix(0, ts))
				m.packet(p, ts)
				// After every packet the flows whose timeout has not passed
				// are the same in both.
				{
					live := func(k Key) bool { f := m.flows[k]; return f != nil && m.now-f.touch < m.timeout(f) }
					for k, idx := range tab.index {
						e := tab.entry(idx)
						if tab.now-e.touch < tab.timeouts[e.class] && !live(k) {
							t.Fatalf("step %d: table has %+v (class %d touch %d), model %+v now %d/%d\ntable last %+v\nmodel last %+v\npkt %+v", step, k, e.class, e.touch, m.flows[k], tab.now, m.now, got[max(0, len(got)-2):], m.out[max(0, len(m.out)-2):], p)
						}
					}
					for k := range m.flows {
						if live(k) {
							if _, ok := tab.index[k]; !ok {
								t.Fatalf("step %d: model has %+v %+v, table not; got %v", step, k, m.flows[k], got[len(got)-3:])
							}
						}
					}
				}
				if rng.IntN(200) == 0 {
					now := ts + int64(time.Duration(rng.IntN(40))*time.Second)
					tab.Expire(time.Unix(0, now))
					if now > m.now {
						m.now = now
					}
					m.expireAll()
				}
			}
			tab.Flush()
			m.expireAll()
			for k, f := range m.flows {
				m.end(k, f, ReasonFlush)
			}
			sortRecords(got)
			sortRecords(m.out)
			if len(got) != len(m.out) {
				t.Fatalf("table emitted %d records, model %d", len(got), len(m.out))
			}
			for i := range got {
				if got[i] != m.out[i] {
					t.Fatalf("record %d:\ntable %+v\nmodel %+v", i, got[i], m.out[i])
				}
			}
			if st := tab.Stats(); st.Flows != 0 {
				t.Errorf("%d flows left after flush", st.Flows)
			}
		})
	}
}

func sortRecords(rs []record) {
	slices.SortFunc(rs, func(a, b record) int {
		return cmp.Or(
			slices.Compare(a.key.Lo[:], b.key.Lo[:]), slices.Compare(a.key.Hi[:], b.key.Hi[:]),
			cmp.Compare(a.key.LoPort, b.key.LoPort), cmp.Compare(a.key.HiPort, b.key.HiPort),
			cmp.Compare(a.key.Proto, b.key.Proto), cmp.Compare(a.start, b.start),
			cmp.Compare(a.slice, b.slice), cmp.Compare(a.reason, b.reason))
	})
}

// TestLRUStep: flows move in their list at most once per lruStep, so a
// flow behind a live head may be emitted up to lruStep late by a sweep,
// while a packet of an expired flow still ends it on the spot.
func TestLRUStep(t *testing.T) {
	tab, out := newTable(t, DefaultConfig())
	step := time.Duration(tab.lruStep)
	if step <= 0 || step > time.Second {
		t.Fatalf("lru step %v", step)
	}
	a := pkt(packet.ProtoUDP, "192.0.2.1", 1, "192.0.2.2", 2, 0, 30)
	b := pkt(packet.ProtoUDP, "192.0.2.1", 3, "192.0.2.2", 4, 0, 30)
	tab.Packet(a, at(0))
	tab.Packet(b, at(step/4))
	tab.Packet(a, at(step/2)) // within the step: a stays at the head
	tab.Expire(at(15*time.Second + step/4))
	if len(*out) != 0 {
		t.Fatalf("b emitted before the head: %+v (if this fails the step logic changed)", *out)
	}
	tab.Expire(at(15*time.Second + step/2))
	if len(*out) != 2 {
		t.Fatalf("%d emitted, want both %v late at most", len(*out), step)
	}
	// Exact on lookup: b's next packet after its timeout starts a new flow.
	tab2, out2 := newTable(t, DefaultConfig())
	tab2.Packet(a, at(0))
	tab2.Packet(b, at(step/4))
	tab2.Packet(a, at(step/2))
	tab2.Packet(b, at(15*time.Second+step/4))
	if len(*out2) != 1 || (*out2)[0].client.Port() != 3 || (*out2)[0].reason != ReasonIdle {
		t.Fatalf("lookup after timeout: %+v", *out2)
	}
}
