package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return p
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestExample(t *testing.T) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Pools(), []string{"cameras", "dns-servers", "guests", "iot", "lan", "servers", "staff"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Pools() = %v, want %v", got, want)
	}
	for _, c := range []struct {
		addr string
		vlan uint16
		mac  uint64
		pool string // PoolFor
		glob string // Pool
	}{
		{"10.0.20.7", 0, 0, "iot", "iot"},
		{"10.0.1.53", 0, 0, "dns-servers", "dns-servers"},
		{"10.0.1.54", 0, 0, "servers", "servers"},
		{"10.9.9.9", 0, 0, "lan", "lan"},
		{"::ffff:10.0.20.1", 0, 0, "iot", "iot"},
		{"2001:db8::1", 0, 0, "servers", "servers"},
		{"2001:db8:1::1", 0, 0, "", ""},
		{"fd12::1", 0, 0, "lan", "lan"},
		{"8.8.8.8", 0, 0, "", ""},
		{"10.0.30.4", 0, 0, "lan", "lan"},      // cameras' prefix is limited to VLAN 30
		{"10.0.30.4", 30, 0, "cameras", "lan"}, // on VLAN 30
		{"10.0.31.4", 30, 0, "lan", "lan"},     // VLAN 30, not the cameras' prefix
		{"10.0.20.9", 99, 0, "guests", "iot"},  // VLAN-wide pool beats global prefixes
		{"2001:db8::9", 99, 0, "guests", "servers"},
		{"10.0.20.9", 0, 0xaabbccddeeff, "cameras", "iot"}, // MAC first
		{"10.0.20.9", 0, 0xaabbccddeefe, "iot", "iot"},
	} {
		if got := p.PoolFor(addr(c.addr), c.vlan, c.mac); got != c.pool {
			t.Errorf("PoolFor(%s, %d, %x) = %q, want %q", c.addr, c.vlan, c.mac, got, c.pool)
		}
		if got := p.Pool(addr(c.addr)); got != c.glob {
			t.Errorf("Pool(%s) = %q, want %q", c.addr, got, c.glob)
		}
	}
	// 3 + 2 + 1 + 1 + 1 global, 1 on VLAN 30, 2 (v4 and v6 /0) on VLAN 99.
	if got := p.NumPrefixes(); got != 11 {
		t.Errorf("NumPrefixes() = %d, want 11", got)
	}
	if len(p.Rules) != 4 {
		t.Fatalf("%d rules, want 4", len(p.Rules))
	}
	r := p.Rules[0]
	want := Rule{Name: "iot-no-remote-access", Description: "IoT devices are never administered over the LAN", Line: 33,
		From: Selector{Pools: []string{"iot"}}, To: Selector{Pools: []string{"servers"}},
		Apps:     AppMatch{Names: []string{"SSH", "RDP", "VNC", "Telnet"}, Categories: []string{"RemoteAccess"}},
		Severity: SeverityHigh}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("rule 0 = %+v\nwant %+v", r, want)
	}
	if !r.Matches("iot", addr("10.0.20.1"), "servers", addr("10.0.1.1"), "SSH", "RemoteAccess") ||
		!r.Matches("iot", addr("10.0.20.1"), "servers", addr("10.0.1.1"), "AnyDesk", "RemoteAccess") ||
		r.Matches("iot", addr("10.0.20.1"), "servers", addr("10.0.1.1"), "HTTP", "Web") ||
		r.Matches("staff", addr("10.0.10.1"), "servers", addr("10.0.1.1"), "SSH", "RemoteAccess") {
		t.Error("rule 0 matches wrongly")
	}
	cam := p.Rules[1]
	if !cam.To.External || !cam.Apps.Empty() || !cam.Matches("cameras", addr("10.0.30.1"), "", addr("8.8.8.8"), "TLS", "Web") ||
		cam.Matches("cameras", addr("10.0.30.1"), "", addr("192.168.7.7"), "TLS", "Web") {
		t.Errorf("rule 1 = %+v", cam)
	}
	if tel := p.Rules[3]; !tel.From.Any || !tel.To.Any || tel.Severity != SeverityCritical {
		t.Errorf("rule 3 = %+v", tel)
	}
	wantLearn := Learn{Enabled: false, Period: 7 * 24 * time.Hour, Pools: []string{"iot", "cameras"}, MaxEdges: 100000, Severity: SeverityMedium}
	if !reflect.DeepEqual(p.Learn, wantLearn) {
		t.Errorf("Learn = %+v", p.Learn)
	}
	wantDNS := DNS{
		AllowedResolvers: []netip.Prefix{netip.MustParsePrefix("10.0.1.53/32"), netip.MustParsePrefix("1.1.1.1/32"), netip.MustParsePrefix("2606:4700:4700::1111/128")},
		Window:           10 * time.Minute, UniqueSubdomains: 100, QueryBytes: 10000, LabelLength: 48, Entropy: 3.5,
		TXTNullShare: 0.5, NXDomainRatio: 0.5, MinQueries: 100, Severity: SeverityMedium,
	}
	if !reflect.DeepEqual(p.DNS, wantDNS) {
		t.Errorf("DNS = %+v", p.DNS)
	}
	if !p.DNS.ResolverAllowed(addr("1.1.1.1")) || !p.DNS.ResolverAllowed(addr("::ffff:1.1.1.1")) || p.DNS.ResolverAllowed(addr("8.8.8.8")) {
		t.Error("ResolverAllowed")
	}
	staff := p.SaaS.For("staff")
	if staff == nil || staff.Severity != SeverityLow ||
		!reflect.DeepEqual(staff.Deny, AppMatch{Names: []string{"TLS.Dropbox"}, Categories: []string{"Cloud"}}) ||
		!reflect.DeepEqual(staff.Allow, AppMatch{Names: []string{"Microsoft365", "OneDrive"}}) {
		t.Errorf("saas staff = %+v", staff)
	}
	if !staff.Unsanctioned("TLS.Dropbox", "Cloud") || staff.Unsanctioned("TLS.OneDrive", "Cloud") || staff.Unsanctioned("DNS", "Network") {
		t.Error("staff Unsanctioned")
	}
	if p.SaaS.For("iot") != p.SaaS.Default || p.SaaS.For("") != p.SaaS.Default || p.SaaS.Default.Allow.Names != nil {
		t.Errorf("saas default = %+v", p.SaaS.Default)
	}
	wantAlerts := Alerts{DedupWindow: 10 * time.Minute, MinSeverity: SeverityLow, Webhook: "https://example.invalid/hook",
		Syslog: &Syslog{Network: "udp", Address: "127.0.0.1:514"}}
	if !reflect.DeepEqual(p.Alerts, wantAlerts) {
		t.Errorf("Alerts = %+v", p.Alerts)
	}
	if c, ok := p.Category("TLS.Dropbox"); !ok || c != "Cloud" {
		t.Errorf("Category(TLS.Dropbox) = %q, %v", c, ok)
	}
	if c, ok := p.Category("QUIC.GitHub"); !ok || c != "Collaborative" {
		t.Errorf("Category(QUIC.GitHub) = %q, %v", c, ok)
	}
}

