package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"flowlens/enrich/geoip/geoiptest"
	"flowlens/schema"
)

type alertRecorder struct {
	mu sync.Mutex
	as []schema.Alert
}

func (r *alertRecorder) PutAlert(a *schema.Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.as = append(r.as, *a)
}

func (r *alertRecorder) take() []schema.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.as
	r.as = nil
	return out
}

const testPolicy = `
pools:
  iot: [10.0.20.0/24]
  servers: [10.0.1.0/24]
categories:
  Intranet: Collaborative
  TLS.Dropbox: Unsanctioned
rules:
  - name: iot-no-remote-access
    from: iot
    to: servers
    categories: [RemoteAccess]
    severity: high
`

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func geoDBs(t testing.TB, dir string, n int) (country, asn string) {
	t.Helper()
	country, asn = filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	cs := geoiptest.Spec{DBType: "GeoLite2-Country", Nets: []geoiptest.Network{{Prefix: "8.8.8.0/24", Rec: geoiptest.Country("US")}}}
	as := geoiptest.Spec{DBType: "GeoLite2-ASN", Nets: []geoiptest.Network{{Prefix: "8.8.8.0/24", Rec: geoiptest.AS(15169, "GOOGLE")}}}
	for i := range n {
		p := fmt.Sprintf("%d.%d.%d.0/24", 20+i/65536%100, i/256%256, i%256)
		cs.Nets = append(cs.Nets, geoiptest.Network{Prefix: p, Rec: geoiptest.Country("DE")})
		as.Nets = append(as.Nets, geoiptest.Network{Prefix: p, Rec: geoiptest.AS(uint32(64512+i%1000), "Example AS")})
	}
	geoiptest.Write(t, country, cs)
	geoiptest.Write(t, asn, as)
	return country, asn
}

func newChain(t testing.TB, cfg Config, reg prometheus.Registerer) (*Chain, *alertRecorder) {
	t.Helper()
	rec := &alertRecorder{}
	c, err := New(cfg, slog.New(slog.DiscardHandler), reg, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c, rec
}

func flow(src, dst string, dport uint16, proto string) *schema.Flow {
	return &schema.Flow{SrcAddr: netip.MustParseAddr(src), DstAddr: netip.MustParseAddr(dst), SrcPort: 40000, DstPort: dport,
		IPProtocol: 6, Protocol: proto, Packets: 10, Bytes: 1000, Source: schema.SourceIPFIX}
}

// The chain's parts on one flow each: pools (longest prefix), categories
// (policy override, then our table for labels that came without one),
// GeoIP of both ends, and a policy alert stored with its pools.
func TestChain(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, testPolicy)
	country, asn := geoDBs(t, dir, 10)
	cfg := DefaultConfig()
	cfg.PolicyFile, cfg.GeoIP.CountryDatabase, cfg.GeoIP.ASNDatabase = pol, country, asn
	reg := prometheus.NewRegistry()
	c, rec := newChain(t, cfg, reg)

	ssh := flow("10.0.20.5", "10.0.1.10", 22, "")
	c.Enrich(ssh) // labelled from the port, category from our table
	if ssh.Protocol != "SSH" || ssh.AppCategory != "RemoteAccess" || ssh.SrcPool != "iot" || ssh.DstPool != "servers" {
		t.Errorf("ssh: %+v", ssh)
	}
	g := flow("10.0.20.5", "8.8.8.8", 443, "TLS.Dropbox")
	g.AppCategory = "Cloud"
	c.Enrich(g)
	if g.AppCategory != "Unsanctioned" || g.DstCountry != "US" || g.DstAS != 15169 || g.DstASName != "GOOGLE" || g.SrcCountry != "" {
		t.Errorf("dropbox: %+v", g)
	}
	exp := flow("10.0.20.6", "20.0.0.9", 443, "TLS")
	exp.DstAS = 3320 // the exporter's AS stands, and no name of another AS is put on it
	c.Enrich(exp)
	if exp.DstAS != 3320 || exp.DstASName != "" || exp.DstCountry != "DE" || exp.AppCategory != "Web" {
		t.Errorf("exporter AS: %+v", exp)
	}
	if n := testutil.ToFloat64(mustCounter(t, reg, "flowlens_detect_flows_total")); n != 3 {
		t.Errorf("flowlens_detect_flows_total %v", n)
	}
	c.Stop()
	alerts := rec.take()
	if len(alerts) != 1 || alerts[0].Kind != "policy" || alerts[0].Rule != "iot-no-remote-access" || alerts[0].SrcPool != "iot" ||
		alerts[0].DstPool != "servers" || alerts[0].Severity != "high" || alerts[0].Protocol != "SSH" || alerts[0].Time == 0 {
		t.Errorf("alerts: %+v", alerts)
	}
}

