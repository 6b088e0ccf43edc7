package dpi

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

func TestDissectorIDsDefined(t *testing.T) {
	e := testEngine(t)
	for _, id := range dissectorIDs {
		if e.tab.protos[id].name == "" {
			t.Errorf("id %d has no proto line in apps.txt", id)
		}
	}
	seen := map[string]uint16{}
	for id, p := range e.tab.protos {
		if p.name == "" {
			continue
		}
		if old, ok := seen[p.name]; ok {
			t.Errorf("%s has ids %d and %d", p.name, old, id)
		}
		seen[p.name] = uint16(id)
	}
}

func TestLookupHost(t *testing.T) {
	e := testEngine(t)
	for _, tt := range []struct{ host, app, cat string }{
		{"www.youtube.com", "YouTube", ""},
		{"youtube.com", "YouTube", ""},
		{"notyoutube.com", "", ""},
		{"yt3.ggpht.com", "YouTube", ""}, // longer than ggpht.com (Google)
		{"lh3.ggpht.com", "Google", ""},
		{"WWW.Google.COM.", "Google", ""},
		{"googleads.g.doubleclick.net", "Google", "Advertisement"},
		{"mqtt-mini.facebook.com", "FacebookMessenger", ""},
		{"c-flightproxy-euno-01-teams.cloudapp.net", "Teams", ""}, // raw suffix
		{"skypedataprdcolneu04.cloudapp.net", "", ""},
		{"teams.microsoft.com", "Teams", ""},
		{"login.microsoftonline.com", "Microsoft365", ""},
		{"outlook.office.com", "Microsoft365", ""},
		{"dns.google", "DoH_DoT", ""},
		{"d.dropbox.com", "Dropbox", ""},
		{"zoomsjccv154mmr.sjc.zoom.us", "Zoom", ""},
		{"", "", ""},
		{strings.Repeat("a.", 200) + "com", "", ""},
	} {
		hr, ok := e.tab.lookupHost(tt.host)
		got, cat := "", ""
		if ok {
			got = e.tab.protos[hr.app].name
			if hr.cat != 0 {
				cat = e.tab.cats[hr.cat]
			}
		}
		if got != tt.app || cat != tt.cat {
			t.Errorf("%q: got %q/%q, want %q/%q", tt.host, got, cat, tt.app, tt.cat)
		}
	}
}

func TestLookupAddr(t *testing.T) {
	e := testEngine(t)
	for _, tt := range []struct{ addr, app string }{
		{"8.8.8.8", "Google"},
		{"142.250.180.14", "Google"},
		{"::ffff:8.8.4.4", "Google"},
		{"52.113.194.132", "Skype_Teams"}, // inside AmazonAWS's 52.0.0.0/11? no: Microsoft's /14 is longer
		{"2a03:2880:f12f:83:face:b00c::25de", "Facebook"},
		{"91.108.8.1", "Telegram"},
		{"10.1.2.3", ""},
	} {
		hr, ok := e.tab.lookupAddr(netip.MustParseAddr(tt.addr))
		got := ""
		if ok {
			got = e.tab.protos[hr.app].name
		}
		if got != tt.app {
			t.Errorf("%s: got %q, want %q", tt.addr, got, tt.app)
		}
	}
}

func TestRuleFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.txt", `# our own
proto 3500 Intranet Collaborative
host intranet.example Intranet
host youtube.com Intranet Streaming   # override a built-in suffix
cidr 198.51.100.0/24 Intranet
port tcp 9999 Intranet
ua MyAgent Intranet
`)
	e, err := NewEngine(Config{ExtraRules: []string{good}})
	if err != nil {
		t.Fatal(err)
	}
	get := []byte("GET / HTTP/1.1\r\nHost: wiki.intranet.example\r\n\r\n")
	r, _ := runFlow(e, tcpFlow("10.0.0.1:1", "10.0.0.2:80"), pk{ToServer, get, tcpACK, 1})
	if r.Label != "HTTP.Intranet" || r.Category != "Collaborative" || r.AppID != 13<<24|7<<12|3500 {
		t.Errorf("user rule: %+v", r)
	}
	r, _ = runFlow(e, tcpFlow("10.0.0.1:1", "10.0.0.2:80"), pk{ToServer, []byte("GET / HTTP/1.1\r\nHost: youtube.com\r\n\r\n"), tcpACK, 1})
	if r.Label != "HTTP.Intranet" || r.Category != "Streaming" {
		t.Errorf("override: %+v", r)
	}
	if r := e.Result(new(State), &Flow{Proto: 6, Client: addrPort("10.0.0.1:1"), Server: addrPort("198.51.100.7:9999")}); r.Label != "Intranet" || r.Confidence != ConfIPList {
		t.Errorf("cidr: %+v", r)
	}

	// Names without a proto line get the same automatic id every time.
	auto := write("auto.txt", "host a.example NewApp\n")
	e1, _ := NewEngine(Config{ExtraRules: []string{auto}})
	e2, _ := NewEngine(Config{ExtraRules: []string{auto}})
	id1, id2 := e1.tab.byName["NewApp"], e2.tab.byName["NewApp"]
	if id1 != id2 || id1 < autoIDBase || id1 > maxID {
		t.Errorf("automatic ids %d, %d", id1, id2)
	}

	for _, tt := range []struct{ body, line string }{
		{"host a.example\n", ":1:"},
		{"\n# ok\nfrob x y\n", ":3:"},
		{"cidr 300.1.1.0/24 X\n", ":1:"},
		{"port sctp 80 X\n", ":1:"},
		{"port tcp 0 X\n", ":1:"},
		{"port tcp 10-5 X\n", ":1:"},
		{"proto 0 X Web\n", ":1:"},
		{"proto 5000 X Web\n", ":1:"},
		{"proto 91 NotTLS Web\n", ":1:"},
		{"host a.example Bad/Name\n", ":1:"},
		{"host b.example X\nproto 3600 X Web\n", ":2:"},
	} {
		p := write("bad.txt", tt.body)
		_, err := NewEngine(Config{ExtraRules: []string{p}})
		var re *RuleError
		if err == nil || !errors.As(err, &re) || !strings.Contains(err.Error(), p+tt.line) {
			t.Errorf("%q: error %v, want %s%s", tt.body, err, p, tt.line)
		}
	}
	if _, err := NewEngine(Config{ExtraRules: []string{filepath.Join(dir, "missing.txt")}}); err == nil {
		t.Error("missing rule file accepted")
	}
}

func TestResultAPI(t *testing.T) {
	names := map[Confidence]string{ConfUnknown: "unknown", ConfPort: "port_guess", ConfIPList: "ip_list", ConfDNSCache: "dns_cache", ConfDPI: "dpi"}
	for c, s := range names {
		if c.String() != s {
			t.Errorf("%d: %s", c, c.String())
		}
	}
	e := testEngine(t)
	f := tcpFlow("10.0.0.1:40000", "10.0.0.2:22")
	r, st := runFlow(e, f, pk{ToClient, []byte("SSH-2.0-x\r\n"), tcpACK, 1})
	if r.Master != "SSH" || r.App != "" || r.AppID != 13<<24|92<<12 || r.Category != "RemoteAccess" {
		t.Errorf("%+v", r)
	}
	if r2 := e.Result(st, &f); r2 != r {
		t.Error("Result changed between calls")
	}
	var zero State
	if r := e.Result(&zero, &Flow{Proto: 17}); r.Label != "Unknown" || r.AppID != 0 || r.Category != "Unspecified" {
		t.Errorf("zero state: %+v", r)
	}
	t.Logf("sizeof(State) = %d bytes", unsafe.Sizeof(State{}))
	if unsafe.Sizeof(State{}) > 64 {
		t.Errorf("State grew to %d bytes", unsafe.Sizeof(State{}))
	}
}

// Several workers share one Engine (run with -race).
func TestConcurrentWorkers(t *testing.T) {
	files := corpusFiles(t)
	e := testEngine(t)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i, path := range files {
				if i%4 != w {
					continue
				}
				flows, _, evs := flowsOf(readFrames(t, path))
				for _, ev := range evs {
					fl := flows[ev.flow]
					if !fl.done {
						fl.done = e.Inspect(&fl.st, &fl.f, ev.dir, ev.payload, ev.flags, ev.seq)
					}
				}
				for _, fl := range flows {
					_ = e.Result(&fl.st, &fl.f)
				}
			}
		}(w)
	}
	wg.Wait()
}

func TestCategoryOf(t *testing.T) {
	e, err := LoadTable(nil)
	if err != nil {
		t.Fatal(err)
	}
	for label, want := range map[string]string{
		"SSH": "RemoteAccess", "TLS.Dropbox": "Cloud", "QUIC.YouTube": "Media", "DNS": "Network", "TLS": "Web",
		"NoSuchProto": "", "TLS.NoSuchApp": "Web", "": "",
	} {
		if got := e.CategoryOf(label); got != want {
			t.Errorf("CategoryOf(%q) = %q, want %q", label, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { e.CategoryOf("TLS.Dropbox") }); n != 0 {
		t.Errorf("%v allocs", n)
	}
}
