package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/enrich/detect"
	"flowlens/enrich/geoip"
	"flowlens/enrich/policy"
	"flowlens/schema"
	"flowlens/sensor/dpi"
)

// Config of the enrich stage (FLOWLENS_POLICY_FILE, FLOWLENS_GEOIP_*).
type Config struct {
	// PolicyFile is the YAML file of host pools, category overrides and
	// detection rules (enrich/policy); empty: no pools, the detections'
	// defaults (DNS tunnels only).
	PolicyFile string       `env:"POLICY_FILE" json:"policy_file"`
	GeoIP      geoip.Config `json:"geoip"`
}

// DefaultConfig has no policy file and no GeoIP database.
func DefaultConfig() Config { return Config{GeoIP: geoip.DefaultConfig()} }

// AlertSink stores alerts (the embedded store's alerts table).
type AlertSink interface {
	PutAlert(*schema.Alert)
}

// Chain is the enrich stage between the decoders and the sinks: it labels
// flows nobody labelled (Label), puts both ends in their host pools, fills
// the application category, GeoIP country and AS, and runs the detections,
// whose alerts go to the alert sink, the webhook and syslog of the policy.
//
// A new version of the policy file is applied without a restart: the
// pools and categories at once, the detections by a new detector that
// replaces the old one (whose pending counts are flushed; its learned
// service map and DNS windows start over, and its counters restart).
type Chain struct {
	cfg     Config
	log     *slog.Logger
	reg     prometheus.Registerer
	alerts  AlertSink
	watcher *policy.Watcher // nil without a policy file
	geo     *geoip.DB
	cats    *dpi.Table // the application table, for labels without a category

	cur atomic.Pointer[stage]
	mu  sync.Mutex // swaps
	// workers keeps a Worker per P for Enrich, whose callers (the
	// collector's workers) share one func: their memos stay warm without
	// a lock.
	workers sync.Pool
	ctx     context.Context
	now     func() time.Time // tests; nil: the detections' own (coarse) clock
}

// stage is what one version of the policy runs.
type stage struct {
	pol      *policy.Policy
	det      *detect.Detector
	stoppers []func()
	metrics  *tracking
}

// New returns an inert chain; Start loads what it needs.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, alerts AlertSink) (*Chain, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Chain{cfg: cfg, log: log, reg: reg, alerts: alerts}
	c.workers.New = func() any { return c.NewWorker() }
	if err := cfg.GeoIP.Validate(); err != nil {
		return nil, err
	}
	cats, err := dpi.LoadTable(nil)
	if err != nil {
		return nil, err
	}
	c.cats = cats
	if cfg.PolicyFile != "" {
		w, err := policy.NewWatcher(cfg.PolicyFile, log, reg)
		if err != nil {
			return nil, fmt.Errorf("FLOWLENS_POLICY_FILE: %w", err)
		}
		c.watcher = w
	}
	geo, err := geoip.New(cfg.GeoIP, log, reg)
	if err != nil {
		return nil, err
	}
	c.geo = geo
	return c, nil
}

// Start applies the policy and starts watching the files.
func (c *Chain) Start(ctx context.Context) error {
	c.ctx = ctx
	pol, err := policy.Parse("", nil)
	if err != nil {
		return err
	}
	if c.watcher != nil {
		c.watcher.OnChange = c.apply
		if err := c.watcher.Start(ctx); err != nil {
			return err
		}
		pol = c.watcher.Current()
	}
	if err := c.swap(pol); err != nil {
		c.stopWatchers()
		return err
	}
	if err := c.geo.Start(ctx); err != nil {
		c.Stop()
		return err
	}
	return nil
}

// Reload re-reads the policy file now (SIGHUP); an invalid file is
// reported and the current policy stays.
func (c *Chain) Reload() error {
	if c.watcher == nil {
		return nil
	}
	return c.watcher.Reload()
}

// Policy is the policy in force.
func (c *Chain) Policy() *policy.Policy {
	if st := c.cur.Load(); st != nil {
		return st.pol
	}
	return nil
}

