package geoip

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"flowlens/enrich/geoip/geoiptest"
	"flowlens/schema"
)

// memoDBs writes databases whose networks differ between the two files
// and in length (wide, /24 and longer, nested, with gaps), so that a
// memo keyed by network has every case to get wrong; IPv6 ones, or with
// ipVersion 4 IPv4-only ones, whose trees count depth differently.
func memoDBs(t testing.TB, iso string, ipVersion int) (countryPath, asnPath string) {
	dir := t.TempDir()
	countryPath, asnPath = filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	v4only := func(s geoiptest.Spec) geoiptest.Spec {
		s.IPVersion = ipVersion
		if ipVersion == 4 {
			s.Nets = slices.DeleteFunc(s.Nets, func(n geoiptest.Network) bool { return strings.Contains(n.Prefix, ":") })
		}
		return s
	}
	geoiptest.Write(t, countryPath, v4only(geoiptest.Spec{DBType: "GeoLite2-Country", Nets: []geoiptest.Network{
		{Prefix: "20.0.0.0/14", Rec: country(iso, iso)},
		{Prefix: "20.0.7.0/24", Rec: country("NL", "NL")},
		{Prefix: "20.0.9.16/28", Rec: country("SG", "SG")},
		{Prefix: "20.1.0.0/16", Rec: country("IE", "IE")},
		{Prefix: "81.2.69.0/24", Rec: country("GB", "GB")},
		{Prefix: "2001:4860::/32", Rec: country("US", "US")},
	}}))
	geoiptest.Write(t, asnPath, v4only(geoiptest.Spec{DBType: "GeoLite2-ASN", Nets: []geoiptest.Network{
		{Prefix: "20.0.0.0/22", Rec: as(8075, "MICROSOFT")},
		{Prefix: "20.0.9.0/25", Rec: as(64500, "SMALL")},
		{Prefix: "20.0.9.20/30", Rec: as(64501, "TINY")},
		{Prefix: "20.1.128.0/17", Rec: as(64502, "HALF")},
		{Prefix: "81.2.69.0/24", Rec: as(20712, "Andrews & Arnold Ltd")},
		{Prefix: "2001:4860::/32", Rec: as(15169, "GOOGLE")},
	}}))
	return countryPath, asnPath
}

// memoAddrs are addresses around every network boundary of memoDBs, and
// random ones of 20.0.0.0/15.
func memoAddrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range []string{"20.0.0.0", "20.0.3.255", "20.0.4.0", "20.0.7.0", "20.0.7.255", "20.0.8.0",
		"20.0.9.0", "20.0.9.15", "20.0.9.16", "20.0.9.19", "20.0.9.20", "20.0.9.23", "20.0.9.24", "20.0.9.31",
		"20.0.9.32", "20.0.9.127", "20.0.9.128", "20.1.0.0", "20.1.127.255", "20.1.128.0", "20.3.255.255",
		"20.4.0.0", "81.2.69.142", "::ffff:20.0.9.21", "64:ff9b::1400:915", "2001:4860::8888", "10.1.2.3",
		"192.168.0.1", "8.8.8.8", "255.255.255.255", "0.0.0.1"} {
		out = append(out, netip.MustParseAddr(s))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 4000 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 20<<24|r.Uint32()&0x1_ffff)
		out = append(out, netip.AddrFrom4(b))
	}
	return append(out, netip.Addr{})
}

