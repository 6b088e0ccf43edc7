// Package geoip gives the country and the autonomous system of an address
// from MaxMind-format databases (GeoLite2/GeoIP2 Country or City, and
// GeoLite2 ASN), for enriching both ends of every flow.
//
// A lookup runs on every flow end, so the hot path is built not to
// allocate: answers are kept in a bounded address cache, and below it each
// database keeps its decoded records by data offset, so that a record is
// decoded once per loaded file and every flow of an AS shares the one
// ASName string. The databases are read into memory rather than mapped,
// so that an operator's cp over the file in place cannot fault the
// daemon; a watcher reloads a file whose size, time or inode changed, and
// keeps the old one when the new one does not load.
package geoip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config says which databases to use. An empty path turns that lookup off;
// the zero Config is valid and answers every lookup empty.
type Config struct {
	// CountryDatabase is a GeoLite2/GeoIP2 Country or City file.
	CountryDatabase string `env:"GEOIP_COUNTRY_DATABASE" json:"country_database"`
	// ASNDatabase is a GeoLite2 ASN (or GeoIP2 ISP) file.
	ASNDatabase string `env:"GEOIP_ASN_DATABASE" json:"asn_database"`
	// CacheSize bounds the addresses whose answer is kept (rounded up to a
	// power of two); 0 turns the address cache off.
	CacheSize int `env:"GEOIP_CACHE_SIZE" json:"cache_size"`
	// CheckInterval is how often the files are checked for a new version;
	// 0 never reloads.
	CheckInterval time.Duration `env:"GEOIP_CHECK_INTERVAL" json:"check_interval"`
}

// DefaultConfig has no databases. Its cache holds more addresses than a
// busy site's active ends (about 4 MiB), and the check is a stat: once a
// minute picks up geoipupdate's weekly files soon enough.
func DefaultConfig() Config {
	return Config{CacheSize: 1 << 16, CheckInterval: time.Minute}
}

// MaxCacheSize bounds CacheSize: at 64 bytes an entry, 16 Mi addresses is
// already 1 GiB.
const MaxCacheSize = 1 << 24

// Validate reports every invalid setting, naming its variable without the
// daemon's FLOWLENS_ prefix.
func (c Config) Validate() error {
	var errs []error
	if c.CacheSize < 0 || c.CacheSize > MaxCacheSize {
		errs = append(errs, fmt.Errorf("GEOIP_CACHE_SIZE: must be 0 (no cache) to %d, got %d", MaxCacheSize, c.CacheSize))
	}
	if c.CheckInterval < 0 {
		errs = append(errs, fmt.Errorf("GEOIP_CHECK_INTERVAL: must be 0 (never reload) or a positive duration, got %s", c.CheckInterval))
	}
	if c.CountryDatabase != "" && c.CountryDatabase == c.ASNDatabase {
		errs = append(errs, fmt.Errorf("GEOIP_COUNTRY_DATABASE and GEOIP_ASN_DATABASE: both are %s; "+
			"a Country or City file has no AS numbers, an ASN file no countries", c.CountryDatabase))
	}
	return errors.Join(errs...)
}

// Info is what the databases say of one address. The zero value means
// unknown, and is the answer for private and reserved addresses.
type Info struct {
	Country string // ISO 3166-1 alpha-2 ("FR"), "" when unknown
	ASName  string // AS organisation, shared by every lookup of that AS
	ASN     uint32 // 0 when unknown
}

type metrics struct {
	lookups prometheus.CounterFunc
	hits    prometheus.CounterFunc
	errors  *prometheus.CounterVec
	reloads *prometheus.CounterVec
	epoch   *prometheus.GaugeVec
}

// DB answers lookups from the loaded databases. Its methods are safe for
// concurrent use; a nil *DB answers every lookup empty.
type DB struct {
	cfg Config
	log *slog.Logger
	m   metrics

	// state is replaced whole on reload, so a lookup sees one consistent
	// set of readers and the cache that goes with them, without a lock.
	state atomicState
	// reloadMu serialises reloads (the watcher, and tests calling check).
	reloadMu sync.Mutex
	country  *source // nil when not configured
	asn      *source

	scratch sync.Pool // *scratch: decode targets, so a decode does not allocate

	// The cache shards count lookups and hits under the lock a lookup
	// takes anyway: a shared counter would cost two atomics per lookup,
	// a quarter of a hit, and more once workers contend for its line.
	// countMu guards base, the counts of the caches reloads replaced, and
	// the replacing.
	countMu  sync.Mutex
	base     struct{ lookups, hits uint64 }
	uncached atomic.Uint64 // lookups without a cache
	memoHits atomic.Uint64 // lookups answered by a Memo: counted as cache hits

	startMu sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
}

