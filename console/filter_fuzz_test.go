package console

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzParseFilter: any query string gives a valid filter or ErrBadFilter,
// never a panic; a valid filter's SQL condition is the one of a filter with
// the same fields set to other values — no byte of the input reaches the
// SQL text, only placeholders do — and every placeholder has its parameter.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"range=1h", "range=30d&exporter=192.0.2.1&pool=iot&app=TLS.YouTube&addr=10.0.0.0/8&port=443",
		"from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z", "from=1700000000&to=1700003600",
		"addr=2001:db8::1", "addr=::ffff:10.0.0.0/104", "pool=' OR 1=1 --", "app=x%00y", "port=-1", "range=",
	} {
		f.Add(s)
	}
	now := time.Unix(1_796_400_000, 0)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := ParseFilter(q, now)
		if err != nil {
			if !errors.Is(err, ErrBadFilter) {
				t.Fatalf("%q: error not ErrBadFilter: %v", raw, err)
			}
			return
		}
		if !flt.From.Before(flt.To) || flt.To.Sub(flt.From) > MaxSpan {
			t.Fatalf("%q: range %v..%v", raw, flt.From, flt.To)
		}
		p := params{}
		sql := flt.where(p)
		shape := Filter{From: now.Add(-time.Hour), To: now, Port: -1}
		if flt.Exporter.IsValid() {
			shape.Exporter = netip.MustParseAddr("192.0.2.1")
		}
		if flt.Pool != "" {
			shape.Pool = "x"
		}
		if flt.App != "" {
			shape.App = "x"
		}
		if flt.Prefix.IsValid() {
			shape.Prefix = netip.MustParsePrefix("2001:db8::/64")
			if flt.Prefix.Bits() == 128 {
				shape.Prefix = netip.MustParsePrefix("2001:db8::1/128")
			}
		}
		if flt.Port >= 0 {
			shape.Port = 1
		}
		if want := shape.where(params{}); sql != want {
			t.Fatalf("%q: the SQL text depends on the values:\n%s\n%s", raw, sql, want)
		}
		for name := range p {
			if !strings.Contains(sql, "{"+name+":") {
				t.Fatalf("%q: parameter %s unused in %q", raw, name, sql)
			}
		}
		for rest := sql; ; {
			i := strings.Index(rest, "{")
			if i < 0 {
				break
			}
			j := strings.IndexAny(rest[i:], ":}")
			if j < 0 {
				t.Fatalf("%q: unterminated placeholder in %q", raw, sql)
			}
			if _, ok := p[rest[i+1:i+j]]; !ok {
				t.Fatalf("%q: placeholder %s without a parameter", raw, rest[i+1:i+j])
			}
			rest = rest[i+j:]
		}
	})
}
