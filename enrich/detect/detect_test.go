package detect

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flowlens/enrich/policy"
	"flowlens/schema"
)

// lateralYAML are the pools of the tests (which pass the pools of a flow
// by hand, as the enrich chain looks them up) and the lateral movement
// rules.
const lateralYAML = `
pools:
  iot: [10.1.0.0/16]
  servers: [10.2.0.0/16, 10.0.0.53]
  staff: [10.3.0.0/16]
  lab: [10.8.0.0/16]
  eng: [10.7.0.0/16]
  guest: [10.9.0.0/16]
rules:
  - name: iot-remote-access
    from: iot
    to: servers
    categories: [RemoteAccess]
    severity: high
  - name: iot-to-internet-db
    from: iot
    to: external
    protocols: [MySQL, TLS.YouTube]
  - name: iot-no-cloud-storage      # an application part: any TLS.Dropbox, QUIC.Dropbox
    from: iot
    to: external
    protocols: [Dropbox]
  - name: guest-anything-to-servers # no application: every flow
    from: guest
    to: servers
  - name: lan-no-telnet
    from: internal
    to: [servers, iot]
    protocols: [Telnet]
    severity: critical
  - name: no-bittorrent             # pools and external: one alert per flow
    from: [iot, guest, external, iot]
    protocols: [BitTorrent]
    severity: low
`

// fullYAML turns every detection on, as a deployment would.
const fullYAML = lateralYAML + `
dns:
  allowed_resolvers: [10.0.0.53, "fd00::53"]
saas:
  staff:
    deny: [Dropbox, category:Cloud]
    allow: [Microsoft365, OneDrive]   # exceptions to the category
    severity: high
  eng:
    deny: [Dropbox]
    allow: [category:Cloud]           # allow wins over deny
  default:
    deny: ["*"]                       # an allow list
    allow: [category:Web, category:Network, category:System, category:Media, category:Collaborative]
`

// configFrom parses a policy file and returns its detection config.
func configFrom(t testing.TB, yaml string) Config {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return FromPolicy(p)
}

func lateralConfig(t testing.TB) Config { return configFrom(t, lateralYAML) }
func fullConfig(t testing.TB) Config    { return configFrom(t, fullYAML) }

func TestPolicyLateralMovement(t *testing.T) {
	h := newHarness(t, lateralConfig(t))
	ssh := fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50000, dport: 22, proto: 6, label: "SSH", cat: "RemoteAccess"}
	rdp := fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50001, dport: 3389, proto: 6, label: "RDP", cat: "RemoteAccess"}
	for range 5 {
		h.d.EvaluateInput(&Input{Flow: ssh.flow(), SrcPool: "iot", DstPool: "servers"})
		h.d.EvaluateInput(&Input{Flow: rdp.flow(), SrcPool: "iot", DstPool: "servers"})
		h.clk.Add(time.Second)
	}
	got := h.rec.take()
	if len(got) != 2 {
		t.Fatalf("alerts = %d, want 2 (SSH and RDP, repeats folded): %+v", len(got), got)
	}
	protos := map[string]bool{}
	for _, a := range got {
		if a.Kind != KindPolicy || a.Rule != "iot-remote-access" || a.Severity != SeverityHigh || a.Count != 1 ||
			a.SrcAddr != mapped("10.1.0.5") || a.DstAddr != mapped("10.2.0.10") || a.SrcPool != "iot" || a.DstPool != "servers" {
			t.Errorf("alert %+v", a)
		}
		if !strings.Contains(a.Evidence, "from 10.1.0.5 (pool iot) to 10.2.0.10:") {
			t.Errorf("evidence %q", a.Evidence)
		}
		protos[a.Protocol] = true
	}
	if !protos["SSH"] || !protos["RDP"] {
		t.Errorf("protocols %v, want SSH and RDP", protos)
	}
	// Before the window closes the sweep emits nothing.
	h.d.Sweep()
	if got := h.rec.take(); len(got) != 0 {
		t.Fatalf("sweep within the window emitted %d", len(got))
	}
	h.clk.Add(10 * time.Minute)
	h.d.Sweep()
	got = h.rec.take()
	if len(got) != 2 {
		t.Fatalf("window close emitted %d, want 2", len(got))
	}
	for _, a := range got {
		if a.Count != 4 || !a.Last.After(a.Time) {
			t.Errorf("summary %+v: want Count 4 and Last after Time", a)
		}
	}
	// A new window: emitted at once again.
	h.d.EvaluateInput(&Input{Flow: ssh.flow(), SrcPool: "iot", DstPool: "servers"})
	if got := h.rec.take(); len(got) != 1 || got[0].Count != 1 {
		t.Fatalf("next window: %+v", got)
	}
	if v := h.metric(t, MetricAlerts, "kind", "policy", "severity", "high"); v != 5 {
		t.Errorf("alerts_total{policy,high} = %v, want 5", v)
	}
	if v := h.metric(t, MetricFolded); v != 8 {
		t.Errorf("folded = %v, want 8", v)
	}
	if v := h.metric(t, MetricFlows); v != 11 {
		t.Errorf("flows = %v, want 11", v)
	}
}

