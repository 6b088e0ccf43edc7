package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzParse: no panic, no hang, and either a usable policy or errors
// that all name the file and a line.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"", "~", "---\n", "pools:\n  a: [10.0.0.0/8, '::/0']\n  b: {cidrs: [10.1.0.0/16], vlans: [3], macs: [aa:bb:cc:dd:ee:ff]}\n",
		"rules:\n  - {name: r, from: a, protocols: [SSH]}\n", "x: &a [*a]\n", "a: &a {<<: *a}\n",
		"pools:\n  a: &n [1.2.3.4]\n  b: {cidrs: *n, vlans: [1]}\nsaas:\n  default: {deny: ['*']}\n",
		"dns:\n  entropy: 1e400\n  window: 99999999999h\n", "a: !!binary gIGC\n", "[[[[[[[[[[",
	} {
		f.Add([]byte(s))
	}
	probes := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("::ffff:1.2.3.4"), netip.MustParseAddr("2001:db8::1"), {}}
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				panic(fmt.Sprintf("Parse hangs on %q", data))
			}
		}()
		p, err := Parse("f.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatal("policy and error")
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("not an *Error: %v", err)
			}
			for _, l := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(l, "f.yaml:") && !strings.HasPrefix(l, "f.yaml: ") {
					t.Fatalf("error line without the file: %q", l)
				}
			}
			return
		}
		for _, a := range probes {
			_ = p.Pool(a)
			_ = p.PoolFor(a, 1, 0xaabbccddeeff)
		}
		_, _ = p.Category("TLS.YouTube")
		for i := range p.Rules {
			_ = p.Rules[i].Matches("a", probes[0], "", probes[2], "SSH", "RemoteAccess")
		}
		if l := p.SaaS.For("a"); l != nil {
			_ = l.Unsanctioned("TLS.Dropbox", "Cloud")
		}
	})
}
