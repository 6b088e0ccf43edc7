package geoip

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	maxminddb "github.com/oschwald/maxminddb-golang/v2"
)

// MaxFileSize bounds a database file read into memory. City files are
// tens of MiB; the bound keeps a wrong path (a disk image) from costing
// the daemon its memory.
const MaxFileSize = 1 << 30

// maxRecords bounds the decoded records a database keeps. GeoLite2-ASN has
// under 100,000 distinct records and a Country file a few hundred, so both
// fit whole; a City file, used for its countries, has millions, of which
// the traffic's hot ones fit.
const maxRecords = 1 << 17

type kind uint8

const (
	kindCountry kind = iota
	kindASN
)

func (k kind) String() string {
	if k == kindASN {
		return "asn"
	}
	return "country"
}

// source is one configured file and what the watcher knows of it.
type source struct {
	kind kind
	path string
	// loaded is the file behind the database in use, failed the last
	// version that did not load (retried only once it changes again), and
	// missing says the last check found no file; all three are touched by
	// the reloader only.
	loaded, failed os.FileInfo
	missing        bool
}

// database is one loaded file. It never changes once in a state: a reload
// builds a new one.
type database struct {
	kind     kind
	reader   *maxminddb.Reader
	ipv4Only bool
	records  records
	// loggedError makes the first decode error of this file logged, the
	// others only counted.
	loggedError atomic.Bool
}

// state is what a lookup reads: the databases and the cache of answers
// drawn from them. A reload replaces it whole, which is also what
// invalidates the cache.
type state struct {
	country, asn *database
	cache        *cache
	// gen tells states apart (1 for the first, one more on each reload),
	// so that a Memo drops what it learned from an older one.
	gen uint64
}

type atomicState = atomic.Pointer[state]

// countryRecord is the part of a Country or City record we read. The
// registered country is the fallback for networks with no located country
// (satellite providers, anycast, some proxies).
type countryRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

type asnRecord struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

// scratch holds decode targets: Decode takes an interface, so a target on
// the stack would escape and cost an allocation per decode.
type scratch struct {
	country countryRecord
	asn     asnRecord
}

// load reads, checks and opens the current file of src, and on success
// records it as loaded. Reading from the descriptor that was stat'ed ties
// the recorded version to the bytes read, even if the file is replaced
// meanwhile.
func (d *DB) load(src *source) (*database, error) {
	name := src.kind.String() + " database " + src.path
	f, err := os.Open(src.path)
	if err != nil {
		return nil, fmt.Errorf("geoip %s database: %w", src.kind, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("geoip %s: %w", name, err)
	}
	db, err := open(f, fi, src.kind)
	if err != nil {
		src.failed = fi
		return nil, fmt.Errorf("geoip %s: %w", name, err)
	}
	src.loaded, src.failed, src.missing = fi, nil, false
	md := db.reader.Metadata
	d.m.epoch.WithLabelValues(src.kind.String()).Set(float64(md.BuildEpoch))
	attrs := []any{"database", src.kind.String(), "path", src.path, "type", md.DatabaseType,
		"built", md.BuildTime().UTC().Format(time.RFC3339), "ip_version", md.IPVersion, "bytes", fi.Size()}
	if !typeFits(src.kind, md.DatabaseType) {
		d.log.Warn("geoip database type does not look like the expected kind; fields may be missing", attrs...)
	} else {
		d.log.Info("geoip database loaded", attrs...)
	}
	return db, nil
}

func open(f *os.File, fi os.FileInfo, k kind) (*database, error) {
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("%d bytes, more than the %d accepted", fi.Size(), MaxFileSize)
	}
	buf := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	r, err := maxminddb.OpenBytes(buf)
	if err != nil {
		return nil, err
	}
	// Verify walks the whole tree and data section once, so a truncated or
	// corrupt file is refused here, off the hot path, rather than answering
	// errors or garbage per flow.
	if err := r.Verify(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return &database{kind: k, reader: r, ipv4Only: r.Metadata.IPVersion == 4}, nil
}

// typeFits tells whether a database_type is the layout k reads. Other
// vendors' files in the GeoLite2 layout exist (DBIP-Country-Lite,
// "DBIP-ASN-Lite (compat=GeoLite2-ASN)"), so a mismatch is only a warning.
func typeFits(k kind, t string) bool {
	if k == kindASN {
		return strings.Contains(t, "ASN") || strings.Contains(t, "ISP")
	}
	return strings.Contains(t, "Country") || strings.Contains(t, "City") || strings.Contains(t, "Enterprise")
}

// check reloads the files that changed since they were loaded. A file that
// does not load is logged and counted once per version, and the database
// in use is kept.
func (d *DB) check() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	var country, asn *database
	for _, c := range []struct {
		src *source
		dst **database
	}{{d.country, &country}, {d.asn, &asn}} {
		src := c.src
		if src == nil {
			continue
		}
		fi, err := os.Stat(src.path)
		if err != nil {
			if !src.missing {
				d.log.Warn("geoip database file gone; keeping the loaded one", "database", src.kind.String(), "path", src.path, "error", err)
				src.missing = true
			}
			continue
		}
		src.missing = false
		if sameVersion(fi, src.loaded) || sameVersion(fi, src.failed) {
			continue
		}
		db, err := d.load(src)
		if err != nil {
			d.m.reloads.WithLabelValues(src.kind.String(), "error").Inc()
			d.log.Error("geoip database reload failed; keeping the loaded one", "database", src.kind.String(), "path", src.path, "error", err)
			continue
		}
		d.m.reloads.WithLabelValues(src.kind.String(), "ok").Inc()
		*c.dst = db
	}
	if country == nil && asn == nil {
		return
	}
	old := d.state.Load()
	next := &state{country: old.country, asn: old.asn, cache: newCache(d.cfg.CacheSize), gen: old.gen + 1}
	if country != nil {
		next.country = country
	}
	if asn != nil {
		next.asn = asn
	}
	// The old readers are not closed: a worker may still be in one. They
	// are plain memory, freed when the last lookup drops them.
	d.replace(next)
}

