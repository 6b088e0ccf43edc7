package geoip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"flowlens/enrich/geoip/geoiptest"
	"flowlens/schema"
)

// countrySpec and asnSpec are the databases most tests use.
func countrySpec() geoiptest.Spec {
	return geoiptest.Spec{DBType: "GeoLite2-Country", Epoch: 1_700_000_000, ReservedToo: true, Nets: []geoiptest.Network{
		{Prefix: "81.2.69.0/24", Rec: country("GB", "GB")},
		{Prefix: "2001:4860::/32", Rec: country("US", "US")},
		{Prefix: "5.0.0.0/8", Rec: country("", "SE")}, // satellite: only a registered country
		{Prefix: "2a00:1450::/32", Rec: country("ie", "IE")},
		{Prefix: "100.0.0.0/8", Rec: country("US1", "US")}, // no usable code anywhere but registered
		{Prefix: "10.0.0.0/8", Rec: country("XX", "XX")},   // real files hold nothing here
		{Prefix: "fd00::/8", Rec: country("XX", "XX")},
		{Prefix: "203.0.113.0/24", Rec: country("XX", "XX")},
	}}
}

func asnSpec() geoiptest.Spec {
	return geoiptest.Spec{DBType: "GeoLite2-ASN", Epoch: 1_700_000_100, Nets: []geoiptest.Network{
		{Prefix: "81.2.69.0/24", Rec: as(20712, "Andrews & Arnold Ltd")},
		{Prefix: "2001:4860::/32", Rec: as(15169, "GOOGLE")},
		{Prefix: "8.8.8.0/24", Rec: as(15169, "GOOGLE")},
		{Prefix: "2a00:1450::/32", Rec: as(15169, "GOOGLE")},
	}}
}

