package dpi

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDebugFlows prints our result for every flow of the capture named by
// DPI_DEBUG (a developer aid; skipped otherwise).
func TestDebugFlows(t *testing.T) {
	name := os.Getenv("DPI_DEBUG")
	if name == "" {
		t.Skip("set DPI_DEBUG=capture")
	}
	path := filepath.Join(corpusDir(), name)
	exp, _ := readExpected(path + ".out")
	flows, idx, e := classify(t, path)
	for _, x := range exp {
		i, ok := idx[x.key]
		if !ok {
			t.Logf("%s: not in our table", x.line)
			continue
		}
		fl := flows[i]
		r := e.Result(&fl.st, &fl.f)
		t.Logf("%s pk=%d\n   nDPI %s (%s) sni=%q ja4=%s\n   ours %s (%s) sni=%q ja4=%s alpn=%q ua=%q", x.line, fl.packets, x.label, x.conf, x.sni, x.ja4, r.Label, r.Confidence, r.ServerName, r.JA4, r.ALPN, r.UserAgent)
	}
}