func mustCounter(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "x"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("%s not registered", name)
	return nil
}

// A new policy file is applied without a restart, flows keep flowing
// during the swap, and an invalid version leaves the last good one in
// force; the detections' metrics stay registered once.
func TestChainReload(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, testPolicy)
	cfg := DefaultConfig()
	cfg.PolicyFile = pol
	reg := prometheus.NewRegistry()
	c, _ := newChain(t, cfg, reg)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Enrich(flow("10.0.20.5", "10.0.1.10", 443, "TLS"))
			}
		}()
	}
	poolOf := func(addr string) string {
		f := flow(addr, "10.0.1.10", 443, "TLS")
		c.Enrich(f)
		return f.SrcPool
	}
	if got := poolOf("10.0.30.7"); got != "" {
		t.Fatalf("before: %q", got)
	}
	writeFile(t, pol, strings.Replace(testPolicy, "pools:\n", "pools:\n  staff: [10.0.30.0/24]\n", 1))
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := poolOf("10.0.30.7"); got != "staff" {
		t.Errorf("after reload: %q", got)
	}
	writeFile(t, pol, testPolicy+"  - name: broken\n    from: nosuchpool\n")
	err := c.Reload()
	if err == nil || !strings.Contains(err.Error(), "policy.yaml:") {
		t.Errorf("invalid policy: %v", err)
	}
	if got := poolOf("10.0.30.7"); got != "staff" {
		t.Errorf("after a rejected file: %q (the previous policy must stay)", got)
	}
	close(stop)
	wg.Wait()
	if _, err := reg.Gather(); err != nil {
		t.Errorf("registry after swaps: %v", err)
	}
	mustCounter(t, reg, "flowlens_detect_flows_total")
}

// BenchmarkChain is the enrich stage on one core with bench/enrich.sh's
// policy and databases (10,000 pool prefixes, GeoIP country and ASN of
// 10,000 networks each, every detection on) over a mix of labelled flows
// (internal, to the Internet, DNS) and over router flows, against Label
// alone (what the collector ran before).
func BenchmarkChain(b *testing.B) {
	dir := b.TempDir()
	path, country, asn := writeBenchFiles(b, dir)
	flows := make([]schema.Flow, 0, 4096)
	for i := range 4096 {
		var f *schema.Flow
		switch i % 4 {
		case 0:
			f = flow(fmt.Sprintf("10.%d.%d.7", i%39, i%256), fmt.Sprintf("10.%d.1.10", i%39), 443, "TLS.Microsoft365")
		case 1:
			f = flow(fmt.Sprintf("10.%d.%d.8", i%39, i%256), fmt.Sprintf("%d.%d.%d.1", 20+i%3, i%256, (i/7)%256), 443, "TLS.Google")
		case 2:
			f = flow(fmt.Sprintf("10.%d.%d.9", i%39, i%256), "10.0.1.53", 53, "DNS")
			f.IPProtocol, f.DNSQuery, f.DNSQType, f.Packets = 17, fmt.Sprintf("host%d.example.com", i), 1, 1
		default:
			f = flow(fmt.Sprintf("10.%d.%d.10", i%39, i%256), fmt.Sprintf("%d.%d.%d.2", 20+i%3, (i/3)%256, i%256), 443, "QUIC.YouTube")
			f.IPProtocol = 17
		}
		flows = append(flows, *f)
	}
	// What bench/enrich.sh sends (tools/flowgen -public-dst): router flows
	// with no label, sources in the pools, public destinations.
	router := make([]schema.Flow, 0, 4096)
	for i := range 4096 {
		f := flow(fmt.Sprintf("10.%d.%d.%d", i%40, i%256, i%200), fmt.Sprintf("20.0.%d.%d", (i/7)%256, i%250), []uint16{443, 80, 53, 22, 123, 8080}[i%6], "")
		f.IPProtocol = []uint8{6, 6, 17, 6, 17, 6}[i%6]
		router = append(router, *f)
	}
	work := make([]schema.Flow, len(flows))
	b.Run("label-only", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			j := i % len(flows)
			work[j] = flows[j]
			Label(&work[j])
		}
	})
	for _, mix := range []struct {
		name  string
		flows []schema.Flow
	}{{"chain", flows}, {"chain-router", router}} {
		b.Run(mix.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.PolicyFile, cfg.GeoIP.CountryDatabase, cfg.GeoIP.ASNDatabase = path, country, asn
			c, _ := newChain(b, cfg, nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := i % len(mix.flows)
				work[j] = mix.flows[j]
				c.Enrich(&work[j])
			}
		})
	}
	// A caller keeping its own Worker, without the pool of Chain.Enrich.
	b.Run("chain-router-worker", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.PolicyFile, cfg.GeoIP.CountryDatabase, cfg.GeoIP.ASNDatabase = path, country, asn
		c, _ := newChain(b, cfg, nil)
		w := c.NewWorker()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			j := i % len(router)
			work[j] = router[j]
			w.Enrich(&work[j])
		}
	})
}

