package dpi

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestDNS(t *testing.T) {
	e := testEngine(t)
	fb := netip.MustParseAddr("157.240.1.35")
	q := dnsQuery(7, "www.facebook.com", 1)
	a := dnsAnswer(7, "www.facebook.com", 60, fb, netip.MustParseAddr("2a03:2880::1"))
	f := udpFlow("10.0.0.1:53000", "8.8.8.8:53")
	st := new(State)
	if e.Inspect(st, &f, ToServer, q, 0, 0) {
		t.Fatal("done before the answer: the cache would miss it")
	}
	if r := e.Result(st, &f); r.Label != "DNS.Facebook" || r.DNSQuery != "www.facebook.com" || r.Category != "Network" {
		t.Errorf("query: %+v", r)
	}
	if e.Inspect(st, &f, ToClient, a, 0, 0) {
		t.Error("done after the answer: a UDP DNS flow stays open to its budget, for later queries")
	}
	// A later, longer query on the same socket becomes the flow's name
	// (the label stays the first query's).
	long := "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8.t.example.com"
	e.Inspect(st, &f, ToServer, dnsQuery(8, long, 16), 0, 0)
	if r := e.Result(st, &f); r.DNSQuery != long || r.DNSQType != 16 || r.Label != "DNS.Facebook" {
		t.Errorf("later query: %+v", r)
	}
	// A later flow to the answer's address, with no name of its own, gets
	// the application from the cache (and the protocol from the port).
	later := tcpFlow("10.0.0.1:40000", "157.240.1.35:443")
	var ls State
	e.Inspect(&ls, &later, ToServer, nil, tcpSYN, 1)
	if r := e.Result(&ls, &later); r.Label != "TLS.Facebook" || r.Confidence != ConfDNSCache || r.ServerName != "www.facebook.com" {
		t.Errorf("cached: %+v", r)
	}
	v6 := udpFlow("10.0.0.1:1", "[2a03:2880::1]:3478")
	if r := e.Result(new(State), &v6); r.App != "Facebook" || r.Confidence != ConfDNSCache {
		t.Errorf("cached v6: %+v", r)
	}

	for _, tt := range []struct {
		name, label string
		f           Flow
		msg         []byte
	}{
		{"TCP", "DNS.Dropbox", tcpFlow("10.0.0.1:40000", "9.9.9.9:53"), cat(be16(uint16(len(dnsQuery(1, "d.dropbox.com", 1)))), dnsQuery(1, "d.dropbox.com", 1))},
		{"mDNS", "MDNS", udpFlow("10.0.0.1:5353", "224.0.0.251:5353"), dnsQuery(0, "_raop._tcp.local", 12)},
		{"LLMNR", "LLMNR", udpFlow("10.0.0.1:5000", "224.0.0.252:5355"), dnsQuery(3, "printer", 1)},
		{"response first", "DNS.Google", udpFlow("8.8.8.8:53", "10.0.0.1:5000"), dnsAnswer(3, "www.l.google.com", 300, netip.MustParseAddr("142.250.1.1"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := runFlow(e, tt.f, pk{ToServer, tt.msg, tcpACK, 1})
			if r.Label != tt.label || r.Confidence != ConfDPI {
				t.Errorf("got %+v", r)
			}
		})
	}
	// The question's type and the answer's response code travel with the
	// flow (the DNS tunnel detection reads them).
	txt := dnsQuery(9, "aGVsbG8gd29ybGQ.t.example.com", 16)
	nx := cat(be16(9), be16(0x8183), be16(1), be16(0), be16(0), be16(0), dnsQName("aGVsbG8gd29ybGQ.t.example.com"), be16(16), be16(1))
	r, _ := runFlow(e, udpFlow("10.0.0.1:5001", "10.0.0.53:53"), pk{ToServer, txt, 0, 0}, pk{ToClient, nx, 0, 0})
	if r.DNSQType != 16 || !r.DNSAnswered || r.DNSRCode != 3 {
		t.Errorf("TXT query answered NXDOMAIN: %+v", r)
	}
	r, _ = runFlow(e, udpFlow("10.0.0.1:5002", "10.0.0.53:53"), pk{ToServer, dnsQuery(10, "www.example.com", 28), 0, 0})
	if r.DNSQType != 28 || r.DNSAnswered {
		t.Errorf("unanswered AAAA query: %+v", r)
	}
	// A compression pointer to itself must not hang.
	loop := cat(be16(1), be16(0x0100), be16(1), be16(0), be16(0), be16(0), []byte{0xc0, 12}, be16(1), be16(1))
	if r, _ := runFlow(e, udpFlow("10.0.0.1:1", "10.0.0.2:53"), pk{ToServer, loop, 0, 0}); r.Confidence == ConfDPI {
		t.Errorf("pointer loop accepted: %+v", r)
	}
}

func TestDNSCache(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := newDNSCache(dnsShards*2, time.Minute, time.Hour)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	// Fill far past the bound: the cache keeps at most its size.
	for i := 0; i < 1000; i++ {
		c.put(addr(i), fmt.Sprint("n", i), 30, now)
	}
	n := 0
	for i := 0; i < 1000; i++ {
		if _, ok := c.get(addr(i), now); ok {
			n++
		}
	}
	if n > dnsShards*2 {
		t.Errorf("%d entries kept, bound %d", n, dnsShards*2)
	}
	if c.evicted.Load() == 0 {
		t.Error("no evictions counted")
	}
	// TTL is clamped to the minimum, then entries expire.
	c.put(addr(5000), "x", 1, now)
	if _, ok := c.get(addr(5000), now.Add(59*time.Second)); !ok {
		t.Error("expired before the minimum TTL")
	}
	if _, ok := c.get(addr(5000), now.Add(61*time.Second)); ok {
		t.Error("not expired after the minimum TTL")
	}
	c.put(addr(5001), "y", 1<<30, now)
	if _, ok := c.get(addr(5001), now.Add(2*time.Hour)); ok {
		t.Error("not expired after the maximum TTL")
	}
	// Recently used entries survive: LRU, not FIFO.
	d := newDNSCache(dnsShards*2, time.Minute, time.Hour) // two entries per shard
	var same []netip.Addr
	for i := 1; len(same) < 3; i++ {
		if d.shard(addr(i)) == d.shard(addr(1)) {
			same = append(same, addr(i))
		}
	}
	d.put(same[0], "a", 60, now)
	d.put(same[1], "b", 60, now)
	d.get(same[0], now) // a is now the most recent
	d.put(same[2], "c", 60, now)
	if _, ok := d.get(same[0], now); !ok {
		t.Error("recently used entry evicted")
	}
	if _, ok := d.get(same[1], now); ok {
		t.Error("least recently used entry kept")
	}

	// Concurrent workers (run with -race).
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				c.put(addr(i+w), "n", 60, now)
				c.get(addr(i), now)
			}
		}(w)
	}
	wg.Wait()
}
