package detect

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"flowlens/schema"
)

// benchInputs is a realistic mix seen by an enterprise collector: mostly
// web flows from a few thousand clients, one flow in ten DNS to the
// allowed resolver with ordinary names, some NTP, QUIC and internal
// traffic; none of it alerts.
func benchInputs(n int, dns bool) []Input {
	r := rand.New(rand.NewPCG(7, 7))
	var out []Input
	for i := range n {
		client := fmt.Sprintf("10.3.%d.%d", r.IntN(16), 1+r.IntN(250))
		var f fl
		switch k := r.IntN(10); {
		case k == 0 && dns:
			f = dnsFlow(client, "10.0.0.53", "www."+ordinaryDomains[r.IntN(len(ordinaryDomains))])
		case k <= 4:
			f = fl{src: client, dst: "142.250.74.100", sport: uint16(40000 + i%20000), dport: 443, proto: 6, label: "TLS.Google", cat: "Web", sni: "www.google.com", packets: 40}
		case k <= 6:
			f = fl{src: client, dst: "52.97.1.1", sport: uint16(40000 + i%20000), dport: 443, proto: 17, label: "QUIC.Microsoft365", cat: "Collaborative", packets: 30}
		case k == 7:
			f = fl{src: client, dst: "162.159.200.1", sport: 123, dport: 123, proto: 17, label: "NTP", cat: "System"}
		default:
			f = fl{src: client, dst: "10.2.0.10", sport: uint16(40000 + i%20000), dport: 443, proto: 6, label: "TLS", cat: "Web"}
		}
		in := Input{Flow: f.flow(), SrcPool: "staff"}
		if f.dst == "10.2.0.10" || f.dst == "10.0.0.53" {
			in.DstPool = "servers"
		}
		if f.dport == 53 {
			in.DNSQType = QTypeA
		}
		out = append(out, in)
	}
	return out
}

// benchFlows are benchInputs with their fields put on the flows once, so
// that the benchmarks (parallel ones too) only read them.
func benchFlows(n int, dns bool) []*schema.Flow {
	ins := benchInputs(n, dns)
	out := make([]*schema.Flow, len(ins))
	for i := range ins {
		f := ins[i].Flow
		f.SrcPool, f.DstPool, f.DNSQType = ins[i].SrcPool, ins[i].DstPool, ins[i].DNSQType
		out[i] = f
	}
	return out
}

func benchDetector(b *testing.B) *harness {
	cfg := fullConfig(b)
	cfg.Learn = Learn{Enabled: true, Period: time.Minute, Pools: []string{"iot", "staff"}, MaxEdges: 100000}
	h := newHarness(b, cfg)
	h.start(b)
	// Learn the mix's edges, then leave the learning period.
	for _, in := range benchInputs(20000, true) {
		h.d.EvaluateInput(&in)
	}
	h.clk.Add(2 * time.Minute)
	if got := h.rec.take(); len(got) != 0 {
		b.Fatalf("the mix alerts: %s %s", got[0].Kind, got[0].Evidence)
	}
	return h
}

func BenchmarkEvaluate(b *testing.B) {
	for _, c := range []struct {
		name string
		dns  bool
	}{{"nomatch", false}, {"mix", true}} {
		b.Run(c.name, func(b *testing.B) {
			h := benchDetector(b)
			flows := benchFlows(4096, c.dns)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				h.d.Evaluate(flows[i&4095])
			}
			b.StopTimer()
			if got := h.rec.take(); len(got) != 0 {
				b.Fatalf("the mix alerts: %s %s", got[0].Kind, got[0].Evidence)
			}
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			h := benchDetector(b)
			flows := benchFlows(4096, c.dns)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(4096)
				for pb.Next() {
					h.d.Evaluate(flows[i&4095])
					i++
				}
			})
		})
	}
}

func BenchmarkParseName(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	names := []string{"www.example.org", akamaiName(r), googlevideoName(r), iodineName(r, "tunnel-example.net"), "WWW.Example.CO.UK."}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		parseName(names[i%len(names)])
	}
}