func (c *Chain) apply(p *policy.Policy) {
	if err := c.swap(p); err != nil {
		c.log.Error("policy not applied, the previous one stays", "file", c.cfg.PolicyFile, "err", err)
		return
	}
	c.log.Info("policy applied", "file", c.cfg.PolicyFile, "pools", len(p.Pools()), "prefixes", p.NumPrefixes(), "rules", len(p.Rules))
}

// swap starts the detections of p and puts them in force.
func (c *Chain) swap(p *policy.Policy) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.cur.Load()
	// The old detector's collectors leave the registry first: the new one
	// registers the same names.
	if old != nil {
		old.metrics.unregisterAll()
	}
	st, err := c.build(p)
	if err != nil {
		if old != nil {
			old.metrics.reregister()
		}
		return err
	}
	c.cur.Store(st)
	if old != nil {
		old.stop()
	}
	return nil
}

func (c *Chain) build(p *policy.Policy) (*stage, error) {
	st := &stage{pol: p, metrics: &tracking{reg: c.reg}}
	var sinks []detect.Sink
	if c.alerts != nil {
		sinks = append(sinks, detect.SinkFunc(c.store))
	}
	if u := p.Alerts.Webhook; u != "" {
		wc := detect.DefaultWebhookConfig()
		wc.URL = u
		w, err := detect.NewWebhook(wc, c.log, st.metrics)
		if err == nil {
			err = w.Start(c.ctx)
		}
		if err != nil {
			st.stop()
			return nil, fmt.Errorf("alert webhook: %w", err)
		}
		sinks = append(sinks, w)
		st.stoppers = append(st.stoppers, w.Stop)
	}
	if sl := p.Alerts.Syslog; sl != nil {
		if sl.Network != "udp" {
			c.log.Warn("syslog alerts: only udp:// is supported, not sending", "network", sl.Network, "address", sl.Address)
		} else {
			sc := detect.DefaultSyslogConfig()
			sc.Addr = sl.Address
			s, err := detect.NewSyslog(sc, st.metrics)
			if err == nil {
				err = s.Start(c.ctx)
			}
			if err != nil {
				st.stop()
				return nil, fmt.Errorf("alert syslog: %w", err)
			}
			sinks = append(sinks, s)
			st.stoppers = append(st.stoppers, s.Stop)
		}
	}
	if len(sinks) == 0 {
		sinks = append(sinks, detect.SinkFunc(func(*detect.Alert) {}))
	}
	det, err := detect.New(detect.FromPolicy(p), detect.Deps{Sink: detect.Multi(sinks...), Log: c.log, Registerer: st.metrics, Now: c.now})
	if err == nil {
		err = det.Start(c.ctx)
	}
	if err != nil {
		st.stop()
		return nil, fmt.Errorf("detections: %w", err)
	}
	st.det = det
	// Stop the detector first: its last counts still reach the notifiers.
	st.stoppers = append([]func(){det.Stop}, st.stoppers...)
	return st, nil
}

func (st *stage) stop() {
	for _, s := range st.stoppers {
		s()
	}
}

// store turns a detection into an alerts row.
func (c *Chain) store(a *detect.Alert) {
	c.alerts.PutAlert(&schema.Alert{
		Time: unix(a.Time), LastSeen: unix(a.Last), Kind: a.Kind, Rule: a.Rule, Severity: a.Severity.String(),
		SrcAddr: a.SrcAddr, DstAddr: a.DstAddr, SrcPool: a.SrcPool, DstPool: a.DstPool,
		Protocol: a.Protocol, Evidence: a.Evidence, Count: a.Count,
	})
}

func unix(t time.Time) uint32 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint32(t.Unix())
}

// Enrich is the per-flow hot path, called by every collector worker. It
// runs a Worker taken from a per-P pool; a caller that owns a goroutine
// can keep its own (NewWorker) and spare the pool.
func (c *Chain) Enrich(f *schema.Flow) {
	w := c.workers.Get().(*Worker)
	w.Enrich(f)
	c.workers.Put(w)
}