func newTestDB(t testing.TB, cfg Config, reg prometheus.Registerer) *DB {
	t.Helper()
	d, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeBoth(t testing.TB) (countryPath, asnPath string) {
	dir := t.TempDir()
	countryPath, asnPath = filepath.Join(dir, "GeoLite2-Country.mmdb"), filepath.Join(dir, "GeoLite2-ASN.mmdb")
	geoiptest.Write(t, countryPath, countrySpec())
	geoiptest.Write(t, asnPath, asnSpec())
	return countryPath, asnPath
}

func TestLookup(t *testing.T) {
	cp, ap := writeBoth(t)
	reg := prometheus.NewPedanticRegistry()
	d := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 4096}, reg) // no eviction among 8 addresses
	google := Info{Country: "US", ASN: 15169, ASName: "GOOGLE"}
	cases := []struct {
		addr string
		want Info
	}{
		{"81.2.69.142", Info{"GB", "Andrews & Arnold Ltd", 20712}},
		{"::ffff:81.2.69.142", Info{"GB", "Andrews & Arnold Ltd", 20712}},
		{"64:ff9b::5102:458e", Info{"GB", "Andrews & Arnold Ltd", 20712}}, // NAT64 of 81.2.69.142
		{"2001:4860:4860::8888", google},
		{"2001:4860:4860::8888%eth0", google},
		{"2a00:1450:4001:82a::200e", Info{"IE", "GOOGLE", 15169}}, // lower case in the file
		{"5.6.7.8", Info{Country: "SE"}},                          // registered country only
		{"100.1.2.3", Info{Country: "US"}},                        // bad country code: registered one
		{"8.8.8.8", Info{ASN: 15169, ASName: "GOOGLE"}},           // in the ASN file only
		{"9.9.9.9", Info{}},                                       // in neither
		{"2c0f:f248::1", Info{}},
	}
	reserved := []string{
		"10.1.2.3", "203.0.113.5", "192.168.1.1", "172.16.0.1", "172.31.255.255", "100.64.0.1",
		"127.0.0.1", "169.254.1.1", "192.0.2.1", "198.18.0.1", "198.51.100.1", "0.0.0.0",
		"224.0.0.1", "240.0.0.1", "255.255.255.255",
		"::", "::1", "fe80::1%eth0", "fc00::1", "fd00::1", "ff02::1", "2001:db8::1", "::ffff:10.0.0.1",
		"64:ff9b::a00:1", // NAT64 of 10.0.0.1
	}
	for _, r := range reserved {
		cases = append(cases, struct {
			addr string
			want Info
		}{r, Info{}})
	}
	// Twice: the first round fills the cache, the second reads it.
	for round := range 2 {
		for _, c := range cases {
			if got := d.Lookup(netip.MustParseAddr(c.addr)); got != c.want {
				t.Errorf("round %d: Lookup(%s) = %+v, want %+v", round, c.addr, got, c.want)
			}
		}
	}
	if got := d.Lookup(netip.Addr{}); got != (Info{}) {
		t.Errorf("Lookup(invalid) = %+v", got)
	}
	// Mapped, NAT64 and zoned forms share their address's entry.
	const public, distinct = 11, 8
	// Reserved addresses are not counted: they never reach the cache.
	if got, want := testutil.ToFloat64(d.m.lookups), float64(2*public); got != want {
		t.Errorf("lookups = %v, want %v", got, want)
	}
	if got, want := testutil.ToFloat64(d.m.hits), float64(public+public-distinct); got != want {
		t.Errorf("hits = %v, want %v", got, want)
	}
	if n := d.state.Load().cache.len(); n != distinct {
		t.Errorf("cache holds %d answers, want %d (one per public address, none for reserved ones)", n, distinct)
	}
	for _, db := range []string{"country", "asn"} {
		if got := testutil.ToFloat64(d.m.errors.WithLabelValues(db)); got != 0 {
			t.Errorf("%s errors = %v", db, got)
		}
	}
	if got := testutil.ToFloat64(d.m.epoch.WithLabelValues("country")); got != 1_700_000_000 {
		t.Errorf("country build epoch = %v", got)
	}
	if got := testutil.ToFloat64(d.m.epoch.WithLabelValues("asn")); got != 1_700_000_100 {
		t.Errorf("asn build epoch = %v", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "flowlens_geoip_") {
			t.Errorf("metric %s lacks the flowlens_geoip_ prefix", mf.GetName())
		}
	}
	if len(mfs) != 5 {
		t.Errorf("%d metric families registered, want 5", len(mfs))
	}
}

// TestASNameShared shows that the name of an AS is one string however many
// networks and flows carry it, with or without the address cache.
func TestASNameShared(t *testing.T) {
	cp, ap := writeBoth(t)
	for _, size := range []int{0, 64} {
		d := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: size}, nil)
		var names []string
		for _, a := range []string{"8.8.8.8", "8.8.8.9", "2001:4860::1", "2a00:1450::1", "8.8.8.8"} {
			names = append(names, d.Lookup(netip.MustParseAddr(a)).ASName)
		}
		for _, n := range names[1:3] {
			if n != "GOOGLE" || unsafe.StringData(n) != unsafe.StringData(names[0]) {
				t.Errorf("cache %d: AS names %q are not one shared string", size, names)
			}
		}
	}
}

func TestLookupAllocations(t *testing.T) {
	cp, ap := writeBoth(t)
	hit := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 64}, nil)
	miss := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap}, nil)
	a := netip.MustParseAddr("2001:4860:4860::8888")
	hit.Lookup(a)
	miss.Lookup(a) // decodes the records once
	if n := testing.AllocsPerRun(1000, func() { hit.Lookup(a) }); n != 0 {
		t.Errorf("cache hit: %v allocations per lookup", n)
	}
	if n := testing.AllocsPerRun(1000, func() { miss.Lookup(a) }); n != 0 {
		t.Errorf("cache miss, record known: %v allocations per lookup", n)
	}
}