// TestWriteBenchFiles writes the policy (10,000 pools over 10.0.0.0/8, as
// tools/flowgen's sources) and GeoIP databases (10,000 networks each,
// covering flowgen -public-dst's 20.0.0.0/16) that bench/enrich.sh runs
// flowlens with. Only with FLOWLENS_ENRICH_BENCH_DIR set.
func TestWriteBenchFiles(t *testing.T) {
	dir := os.Getenv("FLOWLENS_ENRICH_BENCH_DIR")
	if dir == "" {
		t.Skip("FLOWLENS_ENRICH_BENCH_DIR not set")
	}
	writeBenchFiles(t, dir)
}

// writeBenchFiles writes the benchmarks' policy and GeoIP databases into
// dir and returns their paths.
func writeBenchFiles(tb testing.TB, dir string) (policyPath, country, asn string) {
	tb.Helper()
	var pol strings.Builder
	pol.WriteString("pools:\n")
	for i := range 10000 {
		fmt.Fprintf(&pol, "  p%d: [10.%d.%d.0/24]\n", i, i/256, i%256)
	}
	pol.WriteString("rules:\n  - name: no-remote-access\n    from: p1\n    to: p2\n    categories: [RemoteAccess]\n")
	pol.WriteString("saas:\n  p3: {deny: [Dropbox]}\n")
	policyPath = filepath.Join(dir, "policy.yaml")
	writeFile(tb, policyPath, pol.String())
	cs := geoiptest.Spec{DBType: "GeoLite2-Country"}
	as := geoiptest.Spec{DBType: "GeoLite2-ASN"}
	for i := range 10000 {
		p := fmt.Sprintf("20.%d.%d.0/24", i/256, i%256)
		cs.Nets = append(cs.Nets, geoiptest.Network{Prefix: p, Rec: geoiptest.Country([]string{"US", "IE", "NL", "SG"}[i%4])})
		as.Nets = append(as.Nets, geoiptest.Network{Prefix: p, Rec: geoiptest.AS(8075, "MICROSOFT-CORP-MSN-AS-BLOCK")})
	}
	country, asn = filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	geoiptest.Write(tb, country, cs)
	geoiptest.Write(tb, asn, as)
	return policyPath, country, asn
}

// TestWorkerCategoryMemo: a worker's memory of categories answers as the
// policy and the table do, for labels of one string or of copies with the
// same text, flows that came with a category or without, and follows a
// new policy at once.
func TestWorkerCategoryMemo(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, testPolicy)
	cfg := DefaultConfig()
	cfg.PolicyFile = pol
	c, _ := newChain(t, cfg, nil)
	w := c.NewWorker()
	labels := []string{"TLS.Dropbox", "SSH", "TLS", "DNS", "Intranet", "QUIC.YouTube", "TLS.Microsoft365", "", "NoSuchApp", "TLS.NoSuchApp"}
	check := func(when string, want map[string]string) {
		t.Helper()
		for round := range 3 {
			for _, l := range labels {
				for _, label := range []string{l, strings.Clone(l)} {
					for _, came := range []string{"", "Cloud"} {
						f := flow("10.0.20.5", "10.0.1.10", 443, label)
						f.AppCategory = came
						w.Enrich(f) // labels "" from the port: TLS
						exp := want[f.Protocol]
						if exp == "" {
							exp = came
							if exp == "" {
								exp = c.cats.CategoryOf(f.Protocol)
							}
						}
						if f.AppCategory != exp {
							t.Errorf("%s, round %d: %q (came with %q): %q, want %q", when, round, label, came, f.AppCategory, exp)
						}
					}
				}
			}
		}
	}
	check("first policy", map[string]string{"Intranet": "Collaborative", "TLS.Dropbox": "Unsanctioned"})
	writeFile(t, pol, strings.Replace(testPolicy, "TLS.Dropbox: Unsanctioned", "TLS.Dropbox: Sanctioned\n  SSH: Admin", 1))
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	check("after reload", map[string]string{"Intranet": "Collaborative", "TLS.Dropbox": "Sanctioned", "SSH": "Admin"})
}
