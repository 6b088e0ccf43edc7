package dpi

import (
	"bytes"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"
)

// loadEvents pre-parses a corpus capture ("all": every capture, one
// after the other) for the benchmarks.
func loadEvents(b *testing.B, name string) ([]*testFlow, []event) {
	files := corpusFiles(b)
	if name != "all" {
		files = []string{filepath.Join(corpusDir(), name)}
	}
	var flows []*testFlow
	var evs []event
	for _, path := range files {
		fl, _, ev := flowsOf(readFrames(b, path))
		for i := range ev {
			ev[i].flow += len(flows)
		}
		flows = append(flows, fl...)
		evs = append(evs, ev...)
	}
	return flows, evs
}

// BenchmarkInspect feeds a capture's packets one per op, starting every
// flow afresh when the capture wraps: ns/op and allocs/op are per packet,
// first packets of flows (where the strings and buffers are allocated)
// included.
func BenchmarkInspect(b *testing.B) {
	for _, name := range []string{"all", "teams.pcap", "netflix.pcap", "quic-v2.pcapng"} {
		b.Run(name, func(b *testing.B) {
			flows, evs := loadEvents(b, name)
			e := testEngine(b)
			b.ReportAllocs()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(evs)
				if k == 0 {
					for _, fl := range flows {
						fl.st, fl.done = State{}, false
					}
				}
				ev := evs[k]
				fl := flows[ev.flow]
				if !fl.done {
					fl.done = e.Inspect(&fl.st, &fl.f, ev.dir, ev.payload, ev.flags, ev.seq)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N), "allocs/packet")
			b.ReportMetric(float64(unsafe.Sizeof(State{})), "B/state")
		})
	}
}

// BenchmarkUndecided is the hot path of a flow no dissector names yet:
// every dissector looks at the payload. It must not allocate.
func BenchmarkUndecided(b *testing.B) {
	e := testEngine(b)
	junk := bytes.Repeat([]byte{0x99, 0x12, 0x34}, 400)
	for _, f := range []Flow{udpFlow("10.0.0.1:40000", "10.0.0.2:40001"), tcpFlow("10.0.0.1:40000", "10.0.0.2:40001")} {
		b.Run(map[uint8]string{6: "tcp", 17: "udp"}[f.Proto], func(b *testing.B) {
			b.ReportAllocs()
			var st State
			for i := 0; i < b.N; i++ {
				if st.npay == 8 {
					st = State{}
				}
				e.Inspect(&st, &f, Dir(i&1), junk, tcpACK, uint32(1+int(st.npay)*len(junk)))
			}
		})
	}
}

// BenchmarkNewFlow is one whole classification per op.
func BenchmarkNewFlow(b *testing.B) {
	e := testEngine(b)
	ch := tlsRecord(tlsHandshake, clientHello(hello{sni: "www.youtube.com", alpn: []string{"h2"}, versions: []uint16{0x0304}}))
	q := quicInitial(b, quicV1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, 0, cryptoFrame(0, clientHello(hello{sni: "www.google.com", alpn: []string{"h3"}})))
	dnsq := dnsQuery(1, "www.facebook.com", 1)
	for _, tt := range []struct {
		name string
		f    Flow
		p    []byte
	}{
		{"tls", tcpFlow("10.0.0.1:40000", "10.0.0.2:443"), ch},
		{"quic", udpFlow("10.0.0.1:40000", "10.0.0.2:443"), q},
		{"dns", udpFlow("10.0.0.1:40000", "10.0.0.2:53"), dnsq},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var st State
				e.Inspect(&st, &tt.f, ToServer, tt.p, tcpACK, 1)
			}
		})
	}
}

func BenchmarkResult(b *testing.B) {
	e := testEngine(b)
	f := tcpFlow("10.0.0.1:40000", "10.0.0.2:443")
	var st State
	e.Inspect(&st, &f, ToServer, tlsRecord(tlsHandshake, clientHello(hello{sni: "www.youtube.com"})), tcpACK, 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = e.Result(&st, &f)
	}
}

// The hot path allocates nothing: packets of flows that are done, of
// flows no dissector has named yet, and Result.
func TestHotPathAllocs(t *testing.T) {
	e := testEngine(t)
	junk := bytes.Repeat([]byte{0x99, 0x12, 0x34}, 400)
	tls := tcpFlow("10.0.0.1:40000", "10.0.0.2:443")
	var done State
	e.Inspect(&done, &tls, ToServer, tlsRecord(tlsHandshake, clientHello(hello{sni: "www.youtube.com"})), tcpACK, 1)
	e.Result(&done, &tls) // caches the label string
	uf, ust := &Flow{Proto: 17, Client: addrPort("10.0.0.1:40000"), Server: addrPort("10.0.0.2:40001")}, new(State)
	tf, tst := &Flow{Proto: 6, Client: addrPort("10.0.0.1:40000"), Server: addrPort("10.0.0.2:40001")}, new(State)
	for _, tt := range []struct {
		name string
		fn   func()
	}{
		{"done flow", func() { e.Inspect(&done, &tls, ToClient, junk, tcpACK, 5) }},
		{"result", func() { _ = e.Result(&done, &tls) }},
		// The flow entry lives in the caller's table (on the heap); only
		// the packets are measured.
		{"undecided udp", func() {
			*ust = State{}
			for i := 0; i < 8; i++ {
				e.Inspect(ust, uf, Dir(i&1), junk, 0, 0)
			}
		}},
		{"undecided tcp", func() {
			*tst = State{}
			for i := 0; i < 8; i++ {
				e.Inspect(tst, tf, Dir(i&1), junk, tcpACK, uint32(1+i/2*len(junk)))
			}
		}},
		{"fallback result", func() {
			_ = e.Result(ust, &Flow{Proto: 17, Client: addrPort("10.0.0.1:40000"), Server: addrPort("142.250.1.1:443")})
		}},
	} {
		if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
			t.Errorf("%s: %.1f allocs", tt.name, n)
		}
	}
}