// The format of the brief this package was written from parses as such.
func TestBriefFormat(t *testing.T) {
	p := mustParse(t, `
pools:
  iot: [10.0.20.0/24]
  servers: [10.0.1.10/32, 2001:db8::/64]
  staff: {cidrs: [10.0.10.0/24], vlans: [20], macs: ["aa:bb:cc:dd:ee:ff"]}
categories:
  TLS.Dropbox: Cloud
  Intranet: Collaborative
rules:
  - name: iot-no-remote-access
    from: iot
    to: servers
    categories: [RemoteAccess]
    protocols: [SSH, RDP, VNC, Telnet]
    severity: high
learn:
  enabled: false
  period: 24h
  pools: [iot]
dns:
  allowed_resolvers: [10.0.1.53, 1.1.1.1]
  window: 10m
  unique_subdomains: 200
  query_bytes: 20000
  label_length: 40
  entropy: 4.0
  txt_null_share: 0.5
  nxdomain_ratio: 0.5
saas:
  default: {deny: [TLS.Dropbox]}
  staff: {allow: [Microsoft365, TLS.Microsoft365], deny: [Dropbox, category:CloudStorage]}
alerts:
  dedup_window: 10m
  webhook: https://example.invalid/hook
  syslog: udp://127.0.0.1:514
`)
	if p.Pool(addr("2001:db8::5")) != "servers" || p.PoolFor(addr("10.0.10.1"), 20, 0) != "staff" || p.Pool(addr("10.0.10.1")) != "" {
		t.Error("pools")
	}
	if d := p.SaaS.Pools["staff"].Deny; !reflect.DeepEqual(d, AppMatch{Names: []string{"Dropbox"}, Categories: []string{"CloudStorage"}}) {
		t.Errorf("staff deny = %+v", d)
	}
}