func TestPolicyMatching(t *testing.T) {
	cases := []struct {
		name             string
		flow             fl
		srcPool, dstPool string
		want             []string // rules, sorted
	}{
		{"ssh from another pool", fl{src: "10.3.0.5", dst: "10.2.0.10", sport: 50000, dport: 22, proto: 6, label: "SSH", cat: "RemoteAccess"}, "staff", "servers", nil},
		{"iot https to servers", fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50000, dport: 443, proto: 6, label: "TLS", cat: "Web"}, "iot", "servers", nil},
		{"iot mysql to the internet", fl{src: "10.1.0.5", dst: "203.0.113.7", sport: 50000, dport: 3306, proto: 6, label: "MySQL", cat: "Database"}, "iot", "", []string{"iot-to-internet-db"}},
		{"iot mysql to a private host in no pool", fl{src: "10.1.0.5", dst: "192.168.9.9", sport: 50000, dport: 3306, proto: 6, label: "MySQL", cat: "Database"}, "iot", "", nil},
		{"whole label matches", fl{src: "10.1.0.5", dst: "203.0.113.7", sport: 50000, dport: 443, proto: 6, label: "TLS.YouTube", cat: "Media"}, "iot", "", []string{"iot-to-internet-db"}},
		{"whole label only", fl{src: "10.1.0.5", dst: "203.0.113.7", sport: 50000, dport: 443, proto: 6, label: "TLS.Netflix", cat: "Video"}, "iot", "", nil},
		{"application part matches", fl{src: "10.1.0.5", dst: "162.125.1.1", sport: 50000, dport: 443, proto: 17, label: "QUIC.Dropbox", cat: "Cloud"}, "iot", "", []string{"iot-no-cloud-storage"}},
		{"guest anything", fl{src: "10.9.0.5", dst: "10.2.0.10", sport: 50000, dport: 80, proto: 6, label: "HTTP", cat: "Web"}, "guest", "servers", []string{"guest-anything-to-servers"}},
		{"netflow reply oriented back", fl{src: "10.2.0.10", dst: "10.1.0.5", sport: 22, dport: 50000, proto: 6, label: "SSH", cat: "RemoteAccess", source: schema.SourceIPFIX}, "servers", "iot", []string{"iot-remote-access"}},
		{"internal client in a pool", fl{src: "10.3.0.5", dst: "10.2.0.10", sport: 50000, dport: 23, proto: 6, label: "Telnet", cat: "RemoteAccess"}, "staff", "servers", []string{"lan-no-telnet"}},
		{"internal client in no pool", fl{src: "192.168.5.5", dst: "10.1.0.9", sport: 50000, dport: 23, proto: 6, label: "Telnet", cat: "RemoteAccess"}, "", "iot", []string{"lan-no-telnet"}},
		{"internal rule and pool rule", fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50000, dport: 23, proto: 6, label: "Telnet", cat: "RemoteAccess"}, "iot", "servers", []string{"iot-remote-access", "lan-no-telnet"}},
		{"external client is not internal", fl{src: "198.51.100.7", dst: "10.2.0.10", sport: 50000, dport: 23, proto: 6, label: "Telnet", cat: "RemoteAccess"}, "", "servers", nil},
		{"pool listed twice: one alert", fl{src: "10.1.0.5", dst: "203.0.113.9", sport: 50000, dport: 6881, proto: 6, label: "BitTorrent", cat: "Download"}, "iot", "", []string{"no-bittorrent"}},
		{"external client", fl{src: "198.51.100.7", dst: "10.2.0.10", sport: 50000, dport: 6881, proto: 6, label: "BitTorrent", cat: "Download"}, "", "servers", []string{"no-bittorrent"}},
		{"private client is not external", fl{src: "192.168.5.5", dst: "203.0.113.9", sport: 50000, dport: 6881, proto: 6, label: "BitTorrent", cat: "Download"}, "", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, lateralConfig(t))
			h.d.EvaluateInput(&Input{Flow: c.flow.flow(), SrcPool: c.srcPool, DstPool: c.dstPool})
			var rules []string
			for _, a := range h.rec.take() {
				rules = append(rules, a.Rule)
				if a.SrcPool == "servers" {
					t.Errorf("reply not oriented client to server: %+v", a)
				}
			}
			slices.Sort(rules)
			if !slices.Equal(rules, c.want) {
				t.Fatalf("rules %v, want %v", rules, c.want)
			}
		})
	}
	// The severities are the rules'.
	h := newHarness(t, lateralConfig(t))
	telnet := fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50000, dport: 23, proto: 6, label: "Telnet", cat: "RemoteAccess"}
	h.d.EvaluateInput(&Input{Flow: telnet.flow(), SrcPool: "iot", DstPool: "servers"})
	for _, a := range h.rec.take() {
		if want := map[string]Severity{"iot-remote-access": SeverityHigh, "lan-no-telnet": SeverityCritical}[a.Rule]; a.Severity != want {
			t.Errorf("%s: severity %v, want %v", a.Rule, a.Severity, want)
		}
	}
}