func TestCityAndIPv4OnlyDatabases(t *testing.T) {
	dir := t.TempDir()
	cityPath, v4Path := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "v4.mmdb")
	geoiptest.Write(t, cityPath, geoiptest.Spec{DBType: "GeoIP2-City", Nets: []geoiptest.Network{
		{Prefix: "1.128.0.0/11", Rec: city("AU", "Melbourne")},
		{Prefix: "2001:8000::/20", Rec: city("AU", "Sydney")},
	}})
	geoiptest.Write(t, v4Path, geoiptest.Spec{DBType: "GeoLite2-ASN", IPVersion: 4, Nets: []geoiptest.Network{
		{Prefix: "1.128.0.0/11", Rec: as(1221, "Telstra Limited")},
	}})
	d := newTestDB(t, Config{CountryDatabase: cityPath, ASNDatabase: v4Path, CacheSize: 16}, nil)
	for addr, want := range map[string]Info{
		"1.130.1.1":    {"AU", "Telstra Limited", 1221},
		"2001:8000::1": {Country: "AU"}, // the IPv4-only file is not asked
		"1.1.1.1":      {},
	} {
		if got := d.Lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Lookup(%s) = %+v, want %+v", addr, got, want)
		}
	}
	if got := testutil.ToFloat64(d.m.errors.WithLabelValues("asn")); got != 0 {
		t.Errorf("asn errors = %v, want 0", got)
	}
}

func TestEmptyConfig(t *testing.T) {
	for name, cfg := range map[string]Config{"zero": {}, "default": DefaultConfig()} {
		d, err := New(cfg, nil, prometheus.NewRegistry())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := d.Start(context.Background()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, a := range []string{"8.8.8.8", "2001:4860::1", "10.0.0.1"} {
			if got := d.Lookup(netip.MustParseAddr(a)); got != (Info{}) {
				t.Errorf("%s: Lookup(%s) = %+v", name, a, got)
			}
		}
		d.Stop()
		if n := testing.AllocsPerRun(100, func() { d.Lookup(netip.MustParseAddr("8.8.8.8")) }); n != 0 {
			t.Errorf("%s: %v allocations per lookup", name, n)
		}
	}
	var d *DB
	if got := d.Lookup(netip.MustParseAddr("8.8.8.8")); got != (Info{}) {
		t.Errorf("nil DB: %+v", got)
	}
	d.Enrich(&schema.Flow{})
	if err := d.Start(context.Background()); err != nil {
		t.Error(err)
	}
	d.Stop()
}

func TestOneDatabase(t *testing.T) {
	_, ap := writeBoth(t)
	d := newTestDB(t, Config{ASNDatabase: ap, CacheSize: 8}, nil)
	if got, want := d.Lookup(netip.MustParseAddr("81.2.69.1")), (Info{ASN: 20712, ASName: "Andrews & Arnold Ltd"}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string // "" for valid
	}{
		{Config{}, ""},
		{DefaultConfig(), ""},
		{Config{CountryDatabase: "c.mmdb", ASNDatabase: "a.mmdb", CacheSize: 1, CheckInterval: time.Millisecond}, ""},
		{Config{CacheSize: -1}, "GEOIP_CACHE_SIZE: must be 0 (no cache) to 16777216, got -1"},
		{Config{CacheSize: MaxCacheSize + 1}, "GEOIP_CACHE_SIZE"},
		{Config{CheckInterval: -time.Second}, "GEOIP_CHECK_INTERVAL: must be 0 (never reload) or a positive duration, got -1s"},
		{Config{CountryDatabase: "x.mmdb", ASNDatabase: "x.mmdb"}, "GEOIP_COUNTRY_DATABASE and GEOIP_ASN_DATABASE: both are x.mmdb"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	err := Config{CacheSize: -1, CheckInterval: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "GEOIP_CACHE_SIZE") || !strings.Contains(err.Error(), "GEOIP_CHECK_INTERVAL") {
		t.Errorf("both errors expected, got %v", err)
	}
	if _, err := New(Config{CacheSize: -1}, nil, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
}

func TestNewBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mmdb")
	geoiptest.Write(t, good, countrySpec())
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), data...)
	for i := 0; i < len(corrupt)/2; i++ { // the search tree and the data section start
		corrupt[i] = 0xff
	}
	files := map[string][]byte{
		"empty.mmdb":     {},
		"garbage.mmdb":   []byte("this is not a MaxMind DB\n"),
		"truncated.mmdb": data[:len(data)/2],
		"no-tail.mmdb":   data[:len(data)-10], // metadata cut short
		"corrupt.mmdb":   corrupt,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []string{"missing.mmdb", "."}
	for name := range files {
		cases = append(cases, name)
	}
	for _, name := range cases {
		path := filepath.Join(dir, name)
		for _, cfg := range []Config{{CountryDatabase: path}, {ASNDatabase: path}} {
			_, err := New(cfg, nil, nil)
			if err == nil {
				t.Errorf("%s: New accepted it", name)
				continue
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("%s: error %q does not name the file", name, err)
			}
		}
	}
}

// TestDamagedFiles cuts and flips a small database everywhere: New must
// refuse it or answer lookups, never panic.
func TestDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mmdb")
	geoiptest.Write(t, good, countrySpec())
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "damaged.mmdb")
	addrs := []netip.Addr{netip.MustParseAddr("81.2.69.142"), netip.MustParseAddr("2001:4860::1"), netip.MustParseAddr("5.1.1.1")}
	try := func(what string, b []byte) {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%s: panic %v", what, r)
			}
		}()
		d, err := New(Config{CountryDatabase: path}, nil, nil)
		if err != nil {
			return
		}
		for _, a := range addrs {
			d.Lookup(a)
		}
	}
	step := max(1, len(data)/200)
	for n := 0; n < len(data); n += step {
		try(fmt.Sprintf("cut at %d", n), data[:n])
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		b := append([]byte(nil), data...)
		b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		try(fmt.Sprintf("flip %d", i), b)
	}
}

