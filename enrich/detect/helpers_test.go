package detect

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"flowlens/schema"

	"github.com/prometheus/client_golang/prometheus"
)

// clock is a settable clock, atomic so that benchmarks do not measure it.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// recorder is a Sink keeping what it gets.
type recorder struct {
	mu     sync.Mutex
	alerts []*Alert
}

func (r *recorder) Alert(a *Alert) {
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	r.mu.Unlock()
}

func (r *recorder) take() []*Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.alerts
	r.alerts = nil
	return a
}

func (r *recorder) kinds() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, a := range r.alerts {
		m[a.Kind]++
	}
	return m
}

type harness struct {
	d   *Detector
	clk *clock
	rec *recorder
	reg *prometheus.Registry
}

// newHarness builds a detector on cfg with a fake clock; the sweeper is
// not started (tests call Sweep), Start only begins learning.
func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{clk: newClock(), rec: &recorder{}, reg: prometheus.NewRegistry()}
	cfg.SweepInterval = time.Hour // tests sweep by hand
	d, err := New(cfg, Deps{Sink: h.rec, Registerer: h.reg, Now: h.clk.Now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	return h
}

func (h *harness) start(t testing.TB) {
	t.Helper()
	if err := h.d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.d.Stop)
}

// metric returns the value of the series of name whose labels include
// labels (name=value pairs), or -1 when there is none.
func (h *harness) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// mapped returns s as an IPv4-mapped address, as decoders store them.
func mapped(s string) netip.Addr {
	a := netip.MustParseAddr(s)
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a
}

type fl struct {
	src, dst     string
	sport, dport uint16
	proto        uint8
	label, cat   string
	sni, query   string
	packets      uint64
	source       schema.Source
}

func (x fl) flow() *schema.Flow {
	f := &schema.Flow{SrcAddr: mapped(x.src), DstAddr: mapped(x.dst), SrcPort: x.sport, DstPort: x.dport,
		IPProtocol: x.proto, Protocol: x.label, AppCategory: x.cat, ServerName: x.sni, DNSQuery: x.query,
		Packets: x.packets, Bytes: 100 * x.packets, Source: x.source}
	if f.Source == 0 {
		f.Source = schema.SourceSensor
	}
	if f.Packets == 0 {
		f.Packets, f.Bytes = 2, 200
	}
	return f
}

func dnsFlow(client, resolver, query string) fl {
	return fl{src: client, dst: resolver, sport: 40000, dport: 53, proto: 17, label: "DNS", cat: "Network", query: query}
}

// Name generators for the DNS patterns.

const base32Alphabet = "abcdefghijklmnopqrstuvwxyz012345"

func randString(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// splitLabels cuts s into labels of at most n bytes.
func splitLabels(s string, n int) string {
	var parts []string
	for len(s) > n {
		parts = append(parts, s[:n])
		s = s[n:]
	}
	return strings.Join(append(parts, s), ".")
}

// iodineName is an upstream iodine query: a command character and base32
// data in 63-byte labels under the tunnel's subdomain.
func iodineName(r *rand.Rand, domain string) string {
	return splitLabels("p"+randString(r, base32Alphabet, 150+r.IntN(50)), 63) + ".t." + domain
}

// dnscat2Name is a dnscat2 query with a domain: the hex-encoded packet in
// labels of at most 63 bytes.
func dnscat2Name(r *rand.Rand, domain string) string {
	return splitLabels(randString(r, "0123456789abcdef", 60+2*r.IntN(40)), 63) + "." + domain
}

func akamaiName(r *rand.Rand) string {
	if r.IntN(2) == 0 {
		return fmt.Sprintf("e%d.dscx.akamaiedge.net", 1000+r.IntN(9000))
	}
	return fmt.Sprintf("a%d.w10.akamai.net", r.IntN(2000))
}

func googlevideoName(r *rand.Rand) string {
	return fmt.Sprintf("rr%d---sn-%s.googlevideo.com", 1+r.IntN(5), randString(r, "abcdefghijklmnopqrstuvwxyz0123456789", 8))
}

// safeframeName is an ad frame's hashed name: long, high entropy, unique,
// and legitimate.
func safeframeName(r *rand.Rand) string {
	return randString(r, "0123456789abcdef", 32) + ".safeframe.googlesyndication.com"
}

var telemetryNames = []string{
	"v10.events.data.microsoft.com", "self.events.data.microsoft.com", "settings-win.data.microsoft.com",
	"watson.telemetry.microsoft.com", "login.microsoftonline.com", "client.wns.windows.com",
	"ctldl.windowsupdate.com", "www.googleapis.com", "update.googleapis.com", "clients4.google.com",
	"play.googleapis.com", "www.google.com", "fonts.gstatic.com", "www.youtube.com",
}

var ordinaryDomains = []string{
	"wikipedia.org", "bbc.co.uk", "github.com", "nytimes.com", "lemonde.fr", "amazon.de", "reddit.com",
	"stackoverflow.com", "apple.com", "cloudflare.com", "spotify.com", "netflix.com", "example.org",
}

// Input is a flow with the fields the enrich chain fills, set by the test.
type Input struct {
	Flow             *schema.Flow
	SrcPool, DstPool string
	DNSQType         uint16
	DNSRCode         uint8
	DNSRCodeKnown    bool
}

// EvaluateInput puts in's pools and DNS fields on its flow and evaluates it.
func (d *Detector) EvaluateInput(in *Input) {
	f := in.Flow
	f.SrcPool, f.DstPool = in.SrcPool, in.DstPool
	f.DNSQType, f.DNSRCode, f.DNSAnswered = in.DNSQType, in.DNSRCode, in.DNSRCodeKnown
	d.Evaluate(f)
}
