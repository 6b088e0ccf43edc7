package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultInterval is how often a Watcher looks at the file.
const DefaultInterval = time.Second

// Watcher holds the policy in force and reloads it when the file changes
// or Reload is called (main does so on SIGHUP). A new version that does
// not parse is logged with its line-numbered errors and counted, and the
// previous policy stays in force.
//
// Changes are seen by polling the file's mtime, size and inode (no
// fsnotify in go.mod, and polling also sees a file replaced by rename or
// through a symlink, as Kubernetes ConfigMaps are). A change is loaded
// once two consecutive polls agree, so that a file being written in place
// is not read half-written.
type Watcher struct {
	// OnChange, when set before Start, is called after every load that
	// changes the policy (another file content), with the new policy.
	// Calls are serialised, and must not call Reload.
	OnChange func(*Policy)
	// Interval between looks at the file; set before Start.
	// Default DefaultInterval.
	Interval time.Duration

	path string
	log  *slog.Logger
	cur  atomic.Pointer[Policy]
	m    watcherMetrics

	mu   sync.Mutex // serialises loads; guards seen
	seen fileState  // the file as it was when last loaded, successfully or not

	life    sync.Mutex // guards running, stop, done
	running bool
	stop    chan struct{}
	done    chan struct{}
}

type watcherMetrics struct {
	ok, failed  prometheus.Counter
	prefixes    prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// fileState identifies a version of the file.
type fileState struct {
	exists bool
	mtime  int64
	size   int64
	inode  uint64
}

func statFile(path string) (fileState, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, err
	}
	return fileState{exists: true, mtime: fi.ModTime().UnixNano(), size: fi.Size(), inode: inode(fi)}, nil
}

// NewWatcher loads the policy at path (a missing file is an empty policy)
// and creates the metrics, registered on reg when it is not nil. It fails
// when the file is invalid. Nothing is watched before Start.
func NewWatcher(path string, log *slog.Logger, reg prometheus.Registerer) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{path: path, log: log, Interval: DefaultInterval}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowlens_policy_reloads_total",
		Help: "Loads of the policy file, the first one included, by result (error: the previous policy stayed in force).",
	}, []string{"result"})
	w.m = watcherMetrics{
		ok:     reloads.WithLabelValues("ok"),
		failed: reloads.WithLabelValues("error"),
		prefixes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowlens_policy_pool_prefixes",
			Help: "Prefixes in the host pools of the policy in force.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowlens_policy_last_reload_success_timestamp_seconds",
			Help: "When the policy in force was loaded, in unix seconds.",
		}),
	}
	if err := w.load(); err != nil {
		return nil, err
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{reloads, w.m.prefixes, w.m.lastSuccess} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("policy: register metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Current returns the policy in force. It never returns nil, and is
// lock-free: call it per flow or per batch.
func (w *Watcher) Current() *Policy { return w.cur.Load() }

// Reload reads the file again now. On error the previous policy stays in
// force and the error, naming the lines, is returned (and logged).
func (w *Watcher) Reload() error { return w.load() }

func (w *Watcher) load() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Stat before reading: a change during the read is seen by the next poll.
	st, err := statFile(w.path)
	if err == nil {
		w.seen = st
	}
	p, perr := Load(w.path)
	if err == nil {
		err = perr
	}
	prev := w.cur.Load()
	if err != nil {
		w.m.failed.Inc()
		if prev != nil {
			w.log.Error("policy reload failed, keeping the previous policy", "path", w.path, "error", err)
		}
		return err
	}
	w.m.ok.Inc()
	w.m.lastSuccess.SetToCurrentTime()
	w.m.prefixes.Set(float64(p.NumPrefixes()))
	w.cur.Store(p)
	if prev != nil && prev.Digest() == p.Digest() {
		return nil
	}
	if !st.exists {
		w.log.Warn("no policy file, the policy is empty", "path", w.path)
	} else {
		w.log.Info("policy loaded", "path", w.path, "pools", len(p.poolNames), "prefixes", p.NumPrefixes(),
			"rules", len(p.Rules), "category_overrides", len(p.categories))
	}
	if prev != nil && w.OnChange != nil {
		w.OnChange(p)
	}
	return nil
}

// Start watches the file until ctx ends or Stop.
func (w *Watcher) Start(ctx context.Context) error {
	w.life.Lock()
	defer w.life.Unlock()
	if w.running {
		return errors.New("policy: watcher already started")
	}
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	w.running = true
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go w.watch(ctx, interval, w.stop, w.done)
	return nil
}

// Stop ends the watching; the policy in force stays available.
func (w *Watcher) Stop() {
	w.life.Lock()
	defer w.life.Unlock()
	if !w.running {
		return
	}
	w.running = false
	close(w.stop)
	<-w.done
}

func (w *Watcher) watch(ctx context.Context, interval time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	var pending *fileState // a change seen once, loaded when the next poll agrees
	var statErr bool       // a stat failure was logged
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		st, err := statFile(w.path)
		if err != nil {
			if !statErr {
				w.log.Warn("cannot stat the policy file", "path", w.path, "error", err)
				statErr = true
			}
			continue
		}
		statErr = false
		w.mu.Lock()
		seen := w.seen
		w.mu.Unlock()
		switch {
		case st == seen:
			pending = nil
		case pending != nil && *pending == st:
			pending = nil
			_ = w.load() // logged and counted
		default:
			pending = &st
		}
	}
}