func TestEnrich(t *testing.T) {
	cp, ap := writeBoth(t)
	d := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 64}, nil)
	f := schema.Flow{
		SrcAddr: netip.MustParseAddr("::ffff:81.2.69.10"),
		DstAddr: netip.MustParseAddr("2001:4860:4860::8888"), DstAS: 15169,
	}
	d.Enrich(&f)
	if f.SrcCountry != "GB" || f.SrcAS != 20712 || f.SrcASName != "Andrews & Arnold Ltd" ||
		f.DstCountry != "US" || f.DstAS != 15169 || f.DstASName != "GOOGLE" {
		t.Errorf("enriched %+v", f)
	}
	// The exporter's AS wins, and the database's name for another AS is
	// not given to it.
	f = schema.Flow{SrcAddr: netip.MustParseAddr("8.8.8.8"), SrcAS: 64500, DstAddr: netip.MustParseAddr("192.168.1.1")}
	d.Enrich(&f)
	if f.SrcAS != 64500 || f.SrcASName != "" || f.SrcCountry != "" || f.DstAS != 0 || f.DstCountry != "" {
		t.Errorf("enriched %+v", f)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "GeoLite2-Country.mmdb")
	spec := func(iso string, epoch int64, extra ...geoiptest.Network) geoiptest.Spec {
		return geoiptest.Spec{DBType: "GeoLite2-Country", Epoch: epoch, Nets: append([]geoiptest.Network{{Prefix: "81.2.69.0/24", Rec: country(iso, iso)}}, extra...)}
	}
	geoiptest.Write(t, path, spec("GB", 1000))
	d := newTestDB(t, Config{CountryDatabase: path, CacheSize: 64, CheckInterval: 10 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	if err := d.Start(ctx); err == nil {
		t.Error("second Start accepted")
	}
	a := netip.MustParseAddr("81.2.69.142")
	current := func() string { return d.Lookup(a).Country }
	reloads := func(result string) float64 {
		return testutil.ToFloat64(d.m.reloads.WithLabelValues("country", result))
	}
	epoch := func() float64 { return testutil.ToFloat64(d.m.epoch.WithLabelValues("country")) }
	if got := current(); got != "GB" {
		t.Fatalf("before reload: %q", got)
	}

	// A new file renamed over the old one: the cached answer goes too.
	geoiptest.Write(t, path, spec("FR", 2000))
	waitFor(t, "the first reload", func() bool { return reloads("ok") == 1 })
	if got := current(); got != "FR" || epoch() != 2000 {
		t.Errorf("after reload: %q, epoch %v", got, epoch())
	}

	// A corrupt file: counted once, and the loaded one kept.
	replaceFile(t, path, []byte("not a database"))
	waitFor(t, "the failed reload", func() bool { return reloads("error") == 1 })
	time.Sleep(50 * time.Millisecond) // several more checks of the same bad file
	if got := current(); got != "FR" || reloads("error") != 1 || reloads("ok") != 1 || epoch() != 2000 {
		t.Errorf("after a bad file: %q, reloads ok %v error %v, epoch %v", got, reloads("ok"), reloads("error"), epoch())
	}

	// Rewritten in place (same inode): seen by size and time.
	tmp := filepath.Join(dir, "in-place.mmdb")
	geoiptest.Write(t, tmp, spec("DE", 3000, geoiptest.Network{Prefix: "2001:4860::/32", Rec: country("US", "US")}))
	b, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload in place", func() bool { return reloads("ok") == 2 })
	if got := current(); got != "DE" || epoch() != 3000 {
		t.Errorf("after rewrite: %q, epoch %v", got, epoch())
	}

	// The file gone: the loaded one is kept, and comes back fine.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := current(); got != "DE" {
		t.Errorf("after removal: %q", got)
	}
	geoiptest.Write(t, path, spec("IT", 4000))
	waitFor(t, "the reload after removal", func() bool { return reloads("ok") == 3 })
	if got := current(); got != "IT" {
		t.Errorf("after removal and return: %q", got)
	}
	d.Stop()
	d.Stop()
	if got := current(); got != "IT" {
		t.Errorf("after Stop: %q", got)
	}
}