func TestNormalTrafficQuiet(t *testing.T) {
	h := newHarness(t, fullConfig(t))
	r := rand.New(rand.NewPCG(1, 2))
	const client, resolver = "10.3.0.20", "10.0.0.53"
	for i := range 2000 {
		var f fl
		switch i % 8 {
		case 0:
			f = fl{src: client, dst: "142.250.74.100", sport: uint16(40000 + i%20000), dport: 443, proto: 6, label: "TLS.Google", cat: "Web", sni: "www.google.com", packets: 40}
		case 1:
			f = fl{src: client, dst: "162.159.200.1", sport: 123, dport: 123, proto: 17, label: "NTP", cat: "System"}
		case 2:
			f = dnsFlow(client, resolver, telemetryNames[r.IntN(len(telemetryNames))])
		case 3:
			f = dnsFlow(client, resolver, akamaiName(r))
		case 4:
			f = dnsFlow(client, resolver, googlevideoName(r))
		case 5:
			f = dnsFlow(client, resolver, safeframeName(r))
		case 6:
			f = dnsFlow(client, resolver, "www."+ordinaryDomains[r.IntN(len(ordinaryDomains))])
		case 7:
			f = fl{src: client, dst: "52.97.1.1", sport: uint16(40000 + i%20000), dport: 443, proto: 6, label: "TLS.Microsoft365", cat: "Collaborative", packets: 30}
		}
		in := Input{Flow: f.flow(), SrcPool: "staff"}
		if f.dport == 53 {
			in.DstPool = "servers"
			in.DNSQType = []uint16{QTypeA, QTypeAAAA, QTypeHTTPS}[i%3]
			in.DNSRCodeKnown = true
		}
		h.d.EvaluateInput(&in)
		h.clk.Add(250 * time.Millisecond) // 2000 flows in 8m20s: one DNS window
	}
	h.d.Flush()
	if got := h.rec.take(); len(got) != 0 {
		for _, a := range got {
			t.Errorf("unexpected %s alert %s: %s", a.Kind, a.Rule, a.Evidence)
		}
	}
}

