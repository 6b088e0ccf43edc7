package detect

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"flowlens/enrich/policy"
)

func TestFromPolicyNil(t *testing.T) {
	if got := FromPolicy(nil); !reflect.DeepEqual(got, DefaultConfig()) {
		t.Errorf("FromPolicy(nil) = %+v\nwant DefaultConfig() %+v", got, DefaultConfig())
	}
}

// The policy file's defaults are the detections': the DNS thresholds are
// detect's tuned ones, and the rest differs only where the policy file
// documents its own default.
func TestFromPolicyEmpty(t *testing.T) {
	got := configFrom(t, "")
	def := DefaultConfig()

	tunnel := got.DNS.Tunnel
	tunnel.Severity = def.DNS.Tunnel.Severity
	if !reflect.DeepEqual(tunnel, def.DNS.Tunnel) {
		t.Errorf("tunnel of an empty policy:\n%+v\nwant DefaultConfig's\n%+v", got.DNS.Tunnel, def.DNS.Tunnel)
	}

	want := DefaultConfig()
	want.Learn.MaxEdges = 100000              // learn max_edges
	want.Learn.Severity = SeverityMedium      // learn severity
	want.DNS.Tunnel.Severity = SeverityMedium // dns severity, for both DNS detections
	want.SaaS = policy.SaaS{Pools: map[string]*policy.SaaSList{}}
	want.MinSeverity = SeverityInfo
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromPolicy(empty) =\n%+v\nwant\n%+v", got, want)
	}
}