// TestConcurrent runs workers against a small cache (constant evictions)
// while the files are replaced; run with -race.
func TestConcurrent(t *testing.T) {
	cp, ap := writeBoth(t)
	d := newTestDB(t, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 4}, nil)
	alt := countrySpec()
	alt.Nets[0] = geoiptest.Network{Prefix: "81.2.69.0/24", Rec: country("FR", "FR")}
	want := map[string][]Info{
		"81.2.69.1":    {{"GB", "Andrews & Arnold Ltd", 20712}, {"FR", "Andrews & Arnold Ltd", 20712}},
		"81.2.69.200":  {{"GB", "Andrews & Arnold Ltd", 20712}, {"FR", "Andrews & Arnold Ltd", 20712}},
		"2001:4860::1": {{"US", "GOOGLE", 15169}},
		"8.8.8.8":      {{ASN: 15169, ASName: "GOOGLE"}},
		"9.9.9.9":      {{}},
		"10.0.0.1":     {{}},
	}
	var addrs []netip.Addr
	for a := range want {
		addrs = append(addrs, netip.MustParseAddr(a))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 0))
			for i := 0; ; i++ {
				if i%256 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
				a := addrs[r.IntN(len(addrs))]
				got := d.Lookup(a)
				ok := false
				for _, w := range want[a.String()] {
					ok = ok || got == w
				}
				if !ok {
					select {
					case errs <- fmt.Sprintf("Lookup(%s) = %+v", a, got):
					default:
					}
				}
			}
		})
	}
	for i := range 6 {
		time.Sleep(5 * time.Millisecond)
		if i%2 == 0 {
			geoiptest.Write(t, cp, alt)
		} else {
			geoiptest.Write(t, cp, countrySpec())
		}
		d.check()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := testutil.ToFloat64(d.m.reloads.WithLabelValues("country", "ok")); got != 6 {
		t.Errorf("country reloads = %v, want 6", got)
	}
}
