package detect

import (
	"strings"
	"testing"
	"time"
)

func TestParseName(t *testing.T) {
	cases := []struct {
		name, domain, sub string
		labels, maxLabel  int
		ok                bool
	}{
		{"www.example.org", "example.org", "www", 1, 3, true},
		{"WWW.Example.CO.UK.", "example.co.uk", "www", 1, 3, true},
		{"example.com", "example.com", "", 0, 0, true},
		{"rr3---sn-4g5e6nsz.c.googlevideo.com", "googlevideo.com", "rr3---sn-4g5e6nsz.c", 2, 17, true},
		{"WWW.\xc3\x9c.example.com", "example.com", "www.\xc3\x9c", 2, 3, true}, // only ASCII is lowered
		{"bucket.s3.amazonaws.com", "bucket.s3.amazonaws.com", "", 0, 0, true},  // a private suffix
		{"a.b.c.unknowntld", "c.unknowntld", "a.b", 2, 1, true},
		{"", "", "", 0, 0, false},
		{".", "", "", 0, 0, false},
		{"com", "", "", 0, 0, false},
		{"co.uk", "", "", 0, 0, false},
		{"localhost", "", "", 0, 0, false},
		{"a..example.com", "", "", 0, 0, false},
		{".example.com", "", "", 0, 0, false},
		{"4.3.2.1.in-addr.arpa", "", "", 0, 0, false},
		{"printer.local", "", "", 0, 0, false},
		{"192.0.2.1", "", "", 0, 0, false},
		{strings.Repeat("a.", 127) + "com", "", "", 0, 0, false}, // 257 bytes
		{"bücher.example.de", "example.de", "bücher", 1, 7, true},
	}
	for _, c := range cases {
		nf, ok := parseName(c.name)
		if ok != c.ok || nf.domain != c.domain || nf.sub != c.sub || nf.labels != c.labels || nf.maxLabel != c.maxLabel {
			t.Errorf("parseName(%q) = %+v %v, want domain %q sub %q labels %d max %d ok %v",
				c.name, nf, ok, c.domain, c.sub, c.labels, c.maxLabel, c.ok)
		}
	}
	// Entropy: one symbol 0 bits, 16 equiprobable 4 bits.
	if nf, _ := parseName("aaaa.example.com"); nf.entropy != 0 {
		t.Errorf("entropy of aaaa = %v", nf.entropy)
	}
	if nf, _ := parseName("0123456789abcdef.example.com"); nf.entropy < 3.999 || nf.entropy > 4.001 {
		t.Errorf("entropy of 16 hex digits = %v", nf.entropy)
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"www.example.org", "WWW.Example.CO.UK.", "", ".", "..", "a..b", "com", "x.com.",
		"4.3.2.1.in-addr.arpa", "::1", "192.0.2.1", "bücher.example.de", "\xff\xfe.example.com", strings.Repeat("a", 300) + ".com",
		strings.Repeat("abcdefgh.", 28) + "com", "p" + strings.Repeat("abcdefghij", 15) + ".t.tunnel-example.net", "*.example.com", "a.b.c.d.e.f.g.h.i.j.k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		nf, ok := parseName(name)
		if !ok {
			return
		}
		if nf.domain == "" || nf.length > maxNameLen || nf.maxLabel > nf.labelChars || nf.labelChars > nf.length {
			t.Fatalf("parseName(%q) = %+v", name, nf)
		}
		if nf.entropy < 0 || nf.entropy > 8.0001 || (nf.labelChars > 0 && nf.entropy > log2Ceil(nf.labelChars)) {
			t.Fatalf("parseName(%q): entropy %v of %d bytes", name, nf.entropy, nf.labelChars)
		}
		if nf.sub != "" && !strings.HasSuffix(asciiLower(strings.TrimSuffix(name, ".")), nf.sub+"."+nf.domain) {
			t.Fatalf("parseName(%q): sub %q domain %q", name, nf.sub, nf.domain)
		}
	})
}

func log2Ceil(n int) float64 {
	b := 0.0
	for v := 1; v < n; v *= 2 {
		b++
	}
	return b + 0.0001
}

// FuzzTunnelEval feeds hostile names through the whole DNS path, with
// every gate at its lowest so that verdicts and evidence are built too.
func FuzzTunnelEval(f *testing.F) {
	f.Add("p"+strings.Repeat("abcdefghij", 15)+".t.tunnel-example.net", uint16(10), uint64(2))
	f.Add("\xff.\xfe.example.com.", uint16(0), uint64(0))
	f.Add(strings.Repeat("x", 400), uint16(16), uint64(1<<40))
	cfg := DefaultConfig()
	cfg.DNS.Tunnel.MinQueries, cfg.DNS.Tunnel.MinSignals, cfg.Shards = 1, 1, 1
	h := newHarness(f, cfg)
	f.Fuzz(func(t *testing.T, name string, qtype uint16, packets uint64) {
		fl := dnsFlow("10.3.0.5", "10.0.0.53", name).flow()
		fl.Packets = packets
		h.d.EvaluateInput(&Input{Flow: fl, DNSQType: qtype, DNSRCodeKnown: qtype%2 == 0, DNSRCode: uint8(qtype)})
		h.clk.Add(time.Second)
		h.rec.take()
	})
}