func TestDNSTunnel(t *testing.T) {
	type query struct {
		name    string
		qtype   uint16
		packets uint64
	}
	cases := []struct {
		name  string
		gen   func(r *rand.Rand, i int) query
		n     int
		every time.Duration
		want  bool
	}{
		{"iodine NULL/TXT", func(r *rand.Rand, i int) query {
			return query{iodineName(r, "tunnel-example.net"), []uint16{QTypeNULL, QTypeTXT}[i%2], 2}
		}, 400, 500 * time.Millisecond, true},
		{"iodine, query types unknown", func(r *rand.Rand, i int) query {
			return query{iodineName(r, "tunnel-example.net"), 0, 2}
		}, 400, 500 * time.Millisecond, true},
		{"dnscat2 TXT/CNAME/MX", func(r *rand.Rand, i int) query {
			return query{dnscat2Name(r, "c2-example.com"), []uint16{QTypeTXT, QTypeCNAME, QTypeMX}[i%3], 2}
		}, 300, time.Second, true},
		{"tunnel on one socket", func(r *rand.Rand, i int) query {
			return query{iodineName(r, "tunnel-example.net"), QTypeNULL, 3000}
		}, 1, time.Second, true},
		{"too few queries", func(r *rand.Rand, i int) query {
			return query{iodineName(r, "tunnel-example.net"), QTypeNULL, 2}
		}, 40, time.Second, false},
		{"burst of many domains", func(r *rand.Rand, i int) query {
			return query{"www." + randString(r, "abcdefghijklmnopqrstuvwxyz", 4+r.IntN(8)) + ".com", QTypeA, 2}
		}, 2000, 50 * time.Millisecond, false},
		{"akamaiedge", func(r *rand.Rand, i int) query { return query{akamaiName(r), QTypeA, 2} }, 1000, 300 * time.Millisecond, false},
		{"googlevideo", func(r *rand.Rand, i int) query { return query{googlevideoName(r), QTypeAAAA, 2} }, 1000, 300 * time.Millisecond, false},
		{"hashed ad frames", func(r *rand.Rand, i int) query { return query{safeframeName(r), QTypeA, 2} }, 1000, 300 * time.Millisecond, false},
		{"telemetry", func(r *rand.Rand, i int) query {
			return query{telemetryNames[r.IntN(len(telemetryNames))], QTypeA, 2}
		}, 2000, 200 * time.Millisecond, false},
		{"anti-virus lookups are ignored", func(r *rand.Rand, i int) query {
			return query{dnscat2Name(r, "sophosxl.net"), QTypeTXT, 2}
		}, 300, time.Second, false},
		{"DGA-like NXDOMAIN flood", func(r *rand.Rand, i int) query {
			return query{randString(r, base32Alphabet, 30) + "." + randString(r, base32Alphabet, 30) + ".victim-example.org", QTypeA, 2}
		}, 300, time.Second, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig())
			r := rand.New(rand.NewPCG(3, 4))
			for i := range c.n {
				q := c.gen(r, i)
				f := dnsFlow("10.3.0.21", "10.0.0.53", q.name)
				f.packets = q.packets
				in := Input{Flow: f.flow(), SrcPool: "staff", DstPool: "servers", DNSQType: q.qtype,
					DNSRCode: RCodeNXDomain, DNSRCodeKnown: strings.Contains(c.name, "NXDOMAIN")}
				h.d.EvaluateInput(&in)
				h.clk.Add(c.every)
			}
			got := h.rec.take()
			if !c.want {
				for _, a := range got {
					t.Errorf("unexpected alert: %s", a.Evidence)
				}
				return
			}
			if len(got) != 1 || got[0].Kind != KindDNSTunnel || got[0].Severity != SeverityHigh {
				t.Fatalf("want one dns_tunnel alert, got %+v", got)
			}
			t.Logf("evidence: %s", got[0].Evidence)
			if got[0].SrcAddr != mapped("10.3.0.21") || !strings.Contains(got[0].Evidence, got[0].Rule) {
				t.Errorf("alert %+v", got[0])
			}
			// The later flows of the window are folded into the count.
			h.d.Flush()
			if more := h.rec.take(); c.n > 150 && (len(more) != 1 || more[0].Count == 0) {
				t.Errorf("flush: %+v", more)
			}
		})
	}
}

func TestDNSTunnelWindowAndIgnoredClients(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DNS.Tunnel.IgnoreClients = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	h := newHarness(t, cfg)
	r := rand.New(rand.NewPCG(5, 6))
	// 45 two-packet flows, 90 queries, per window: every window stays
	// below the gate.
	for i := range 300 {
		f := dnsFlow("10.3.0.22", "10.0.0.53", iodineName(r, "tunnel-example.net"))
		h.d.EvaluateInput(&Input{Flow: f.flow(), DNSQType: QTypeNULL})
		g := dnsFlow("10.0.0.9", "8.8.8.8", iodineName(r, "tunnel-example.net")) // a resolver: ignored
		h.d.EvaluateInput(&Input{Flow: g.flow(), DNSQType: QTypeNULL})
		h.clk.Add(10 * time.Minute / 45)
		if i%50 == 0 {
			h.d.Sweep()
		}
	}
	if got := h.rec.take(); len(got) != 0 {
		t.Fatalf("want none, got %d: %s", len(got), got[0].Evidence)
	}
	if s := h.d.Stats(); s.DNSKeys != 1 {
		t.Errorf("dns keys %d, want 1 (expired windows swept)", s.DNSKeys)
	}
}

