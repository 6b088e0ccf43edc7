package export

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// benchFlows is a small mix: TLS with a server name, DNS with a query, an
// IPv6 QUIC flow, a label-less flow.
func benchFlows() []Flow {
	tls := testFlow()
	dns := testFlow()
	dns.Protocol, dns.ServerPort, dns.Application, dns.Category, dns.ServerName = 17, 53, "DNS", "Network", ""
	dns.DNSQuery = "www.example.org"
	quic := testFlow()
	quic.Client, quic.Server = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::7")
	quic.Protocol, quic.Application, quic.Category, quic.ServerName = 17, "QUIC.Google", "Web", "www.google.com"
	none := testFlow()
	none.Application, none.Category, none.ServerName, none.Confidence = "Unknown", "", "", ConfidenceUnknown
	return []Flow{tls, dns, quic, none}
}

// BenchmarkEncode: the encoder alone, messages of the default MTU.
//
//	go test ./sensor/export -run '^$' -bench Encode -benchmem -benchtime 200000x
func BenchmarkEncode(b *testing.B) {
	for _, uni := range []bool{false, true} {
		name := "biflow"
		if uni {
			name = "unidirectional"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Unidirectional = uni
			e, err := NewEncoder(cfg)
			if err != nil {
				b.Fatal(err)
			}
			flows := benchFlows()
			now := time.Now()
			e.Begin(now, true)
			bytes := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f := &flows[i%len(flows)]
				if !e.Add(f) {
					bytes += len(e.Finish())
					e.Begin(now, false)
					e.Add(f)
				}
			}
			bytes += len(e.Finish())
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
			b.ReportMetric(float64(bytes)/float64(b.N), "B/flow")
		})
	}
}

// BenchmarkExporter: Export → queue → writer → UDP to a collector socket
// on the loopback that a goroutine drains. Export is retried when the
// queue is full, so the figure is the writer's rate, sending included.
//
//	go test ./sensor/export -run '^$' -bench Exporter -benchmem -benchtime 200000x
func BenchmarkExporter(b *testing.B) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	cfg := DefaultConfig()
	cfg.Collectors = []string{c.LocalAddr().String()}
	x, err := New(cfg, quiet, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	if err := x.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	flows := benchFlows()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for !x.Export(&flows[i%len(flows)]) {
			time.Sleep(10 * time.Microsecond)
		}
	}
	x.Stop()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}
