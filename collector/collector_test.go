package collector

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"flowlens/collector/pcap"
	"flowlens/collector/udp"
	"flowlens/decoder"
	"flowlens/schema"
)

type memSink struct {
	mu    sync.Mutex
	flows []schema.Flow
}

func (s *memSink) Put(f *schema.Flow) {
	s.mu.Lock()
	s.flows = append(s.flows, *f)
	s.mu.Unlock()
}

func (s *memSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}

// replay sends the UDP payloads of a corpus capture to addr, in order.
func replay(t *testing.T, name string, addr net.Addr) int {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "shared", "corpus", "flows", name))
	if os.IsNotExist(err) {
		t.Skip("corpus not found")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	if _, err := pcap.ReadUDP(f, func(d pcap.Datagram) error {
		n++
		_, err := c.Write(d.Payload)
		time.Sleep(time.Millisecond) // loopback is fast; keep well under the socket buffer
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// The collector glue: datagrams over UDP reach per-worker decoders, flows
// get a label and reach the sink, and the decoder's counters are metrics.
func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	sink := &memSink{}
	cfg := Config{UDP: udp.DefaultConfig(), Decoder: decoder.DefaultConfig()}
	cfg.UDP.Listeners = []udp.Listener{{Name: "netflow", Addr: "127.0.0.1:0"}}
	c, err := New(cfg, slog.New(slog.DiscardHandler), reg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := c.Intake().Addrs()[0]
	replay(t, "softflowd-v9-kerberos.pcap", addr)
	replay(t, "akvorado-nfv9-data-only-missing-template.pcap", addr)
	deadline := time.Now().Add(5 * time.Second)
	for sink.len() < 72 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	c.Stop()
	if n := sink.len(); n != 72 {
		t.Fatalf("%d flows, want 72", n)
	}
	for _, f := range sink.flows {
		if f.Protocol == "" || f.Source != schema.SourceNetFlowV9 {
			t.Fatalf("flow not labelled or wrong source: %+v", f)
		}
	}
	want := `
# HELP flowlens_decoder_flows_total Flow records decoded, by source kind.
# TYPE flowlens_decoder_flows_total counter
flowlens_decoder_flows_total{source="ipfix"} 0
flowlens_decoder_flows_total{source="netflow_v5"} 0
flowlens_decoder_flows_total{source="netflow_v9"} 72
flowlens_decoder_flows_total{source="sensor"} 0
flowlens_decoder_flows_total{source="sflow_v5"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "flowlens_decoder_flows_total"); err != nil {
		t.Fatal(err)
	}
	waiting, err := testutil.GatherAndCount(reg, "flowlens_decoder_waiting_for_template_total")
	if err != nil || waiting != 1 {
		t.Fatalf("waiting metric: %d %v", waiting, err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "flowlens_decoder_waiting_for_template_total" && mf.GetMetric()[0].GetCounter().GetValue() == 0 {
			t.Fatal("data without template not counted")
		}
	}
}