func TestResolverAllowList(t *testing.T) {
	cases := []struct {
		name  string
		flow  fl
		allow bool // the allow-list is set
		want  bool
	}{
		{"allowed resolver", dnsFlow("10.3.0.5", "10.0.0.53", "www.example.org"), true, false},
		{"public resolver", dnsFlow("10.3.0.5", "8.8.8.8", "www.example.org"), true, true},
		{"DoT", fl{src: "10.3.0.5", dst: "1.1.1.1", sport: 50000, dport: 853, proto: 6, label: "DoH_DoT", cat: "Network"}, true, true},
		{"DoH to Cloudflare (TLS.DoH_DoT)", fl{src: "10.3.0.5", dst: "104.16.248.249", sport: 50000, dport: 443, proto: 6, label: "TLS.DoH_DoT", cat: "Network", sni: "mozilla.cloudflare-dns.com"}, true, true},
		{"DoH over QUIC", fl{src: "10.3.0.5", dst: "8.8.8.8", sport: 50000, dport: 443, proto: 17, label: "QUIC.DoH_DoT", cat: "Network"}, true, true},
		{"TLS to an ordinary site", fl{src: "10.3.0.5", dst: "142.250.74.36", sport: 50000, dport: 443, proto: 6, label: "TLS.Google", cat: "Web"}, true, false},
		{"DNS.Google label", fl{src: "10.3.0.5", dst: "8.8.4.4", sport: 50000, dport: 53, proto: 17, label: "DNS.Google", cat: "Network"}, true, true},
		{"the resolver recursing", dnsFlow("10.0.0.53", "198.41.0.4", "www.example.org"), true, false},
		{"IPv6 allowed", dnsFlow("fd00::5", "fd00::53", "www.example.org"), true, false},
		{"mdns is not DNS", fl{src: "10.3.0.5", dst: "224.0.0.251", sport: 5353, dport: 5353, proto: 17, label: "MDNS", cat: "Network"}, true, false},
		{"empty allow-list", dnsFlow("10.3.0.5", "8.8.8.8", "www.example.org"), false, false},
		{"reply of a router", fl{src: "9.9.9.9", dst: "10.3.0.5", sport: 53, dport: 51000, proto: 17, label: "DNS", cat: "Network", source: schema.SourceNetFlowV9}, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if c.allow {
				cfg.DNS.AllowedResolvers = fullConfig(t).DNS.AllowedResolvers
			}
			h := newHarness(t, cfg)
			h.d.EvaluateInput(&Input{Flow: c.flow.flow(), SrcPool: "", DstPool: ""})
			got := h.rec.take()
			if !c.want {
				if len(got) != 0 {
					t.Fatalf("want none, got %+v", got[0])
				}
				return
			}
			if len(got) != 1 || got[0].Kind != KindDNSResolver || got[0].Rule != RuleAllowedResolvers {
				t.Fatalf("want one dns_resolver alert, got %+v", got)
			}
			if got[0].SrcAddr != mapped("10.3.0.5") {
				t.Errorf("client %v, want 10.3.0.5", got[0].SrcAddr)
			}
		})
	}
}