// New validates cfg, creates and registers the metrics (on reg, when not
// nil) and loads the configured databases; an error names the file. log
// may be nil.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &DB{cfg: cfg, log: log}
	d.scratch.New = func() any { return new(scratch) }
	d.m = metrics{
		lookups: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowlens_geoip_lookups_total",
			Help: "Lookups of public addresses (private and reserved ones are answered empty, uncounted)."},
			func() float64 { l, _ := d.counts(); return float64(l) }),
		hits: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "flowlens_geoip_cache_hits_total",
			Help: "Lookups answered from the address cache."},
			func() float64 { _, h := d.counts(); return float64(h) }),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_geoip_errors_total",
			Help: "Lookups a database could not answer (a corrupt record), by database; answered empty."}, []string{"database"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_geoip_reloads_total",
			Help: "Database files loaded after a change, by database and result (error: the previous file is kept)."}, []string{"database", "result"}),
		epoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flowlens_geoip_database_build_epoch_seconds",
			Help: "Build time of the loaded database file, as unix seconds, by database."}, []string{"database"}),
	}
	st := &state{cache: newCache(cfg.CacheSize), gen: 1}
	for _, s := range []struct {
		kind kind
		path string
		dst  **source
		slot **database
	}{
		{kindCountry, cfg.CountryDatabase, &d.country, &st.country},
		{kindASN, cfg.ASNDatabase, &d.asn, &st.asn},
	} {
		if s.path == "" {
			continue
		}
		src := &source{kind: s.kind, path: s.path}
		db, err := d.load(src)
		if err != nil {
			return nil, err
		}
		d.m.reloads.WithLabelValues(s.kind.String(), "ok")
		d.m.reloads.WithLabelValues(s.kind.String(), "error")
		d.m.errors.WithLabelValues(s.kind.String())
		*s.dst, *s.slot = src, db
	}
	d.state.Store(st)
	// Registered last, so that a New failing on a file leaves reg as it
	// was, for a retry.
	if reg != nil {
		for _, c := range []prometheus.Collector{d.m.lookups, d.m.hits, d.m.errors, d.m.reloads, d.m.epoch} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register geoip metrics: %w", err)
			}
		}
	}
	return d, nil
}

// replace makes next the state lookups read, keeping the counts of the
// cache it drops.
func (d *DB) replace(next *state) {
	d.countMu.Lock()
	l, h := d.state.Load().cache.counts()
	d.base.lookups += l
	d.base.hits += h
	d.state.Store(next)
	d.countMu.Unlock()
}

// counts returns the lookups and cache hits so far.
func (d *DB) counts() (lookups, hits uint64) {
	d.countMu.Lock()
	defer d.countMu.Unlock()
	l, h := d.state.Load().cache.counts()
	m := d.memoHits.Load()
	return d.base.lookups + l + d.uncached.Load() + m, d.base.hits + h + m
}

// Start watches the files for new versions, every CheckInterval, until
// Stop or the end of ctx. Without a database or an interval it does
// nothing.
func (d *DB) Start(ctx context.Context) error {
	if d == nil || d.cfg.CheckInterval <= 0 || (d.country == nil && d.asn == nil) {
		return nil
	}
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if d.cancel != nil {
		return errors.New("geoip: already started")
	}
	ctx, d.cancel = context.WithCancel(ctx)
	d.done = make(chan struct{})
	go d.watch(ctx, d.done)
	return nil
}

// Stop ends the watcher and waits for it. The loaded databases stay in
// use: a worker still enriching flows keeps getting answers.
func (d *DB) Stop() {
	if d == nil {
		return
	}
	d.startMu.Lock()
	cancel, done := d.cancel, d.done
	d.startMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (d *DB) watch(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(d.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.check()
		}
	}
}

// Lookup returns the country and AS of addr. IPv4-mapped IPv6 addresses
// are looked up as IPv4, and NAT64 ones (64:ff9b::/96) as the IPv4 address
// they carry. Private and reserved addresses are answered empty without
// touching the cache or the databases.
func (d *DB) Lookup(addr netip.Addr) Info {
	if d == nil {
		return Info{}
	}
	st := d.state.Load()
	if st.country == nil && st.asn == nil {
		return Info{}
	}
	key, ok := keyOf(addr)
	if !ok {
		return Info{}
	}
	if st.cache == nil {
		d.uncached.Add(1)
	} else if info, _, ok := st.cache.get(key); ok {
		return info
	}
	info, _ := d.resolveKey(st, key)
	return info
}

// lookupKey answers a key of keyOf from st's cache or its databases. For
// an IPv4 key, bits is the length of the IPv4 network every address of
// which has this answer (the longer of the two databases' networks).
func (d *DB) lookupKey(st *state, key [16]byte) (Info, uint8) {
	if st.cache == nil {
		d.uncached.Add(1)
	} else if info, bits, ok := st.cache.get(key); ok {
		return info, bits
	}
	return d.resolveKey(st, key)
}

// resolveKey is lookupKey's answer from the databases, which it caches.
// Kept apart so that the cache hit path of Lookup stays small.
func (d *DB) resolveKey(st *state, key [16]byte) (Info, uint8) {
	addr := netip.AddrFrom16(key).Unmap()
	var info Info
	var bits uint8
	if st.country != nil {
		var c Info
		c, bits = d.resolve(st.country, addr)
		info.Country = c.Country
	}
	if st.asn != nil {
		a, b := d.resolve(st.asn, addr)
		info.ASN, info.ASName = a.ASN, a.ASName
		bits = max(bits, b)
	}
	st.cache.put(key, info, bits)
	return info, bits
}
