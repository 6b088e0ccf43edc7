package udp

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func start(t *testing.T, cfg Config, h Handler) *Intake {
	t.Helper()
	in, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), h)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return in
}

func send(t *testing.T, to net.Addr, payloads ...string) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestIntakeDeliversInOrderPerExporter(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{"netflow", "127.0.0.1:0"}, {"sflow", "[::1]:0"}}
	cfg.Workers = 4
	var mu sync.Mutex
	got := map[string][]string{}
	worker := map[string]int{}
	in := start(t, cfg, func(w int, d *Datagram) {
		mu.Lock()
		defer mu.Unlock()
		k := d.Listener + " " + d.Source.String()
		got[k] = append(got[k], string(d.Payload))
		if prev, ok := worker[k]; ok && prev != w {
			t.Errorf("%s went to workers %d and %d", k, prev, w)
		}
		worker[k] = w
	})
	a := send(t, in.Addrs()[0], "1", "2", "3")
	b := send(t, in.Addrs()[1], "x", "y")
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got[("netflow "+a.LocalAddr().String())]) + len(got["sflow "+b.LocalAddr().String()])
		mu.Unlock()
		if n == 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.Stop()
	if s := got["netflow "+a.LocalAddr().String()]; len(s) != 3 || s[0] != "1" || s[2] != "3" {
		t.Fatalf("v4 exporter: %v (all: %v)", s, got)
	}
	if s := got["sflow "+b.LocalAddr().String()]; len(s) != 2 || s[1] != "y" {
		t.Fatalf("v6 exporter: %v (all: %v)", s, got)
	}
	if v := testutil.ToFloat64(in.m.received.WithLabelValues("netflow")); v != 3 {
		t.Fatalf("received metric %v", v)
	}
}

func TestIntakeCountsQueueOverflow(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{"netflow", "127.0.0.1:0"}}
	cfg.Workers, cfg.QueueSize, cfg.Sockets = 1, 2, 1
	release := make(chan struct{})
	var handled sync.WaitGroup
	entered := make(chan struct{}, 1)
	in := start(t, cfg, func(int, *Datagram) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		handled.Done()
	})
	const n = 20
	c := send(t, in.Addrs()[0], "first")
	<-entered
	for range n - 1 {
		_, _ = c.Write([]byte("p"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(in.m.received.WithLabelValues("netflow")) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	dropped := testutil.ToFloat64(in.m.dropped.WithLabelValues("netflow", "queue_full"))
	// One datagram in the handler, two queued, the rest dropped.
	if dropped != n-3 {
		t.Fatalf("dropped %v, want %d", dropped, n-3)
	}
	handled.Add(3)
	close(release)
	in.Stop()
	handled.Wait()
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Sockets: 0, Workers: 1, QueueSize: 1},
		{Sockets: 1, Workers: 0, QueueSize: 1},
		{Sockets: 1, Workers: 1, QueueSize: 0},
		{Sockets: 1, Workers: 1, QueueSize: 1, Listeners: []Listener{{"x", "nonsense"}}},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}