func TestSaaS(t *testing.T) {
	cases := []struct {
		name, pool, label, cat string
		dst                    string
		want                   string // rule, "" for none
		sev                    Severity
	}{
		{"dropbox denied", "staff", "TLS.Dropbox", "Cloud", "162.125.1.1", "staff: TLS.Dropbox", SeverityHigh},
		{"dropbox over quic", "staff", "QUIC.Dropbox", "Cloud", "162.125.1.1", "staff: QUIC.Dropbox", SeverityHigh},
		{"microsoft365 allowed", "staff", "TLS.Microsoft365", "Collaborative", "52.97.1.1", "", 0},
		{"cloud category denied", "staff", "TLS.GoogleDrive", "Cloud", "142.250.1.1", "staff: TLS.GoogleDrive", SeverityHigh},
		{"application allow overrides category deny", "staff", "TLS.OneDrive", "Cloud", "13.107.1.1", "", 0},
		{"other category", "staff", "TLS.Netflix", "Video", "45.57.1.1", "", 0},
		{"internal server", "staff", "TLS.Dropbox", "Cloud", "10.2.0.9", "", 0},
		{"category allow overrides application deny", "eng", "TLS.Dropbox", "Cloud", "162.125.1.1", "", 0},
		{"application deny", "eng", "TLS.Dropbox", "Storage", "162.125.1.1", "eng: TLS.Dropbox", SeverityMedium},
		{"default pool allow-list", "", "TLS.Google", "Web", "142.250.1.1", "", 0},
		{"default pool not allowed", "", "BitTorrent", "Download", "203.0.113.9", "default: BitTorrent", SeverityMedium},
		{"unlisted pool takes default", "lab", "BitTorrent", "Download", "203.0.113.9", "default: BitTorrent", SeverityMedium},
		{"unknown", "", "Unknown", "", "203.0.113.9", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, fullConfig(t))
			f := fl{src: "10.3.0.30", dst: c.dst, sport: 50000, dport: 443, proto: 6, label: c.label, cat: c.cat, sni: "www.dropbox.com"}
			h.d.EvaluateInput(&Input{Flow: f.flow(), SrcPool: c.pool, DstPool: ""})
			got := h.rec.take()
			switch {
			case c.want == "" && len(got) != 0:
				t.Fatalf("want none, got %+v", got[0])
			case c.want != "" && (len(got) != 1 || got[0].Kind != KindSaaS || got[0].Rule != c.want || got[0].Severity != c.sev):
				t.Fatalf("want saas %s %v, got %+v", c.want, c.sev, got)
			case c.want != "" && !strings.Contains(got[0].Evidence, "www.dropbox.com: unsanctioned in the saas list"):
				t.Errorf("evidence %q", got[0].Evidence)
			}
		})
	}
}

func TestLearn(t *testing.T) {
	h := newHarness(t, configFrom(t, `
pools: {iot: [10.1.0.0/16], servers: [10.2.0.0/16], staff: [10.3.0.0/16]}
learn:
  enabled: true
  period: 1h
  pools: [iot]
  max_edges: 1000
  severity: low
`))
	h.start(t)
	mqtt := fl{src: "10.1.0.5", dst: "10.2.0.11", sport: 50000, dport: 1883, proto: 6, label: "MQTT", cat: "IoT-Scada"}
	https := fl{src: "10.1.0.6", dst: "10.2.0.10", sport: 50000, dport: 443, proto: 6, label: "TLS", cat: "Web"}
	ssh := fl{src: "10.1.0.5", dst: "10.2.0.12", sport: 50000, dport: 22, proto: 6, label: "SSH", cat: "RemoteAccess"}
	staff := fl{src: "10.3.0.5", dst: "10.2.0.13", sport: 50000, dport: 22, proto: 6, label: "SSH", cat: "RemoteAccess"}
	for range 3 {
		h.d.EvaluateInput(&Input{Flow: mqtt.flow(), SrcPool: "iot", DstPool: "servers"})
		h.d.EvaluateInput(&Input{Flow: https.flow(), SrcPool: "iot", DstPool: "servers"})
		h.clk.Add(time.Minute)
	}
	if got := h.rec.take(); len(got) != 0 {
		t.Fatalf("alerts while learning: %+v", got)
	}
	h.clk.Add(time.Hour)
	// Learnt edges stay quiet, from any client of the pool and source port.
	h.d.EvaluateInput(&Input{Flow: mqtt.flow(), SrcPool: "iot", DstPool: "servers"})
	other := https
	other.src, other.sport = "10.1.0.99", 61000
	h.d.EvaluateInput(&Input{Flow: other.flow(), SrcPool: "iot", DstPool: "servers"})
	if got := h.rec.take(); len(got) != 0 {
		t.Fatalf("learnt edges alerted: %+v", got)
	}
	// A new edge alerts once, then is learnt: no repeat, nothing folded.
	for range 3 {
		h.d.EvaluateInput(&Input{Flow: ssh.flow(), SrcPool: "iot", DstPool: "servers"})
		h.d.EvaluateInput(&Input{Flow: staff.flow(), SrcPool: "staff", DstPool: "servers"}) // pool not learnt
	}
	got := h.rec.take()
	if len(got) != 1 || got[0].Kind != KindNewEdge || got[0].Severity != SeverityLow || got[0].DstAddr != mapped("10.2.0.12") {
		t.Fatalf("want one new_edge alert, got %+v", got)
	}
	t.Logf("evidence: %s", got[0].Evidence)
	h.clk.Add(11 * time.Minute)
	h.d.Sweep()
	if got := h.rec.take(); len(got) != 0 {
		t.Fatalf("repeats of a learnt edge: %+v", got)
	}
	if s := h.d.Stats(); s.Edges != 3 {
		t.Errorf("edges %d, want 3", s.Edges)
	}
}

