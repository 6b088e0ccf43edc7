package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a log sink safe for the watcher goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// replace writes a new version of the file and renames it over the old
// one, as editors and configuration managers do.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newTestWatcher(t *testing.T, content string) (*Watcher, string, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if content != "" {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	w, err := NewWatcher(path, slog.New(slog.NewTextHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	w.Interval = 10 * time.Millisecond
	return w, path, reg, logs
}

const (
	v1 = "pools:\n  iot: [10.0.20.0/24]\n"
	v2 = "pools:\n  iot: [10.0.20.0/24]\n  servers: [10.0.1.0/24, 10.0.2.0/24]\n"
)

func TestWatcherReloadsOnChange(t *testing.T) {
	w, path, reg, _ := newTestWatcher(t, v1)
	var changes atomic.Int32
	var last atomic.Pointer[Policy]
	w.OnChange = func(p *Policy) { changes.Add(1); last.Store(p) }
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if w.Current().Pool(addr("10.0.1.1")) != "" || w.Current().Pool(addr("10.0.20.1")) != "iot" {
		t.Fatal("initial policy")
	}
	replace(t, path, v2)
	waitFor(t, "the new policy", func() bool { return w.Current().Pool(addr("10.0.1.1")) == "servers" })
	waitFor(t, "OnChange", func() bool { return changes.Load() == 1 })
	if last.Load() != w.Current() {
		t.Error("OnChange got another policy than Current")
	}
	if got := testutil.ToFloat64(w.m.prefixes); got != 3 {
		t.Errorf("pool_prefixes = %v", got)
	}
	if got := testutil.ToFloat64(w.m.ok); got != 2 {
		t.Errorf("reloads ok = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "flowlens_policy_reloads_total", "flowlens_policy_pool_prefixes",
		"flowlens_policy_last_reload_success_timestamp_seconds"); err != nil || n != 4 {
		t.Errorf("metrics gathered: %d, %v", n, err)
	}
	// In-place rewrite with the same content: no OnChange.
	if err := os.WriteFile(path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if changes.Load() != 1 {
		t.Errorf("OnChange called for the same content")
	}
	// Removal: an empty policy, as at start without a file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the empty policy", func() bool { return w.Current().NumPrefixes() == 0 })
}

func TestWatcherKeepsPreviousOnError(t *testing.T) {
	w, path, _, logs := newTestWatcher(t, v1)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	before := w.Current()
	replace(t, path, "pools:\n  iot: [10.0.20.0/24]\n  bad: [10.0.300.0/24]\n")
	waitFor(t, "the failed reload", func() bool { return testutil.ToFloat64(w.m.failed) == 1 })
	if w.Current() != before {
		t.Fatal("the invalid file replaced the policy")
	}
	if l := logs.String(); !strings.Contains(l, "policy reload failed") || !strings.Contains(l, "policy.yaml:3:9:") {
		t.Errorf("log does not name the line:\n%s", l)
	}
	// A broken file is not retried every poll.
	time.Sleep(100 * time.Millisecond)
	if got := testutil.ToFloat64(w.m.failed); got != 1 {
		t.Errorf("failed reloads = %v, want 1", got)
	}
	// Fixed: loaded.
	replace(t, path, v2)
	waitFor(t, "the fixed policy", func() bool { return w.Current().HasPool("servers") })
}

func TestWatcherReload(t *testing.T) {
	w, path, _, _ := newTestWatcher(t, v1)
	// Not started: only Reload loads.
	if err := os.WriteFile(path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if w.Current().HasPool("servers") {
		t.Fatal("loaded before Reload")
	}
	if err := w.Reload(); err != nil || !w.Current().HasPool("servers") {
		t.Fatalf("Reload: %v", err)
	}
	good := w.Current()
	if err := os.WriteFile(path, []byte("rules:\n  - name: r\n    severity: urgent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := w.Reload()
	if err == nil || !strings.Contains(err.Error(), "policy.yaml:3:15: rule severity: unknown severity") {
		t.Fatalf("Reload of an invalid file: %v", err)
	}
	if w.Current() != good {
		t.Error("the invalid file replaced the policy")
	}
	if got := testutil.ToFloat64(w.m.failed); got != 1 {
		t.Errorf("failed = %v", got)
	}
}

func TestNewWatcher(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("pools:\n  a: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWatcher(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "bad.yaml:2:6:") {
		t.Fatalf("invalid initial file: %v", err)
	}
	// No file: an empty policy, and the file is picked up when it appears.
	path := filepath.Join(dir, "later.yaml")
	w, err := NewWatcher(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.Current() == nil || w.Current().NumPrefixes() != 0 {
		t.Fatal("no empty policy")
	}
	w.Interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err == nil {
		t.Error("second Start")
	}
	replace(t, path, v1)
	waitFor(t, "the new file", func() bool { return w.Current().HasPool("iot") })
	cancel() // the context ends the watching too; Stop still returns
	w.Stop()
	w.Stop()
	// Registering twice on one registry fails.
	reg := prometheus.NewRegistry()
	if _, err := NewWatcher(path, nil, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWatcher(path, nil, reg); err == nil {
		t.Error("duplicate registration")
	}
}

// Readers never see a torn or nil policy while the file is replaced.
func TestWatcherConcurrent(t *testing.T) {
	w, path, _, _ := newTestWatcher(t, v1)
	w.Interval = time.Millisecond
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := w.Current()
				if got := p.Pool(addr("10.0.20.5")); got != "iot" {
					t.Errorf("Pool = %q", got)
					return
				}
				if p.HasPool("servers") != (p.Pool(addr("10.0.2.9")) == "servers") {
					t.Error("inconsistent policy")
					return
				}
				_, _ = p.Category("TLS.YouTube")
			}
		}()
	}
	for i := range 20 {
		if i%2 == 0 {
			replace(t, path, v2)
		} else {
			replace(t, path, v1)
		}
		if i%5 == 0 {
			_ = w.Reload()
		}
		time.Sleep(3 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
}
