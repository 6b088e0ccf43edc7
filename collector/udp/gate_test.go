package udp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestAllowList(t *testing.T) {
	l := newAllowList(prefixes(t,
		"10.0.0.0/8", "10.1.0.0/16", // nested: merged
		"192.168.1.0/25", "192.168.1.128/25", // adjacent: merged
		"203.0.113.7/32", "2001:db8::/32", "::ffff:198.51.100.0/120",
	))
	if got := l.len(); got != 5 {
		t.Errorf("%d ranges after merging, want 5", got)
	}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"10.0.0.0", true}, {"10.255.255.255", true}, {"11.0.0.0", false}, {"9.255.255.255", false},
		{"192.168.1.0", true}, {"192.168.1.200", true}, {"192.168.2.0", false},
		{"203.0.113.7", true}, {"203.0.113.8", false}, {"203.0.113.6", false},
		{"2001:db8::1", true}, {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true}, {"2001:db9::", false},
		{"198.51.100.42", true},                       // a v4-mapped prefix matches the (unmapped) IPv4 source
		{"::ffff:10.0.0.1", true}, {"::a00:1", false}, // IPv4-compatible is not IPv4
		{"0.0.0.0", false}, {"::", false}, {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false},
	} {
		if got := l.contains(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("contains(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	all := newAllowList(prefixes(t, "::/0", "0.0.0.0/0"))
	for _, a := range []string{"::", "1.2.3.4", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if !all.contains(netip.MustParseAddr(a)) {
			t.Errorf("::/0 does not contain %s", a)
		}
	}
	if all.len() != 1 {
		t.Errorf("::/0 and 0.0.0.0/0: %d ranges", all.len())
	}
	if newAllowList(nil) != nil {
		t.Error("an empty list must mean every source")
	}
}

func TestRateTableBucket(t *testing.T) {
	rt := newRateTable(10, 16)
	a := netip.MustParseAddr("192.0.2.1")
	var now int64 = 1e18
	ok := 0
	for range 30 {
		if rt.allow(a, now) {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("burst: %d admitted, want 10 (one second of rate)", ok)
	}
	now += 250e6 // 2.5 tokens
	ok = 0
	for range 5 {
		if rt.allow(a, now) {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("after 250ms: %d admitted, want 2", ok)
	}
	now += 100e9 // refills to the burst, not beyond
	ok = 0
	for range 30 {
		if rt.allow(a, now) {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("after a long pause: %d admitted, want 10", ok)
	}
	if newRateTable(0, 16) != nil {
		t.Fatal("rate 0 must mean no limit")
	}
	// Under one datagram per second the bucket still holds one.
	slow := newRateTable(0.1, 4)
	if !slow.allow(a, now) || slow.allow(a, now) || !slow.allow(a, now+10e9) {
		t.Fatal("rate 0.1/s: want one datagram, then one 10 s later")
	}
}

// TestRateTableBounded: a flood from many (spoofed) sources recycles a
// fixed number of entries, least recently seen first.
func TestRateTableBounded(t *testing.T) {
	const size = 64
	rt := newRateTable(1, size)
	var now int64 = 1e18
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	legit := netip.MustParseAddr("192.0.2.1")
	for i := range 100_000 {
		if i%10 == 0 {
			rt.allow(legit, now) // seen often: never evicted
		}
		rt.allow(addr(i), now)
	}
	if rt.len() != size || len(rt.ent) != size || cap(rt.ent) != size {
		t.Fatalf("table holds %d entries (%d allocated), want %d", rt.len(), cap(rt.ent), size)
	}
	if _, ok := rt.idx[legit]; !ok {
		t.Fatal("the exporter seen every 10 datagrams was evicted")
	}
	// The list holds exactly the indexed entries, most recent first.
	seen := map[netip.Addr]bool{}
	prev := int32(-1)
	for i := rt.head; i >= 0; i = rt.ent[i].next {
		e := rt.ent[i]
		if e.prev != prev || seen[e.addr] || rt.idx[e.addr] != i {
			t.Fatalf("list broken at %d (%s)", i, e.addr)
		}
		seen[e.addr] = true
		prev = i
	}
	if len(seen) != size || rt.tail != prev || rt.ent[rt.head].addr != addr(99_999) {
		t.Fatalf("list: %d entries, tail %d/%d, head %s", len(seen), rt.tail, prev, rt.ent[rt.head].addr)
	}
	if _, ok := rt.idx[addr(99_999-size)]; ok {
		t.Fatal("an address older than the last 64 is still tracked")
	}
}

func TestGateNoAllocation(t *testing.T) {
	g := gate{allow: newAllowList(prefixes(t, "10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32")), rate: newRateTable(1e6, 1024)}
	addrs := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8::7")}
	var now int64 = 1e18
	for _, a := range addrs {
		g.admit(a, now)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, a := range addrs {
			now += 1000
			if g.admit(a, now) != admitted {
				t.Fatal("refused")
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per admission of known exporters", allocs)
	}
}

// BenchmarkGate: a known exporter among many, allow-list and rate limit on.
func BenchmarkGate(b *testing.B) {
	var ps []netip.Prefix
	for i := range 64 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
	}
	g := gate{allow: newAllowList(ps), rate: newRateTable(1e9, defaultRateTableSize)}
	addrs := make([]netip.Addr, 1000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i % 64), byte(i >> 8), byte(i)})
	}
	var now int64 = 1e18
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now += 100
		if g.admit(addrs[i%len(addrs)], now) != admitted {
			b.Fatal("refused")
		}
	}
}

// sendFrom sends payloads to to from a socket bound to the loopback
// address src (any of 127.0.0.0/8 is a distinct source on Linux).
func sendFrom(t *testing.T, src string, to net.Addr, payloads ...[]byte) {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range payloads {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

func waitReceived(t *testing.T, in *Intake, listener string, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(in.m.received.WithLabelValues(listener)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %v datagrams, want %v", testutil.ToFloat64(in.m.received.WithLabelValues(listener)), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func repeat(n int, p string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(p)
	}
	return out
}

func TestIntakeAllowAndRateLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{"netflow", "127.0.0.1:0"}}
	cfg.Sockets = 1
	cfg.Allow = prefixes(t, "127.0.0.0/30", "::1/128")
	cfg.RateLimit = 10
	var mu sync.Mutex
	got := map[netip.Addr]int{}
	var handled atomic.Int64
	in := start(t, cfg, func(_ int, d *Datagram) {
		mu.Lock()
		got[d.Source.Addr()]++
		mu.Unlock()
		handled.Add(1)
	})
	defer in.Stop()
	dropped := func(reason string) float64 {
		return testutil.ToFloat64(in.m.dropped.WithLabelValues("netflow", reason))
	}
	if dropped("not_allowed") != 0 || dropped("rate_limited") != 0 {
		t.Fatal("counters not at zero")
	}
	sendFrom(t, "127.0.0.2", in.Addrs()[0], repeat(5, "ok")...)
	sendFrom(t, "127.0.0.9", in.Addrs()[0], repeat(7, "stranger")...)
	sendFrom(t, "127.0.0.3", in.Addrs()[0], repeat(40, "chatty")...)
	waitReceived(t, in, "netflow", 52)
	deadline := time.Now().Add(5 * time.Second)
	for float64(handled.Load())+dropped("not_allowed")+dropped("rate_limited") < 52 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := got[netip.MustParseAddr("127.0.0.2")]; n != 5 {
		t.Errorf("allowed exporter under the rate: %d of 5 handled", n)
	}
	if n := got[netip.MustParseAddr("127.0.0.9")]; n != 0 || dropped("not_allowed") != 7 {
		t.Errorf("exporter outside the allow-list: %d handled, %v counted not_allowed", n, dropped("not_allowed"))
	}
	// A burst of one second of rate (10), plus what refills while sending.
	chatty := got[netip.MustParseAddr("127.0.0.3")]
	if chatty < 10 || chatty > 12 || float64(chatty)+dropped("rate_limited") != 40 {
		t.Errorf("exporter over the rate: %d handled, %v counted rate_limited (of 40)", chatty, dropped("rate_limited"))
	}
}

// TestIntakeRateTableBounded: many sources push an exporter out of the
// reader's bounded table (which then holds a fresh bucket for it).
func TestIntakeRateTableBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{"netflow", "127.0.0.1:0"}}
	cfg.Sockets = 1
	cfg.RateLimit = 0.5 // burst of one: a second datagram within 2 s is over
	in, err := New(cfg, discard(), nil, func(int, *Datagram) {})
	if err != nil {
		t.Fatal(err)
	}
	in.rateTableSize = 16
	if err := startIntake(in); err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	limited := func() float64 { return testutil.ToFloat64(in.m.dropped.WithLabelValues("netflow", "rate_limited")) }
	to := in.Addrs()[0]
	sendFrom(t, "127.0.0.2", to, []byte("a"), []byte("b"))
	waitReceived(t, in, "netflow", 2)
	if limited() != 1 {
		t.Fatalf("second datagram within the second: %v rate_limited, want 1", limited())
	}
	// 16 other sources: 127.0.0.2 is now the least recently seen, evicted.
	for i := 10; i < 26; i++ {
		sendFrom(t, fmt.Sprintf("127.0.0.%d", i), to, []byte("x"))
	}
	waitReceived(t, in, "netflow", 18)
	sendFrom(t, "127.0.0.2", to, []byte("c"))
	waitReceived(t, in, "netflow", 19)
	if limited() != 1 {
		t.Fatalf("evicted exporter came back: %v rate_limited, want still 1 (a fresh bucket)", limited())
	}
	// 15 more sources: 127.0.0.2 stays tracked, its bucket empty.
	for i := 30; i < 45; i++ {
		sendFrom(t, fmt.Sprintf("127.0.0.%d", i), to, []byte("x"))
	}
	sendFrom(t, "127.0.0.2", to, []byte("d"))
	waitReceived(t, in, "netflow", 35)
	if limited() != 2 {
		t.Fatalf("tracked exporter over its rate: %v rate_limited, want 2", limited())
	}
}

// TestIntakeQueueBytes: large datagrams fill a queue by bytes before they
// fill it by count.
func TestIntakeQueueBytes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{"netflow", "127.0.0.1:0"}}
	cfg.Workers, cfg.QueueSize, cfg.Sockets = 1, 8, 1 // 16 KiB of buffers
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	in := start(t, cfg, func(int, *Datagram) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	})
	sendFrom(t, "127.0.0.1", in.Addrs()[0], []byte("first"))
	<-entered
	big := make([]byte, 30000)
	sendFrom(t, "127.0.0.1", in.Addrs()[0], [][]byte{big, big, big, big, big}...)
	waitReceived(t, in, "netflow", 6)
	// The first big one is queued (an empty queue takes any datagram).
	if d := testutil.ToFloat64(in.m.dropped.WithLabelValues("netflow", "queue_full")); d != 4 {
		t.Fatalf("queue_full %v, want 4", d)
	}
	if q := in.queued[0].Load(); q < 30000 || q > 40000 {
		t.Fatalf("queued bytes %d", q)
	}
	close(release)
	in.Stop()
	if q := in.queued[0].Load(); q != 0 {
		t.Fatalf("queued bytes after draining: %d", q)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startIntake(in *Intake) error { return in.Start(context.Background()) }