func TestCaps(t *testing.T) {
	t.Run("learn edges", func(t *testing.T) {
		cfg := configFrom(t, "learn: {enabled: true, period: 1h, max_edges: 4}")
		cfg.Shards = 1
		h := newHarness(t, cfg)
		h.start(t)
		for i := range 10 {
			f := fl{src: "10.1.0.5", dst: "10.2.0.10", sport: 50000, dport: uint16(8000 + i), proto: 6, label: "HTTP"}
			h.d.EvaluateInput(&Input{Flow: f.flow(), SrcPool: "iot", DstPool: "servers"})
		}
		if s := h.d.Stats(); s.Edges != 4 || s.EdgesDropped != 6 {
			t.Errorf("stats %+v, want 4 edges and 6 dropped", s)
		}
		if v := h.metric(t, MetricDropped, "reason", ReasonLearnEdgesFull); v != 6 {
			t.Errorf("dropped{learn_edges_full} = %v, want 6", v)
		}
	})
	t.Run("dns keys", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Shards = 1
		cfg.DNS.Tunnel.MaxKeys = 8
		h := newHarness(t, cfg)
		for i := range 20 {
			h.d.EvaluateInput(&Input{Flow: dnsFlow("10.3.0.5", "10.0.0.53", "www."+randString(rand.New(rand.NewPCG(uint64(i), 0)), "abcdefgh", 8)+".com").flow(), SrcPool: "", DstPool: ""})
			h.clk.Add(time.Second)
		}
		if s := h.d.Stats(); s.DNSKeys != 8 || s.DNSKeysEvicted != 12 {
			t.Errorf("stats %+v, want 8 keys and 12 evicted", s)
		}
		if v := h.metric(t, MetricDropped, "reason", ReasonDNSKeysEvicted); v != 12 {
			t.Errorf("dropped{dns_keys_evicted} = %v, want 12", v)
		}
	})
	t.Run("dedup", func(t *testing.T) {
		cfg := lateralConfig(t)
		cfg.Shards = 1
		cfg.MaxDedup = 4
		h := newHarness(t, cfg)
		for i := range 10 {
			f := fl{src: "10.1.0.5", dst: "10.2.0." + string(rune('0'+i)), sport: 50000, dport: 22, proto: 6, label: "SSH", cat: "RemoteAccess"}
			h.d.EvaluateInput(&Input{Flow: f.flow(), SrcPool: "iot", DstPool: "servers"})
			h.d.EvaluateInput(&Input{Flow: f.flow(), SrcPool: "iot", DstPool: "servers"}) // one repeat each
		}
		got := h.rec.take()
		// 10 first alerts, 6 summaries of the windows closed for room.
		if len(got) != 16 {
			t.Errorf("alerts %d, want 16", len(got))
		}
		if s := h.d.Stats(); s.DedupEntries != 4 || s.DedupEvicted != 6 {
			t.Errorf("stats %+v, want 4 entries and 6 evicted", s)
		}
		h.d.Flush()
		var total uint64
		for _, a := range append(got, h.rec.take()...) {
			total += a.Count
		}
		if total != 20 {
			t.Errorf("sum of counts %d, want 20 flows", total)
		}
	})
}