// Worker is the chain for one goroutine at a time: it holds what the
// flows of that goroutine can reuse without a lock (a GeoIP memo, the
// categories of the labels it saw last).
type Worker struct {
	c    *Chain
	geo  *geoip.Memo
	cats categoryMemo
}

// NewWorker returns a Worker of c. A Worker is not safe for concurrent
// use; Workers of one chain are.
func (c *Chain) NewWorker() *Worker { return &Worker{c: c, geo: c.geo.NewMemo()} }

// categoryMemo remembers the category of the last labels a worker saw,
// by the label's string data: Label and the decoders give most flows one
// of a few constant strings, and a policy lookup then the application
// table's cost up to five map lookups a flow. A label of another string
// with the same text only misses. The memo holds for one stage (policy).
type categoryMemo struct {
	st *stage
	e  [memoSlots]categoryEntry
}

type categoryEntry struct {
	label    string
	cat      string
	override bool
}

const memoSlots = 64

// category is the policy's override of label's category (override true)
// or the application table's.
func (w *Worker) category(st *stage, label string) (string, bool) {
	if label == "" {
		return "", false // no label, no category: neither the policy nor the table gives one
	}
	m := &w.cats
	if m.st != st {
		m.e = [memoSlots]categoryEntry{}
		m.st = st
	}
	// Go packs short constants side by side: a multiplicative hash of the
	// address spreads them; two slots per label take most collisions.
	p := unsafe.StringData(label)
	i := int((uint64(uintptr(unsafe.Pointer(p)))+uint64(len(label)))*0x9e3779b97f4a7c15>>58) &^ 1
	for _, e := range m.e[i : i+2] {
		if unsafe.StringData(e.label) == p && len(e.label) == len(label) {
			return e.cat, e.override
		}
	}
	cat, ok := st.pol.Category(label)
	if !ok {
		cat = w.c.cats.CategoryOf(label)
	}
	m.e[i+1] = m.e[i] // the older of the two goes
	m.e[i] = categoryEntry{label, cat, ok}
	return cat, ok
}

// Enrich is Chain.Enrich.
func (w *Worker) Enrich(f *schema.Flow) {
	Label(f)
	c := w.c
	st := c.cur.Load()
	if st == nil {
		return
	}
	p := st.pol
	f.SrcPool = p.PoolFor(f.SrcAddr, f.SrcVlan, f.SrcMAC)
	f.DstPool = p.PoolFor(f.DstAddr, f.DstVlan, f.DstMAC)
	if cat, override := w.category(st, f.Protocol); override || f.AppCategory == "" {
		f.AppCategory = cat
	}
	w.geo.Enrich(f)
	st.det.Evaluate(f)
}

// Stop stops the detections (their pending counts are emitted), the
// notifiers and the file watchers.
func (c *Chain) Stop() {
	c.stopWatchers()
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.cur.Swap(nil); st != nil {
		st.stop()
		st.metrics.unregisterAll()
	}
}

func (c *Chain) stopWatchers() {
	if c.watcher != nil {
		c.watcher.Stop()
	}
	c.geo.Stop()
}

// tracking is a Registerer that remembers what it registered, so that a
// detector replaced by a new policy can take its collectors out.
type tracking struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	cs  []prometheus.Collector
}

func (t *tracking) Register(c prometheus.Collector) error {
	if t.reg == nil {
		return nil
	}
	if err := t.reg.Register(c); err != nil {
		return err
	}
	t.mu.Lock()
	t.cs = append(t.cs, c)
	t.mu.Unlock()
	return nil
}

func (t *tracking) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t *tracking) Unregister(c prometheus.Collector) bool {
	return t.reg != nil && t.reg.Unregister(c)
}

func (t *tracking) unregisterAll() {
	if t.reg == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cs {
		t.reg.Unregister(c)
	}
}

// reregister puts back what unregisterAll took out (a new policy failed).
func (t *tracking) reregister() {
	if t.reg == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cs {
		// They were registered before: an error can only mean a collector
		// of the same name came meanwhile, and then it reports instead.
		_ = t.reg.Register(c)
	}
}