func TestParseGood(t *testing.T) {
	for _, c := range []struct {
		name, src string
		check     func(t *testing.T, p *Policy)
	}{
		{"empty", "", nil},
		{"comments only", "# nothing\n\n# here\n", nil},
		{"null document", "~\n", nil},
		{"document marker", "---\n", nil},
		{"empty sections", "pools:\ncategories:\nrules:\nlearn:\ndns:\nsaas:\nalerts:\n", func(t *testing.T, p *Policy) {
			if p.DNS.UniqueSubdomains != 100 || p.Learn.Period != 24*time.Hour || p.Alerts.DedupWindow != 10*time.Minute {
				t.Errorf("defaults not filled: %+v %+v %+v", p.DNS, p.Learn, p.Alerts)
			}
		}},
		{"single cidr scalar", "pools:\n  a: 10.0.0.0/8\n", func(t *testing.T, p *Policy) {
			if p.Pool(addr("10.1.2.3")) != "a" {
				t.Error("scalar cidr")
			}
		}},
		{"empty pool", "pools:\n  a: []\n  b:\n", func(t *testing.T, p *Policy) {
			if !p.HasPool("a") || !p.HasPool("b") || p.NumPrefixes() != 0 {
				t.Error("empty pools")
			}
		}},
		{"mapped ipv6 prefix becomes ipv4", "pools:\n  a: ['::ffff:10.0.0.0/104']\n", func(t *testing.T, p *Policy) {
			if p.Pool(addr("10.3.3.3")) != "a" || p.Pool(addr("::ffff:10.3.3.3")) != "a" {
				t.Error("mapped prefix")
			}
		}},
		{"nested across pools", "pools:\n  big: [10.0.0.0/8]\n  small: [10.1.0.0/16]\n  host: [10.1.2.3]\n", func(t *testing.T, p *Policy) {
			for a, want := range map[string]string{"10.1.2.3": "host", "10.1.2.4": "small", "10.2.0.0": "big", "11.0.0.0": ""} {
				if got := p.Pool(addr(a)); got != want {
					t.Errorf("Pool(%s) = %q, want %q", a, got, want)
				}
			}
		}},
		{"default route", "pools:\n  all: [0.0.0.0/0, '::/0']\n", func(t *testing.T, p *Policy) {
			if p.Pool(addr("255.255.255.255")) != "all" || p.Pool(addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")) != "all" || p.Pool(addr("0.0.0.0")) != "all" {
				t.Error("default route")
			}
		}},
		{"thresholds zero disables", "dns:\n  entropy: 0\n  unique_subdomains: 0\n", func(t *testing.T, p *Policy) {
			if p.DNS.Entropy != 0 || p.DNS.UniqueSubdomains != 0 || p.DNS.QueryBytes != 10000 {
				t.Errorf("%+v", p.DNS)
			}
		}},
		{"rule lists and defaults", "pools:\n  a: [10.0.0.0/8]\n  b: [192.168.0.0/16]\nrules:\n  - name: r\n    from: [a, b, a]\n    to: internal\n", func(t *testing.T, p *Policy) {
			r := p.Rules[0]
			if !reflect.DeepEqual(r.From, Selector{Pools: []string{"a", "b"}}) || !r.To.Internal || r.Severity != SeverityMedium || r.Line != 5 {
				t.Errorf("%+v", r)
			}
		}},
		{"merge keys and aliases", `
pools:
  a: &nets [10.0.0.0/8]
base: &b {severity: high, to: any}
`, nil}, // replaced below: unknown key
		{"syslog forms", "alerts:\n  syslog: tcp://[::1]\n", func(t *testing.T, p *Policy) {
			if *p.Alerts.Syslog != (Syslog{"tcp", "[::1]:514"}) {
				t.Errorf("%+v", p.Alerts.Syslog)
			}
		}},
		{"syslog unix", "alerts:\n  syslog: unix:///dev/log\n  dedup_window: 0s\n", func(t *testing.T, p *Policy) {
			if *p.Alerts.Syslog != (Syslog{"unix", "/dev/log"}) || p.Alerts.DedupWindow != 0 {
				t.Errorf("%+v", p.Alerts)
			}
		}},
		{"saas star", "saas:\n  default: {allow: [DNS, category:Network], deny: ['*']}\n", func(t *testing.T, p *Policy) {
			l := p.SaaS.Default
			if !l.Unsanctioned("TLS.Dropbox", "Cloud") || l.Unsanctioned("DNS", "Network") || l.Unsanctioned("NTP", "Network") {
				t.Errorf("%+v", l)
			}
		}},
		{"version", "version: 1\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "merge keys and aliases" {
				c.src = `
pools:
  a: &nets [10.0.0.0/8]
  b: {cidrs: *nets, vlans: [5]}
rules:
  - &r {name: r1, from: a, severity: high, protocols: [SSH]}
  - {<<: *r, name: r2}
`
				c.check = func(t *testing.T, p *Policy) {
					if p.PoolFor(addr("10.0.0.1"), 5, 0) != "b" || p.Pool(addr("10.0.0.1")) != "a" {
						t.Error("aliased cidrs")
					}
					if len(p.Rules) != 2 || p.Rules[1].Name != "r2" || p.Rules[1].Severity != SeverityHigh ||
						!reflect.DeepEqual(p.Rules[1].From.Pools, []string{"a"}) {
						t.Errorf("merged rule: %+v", p.Rules)
					}
				}
			}
			p := mustParse(t, c.src)
			if c.check != nil {
				c.check(t, p)
			} else if p.Pool(addr("10.0.0.1")) != "" || len(p.Rules) != 0 {
				t.Error("an empty policy matched")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      []string // each must appear, in order, in the error text
	}{
		{"unknown top key", "pools: {}\npool:\n  a: [10.0.0.0/8]\n", []string{`t.yaml:2:1: unknown key "pool"`}},
		{"bad cidr", "pools:\n  a:\n    - 10.0.0.0/8\n    - 10.0.0.300/24\n", []string{`t.yaml:4:7: pool a: "10.0.0.300/24" is not a CIDR`}},
		{"bad address", "pools:\n  a: [10.0.0.0/8, nope]\n", []string{`t.yaml:2:19: pool a: "nope" is not a CIDR or an address`}},
		{"host bits", "pools:\n  a: [10.0.20.5/24]\n", []string{`t.yaml:2:7: pool a: "10.0.20.5/24" has host bits set (the network is 10.0.20.0/24)`}},
		{"zone", "pools:\n  a: ['fe80::1%eth0']\n", []string{`t.yaml:2:7:`, "not a CIDR or an address"}},
		{"duplicate pool", "pools:\n  a: [10.0.0.0/8]\n  b: [11.0.0.0/8]\n  a: [12.0.0.0/8]\n", []string{`t.yaml:4:3: pools: duplicate key "a" (first at line 2)`}},
		{"same prefix twice", "pools:\n  a: [10.0.0.0/8]\n  b: [10.0.0.0/8]\n", []string{`t.yaml:3:7: pool b: 10.0.0.0/8 is already listed at line 2`}},
		{"same mac twice", "pools:\n  a: {macs: [aa:bb:cc:dd:ee:ff]}\n  b: {macs: [AA-BB-CC-DD-EE-FF]}\n", []string{`t.yaml:3:14: pool b: MAC AA-BB-CC-DD-EE-FF is already listed at line 2`}},
		{"reserved pool", "pools:\n  any: [10.0.0.0/8]\n", []string{`t.yaml:2:3: pools: "any" is a reserved name`}},
		{"bad pool name", "pools:\n  'a b': [10.0.0.0/8]\n", []string{`t.yaml:2:3: pools: "a b" is not a valid pool name`}},
		{"pool unknown key", "pools:\n  a:\n    cidrs: [10.0.0.0/8]\n    vlan: [3]\n", []string{`t.yaml:4:5: pool a: unknown key "vlan"`}},
		{"bad vlan", "pools:\n  a: {vlans: [0, 4095, x]}\n", []string{`t.yaml:2:15: pool a vlans: "0" is not a VLAN id`, `t.yaml:2:18: pool a vlans: "4095"`, `t.yaml:2:24: pool a vlans: "x"`}},
		{"bad mac", "pools:\n  a: {macs: [aa:bb]}\n", []string{`t.yaml:2:14: pool a macs: "aa:bb" is not a MAC address`}},
		{"unknown pool in rule", "pools:\n  iot: [10.0.20.0/24]\nrules:\n  - name: r\n    from: iot\n    to: srvers\n", []string{`t.yaml:6:9: rule to: unknown pool "srvers"`}},
		{"unknown pool in rule list", "rules:\n  - name: r\n    from: [any, x]\n    protocols: [SSH]\n", []string{`t.yaml:3:17: rule from: unknown pool "x"`}},
		{"unknown severity", "rules:\n  - name: r\n    protocols: [SSH]\n    severity: hihg\n", []string{`t.yaml:4:15: rule severity: unknown severity "hihg" (accepted: info, low, medium, high, critical)`}},
		{"rule unknown key", "rules:\n  - name: r\n    protocol: [SSH]\n", []string{`t.yaml:3:5: rule: unknown key "protocol"`, `t.yaml:2:5: rule r matches every flow`}},
		{"rule without name", "rules:\n  - protocols: [SSH]\n", []string{`t.yaml:2:5: rule: name is required`}},
		{"duplicate rule", "rules:\n  - {name: r, protocols: [SSH]}\n  - {name: r, protocols: [RDP]}\n", []string{`t.yaml:3:12: rule: duplicate rule name "r" (first at line 2)`}},
		{"rules not a list", "rules:\n  name: r\n", []string{`t.yaml:2:3: rules must be a list, not a mapping`}},
		{"bad duration", "learn:\n  period: 24 hours\n", []string{`t.yaml:2:11: learn period: "24 hours" is not a duration`}},
		{"negative duration", "dns:\n  window: -5m\n", []string{`t.yaml:2:11: dns window must not be negative`}},
		{"zero period", "learn:\n  period: 0s\n", []string{`t.yaml:2:11: learn period must be positive`}},
		{"negative threshold", "dns:\n  unique_subdomains: -1\n  query_bytes: 10\n  entropy: -0.5\n", []string{`t.yaml:2:22: dns unique_subdomains must not be negative`, `t.yaml:4:12: dns entropy must not be negative`}},
		{"ratio above one", "dns:\n  nxdomain_ratio: 1.5\n", []string{`t.yaml:2:19: dns nxdomain_ratio must be at most 1`}},
		{"not a number", "dns:\n  entropy: high\n  label_length: 4x\n", []string{`t.yaml:2:12: dns entropy: "high" is not a number`, `t.yaml:3:17: dns label_length: "4x" is not an integer`}},
		{"label too long", "dns:\n  label_length: 64\n", []string{`t.yaml:2:17: dns label_length must be at most 63`}},
		{"bad resolver", "dns:\n  allowed_resolvers: [1.1.1.1, 1.1.1]\n", []string{`t.yaml:2:32: dns allowed_resolvers: "1.1.1" is not a CIDR or an address`}},
		{"unknown dns key", "dns:\n  windw: 5m\n", []string{`t.yaml:2:3: dns: unknown key "windw"`}},
		{"learn unknown pool", "learn:\n  pools: [iot]\n", []string{`t.yaml:2:11: learn pools: unknown pool "iot"`}},
		{"learn bool", "learn:\n  enabled: maybe\n", []string{`t.yaml:2:12: learn enabled: "maybe" is not a boolean`}},
		{"saas unknown pool", "saas:\n  staff: {deny: [Dropbox]}\n", []string{`t.yaml:2:3: saas: unknown pool "staff"`}},
		{"saas unknown key", "saas:\n  default: {deny: [Dropbox], block: [x]}\n", []string{`t.yaml:2:30: saas default: unknown key "block"`}},
		{"saas bad category", "saas:\n  default:\n    deny: [Dropbox, 'category:']\n", []string{`t.yaml:3:21: saas default deny: "category:" is not a category name`}},
		{"bad webhook", "alerts:\n  webhook: ftp://x/y\n", []string{`t.yaml:2:12: alerts webhook: "ftp://x/y" is not an http or https URL`}},
		{"bad syslog", "alerts:\n  syslog: 127.0.0.1:514\n", []string{`t.yaml:2:11: alerts syslog:`}},
		{"bad syslog port", "alerts:\n  syslog: udp://h:99999\n", []string{`t.yaml:2:11: alerts syslog: "udp://h:99999": bad port`}},
		{"category not scalar", "categories:\n  TLS: [a]\n", []string{`t.yaml:2:8: category of TLS must be a scalar, not a list`}},
		{"category empty", "categories:\n  TLS: ''\n", []string{`t.yaml:2:8: categories: TLS: "" is not a category name`}},
		{"top not mapping", "- a\n- b\n", []string{`t.yaml:1:1: policy file must be a mapping, not a list`}},
		{"section wrong kind", "pools: [10.0.0.0/8]\n", []string{`t.yaml:1:8: pools must be a mapping, not a list`}},
		{"version", "version: 2\n", []string{`t.yaml:1:10: version: unsupported version "2"`}},
		{"two documents", "pools: {}\n---\nrules: []\n", []string{`t.yaml:2:1: only one YAML document is allowed`}},
		{"yaml syntax", "pools:\n  a: [10.0.0.0/8\nrules:\n", []string{"t.yaml:2: did not find expected ',' or ']'"}},
		{"yaml unquoted ipv6", "pools:\n  a: [10.0.0.0/8]\n  b: [::/0]\n", []string{"t.yaml:3: did not find expected node content"}},
		{"yaml first line", "a: b: c\n", []string{"t.yaml:1: mapping values are not allowed in this context"}},
		{"yaml unknown anchor", "pools:\n  a: [10.0.0.0/8]\n  b: *x\n", []string{"t.yaml:3: unknown anchor 'x' referenced"}},
		{"not utf-8", "pools:\n  a: [\xff]\n", []string{"t.yaml:2:7: invalid UTF-8"}},
		{"control character", "pools:\n  a: [\x00]\n", []string{"t.yaml:2:7: control character U+0000"}},
		{"yaml tab", "pools:\n\ta: [10.0.0.0/8]\n", []string{`t.yaml:2: found character that cannot start any token`}},
		{"many errors, in file order", "pools:\n  a: [x]\n  b: [y]\nrules:\n  - {name: r, to: z}\n", []string{`t.yaml:2:7:`, `t.yaml:3:7:`, `t.yaml:5:19: rule to: unknown pool "z"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse("t.yaml", []byte(c.src))
			if err == nil {
				t.Fatalf("no error; policy %+v", p)
			}
			if p != nil {
				t.Error("a policy was returned with an error")
			}
			msg := err.Error()
			rest := msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error does not contain %q (in order):\n%s", w, msg)
				}
				rest = rest[i+len(w):]
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "t.yaml" {
				t.Errorf("not an *Error: %#v", err)
			}
			// Every line of the message names the file and a line.
			for _, l := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(l, "t.yaml:") || !strings.ContainsAny(l[len("t.yaml:"):][:1], "123456789") {
					t.Errorf("error line without a line number: %q", l)
				}
			}
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("pools:\n  a:\n")
	for range 200 {
		b.WriteString("    - bad\n")
	}
	_, err := Parse("t.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too many errors") || strings.Count(err.Error(), "\n") > maxErrors+1 {
		t.Fatalf("got %d lines, %v", strings.Count(err.Error(), "\n"), err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p, err := Load(filepath.Join(dir, "missing.yaml"))
	if err != nil || p.Pool(addr("10.0.0.1")) != "" || len(p.Rules) != 0 {
		t.Fatalf("missing file: %v, %v", p, err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("big file: %v", err)
	}
	if _, err := Parse("big", make([]byte, MaxFileSize+1)); err == nil {
		t.Fatal("Parse of a big file")
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("pools:\n  a: [nope]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":2:7: ") {
		t.Fatalf("bad file: %v", err)
	}
}

// An alias bomb: yaml.v3 does not expand aliases in a yaml.Node tree, we
// do, within a budget checked before the walk.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("anchors:\n  a0: &a0 [10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8, 10.0.0.0/8]\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "  a%d: &a%d [", i, i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("pools:\n  bomb: *a12\n") // 9^13 prefixes once expanded
	start := time.Now()
	_, err := Parse("t.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:1:1: document too large once aliases are expanded") {
		t.Fatalf("alias bomb: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("alias bomb took %v", d)
	}
	for _, src := range []string{"pools:\n  a: &x {cidrs: [*x]}\n", "rules:\n  - &r {name: r, <<: *r}\n", "x: &x [*x]\n"} {
		if _, err := Parse("t.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "is inside the node it names") {
			t.Errorf("%q: %v", src, err)
		}
	}
}

// The largest honest file, a MaxFileSize of prefixes, parses quickly.
func TestLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	var b strings.Builder
	b.WriteString("pools:\n")
	n := 0
	for b.Len() < MaxFileSize-64 {
		if n%1000 == 0 {
			fmt.Fprintf(&b, "  p%d:\n", n/1000)
		}
		fmt.Fprintf(&b, "    - 10.%d.%d.0/24\n", n>>8&255, n&255)
		if n++; n == 1<<16 {
			break
		}
	}
	start := time.Now()
	p, err := Parse("t.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	// 10.1.2.0/24 is prefix 258, one of the first thousand, in pool p0.
	if p.NumPrefixes() != n || p.Pool(addr("10.1.2.3")) != "p0" {
		t.Errorf("%d prefixes, Pool = %q", p.NumPrefixes(), p.Pool(addr("10.1.2.3")))
	}
	t.Logf("%d prefixes, %d bytes: %v", n, b.Len(), time.Since(start))
}

func TestCategory(t *testing.T) {
	p := mustParse(t, `
categories:
  TLS.YouTube: Exact
  TLS: Master
  YouTube: App
  Dropbox: CloudApp
  QUIC: QuicMaster
`)
	for _, c := range []struct {
		label, want string
		ok          bool
	}{
		{"TLS.YouTube", "Exact", true},
		{"TLS.Netflix", "Master", true}, // no application entry: the master's
		{"TLS", "Master", true},
		{"QUIC.YouTube", "App", true}, // application before master
		{"HTTP.YouTube", "App", true},
		{"YouTube", "App", true},
		{"TLS.Dropbox", "CloudApp", true},
		{"HTTP.Dropbox", "CloudApp", true},
		{"DNS.Dropbox", "CloudApp", true},
		{"DNS", "", false},
		{"DNS.Google", "", false},
		{"", "", false},
		{".", "", false},
		{"TLS.", "", false}, // not a master.app label: only the exact key
		{".YouTube", "", false},
	} {
		got, ok := p.Category(c.label)
		if got != c.want || ok != c.ok {
			t.Errorf("Category(%q) = %q, %v; want %q, %v", c.label, got, ok, c.want, c.ok)
		}
	}
	empty := mustParse(t, "")
	if _, ok := empty.Category("TLS.YouTube"); ok {
		t.Error("empty policy has overrides")
	}
}

func TestAppMatch(t *testing.T) {
	m := AppMatch{Names: []string{"Dropbox", "TLS.Box", "SSH"}, Categories: []string{"RemoteAccess"}}
	for _, c := range []struct {
		label, cat string
		want       bool
	}{
		{"Dropbox", "", true}, {"TLS.Dropbox", "", true}, {"QUIC.Dropbox", "", true},
		{"TLS.Box", "", true}, {"QUIC.Box", "", false}, {"Box", "", false},
		{"SSH", "", true}, {"TLS", "", false}, {"HTTP", "RemoteAccess", true}, {"", "", false},
	} {
		if got := m.Match(c.label, c.cat); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.label, c.cat, got)
		}
	}
	if !(AppMatch{}).Empty() || (AppMatch{All: true}).Empty() || !(AppMatch{All: true}).Match("x", "") {
		t.Error("Empty/All")
	}
}

func TestSelector(t *testing.T) {
	ext := Selector{External: true}
	in := Selector{Internal: true}
	for _, c := range []struct {
		pool, addr string
		external   bool
	}{
		{"", "8.8.8.8", true}, {"", "2606:4700::1", true}, {"srv", "8.8.8.8", false},
		{"", "10.1.1.1", false}, {"", "192.168.1.1", false}, {"", "100.64.1.1", false},
		{"", "127.0.0.1", false}, {"", "fe80::1", false}, {"", "fd00::1", false},
		{"", "224.0.0.251", false}, {"", "::ffff:10.0.0.1", false}, {"", "::ffff:8.8.8.8", true},
	} {
		a := addr(c.addr)
		if ext.Match(c.pool, a) != c.external || in.Match(c.pool, a) == c.external {
			t.Errorf("%q %s: external %v", c.pool, c.addr, ext.Match(c.pool, a))
		}
	}
	if (Selector{}).Match("x", addr("10.0.0.1")) || !(Selector{Pools: []string{"x"}}).Match("x", addr("8.8.8.8")) {
		t.Error("pool selector")
	}
}

func TestSeverity(t *testing.T) {
	for i, n := range []string{"info", "low", "medium", "high", "critical"} {
		s, err := ParseSeverity(n)
		if err != nil || s != Severity(i) || s.String() != n {
			t.Errorf("%s: %v %v", n, s, err)
		}
	}
	if _, err := ParseSeverity("High"); err == nil {
		t.Error("case-insensitive severity")
	}
	if !(SeverityLow < SeverityCritical) || Severity(9).String() != "unknown" {
		t.Error("order")
	}
}