func TestFromPolicy(t *testing.T) {
	cfg := configFrom(t, `
pools: {iot: [10.1.0.0/16], cameras: [10.4.0.0/16], servers: [10.2.0.0/16]}
rules:
  - {name: a, from: iot, to: servers, protocols: [SSH], severity: critical}
  - {name: b, to: external, categories: [Cloud]}
learn: {enabled: true, period: 7d, pools: [iot, cameras], max_edges: 5000, severity: high}
dns:
  allowed_resolvers: [10.0.0.53, "2001:db8::53"]
  window: 5m
  unique_subdomains: 1
  query_bytes: 2
  label_length: 3
  entropy: 4.5
  txt_null_share: 0.25
  nxdomain_ratio: 0.75
  min_queries: 7
  severity: low
saas:
  default: {deny: [Dropbox], severity: info}
  iot: {deny: ["*"], allow: [category:IoT-Scada]}
alerts: {dedup_window: 1h, min_severity: low}
`)
	if len(cfg.Rules) != 2 || cfg.Rules[0].Name != "a" || cfg.Rules[0].Severity != policy.SeverityCritical || !cfg.Rules[1].To.External {
		t.Errorf("rules %+v", cfg.Rules)
	}
	if want := (Learn{Enabled: true, Period: 7 * 24 * time.Hour, Pools: []string{"iot", "cameras"}, MaxEdges: 5000, Severity: SeverityHigh}); !reflect.DeepEqual(cfg.Learn, want) {
		t.Errorf("learn %+v, want %+v", cfg.Learn, want)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.53/32"), netip.MustParsePrefix("2001:db8::53/128")}; !slices.Equal(cfg.DNS.AllowedResolvers, want) ||
		cfg.DNS.ResolverSeverity != SeverityLow {
		t.Errorf("resolvers %v %v", cfg.DNS.AllowedResolvers, cfg.DNS.ResolverSeverity)
	}
	want := DefaultConfig().DNS.Tunnel
	want.Window, want.UniqueSubdomains, want.QueryBytes, want.MaxLabelLen, want.Entropy = 5*time.Minute, 1, 2, 3, 4.5
	want.TunnelQTypeRatio, want.NXDomainRatio, want.MinQueries, want.Severity = 0.25, 0.75, 7, SeverityLow
	if !reflect.DeepEqual(cfg.DNS.Tunnel, want) {
		t.Errorf("tunnel\n%+v\nwant\n%+v", cfg.DNS.Tunnel, want)
	}
	if cfg.SaaS.Default == nil || cfg.SaaS.For("iot") == nil || !cfg.SaaS.For("iot").Deny.All {
		t.Errorf("saas %+v", cfg.SaaS)
	}
	if cfg.DedupWindow != time.Hour || cfg.MinSeverity != SeverityLow {
		t.Errorf("dedup %v, min severity %v", cfg.DedupWindow, cfg.MinSeverity)
	}
	if _, err := New(cfg, Deps{Sink: &recorder{}}); err != nil {
		t.Fatal(err)
	}
	if s := severityOf(policy.SeverityCritical); s != SeverityCritical || severityOf(policy.SeverityInfo) != SeverityInfo {
		t.Errorf("severityOf: %v", s)
	}
}

// The commented example of the policy package makes a valid config.
func TestFromPolicyExample(t *testing.T) {
	p, err := policy.Load("../policy/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := FromPolicy(p)
	if len(cfg.Rules) == 0 || cfg.SaaS.Default == nil {
		t.Fatalf("example: %+v", cfg)
	}
	if _, err := New(cfg, Deps{Sink: &recorder{}}); err != nil {
		t.Fatal(err)
	}
}

// A threshold of 0 is off: never a signal. MinSignals then needs every
// threshold still on when fewer are, and with none on there is no check.
func TestDNSThresholdZeroIsOff(t *testing.T) {
	// The seven thresholds of the file off, and no gate: only detect's
	// mean label length and packets per flow are left, both needed.
	cfg := configFrom(t, `
dns: {unique_subdomains: 0, query_bytes: 0, label_length: 0, entropy: 0, txt_null_share: 0, nxdomain_ratio: 0, min_queries: 0}
`)
	h := newHarness(t, cfg)
	r := rand.New(rand.NewPCG(8, 8))
	// Were 0 "always", an ordinary lookup would light six signals.
	in := Input{Flow: dnsFlow("10.3.0.5", "10.0.0.53", "www.example.org").flow(), DNSQType: QTypeTXT,
		DNSRCode: RCodeNXDomain, DNSRCodeKnown: true}
	h.d.EvaluateInput(&in)
	// Long labels but one query per flow: one signal of the two.
	for range 50 {
		h.d.EvaluateInput(&Input{Flow: dnsFlow("10.3.0.6", "10.0.0.53", iodineName(r, "tunnel-example.net")).flow()})
	}
	if got := h.rec.take(); len(got) != 0 {
		t.Fatalf("want none, got %s", got[0].Evidence)
	}
	// A tunnel on one socket: both.
	f := dnsFlow("10.3.0.7", "10.0.0.53", iodineName(r, "tunnel-example.net"))
	f.packets = 3000
	h.d.EvaluateInput(&Input{Flow: f.flow(), SrcPool: "", DstPool: ""})
	got := h.rec.take()
	if len(got) != 1 || got[0].Kind != KindDNSTunnel || got[0].Severity != SeverityMedium ||
		!strings.HasSuffix(got[0].Evidence, "signals: mean label length, packets per flow") {
		t.Fatalf("want one dns_tunnel alert on two signals, got %+v", got)
	}

	// Every threshold off: no check, no state.
	cfg.DNS.Tunnel.MeanLabelLen, cfg.DNS.Tunnel.PacketsPerFlow = 0, 0
	h = newHarness(t, cfg)
	h.d.EvaluateInput(&Input{Flow: f.flow(), SrcPool: "", DstPool: ""})
	if got := h.rec.take(); len(got) != 0 || h.d.Stats().DNSKeys != 0 {
		t.Fatalf("every threshold off: %d alerts, %d keys", len(got), h.d.Stats().DNSKeys)
	}
}

func TestMinSeverity(t *testing.T) {
	cfg := configFrom(t, fullYAML+`
learn: {enabled: true, period: 1h, severity: medium}
alerts: {min_severity: high}
`)
	h := newHarness(t, cfg)
	h.start(t)
	if h.d.learn != nil || h.d.tunnel != nil || len(h.d.resolvers) != 0 {
		t.Error("detections whose alerts are all below min_severity still run")
	}
	h.clk.Add(2 * time.Hour)
	flows := []struct {
		f                fl
		srcPool, dstPool string
		want             string // rule, "" for none
	}{
		{fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50000, dport: 22, proto: 6, label: "SSH", cat: "RemoteAccess"}, "iot", "servers", "iot-remote-access"},
		{fl{src: "10.9.0.5", dst: "10.2.0.10", sport: 50000, dport: 80, proto: 6, label: "HTTP", cat: "Web"}, "guest", "servers", ""},       // medium rule
		{fl{src: "10.1.0.5", dst: "203.0.113.9", sport: 50000, dport: 6881, proto: 6, label: "BitTorrent", cat: "Download"}, "iot", "", ""}, // low rule; iot has no saas list
		{dnsFlow("10.3.0.5", "8.8.8.8", "www.example.org"), "staff", "", ""},                                                                // medium resolver check
		{fl{src: "10.3.0.5", dst: "162.125.1.1", sport: 50000, dport: 443, proto: 6, label: "TLS.Dropbox", cat: "Cloud"}, "staff", "", "staff: TLS.Dropbox"},
		{fl{src: "10.8.0.5", dst: "203.0.113.9", sport: 50000, dport: 6881, proto: 6, label: "BitTorrent", cat: "Download"}, "lab", "", ""}, // medium default list
	}
	var want, got []string
	for _, c := range flows {
		h.d.EvaluateInput(&Input{Flow: c.f.flow(), SrcPool: c.srcPool, DstPool: c.dstPool})
		if c.want != "" {
			want = append(want, c.want)
		}
	}
	for _, a := range h.rec.take() {
		got = append(got, a.Rule)
		if a.Severity < SeverityHigh {
			t.Errorf("alert below min_severity: %+v", a)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules %v, want %v", got, want)
	}
}