// sameVersion compares what a rename (inode), a rewrite in place (size,
// time) or a touch changes.
func sameVersion(a, b os.FileInfo) bool {
	return b != nil && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}

// resolve looks addr up in db. A record decoded once is kept by its data
// offset, which every network of the same AS or country shares. For an
// IPv4 addr, bits is the length of the IPv4 network every address of
// which has the same answer: 32 (that address alone) after an error.
func (d *DB) resolve(db *database, addr netip.Addr) (info Info, bits uint8) {
	if db.ipv4Only && !addr.Is4() {
		return Info{}, 128
	}
	res := db.reader.Lookup(addr)
	bits = netBits(res)
	if !res.Found() {
		if err := res.Err(); err != nil {
			d.lookupError(db, addr, err)
			return Info{}, 32
		}
		return Info{}, bits
	}
	off := res.Offset()
	if info, ok := db.records.get(off); ok {
		return info, bits
	}
	info, err := d.decode(db, res)
	if err != nil {
		d.lookupError(db, addr, err)
		return Info{}, 32
	}
	db.records.put(off, info)
	return info, bits
}

// netBits returns the length of the IPv4 network of a lookup's answer:
// the tree's depth below its IPv4 subtree, 0 when the walk ended above it
// (an answer for every IPv4 address). Result.Prefix says the same for
// both found and empty answers, in every layout (IPv4-only files count
// IPv4 from depth 96 too).
func netBits(res maxminddb.Result) uint8 {
	p := res.Prefix()
	if !p.Addr().Is4() {
		return 0
	}
	return uint8(p.Bits())
}

// decode reads the part of a record db's kind gives.
func (d *DB) decode(db *database, res maxminddb.Result) (Info, error) {
	s := d.scratch.Get().(*scratch)
	defer d.scratch.Put(s)
	var info Info
	switch db.kind {
	case kindCountry:
		s.country = countryRecord{}
		if err := res.Decode(&s.country); err != nil {
			return Info{}, err
		}
		info.Country = isoCode(s.country.Country.ISOCode)
		if info.Country == "" {
			info.Country = isoCode(s.country.RegisteredCountry.ISOCode)
		}
	case kindASN:
		s.asn = asnRecord{}
		if err := res.Decode(&s.asn); err != nil {
			return Info{}, err
		}
		info.ASN, info.ASName = s.asn.Number, s.asn.Org
	}
	return info, nil
}

// isoCode keeps only what a country column can hold: two letters, upper
// case as ISO writes them.
func isoCode(s string) string {
	if len(s) != 2 {
		return ""
	}
	return strings.ToUpper(s)
}

func (d *DB) lookupError(db *database, addr netip.Addr, err error) {
	d.m.errors.WithLabelValues(db.kind.String()).Inc()
	if db.loggedError.CompareAndSwap(false, true) {
		d.log.Error("geoip lookup failed; further errors of this file are only counted",
			"database", db.kind.String(), "addr", addr, "error", err)
	}
}

// records is a database's decoded records by data offset. Emptied when
// full: that bounds it and follows the traffic, at the cost of decoding
// the hot records again.
type records struct {
	mu sync.RWMutex
	m  map[uintptr]Info
}

func (r *records) get(off uintptr) (Info, bool) {
	r.mu.RLock()
	info, ok := r.m[off]
	r.mu.RUnlock()
	return info, ok
}

func (r *records) put(off uintptr, info Info) {
	r.mu.Lock()
	if r.m == nil || len(r.m) >= maxRecords {
		r.m = make(map[uintptr]Info, 1024)
	}
	r.m[off] = info
	r.mu.Unlock()
}
