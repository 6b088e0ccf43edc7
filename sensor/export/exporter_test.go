package export

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"flowlens/decoder"
	"flowlens/schema"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// listener is a collector socket on the loopback.
func listener(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadBuffer(4 << 20); err != nil {
		t.Log(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads datagrams until none comes for wait.
func receive(t *testing.T, c *net.UDPConn, wait time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out
			}
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

func hasTemplates(msg []byte) bool {
	return len(msg) >= 20 && binary.BigEndian.Uint16(msg[16:]) == 2
}

func newTestExporter(t *testing.T, cfg Config) (*Exporter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	x, err := New(cfg, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	return x, reg
}

// TestExporterUDP runs the exporter against two collectors: both get the
// same messages, templates first, every flow once, sequence numbers
// counting records, and our decoder reads all of it back. The metrics
// count what was sent.
func TestExporterUDP(t *testing.T) {
	for _, uni := range []bool{false, true} {
		a, b := listener(t), listener(t)
		cfg := DefaultConfig()
		cfg.Collectors = []string{a.LocalAddr().String(), b.LocalAddr().String()}
		cfg.Unidirectional = uni
		cfg.ObservationDomainID = 9
		x, _ := newTestExporter(t, cfg)
		if err := x.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		const n = 300
		now := time.Now()
		for i := range n {
			f := testFlow()
			f.Start, f.End = now.Add(-time.Minute), now
			f.ClientPort = uint16(1024 + i)
			if i%2 == 1 {
				f.Client, f.Server = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
			}
			if !x.Export(&f) {
				t.Fatalf("flow %d dropped", i)
			}
		}
		x.Stop()
		if x.Export(&Flow{}) {
			t.Error("Export after Stop accepted a flow")
		}
		ma, mb := receive(t, a, 200*time.Millisecond), receive(t, b, 200*time.Millisecond)
		if len(ma) != len(mb) || len(ma) < 2 {
			t.Fatalf("collectors got %d and %d messages", len(ma), len(mb))
		}
		if !hasTemplates(ma[0]) || binary.BigEndian.Uint16(ma[0][2:]) != uint16(len(ma[0])) {
			t.Fatalf("first message has no templates: % x", ma[0][:24])
		}
		d := decoder.New(decoder.DefaultConfig())
		var flows []schema.Flow
		seq := uint32(0)
		for i := range ma {
			if string(ma[i]) != string(mb[i]) {
				t.Fatalf("message %d differs between collectors", i)
			}
			if len(ma[i]) > cfg.MTU {
				t.Errorf("message %d: %d bytes", i, len(ma[i]))
			}
			if got := binary.BigEndian.Uint32(ma[i][8:]); got != seq {
				t.Errorf("message %d: sequence %d, want %d", i, got, seq)
			}
			if od := binary.BigEndian.Uint32(ma[i][12:]); od != 9 {
				t.Errorf("observation domain %d", od)
			}
			before := len(flows)
			if err := d.Decode(ma[i], netip.MustParseAddrPort("127.0.0.1:9999"), time.Now(), func(f *schema.Flow) { flows = append(flows, *f) }); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if uni {
				seq += uint32(len(flows) - before)
			} else {
				seq += uint32(len(flows)-before) / 2 // one record, two flows
			}
		}
		if len(flows) != 2*n {
			t.Fatalf("decoded %d flows, want %d", len(flows), 2*n)
		}
		for i := 0; i < len(flows); i += 2 {
			if f := flows[i]; f.Protocol != "TLS.YouTube" || f.ProtocolConfidence != schema.ConfidenceDPI || f.ServerName != "www.youtube.com" || f.Bytes != 1500 {
				t.Fatalf("flow %d: %+v", i, f)
			}
		}
		records := float64(n)
		if uni {
			records = 2 * n
		}
		for name, want := range map[string]float64{
			"records": records, "flows": n, "messages_a": float64(len(ma)), "messages_b": float64(len(mb)),
			"bytes_a": float64(total(ma)), "templates": 1, "queue_full": 0, "errors_a": 0,
		} {
			var got float64
			switch name {
			case "records":
				got = testutil.ToFloat64(x.m.records)
			case "flows":
				got = testutil.ToFloat64(x.m.flows)
			case "messages_a":
				got = testutil.ToFloat64(x.m.messages.WithLabelValues(cfg.Collectors[0]))
			case "messages_b":
				got = testutil.ToFloat64(x.m.messages.WithLabelValues(cfg.Collectors[1]))
			case "bytes_a":
				got = testutil.ToFloat64(x.m.bytes.WithLabelValues(cfg.Collectors[0]))
			case "templates":
				got = testutil.ToFloat64(x.m.templates)
			case "queue_full":
				got = testutil.ToFloat64(x.m.queueFull)
			case "errors_a":
				got = testutil.ToFloat64(x.m.sendErrs.WithLabelValues(cfg.Collectors[0]))
			}
			if got != want {
				t.Errorf("unidirectional=%v: metric %s = %v, want %v", uni, name, got, want)
			}
		}
	}
}

func total(msgs [][]byte) int {
	n := 0
	for _, m := range msgs {
		n += len(m)
	}
	return n
}

// TestExporterDrops: Export before Start drops (not_running); a full
// queue drops (queue_full) and the lost records show as a gap in the
// sequence numbers of the next message.
func TestExporterDrops(t *testing.T) {
	for _, uni := range []bool{false, true} {
		c := listener(t)
		cfg := DefaultConfig()
		cfg.Collectors = []string{c.LocalAddr().String()}
		cfg.QueueSize = 2
		cfg.Unidirectional = uni
		x, _ := newTestExporter(t, cfg)
		f := testFlow()
		if x.Export(&f) || testutil.ToFloat64(x.m.notRun) != 1 {
			t.Fatal("Export before Start")
		}
		// Running, but no writer: the queue fills.
		x.running = true
		for range 3 {
			x.Export(&f)
		}
		lost := uint64(1)
		if uni {
			lost = 2
		}
		if testutil.ToFloat64(x.m.queueFull) != 1 || x.lost.Load() != lost {
			t.Fatalf("queue_full %v, lost %d", testutil.ToFloat64(x.m.queueFull), x.lost.Load())
		}
		x.begin(time.Now())
		if seq := binary.BigEndian.Uint32(x.enc.buf[8:]); uint64(seq) != lost {
			t.Fatalf("sequence %d after losing %d records", seq, lost)
		}
		x.running = false
	}
}

// TestExporterSchedule drives the writer's clock: templates every
// TemplateEveryMessages messages and every TemplateInterval, alone when
// idle; a message waits at most FlushInterval.
func TestExporterSchedule(t *testing.T) {
	c := listener(t)
	cfg := DefaultConfig()
	cfg.Collectors = []string{c.LocalAddr().String()}
	cfg.TemplateEveryMessages = 3
	cfg.TemplateInterval = time.Minute
	cfg.FlushInterval = time.Second
	x, _ := newTestExporter(t, cfg)
	for _, cc := range x.conns {
		conn, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		cc.conn = conn
	}
	defer x.closeConns()
	t0 := time.Unix(1_700_000_000, 0)
	f := testFlow()
	x.now = func() time.Time { return t0 }
	x.sendTemplates(t0) // what Start does
	for range 7 {       // one message each
		x.add(&f)
		x.flush(x.now())
	}
	msgs := receive(t, c, 100*time.Millisecond)
	var got []bool
	for _, m := range msgs {
		got = append(got, hasTemplates(m))
	}
	want := []bool{true, false, false, true, false, false, true, false}
	if len(got) != len(want) {
		t.Fatalf("%d messages", len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("templates per message %v, want %v", got, want)
		}
	}

	// By time: the first message after TemplateInterval carries them.
	x.now = func() time.Time { return t0.Add(cfg.TemplateInterval) }
	x.add(&f)
	x.flush(x.now())
	// FlushInterval: a message is held until it has waited that long.
	t1 := t0.Add(cfg.TemplateInterval + time.Second)
	x.now = func() time.Time { return t1 }
	x.add(&f)
	x.tick(t1.Add(cfg.FlushInterval / 2))
	held := receive(t, c, 100*time.Millisecond)
	x.tick(t1.Add(cfg.FlushInterval))
	flushed := receive(t, c, 100*time.Millisecond)
	if len(flushed) == 1 && binary.BigEndian.Uint32(flushed[0][4:]) != uint32(t1.Add(cfg.FlushInterval).Unix()) {
		t.Errorf("export time %d, want the send time", binary.BigEndian.Uint32(flushed[0][4:]))
	}
	// Idle: templates alone once TemplateInterval passed.
	x.tick(t0.Add(2*cfg.TemplateInterval - time.Second))
	none := receive(t, c, 100*time.Millisecond)
	x.tick(t0.Add(2 * cfg.TemplateInterval))
	idle := receive(t, c, 100*time.Millisecond)
	if len(held) != 1 || !hasTemplates(held[0]) || len(flushed) != 1 || hasTemplates(flushed[0]) ||
		len(none) != 0 || len(idle) != 1 || !hasTemplates(idle[0]) || len(idle[0]) != headerLen+len(x.enc.tplSet) {
		t.Fatalf("held %d, flushed %d, none %d, idle %d", len(held), len(flushed), len(none), len(idle))
	}
	if testutil.ToFloat64(x.m.templates) != 5 {
		t.Errorf("template sends %v", testutil.ToFloat64(x.m.templates))
	}
}

// TestExporterSendErrors: a collector that refuses (nothing listens: the
// kernel answers ICMP port unreachable on the connected socket) is
// counted; the other still gets every message.
func TestExporterSendErrors(t *testing.T) {
	good := listener(t)
	dead := listener(t)
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	cfg := DefaultConfig()
	cfg.Collectors = []string{deadAddr, good.LocalAddr().String()}
	cfg.FlushInterval = 20 * time.Millisecond
	x, _ := newTestExporter(t, cfg)
	if err := x.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := testFlow()
	for range 5 {
		x.Export(&f)
		time.Sleep(40 * time.Millisecond)
	}
	x.Stop()
	msgs := receive(t, good, 100*time.Millisecond)
	errs := testutil.ToFloat64(x.m.sendErrs.WithLabelValues(deadAddr))
	sent := testutil.ToFloat64(x.m.messages.WithLabelValues(deadAddr))
	if len(msgs) < 3 || errs == 0 || errs+sent != float64(len(msgs)) {
		t.Fatalf("good collector %d messages; dead one %v errors, %v sent", len(msgs), errs, sent)
	}
}

// TestExporterAllocs: the writer's steady state (encode, send) allocates
// nothing, and neither does Export.
func TestExporterAllocs(t *testing.T) {
	c := listener(t)
	cfg := DefaultConfig()
	cfg.Collectors = []string{c.LocalAddr().String()}
	x, _ := newTestExporter(t, cfg)
	conn, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	x.conns[0].conn = conn
	defer x.closeConns()
	f := testFlow()
	x.add(&f)
	if n := testing.AllocsPerRun(2000, func() { x.add(&f) }); n != 0 {
		t.Errorf("writer: %v allocations per flow", n)
	}
	x.running = true
	if n := testing.AllocsPerRun(100, func() { x.Export(&f); <-x.queue }); n != 0 {
		t.Errorf("Export: %v allocations per flow", n)
	}
	x.running = false
}

// TestExporterSplitsLongUnidirectional: when the two records of a
// unidirectional flow with long strings do not fit one message, each goes
// in its own; nothing is dropped.
func TestExporterSplitsLongUnidirectional(t *testing.T) {
	c := listener(t)
	cfg := DefaultConfig()
	cfg.Collectors = []string{c.LocalAddr().String()}
	cfg.Unidirectional = true
	cfg.MTU = 1000
	x, _ := newTestExporter(t, cfg)
	if err := x.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := testFlow()
	f.Client, f.Server = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	f.ServerName, f.DNSQuery = strings.Repeat("s", 300), strings.Repeat("q", 300) // cut to 253 each
	x.Export(&f)
	x.Stop()
	msgs := receive(t, c, 100*time.Millisecond)
	d := decoder.New(decoder.DefaultConfig())
	var flows []schema.Flow
	for _, m := range msgs {
		if len(m) > cfg.MTU {
			t.Fatalf("%d-byte message", len(m))
		}
		if err := d.Decode(m, netip.MustParseAddrPort("127.0.0.1:9999"), time.Now(), func(f *schema.Flow) { flows = append(flows, *f) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(msgs) != 3 || len(flows) != 2 || flows[1].SrcPort != 443 || flows[0].ServerName != strings.Repeat("s", 253) ||
		testutil.ToFloat64(x.m.tooLarge) != 0 || testutil.ToFloat64(x.m.records) != 2 {
		t.Fatalf("%d messages, %d flows, too_large %v", len(msgs), len(flows), testutil.ToFloat64(x.m.tooLarge))
	}
}

// TestDNSFieldsRoundTrip: the question's type and the answer's code reach
// our collector through ntop's DNS_QUERY_TYPE and DNS_RET_CODE, and an
// unanswered query stays unanswered (not NOERROR).
func TestDNSFieldsRoundTrip(t *testing.T) {
	e, err := NewEncoder(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	e.Begin(testTime, true)
	answered := testFlow()
	answered.Application, answered.DNSQuery, answered.DNSQType, answered.DNSRCode, answered.DNSAnswered = "DNS", "x.t.example.com", 16, 3, true
	unanswered := answered
	unanswered.ClientPort, unanswered.DNSQType, unanswered.DNSRCode, unanswered.DNSAnswered = 40001, 10, 0, false
	if !e.Add(&answered) || !e.Add(&unanswered) {
		t.Fatal("Add")
	}
	d := decoder.New(decoder.DefaultConfig())
	var flows []schema.Flow
	if err := d.Decode(e.Finish(), netip.MustParseAddrPort("127.0.0.1:9999"), time.Now(), func(f *schema.Flow) { flows = append(flows, *f) }); err != nil {
		t.Fatal(err)
	}
	if len(flows) != 4 { // biflows: a reverse row each
		t.Fatalf("%d flows", len(flows))
	}
	if f := flows[0]; f.DNSQType != 16 || f.DNSRCode != 3 || !f.DNSAnswered || schema.DNSRCodeName(f.DNSRCode, f.DNSAnswered) != "NXDOMAIN" {
		t.Errorf("answered: %+v", f)
	}
	if f := flows[2]; f.DNSQType != 10 || f.DNSAnswered || schema.DNSTypeName(f.DNSQType) != "NULL" {
		t.Errorf("unanswered: %+v", f)
	}
}