func TestValidate(t *testing.T) {
	full := fullConfig(t)
	ab := func(name string) policy.Rule {
		return policy.Rule{Name: name, From: policy.Selector{Pools: []string{"a"}}, To: policy.Selector{Pools: []string{"b"}}}
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error, "" for valid
	}{
		{"default", func(*Config) {}, ""},
		{"full", func(c *Config) { *c = full }, ""},
		{"rule without name", func(c *Config) { c.Rules = []policy.Rule{ab("")} }, "rules[0].name"},
		{"rule twice", func(c *Config) { c.Rules = []policy.Rule{ab("x"), ab("x")} }, "used twice"},
		{"rule matching every flow", func(c *Config) {
			c.Rules = []policy.Rule{{Name: "x", From: policy.Selector{Any: true}, To: policy.Selector{Any: true}}}
		}, "matches every flow"},
		{"bad severity", func(c *Config) { r := ab("x"); r.Severity = 9; c.Rules = []policy.Rule{r} }, "severity"},
		{"bad saas severity", func(c *Config) {
			c.SaaS = policy.SaaS{Pools: map[string]*policy.SaaSList{"a": {Severity: 7}}}
		}, `saas["a"].severity`},
		{"bad min severity", func(c *Config) { c.MinSeverity = 6 }, "min_severity"},
		{"learn without period", func(c *Config) { c.Learn.Enabled, c.Learn.Period = true, 0 }, "learn.period"},
		{"bad window", func(c *Config) { c.DNS.Tunnel.Window = 0 }, "dns.tunnel.window"},
		{"min signals", func(c *Config) { c.DNS.Tunnel.MinSignals = 9 }, "min_signals"},
		{"ratio", func(c *Config) { c.DNS.Tunnel.NXDomainRatio = 2 }, "nxdomain_ratio"},
		{"uppercase ignore", func(c *Config) { c.DNS.Tunnel.IgnoreDomains = []string{"Example.com"} }, "ignore_domains"},
		{"shards", func(c *Config) { c.Shards = 3 }, "shards"},
		{"dedup cap", func(c *Config) { c.MaxDedup = 0 }, "max_dedup"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mutate(&cfg)
			err := cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
			if _, err := New(cfg, Deps{Sink: &recorder{}}); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestSeverityText(t *testing.T) {
	for s := SeverityInfo; s <= SeverityCritical; s++ {
		b, _ := s.MarshalText()
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%v: %v %v", s, back, err)
		}
	}
	if _, err := ParseSeverity("urgent"); err == nil {
		t.Error("urgent accepted")
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	cfg := fullConfig(t)
	cfg.Learn = Learn{Enabled: true, Period: time.Millisecond, MaxEdges: 100}
	cfg.MaxDedup = 64
	cfg.DNS.Tunnel.MaxKeys = 64
	h := newHarness(t, cfg)
	h.start(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 3000 {
				var f fl
				switch i % 4 {
				case 0:
					f = fl{src: "10.1.0." + string(rune('1'+w)), dst: "10.2.0.10", sport: 50000, dport: uint16(20 + i%50), proto: 6, label: "SSH", cat: "RemoteAccess"}
				case 1:
					f = dnsFlow("10.3.0."+string(rune('1'+w)), "8.8.8.8", iodineName(r, "tunnel-example.net"))
				case 2:
					f = fl{src: "10.3.0.9", dst: "162.125.1.1", sport: 50000, dport: 443, proto: 6, label: "TLS.Dropbox", cat: "Cloud"}
				default:
					f = dnsFlow("10.3.0.9", "10.0.0.53", "www."+ordinaryDomains[i%len(ordinaryDomains)])
				}
				h.d.EvaluateInput(&Input{Flow: f.flow(), SrcPool: []string{"iot", "staff", "staff", ""}[i%4], DstPool: []string{"servers", "", "", "servers"}[i%4], DNSQType: QTypeTXT})
				if i%500 == 0 {
					h.d.Sweep()
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			h.clk.Add(time.Minute)
			h.d.Sweep()
			h.d.Stats()
		}
	})
	wg.Wait()
	h.d.Stop()
	k := h.rec.kinds()
	for _, want := range []string{KindPolicy, KindDNSTunnel, KindDNSResolver, KindSaaS} {
		if k[want] == 0 {
			t.Errorf("no %s alert: %v", want, k)
		}
	}
	var total uint64
	for _, a := range h.rec.take() {
		total += a.Count
	}
	if total == 0 {
		t.Error("no counts")
	}
}
