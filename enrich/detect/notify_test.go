package detect

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func sampleAlert() *Alert {
	t := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	return &Alert{Time: t, Last: t, Kind: KindPolicy, Rule: `iot "remote" [access]`, Severity: SeverityHigh,
		SrcAddr: mapped("10.1.0.5"), DstAddr: mapped("10.2.0.10"), SrcPool: "iot", DstPool: "servers",
		Protocol: "SSH", Evidence: "SSH (RemoteAccess) from 10.1.0.5 → 10.2.0.10:22", Count: 1}
}

func webhookConfig(url string) WebhookConfig {
	cfg := DefaultWebhookConfig()
	cfg.URL, cfg.Backoff, cfg.MaxBackoff, cfg.StopTimeout = url, time.Millisecond, 4*time.Millisecond, 2*time.Second
	cfg.Headers = map[string]string{"Authorization": "Bearer t0ken"}
	return cfg
}

func TestWebhookRetries(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer t0ken" || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable) // twice, then accepted
			return
		}
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		mu.Lock()
		bodies = append(bodies, m)
		mu.Unlock()
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	w, err := NewWebhook(webhookConfig(srv.URL), slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	w.Alert(sampleAlert()) // not running yet
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.Alert(sampleAlert())
	w.Stop()
	if len(bodies) != 1 || calls.Load() != 3 {
		t.Fatalf("bodies %d calls %d, want 1 and 3", len(bodies), calls.Load())
	}
	b := bodies[0]
	if b["kind"] != "policy" || b["severity"] != "high" || b["src_addr"] != "10.1.0.5" || b["dst_addr"] != "10.2.0.10" ||
		b["count"] != 1.0 || b["src_pool"] != "iot" || b["time"] != "2026-03-01T12:00:00.123456Z" {
		t.Errorf("body %v", b)
	}
	if v := testutil.ToFloat64(w.retries); v != 2 {
		t.Errorf("retries %v, want 2", v)
	}
	if v := testutil.ToFloat64(w.sent); v != 1 {
		t.Errorf("sent %v, want 1", v)
	}
	if v := testutil.ToFloat64(w.dropped.WithLabelValues(WebhookNotRunning)); v != 1 {
		t.Errorf("dropped{not_running} %v, want 1", v)
	}
}

func TestWebhookDrops(t *testing.T) {
	release := make(chan struct{})
	var status atomic.Int32
	status.Store(http.StatusBadRequest)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	defer close(release)

	t.Run("rejected and failed", func(t *testing.T) {
		w, err := NewWebhook(webhookConfig(srv.URL), slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		w.Alert(sampleAlert())
		w.Stop() // drains the queue before it returns
		status.Store(http.StatusBadGateway)
		if err := w.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		w.Alert(sampleAlert())
		w.Stop()
		if v := testutil.ToFloat64(w.dropped.WithLabelValues(WebhookRejected)); v != 1 {
			t.Errorf("dropped{rejected} %v, want 1", v)
		}
		if v := testutil.ToFloat64(w.dropped.WithLabelValues(WebhookFailed)); v != 1 {
			t.Errorf("dropped{failed} %v, want 1", v)
		}
		if v := testutil.ToFloat64(w.retries); v != 3 {
			t.Errorf("retries %v, want 3 (4 attempts)", v)
		}
	})
	t.Run("queue full and stopped", func(t *testing.T) {
		cfg := webhookConfig(srv.URL + "/slow")
		cfg.QueueSize, cfg.StopTimeout = 2, 50*time.Millisecond
		w, err := NewWebhook(cfg, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			w.Alert(sampleAlert())
		}
		w.Stop()
		full := testutil.ToFloat64(w.dropped.WithLabelValues(WebhookQueueFull))
		stopped := testutil.ToFloat64(w.dropped.WithLabelValues(WebhookStopped))
		// One in flight or queued, two queued: everything else is full; all
		// that was taken is stopped since the server never answers.
		if full < 7 || full+stopped != 10 {
			t.Errorf("queue_full %v stopped %v, want >= 7 and 10 in all", full, stopped)
		}
	})
	if _, err := NewWebhook(WebhookConfig{URL: "ftp://x"}, nil, nil); err == nil {
		t.Error("bad URL accepted")
	}
}

var rfc5424 = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) (\S+) - (\S+) \[flowlens@32473( [a-z_]+="(?:[^"\\\]]|\\["\\\]])*")+\]( \x{FEFF}.*)?$`)

func TestSyslog(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := DefaultSyslogConfig()
	cfg.Addr, cfg.Hostname = pc.LocalAddr().String(), "sensor 1"
	reg := prometheus.NewRegistry()
	s, err := NewSyslog(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	s.Alert(sampleAlert()) // not started: counted
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	long := sampleAlert()
	long.Severity, long.Evidence = SeverityInfo, strings.Repeat("é", 3000)
	s.Alert(sampleAlert())
	s.Alert(long)
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var msgs []string
	for range 2 {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(buf[:n]))
	}
	m := rfc5424.FindStringSubmatch(msgs[0])
	if m == nil {
		t.Fatalf("not RFC 5424: %q", msgs[0])
	}
	if m[1] != "131" || m[2] != "2026-03-01T12:00:00.123456Z" || m[3] != "sensor1" || m[4] != "flowlens" || m[5] != "policy" {
		t.Errorf("header %q", m[1:6])
	}
	for _, want := range []string{`rule="iot \"remote\" [access\]"`, `src="10.1.0.5"`, `severity="high"`, `count="1"`, "→ 10.2.0.10:22"} {
		if !strings.Contains(msgs[0], want) {
			t.Errorf("%q lacks %q", msgs[0], want)
		}
	}
	if len(msgs[1]) > 2048 || !strings.HasPrefix(msgs[1], "<134>1 ") || !utf8Valid(msgs[1]) {
		t.Errorf("long message: %d bytes, %q", len(msgs[1]), msgs[1][:20])
	}
	if v := testutil.ToFloat64(s.sent); v != 2 {
		t.Errorf("sent %v", v)
	}
	if v := testutil.ToFloat64(s.errors); v != 1 {
		t.Errorf("errors %v", v)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

// The detector feeds the notifiers like any sink.
func TestDetectorToWebhook(t *testing.T) {
	got := make(chan *Alert, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alertJSON
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Error(err)
		}
		got <- &Alert{Kind: a.Kind, Rule: a.Rule}
	}))
	defer srv.Close()
	w, err := NewWebhook(webhookConfig(srv.URL), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	d, err := New(lateralConfig(t), Deps{Sink: Multi(w, rec), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d.EvaluateInput(&Input{Flow: fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50000, dport: 22, proto: 6, label: "SSH", cat: "RemoteAccess"}.flow(), SrcPool: "iot", DstPool: "servers"})
	w.Stop()
	select {
	case a := <-got:
		if a.Kind != KindPolicy || a.Rule != "iot-remote-access" {
			t.Errorf("got %+v", a)
		}
	default:
		t.Fatal("nothing posted")
	}
	if len(rec.take()) != 1 {
		t.Error("multi sink: recorder got nothing")
	}
}
