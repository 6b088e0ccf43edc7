package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"flowlens/internal/chdb"
	"flowlens/schema"
	"flowlens/sink/embedded"
)

// One engine per process (libchdb): every test of the package shares one
// store, filled once with flows whose answers are known.
var (
	fixStore *embedded.Store
	fixQ     *Embedded
	fixNow   time.Time // the console's clock: the flows are just before it
	fixErr   error     // why the store is missing (no libchdb: tests skip)
)

// testConfig has small SQL limits, so that tests reach them.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.SQLMaxRows = 10
	cfg.SQLTimeout = time.Second
	return cfg
}

// corpusChildEnv marks the child process in which TestBrowserCorpus
// (corpus_browser_test.go) runs on a store of its own: libchdb runs one
// store per process, so that process opens no fixture.
const corpusChildEnv = "CONSOLE_CORPUS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(corpusChildEnv) != "" {
		fixErr = errors.New("no fixture store in TestBrowserCorpus's child process")
		os.Exit(m.Run())
	}
	// TestSpeed may keep its generated store in CONSOLE_SPEED_DIR.
	dir, keep := os.Getenv("CONSOLE_SPEED_DIR"), true
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "console-test-"); err != nil {
			panic(err)
		}
		keep = false
	}
	fixErr = openFixture(dir)
	if fixErr != nil && (!errors.Is(fixErr, chdb.ErrNoLibrary) || os.Getenv("CI") != "") {
		fmt.Fprintln(os.Stderr, "fixture:", fixErr)
		os.Exit(1)
	}
	code := m.Run()
	if fixQ != nil {
		fixQ.Close()
	}
	if fixStore != nil {
		_ = fixStore.Stop()
	}
	if !keep {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// needStore skips a test when libchdb is absent outside CI.
func needStore(t testing.TB) {
	t.Helper()
	if fixErr != nil {
		t.Skip(fixErr)
	}
}

var (
	exporterA = netip.MustParseAddr("192.0.2.1")
	exporterB = netip.MustParseAddr("192.0.2.2")
	office    = netip.MustParseAddr("10.0.0.1")
	server    = netip.MustParseAddr("10.0.0.2")
	guest     = netip.MustParseAddr("10.1.0.5")
	external  = netip.MustParseAddr("203.0.113.10")
	v6server  = netip.MustParseAddr("2001:db8::1")
	tracker   = netip.MustParseAddr("198.51.100.7")
)

// xssName is a server name an attacker can make a sensor see (SNI).
const xssName = `<img src=x onerror="document.title='pwned'">`

// fixtureFlows are the known flows: in the last 2 minutes, 3 hours ago
// and 3 days ago, relative to now.
//
// Last hour, by application (bytes): TLS.YouTube 10000, SSH 1400, DNS 500,
// HTTP 300 (12200). Last 6 hours: TLS.YouTube 15000. Last 7 days: also
// BitTorrent 1000000.
func fixtureFlows(now time.Time) []schema.Flow {
	recent := uint32(now.Unix() - 120)
	base := func(exp netip.Addr, src, dst netip.Addr, sp, dp uint16, proto, cat string, b uint64) schema.Flow {
		f := schema.Flow{TimeReceived: recent, Source: schema.SourceNetFlowV9, ExporterAddr: exp, SamplingRate: 1,
			SamplingSource: schema.SamplingNone, SrcAddr: src, DstAddr: dst, SrcPort: sp, DstPort: dp, IPProtocol: 6,
			EType: 0x0800, Protocol: proto, AppCategory: cat, Bytes: b, Packets: b / 100}
		if exp == exporterB {
			f.Source, f.SamplingRate, f.SamplingSource = schema.SourceIPFIX, 1, schema.SamplingOptions
		}
		if src.Is6() && !src.Is4In6() || dst.Is6() && !dst.Is4In6() {
			f.EType = 0x86dd
		}
		return f
	}
	pools := map[netip.Addr]string{office: "office", server: "servers", guest: "guest-wifi"}
	var out []schema.Flow
	add := func(n int, f schema.Flow) {
		f.SrcPool, f.DstPool = pools[f.SrcAddr], pools[f.DstAddr]
		if f.DstAddr == external {
			f.DstCountry, f.DstAS, f.DstASName = "FR", 64500, "Example Transit"
		}
		if f.SrcAddr == office {
			f.SrcCountry = "DE"
		}
		for range n {
			out = append(out, f)
		}
	}
	yt := base(exporterA, office, external, 50000, 443, "TLS.YouTube", "Streaming", 1000)
	yt.ServerName = "www.youtube.com"
	add(10, yt)
	dns := base(exporterA, server, office, 53, 40000, "DNS", "Network", 100)
	dns.IPProtocol = 17
	add(5, dns)
	add(2, base(exporterB, guest, v6server, 50001, 22, "SSH", "RemoteAccess", 700))
	web := base(exporterB, office, external, 50002, 80, "HTTP", "Web", 300)
	web.ServerName = xssName
	add(1, web)
	old := yt
	old.TimeReceived, old.Bytes = uint32(now.Unix()-3*3600), 5000
	add(1, old)
	bt := base(exporterA, guest, tracker, 6881, 6881, "BitTorrent", "Download", 1_000_000)
	bt.TimeReceived = uint32(now.Unix() - 3*86400)
	add(1, bt)
	return out
}

func fixtureAlerts(now time.Time) []schema.Alert {
	t := uint32(now.Unix() - 60)
	return []schema.Alert{
		{Time: t, LastSeen: t + 5, Kind: "policy", Rule: "guest-to-servers", Severity: "high", SrcAddr: guest, DstAddr: server,
			SrcPool: "guest-wifi", DstPool: "servers", Protocol: "SSH", Evidence: "2 flows", Count: 2},
		{Time: t - 30, LastSeen: t, Kind: "dns_tunnel", Rule: "dns_tunnel", Severity: "medium", SrcAddr: office, DstAddr: netip.IPv6Unspecified(),
			SrcPool: "office", Protocol: "DNS", Evidence: `<script>alert(1)</script>.evil.example: 400 queries`, Count: 40},
	}
}

func openFixture(dir string) error {
	cfg := embedded.DefaultConfig()
	cfg.DataDir = dir
	cfg.BatchInterval = 50 * time.Millisecond
	s, err := embedded.New(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	if err := s.Start(context.Background()); err != nil {
		return err
	}
	fixStore = s
	fixNow = time.Now().Truncate(time.Minute)
	for _, f := range fixtureFlows(fixNow) {
		s.Put(&f)
	}
	for _, a := range fixtureAlerts(fixNow) {
		s.PutAlert(&a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.Flush(ctx)
	// The days before today get their top conversations now, not at the
	// view's next refresh.
	if err := schema.CatchUpDaily(ctx, s, cfg.Tables); err != nil {
		return err
	}
	fixQ, err = OpenEmbedded(dir, testConfig())
	return err
}