// A memo answers as the DB does, in any order of lookups (an answer kept
// for a network must hold for its every address), and its hits count as
// lookups and cache hits.
func TestMemo(t *testing.T) {
	cp, ap := memoDBs(t, "US", 6)
	cp4, ap4 := memoDBs(t, "US", 4)
	for _, cfg := range []Config{
		{CountryDatabase: cp4, ASNDatabase: ap4, CacheSize: 1 << 12},
		{CountryDatabase: cp4, ASNDatabase: ap, CacheSize: 1 << 12},
		{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 1 << 12},
		{CountryDatabase: cp, CacheSize: 1 << 12},
		{ASNDatabase: ap, CacheSize: 1 << 12},
		{CountryDatabase: cp, ASNDatabase: ap}, // no cache: the memo keeps nothing either
		{},
	} {
		t.Run(fmt.Sprintf("%+v", cfg), func(t *testing.T) {
			ref := newTestDB(t, Config{CountryDatabase: cfg.CountryDatabase, ASNDatabase: cfg.ASNDatabase}, nil)
			d := newTestDB(t, cfg, nil)
			m := d.NewMemo()
			addrs := memoAddrs()
			r := rand.New(rand.NewPCG(3, 4))
			for i := range 3 * len(addrs) {
				a := addrs[i%len(addrs)]
				if i >= len(addrs) {
					a = addrs[r.IntN(len(addrs))]
				}
				if got, want := m.Lookup(a), ref.Lookup(a); got != want {
					t.Fatalf("Memo.Lookup(%s) = %+v, DB.Lookup %+v", a, got, want)
				}
			}
			m.flush()
			l, h := d.counts()
			if want, _ := ref.counts(); l != want || (cfg.CacheSize == 0 && h != 0) || (cfg.CacheSize != 0 && cfg.CountryDatabase != "" && h < l/2) {
				t.Errorf("lookups %d hits %d, the DB alone counted %d lookups", l, h, want)
			}
		})
	}
	var nilMemo = (*DB)(nil).NewMemo()
	if got := nilMemo.Lookup(netip.MustParseAddr("20.0.0.1")); got != (Info{}) {
		t.Errorf("nil DB's memo: %+v", got)
	}
}

// flush adds the hits not counted yet, for tests to read exact counts.
func (m *Memo) flush() {
	m.db.memoHits.Add(m.pending)
	m.pending = 0
}

// A reload makes what a memo kept stale.
func TestMemoReload(t *testing.T) {
	cp, ap := memoDBs(t, "US", 6)
	d := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 64}, nil)
	m := d.NewMemo()
	a := netip.MustParseAddr("20.2.3.4")
	if got := m.Lookup(a).Country; got != "US" {
		t.Fatalf("before reload: %q", got)
	}
	m.Lookup(a) // a memo hit
	geoiptest.Write(t, cp, geoiptest.Spec{DBType: "GeoLite2-Country", Nets: []geoiptest.Network{{Prefix: "20.0.0.0/14", Rec: country("FR", "FR")}}})
	d.check()
	if got := m.Lookup(a).Country; got != "FR" {
		t.Errorf("after reload: %q, want FR", got)
	}
	if got := m.Lookup(netip.MustParseAddr("20.0.7.1")).Country; got != "FR" {
		t.Errorf("a network only the old file had: %q, want FR", got)
	}
}

// Workers with a memo each, while the files are replaced; run with -race.
func TestMemoConcurrent(t *testing.T) {
	cp, ap := memoDBs(t, "US", 6)
	d := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 16}, nil)
	a := netip.MustParseAddr("20.2.0.1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 4 {
		wg.Go(func() {
			m := d.NewMemo()
			addrs := memoAddrs()
			f := &schema.Flow{}
			for i := 0; ; i++ {
				if i%256 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
				f.SrcAddr, f.DstAddr = addrs[(i+w)%len(addrs)], a
				f.SrcAS, f.DstAS = 0, 0
				m.Enrich(f)
				if c := f.DstCountry; c != "US" && c != "FR" {
					select {
					case errs <- fmt.Sprintf("%s: country %q", a, c):
					default:
					}
				}
			}
		})
	}
	for i := range 6 {
		iso := []string{"FR", "US"}[i%2]
		geoiptest.Write(t, cp, geoiptest.Spec{DBType: "GeoLite2-Country", Nets: []geoiptest.Network{{Prefix: "20.0.0.0/14", Rec: country(iso, iso)}}})
		d.check()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestMemoAllocations: a memo hit, miss and reserved address allocate
// nothing.
func TestMemoAllocations(t *testing.T) {
	cp, ap := memoDBs(t, "US", 6)
	d := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 1 << 12}, nil)
	m := d.NewMemo()
	addrs := memoAddrs()
	for _, a := range addrs {
		m.Lookup(a)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { m.Lookup(addrs[i%len(addrs)]); i++ }); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
}
