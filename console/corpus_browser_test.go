//go:build browser

// TestBrowserCorpus: the console in headless Chromium on a store filled
// from the shared corpus (issue 7: "load each page against a store filled
// from the corpus captures, change a filter, assert the charts and tables
// show the expected numbers, take screenshots").
//
// libchdb runs one store per process and TestMain has opened the fixture's,
// so the test runs again in a child process of this test binary
// (corpusChildEnv set: TestMain opens no fixture there), which fills a
// fresh store, serves the console on it and drives Chromium.
//
// The store holds, as `flowlens run` would store them:
//
//   - window A, 2023-01-01 01:00:05 UTC: five Cisco exporters of pmacct's
//     regression captures (flows/pmacct-*), decoded by the collector's
//     decoder and labelled by the enrich chain (port guesses);
//   - window B, 2026-12-03 around 16:19 UTC: softflowd's IPFIX export of
//     three nDPI captures (flows/softflowd-ipfix-*, exporter 127.0.0.1),
//     and the DPI sensor's classification of six nDPI captures (dpi/public,
//     among them the same three), exported as IPFIX by the sensor's encoder
//     from 127.0.0.2, decoded and enriched like any exporter's, as
//     `flowlens sensor --pcap` replaying at top speed at 16:20:00 would.
//
// Expected numbers: per exporter, tshark's data_records and bytes_sum
// (NAME.expect.json; the chosen captures have no sampling, no biflow and
// their stored bytes equal tshark's, which the child checks on the store
// first); per application of the sensor, the classification's totals
// (client + server octets; a flow whose server answered is stored as two
// rows, the RFC 5103 reverse row being the decoder's documented
// behaviour); per application of the export captures, the decoder's
// labelled records, whose sums must equal tshark's.
//
// The console's clock (Deps.Now) is set to a few minutes after each window:
// the page takes an absolute range (from/to) too (the absolute-range subtest).
package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"flowlens/collector/pcap"
	"flowlens/decoder"
	"flowlens/enrich"
	"flowlens/schema"
	"flowlens/sensor"
	"flowlens/sensor/capture"
	"flowlens/sensor/export"
	"flowlens/sink/embedded"
)

// corpusRoot is the shared corpus, read in place (../shared/corpus of the
// repository).
const corpusRoot = "../../shared/corpus"

// corpusCapture is an export capture of flows/ and its exporter (the IP
// source of its datagrams).
type corpusCapture struct{ name, exporter string }

var (
	// Window A: one capture per exporter, no sampling.
	corpusVendors = []corpusCapture{
		{"pmacct-100-ipfix-cisco", "138.187.0.13"},
		{"pmacct-101-nfv9-cisco", "138.187.57.55"},
		{"pmacct-111-mix-01", "2001:4d98:a100:303:0:931:f:1"},
		{"pmacct-401-ipfix-ipv6-cisco-mpls-udponly", "2001:db8:90::1"},
		{"pmacct-500-ipfix-cisco-srv6-udponly", "198.51.100.54"},
	}
	// Window B: softflowd 1.1.0 replaying dpi/public/{dropbox,http_ipv6,kerberos}.pcap.
	corpusSoftflowd = []corpusCapture{
		{"softflowd-ipfix-dropbox", "127.0.0.1"},
		{"softflowd-ipfix-http_ipv6", "127.0.0.1"},
		{"softflowd-ipfix-kerberos", "127.0.0.1"},
	}
	// Window B: what the sensor classifies (TLS, QUIC, DNS, HTTP, Kerberos...).
	corpusDPI = []string{"dropbox.pcap", "http_ipv6.pcap", "kerberos.pcap", "netflix.pcap", "youtube_quic.pcap", "dns_doh.pcap"}
)

const (
	sensorExporter = "127.0.0.2"
	sensorReplay   = 1796314800 // 2026-12-03 16:20:00 UTC, after softflowd's last export (16:19:57)
	clockA         = 1672535100 // 2023-01-01 01:05:00 UTC: window A is 5 minutes old
	clockB         = sensorReplay + 300
	sensorHost     = "192.168.1.7" // the netflix and youtube_quic client, seen by the sensor only
	vendorExporter = "198.51.100.54"
)

func TestBrowserCorpus(t *testing.T) {
	if os.Getenv(corpusChildEnv) == "" {
		runCorpusChild(t)
		return
	}
	c := loadCorpus(t)
	var clock atomic.Int64
	clock.Store(clockA)
	srv := c.serve(t, func() time.Time { return time.Unix(clock.Load(), 0) })
	b := newBrowser(t, srv.URL)
	defer func() { t.Logf("screenshots: %s", strings.Join(b.shot, " ")) }()

	// ---- Window A: five vendor exporters, range 15 min ----
	b.step(chromedp.Navigate(srv.URL + "/#/overview?range=15m"))
	b.eval(`window.__noReload = 1; true`, nil)
	wantCells(t, "A overview", b.cells("totals", "application", "bytes"), overviewCells(c.vendorAll))
	if got, want := sumCells(b.cells("totals", "application", "bytes")), c.tsharkSum(corpusVendors).bytes; got != want {
		t.Errorf("A overview: applications add up to %d bytes, tshark's bytes_sum over the captures is %d", got, want)
	}
	// The chart holds the same numbers: bit/s per 10 s bucket x 10 / 8.
	wantCells(t, "A chart", b.chartBytes("overview", 10), overviewCells(c.vendorAll))
	// The filter bar's suggestions: the five exporters.
	b.run(chromedp.Poll(`document.querySelectorAll('#dl-exporters option').length > 0`, nil, chromedp.WithPollingTimeout(10*time.Second)))
	var suggested []string
	b.eval(`[...document.querySelectorAll('#dl-exporters option')].map((o) => o.value)`, &suggested)
	if want := c.exporters(corpusVendors); !slices.Equal(suggested, want) {
		t.Errorf("A exporter suggestions %v, want %v", suggested, want)
	}
	b.screenshot("corpus-A-overview")

	// The exporter filter, changed in place: one exporter's applications
	// add up to tshark's sums for its capture.
	b.step(b.fill(`#filters input[name="exporter"]`, vendorExporter),
		chromedp.Click(`#filters button[type="submit"]`, chromedp.ByQuery))
	wantCells(t, "A overview exporter", b.cells("totals", "application", "bytes"), c.vendorApps[vendorExporter].bytesCells())
	if got, want := sumCells(b.cells("totals", "application", "bytes")), c.tshark[vendorExporter].bytes; got != want {
		t.Errorf("A overview exporter %s: %d bytes, tshark's bytes_sum %d", vendorExporter, got, want)
	}
	b.screenshot("corpus-A-overview-exporter")

	// Top applications of that exporter: bytes and flow records.
	b.step(chromedp.Click(`#nav a[data-page="top"]`, chromedp.ByQuery))
	wantCells(t, "A top bytes", b.cells("top-table", "application", "bytes"), c.vendorApps[vendorExporter].bytesCells())
	wantCells(t, "A top flows", b.cells("top-table", "application", "flows"), c.vendorApps[vendorExporter].flowCells())
	if got, want := sumCells(b.cells("top-table", "application", "flows")), c.tshark[vendorExporter].flows; got != want {
		t.Errorf("A top: %d flows, tshark's data_records %d", got, want)
	}
	b.screenshot("corpus-A-top-exporter")

	// Exporters: the store's last hour per exporter is tshark's reading.
	// The page also lists window B's exporters, years "after" this clock:
	// its query has no upper bound (timestamp >= now - 1h), harmless with
	// a real clock, since the collector never stores a future timestamp.
	b.step(b.hash("#/exporters"))
	wantSomeCells(t, "A exporters flows", b.cells("exporters-store", "address", "flows_1h"), c.tsharkCells(corpusVendors, false))
	wantSomeCells(t, "A exporters bytes", b.cells("exporters-store", "address", "bytes_1h"), c.tsharkCells(corpusVendors, true))
	if got := b.cells("exporters-collector", "address", "flows"); got[vendorExporter] != strconv.FormatUint(c.tshark[vendorExporter].flows, 10) {
		t.Errorf("A collector view %v", got)
	}
	b.screenshot("corpus-A-exporters")

	// ---- Window B: softflowd and the sensor saw the same traffic ----
	clock.Store(clockB)
	b.step(b.hash("#/overview?range=15m"))
	wantCells(t, "B overview", b.cells("totals", "application", "bytes"), overviewCells(c.windowB()))
	wantCells(t, "B chart", b.chartBytes("overview", 10), overviewCells(c.windowB()))
	b.screenshot("corpus-B-overview")

	// An application from the table (a filter set in place): softflowd's
	// port guess and the sensor's DPI count the same Kerberos bytes.
	kerb := c.sensorApps["Kerberos"].bytes
	b.step(chromedp.Click(`#totals td[data-value="Kerberos"] a`, chromedp.ByQuery))
	wantCells(t, "B Kerberos", b.cells("totals", "application", "bytes"), map[string]string{"Kerberos": strconv.FormatUint(2*kerb, 10)})
	b.step(b.fill(`#filters input[name="exporter"]`, "127.0.0.1"),
		chromedp.Click(`#filters button[type="submit"]`, chromedp.ByQuery))
	wantCells(t, "B Kerberos softflowd", b.cells("totals", "application", "bytes"), map[string]string{"Kerberos": strconv.FormatUint(kerb, 10)})

	// The sensor alone over 6 hours: the minute rollup answers.
	b.step(b.fill(`#filters input[name="app"]`, ""), b.fill(`#filters input[name="exporter"]`, sensorExporter),
		b.choose(`#filters select[name="range"]`, "6h"))
	wantCells(t, "B sensor 6h", b.cells("totals", "application", "bytes"), overviewCells(c.sensorApps))
	if m := b.text("#meta"); !strings.Contains(m, "from flows_1m") {
		t.Errorf("B sensor 6h meta %q", m)
	}
	b.step(b.choose(`main select[name="by"]`, "category"))
	wantCells(t, "B sensor categories", b.cells("totals", "category", "bytes"), overviewCells(c.sensorCats))
	b.screenshot("corpus-B-sensor-categories")

	// Top applications and server names of the sensor.
	b.step(b.hash("#/top?range=6h&exporter=" + sensorExporter + "&dim=applications"))
	wantCells(t, "B top bytes", b.cells("top-table", "application", "bytes"), c.sensorApps.bytesCells())
	wantCells(t, "B top flows", b.cells("top-table", "application", "flows"), c.sensorApps.flowCells())
	b.screenshot("corpus-B-top-applications")
	b.step(chromedp.Click(`#dims button[data-dim="servers"]`, chromedp.ByQuery))
	wantCells(t, "B top servers", b.cells("top-table", "server_name", "bytes"), c.sensorServers.bytesCells())
	b.screenshot("corpus-B-top-servers")

	// Host: a talker's link.
	b.step(chromedp.Click(`#dims button[data-dim="talkers"]`, chromedp.ByQuery))
	b.step(chromedp.Click(`#top-table td[data-col="address"][data-value="`+sensorHost+`"] a`, chromedp.ByQuery))
	h := c.host(sensorHost)
	if got, want := b.text("#host-flows"), thousands(h.flows); got != want {
		t.Errorf("host flows %q, want %q", got, want)
	}
	wantCells(t, "host applications", b.cells("host-apps", "application", "total_bytes"), h.apps.bytesCells())
	wantCells(t, "host application flows", b.cells("host-apps", "application", "flows"), h.apps.flowCells())
	wantCells(t, "host peers", b.cells("host-peers", "peer", "total_bytes"), h.peers.topCells(20))
	b.screenshot("corpus-B-host")

	// Exporters: softflowd as tshark reads it, the sensor as classified.
	b.step(b.hash("#/exporters"))
	wantCells(t, "B exporters flows", b.cells("exporters-store", "address", "flows_1h"), map[string]string{
		"127.0.0.1": strconv.FormatUint(c.tsharkSum(corpusSoftflowd).flows, 10), sensorExporter: strconv.FormatUint(c.sensorApps.total().flows, 10)})
	wantCells(t, "B exporters bytes", b.cells("exporters-store", "address", "bytes_1h"), map[string]string{
		"127.0.0.1": strconv.FormatUint(c.tsharkSum(corpusSoftflowd).bytes, 10), sensorExporter: strconv.FormatUint(c.sensorApps.total().bytes, 10)})
	b.screenshot("corpus-B-exporters")

	var same int
	b.eval(`window.__noReload || 0`, &same)
	if same != 1 {
		t.Error("changing filters or pages reloaded the page")
	}

	// An absolute range in the page's address: the API takes from/to
	// (ParseFilter), the page should pass them on.
	t.Run("absolute-range", func(t *testing.T) {
		from, to := strconv.Itoa(clockA-900), strconv.Itoa(clockA)
		want := overviewCells(c.vendorAll)
		var s Series
		getJSON(t, srv.URL+APIPrefix+"overview?from="+from+"&to="+to, &s)
		got := map[string]string{}
		for _, r := range s.Series {
			got[r.Name] = strconv.FormatFloat(r.Total, 'f', -1, 64)
		}
		wantCells(t, "API from/to", got, want)
		sb := *b
		sb.t = t
		sb.step(sb.hash("#/overview?from=" + from + "&to=" + to))
		page := sb.cells("totals", "application", "bytes")
		sb.screenshot("corpus-absolute-range")
		b.shot = sb.shot
		wantCells(t, "page from/to", page, want)
		var shown map[string]string
		sb.eval(`({range: document.querySelector('#filters [name=range]').value, from: document.querySelector('#filters [name=from]').value})`, &shown)
		if shown["range"] != "custom" || shown["from"] != from {
			t.Errorf("filter bar shows %v, want the custom range from %s", shown, from)
		}
		// Typed into the filter bar, as RFC 3339, from a preset range.
		sb.step(sb.hash("#/overview?range=30d"))
		rfc := func(unix int) string { return time.Unix(int64(unix), 0).UTC().Format(time.RFC3339) }
		sb.step(sb.fill(`#filters [name=from]`, rfc(clockA-900)), sb.fill(`#filters [name=to]`, rfc(clockA)),
			chromedp.Click(`#filters button[type="submit"]`, chromedp.ByQuery))
		wantCells(t, "page from/to typed", sb.cells("totals", "application", "bytes"), want)
		// A preset clears the absolute range.
		sb.step(sb.choose(`#filters [name=range]`, "15m"))
		sb.eval(`({range: document.querySelector('#filters [name=range]').value, from: document.querySelector('#filters [name=from]').value})`, &shown)
		if shown["range"] != "15m" || shown["from"] != "" {
			t.Errorf("after choosing 15m the filter bar shows %v", shown)
		}
	})
}

// runCorpusChild runs TestBrowserCorpus in a child process of this test
// binary, which opens its own store.
func runCorpusChild(t *testing.T) {
	needStore(t)
	chromiumPath(t)
	for _, d := range []string{"flows", "dpi/public"} {
		if _, err := os.Stat(filepath.Join(corpusRoot, d)); err != nil {
			t.Skipf("corpus not available: %v", err)
		}
	}
	shots := os.Getenv("CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.ArtifactDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBrowserCorpus$", "-test.count=1", "-test.v", "-test.timeout=170s")
	cmd.Env = append(os.Environ(), corpusChildEnv+"=1", "CONSOLE_SCREENSHOTS="+shots)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	text := string(out)
	switch {
	case err != nil:
		t.Fatalf("corpus child: %v\n%s", err, text)
	case strings.Contains(text, "--- SKIP: TestBrowserCorpus "):
		t.Skipf("corpus child skipped:\n%s", text)
	case !strings.Contains(text, "--- PASS: TestBrowserCorpus "):
		t.Fatalf("corpus child did not run the test:\n%s", text)
	}
	t.Logf("corpus child:\n%s", text)
}

// chartBytes is each series' bytes of the chart name: its bit/s values x
// step / 8, summed.
func (b *browser) chartBytes(name string, step int) map[string]string {
	b.t.Helper()
	var m map[string]float64
	b.eval(fmt.Sprintf(`(() => { const o = window.__flowlens.charts[%q].getOption(), out = {};
  for (const s of o.series) out[s.name] = Math.round(s.data.reduce((a, p) => a + p[1], 0) * %d / 8);
  return out; })()`, name, step), &m)
	out := map[string]string{}
	for k, v := range m {
		out[k] = strconv.FormatFloat(v, 'f', -1, 64)
	}
	return out
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// wantSomeCells checks the keys of want only.
func wantSomeCells(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}

func sumCells(m map[string]string) uint64 {
	var n uint64
	for _, v := range m {
		x, _ := strconv.ParseUint(v, 10, 64)
		n += x
	}
	return n
}

// thousands formats n as toLocaleString('en') does.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// ---- expectations ----

// tally is bytes and stored rows (the console's flows).
type tally struct{ bytes, flows uint64 }

type tallies map[string]*tally

func (m tallies) add(k string, bytes, flows uint64) {
	t := m[k]
	if t == nil {
		t = &tally{}
		m[k] = t
	}
	t.bytes += bytes
	t.flows += flows
}

func (m tallies) total() tally {
	var s tally
	for _, t := range m {
		s.bytes += t.bytes
		s.flows += t.flows
	}
	return s
}

func (m tallies) bytesCells() map[string]string {
	out := map[string]string{}
	for k, t := range m {
		out[k] = strconv.FormatUint(t.bytes, 10)
	}
	return out
}

func (m tallies) flowCells() map[string]string {
	out := map[string]string{}
	for k, t := range m {
		out[k] = strconv.FormatUint(t.flows, 10)
	}
	return out
}

// sorted is m's keys by bytes, biggest first, then by name: the console's
// ORDER BY bytes DESC, name.
func (m tallies) sorted() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := m[keys[i]].bytes, m[keys[j]].bytes
		if a != b {
			return a > b
		}
		return keys[i] < keys[j]
	})
	return keys
}

// topCells is the first n keys' bytes (a LIMIT n table).
func (m tallies) topCells(n int) map[string]string {
	out := map[string]string{}
	for _, k := range m.sorted()[:min(n, len(m))] {
		out[k] = strconv.FormatUint(m[k].bytes, 10)
	}
	return out
}

// overviewCells is the overview's totals: the OverviewSeries biggest,
// the rest as Other.
func overviewCells(m tallies) map[string]string {
	keys := m.sorted()
	out := map[string]string{}
	var other uint64
	for i, k := range keys {
		if i < OverviewSeries {
			out[k] = strconv.FormatUint(m[k].bytes, 10)
		} else {
			other += m[k].bytes
		}
	}
	if len(keys) > OverviewSeries {
		out["Other"] = strconv.FormatUint(other, 10)
	}
	return out
}

// corpus is what the child stored and what the pages must show.
type corpus struct {
	store  *embedded.Store
	dir    string
	dec    *decoder.Decoder
	tshark map[string]tally // exporter: data_records and bytes_sum of its captures

	vendorAll     tallies            // window A by application
	vendorApps    map[string]tallies // window A by exporter, application
	softflowdApps tallies            // window B, softflowd, by application
	sensorApps    tallies            // window B, the sensor, by application (from the classification)
	sensorCats    tallies
	sensorServers tallies
	sensorFlows   []export.Flow
}

func (c *corpus) windowB() tallies {
	all := tallies{}
	for _, m := range []tallies{c.softflowdApps, c.sensorApps} {
		for k, t := range m {
			all.add(k, t.bytes, t.flows)
		}
	}
	return all
}

func (c *corpus) tsharkSum(caps []corpusCapture) tally {
	var s tally
	for _, e := range c.exporters(caps) {
		s.bytes += c.tshark[e].bytes
		s.flows += c.tshark[e].flows
	}
	return s
}

func (c *corpus) tsharkCells(caps []corpusCapture, bytes bool) map[string]string {
	out := map[string]string{}
	for _, e := range c.exporters(caps) {
		v := c.tshark[e].flows
		if bytes {
			v = c.tshark[e].bytes
		}
		out[e] = strconv.FormatUint(v, 10)
	}
	return out
}

// exporters are the captures' exporters, sorted as the console sorts
// addresses (as text).
func (c *corpus) exporters(caps []corpusCapture) []string {
	var out []string
	for _, x := range caps {
		if !slices.Contains(out, x.exporter) {
			out = append(out, x.exporter)
		}
	}
	sort.Strings(out)
	return out
}

// sensorRows is how many rows the store keeps of a sensor flow: the
// forward one, and the reverse one when the server sent anything.
func sensorRows(f *export.Flow) uint64 {
	if f.ServerOctets != 0 || f.ServerPackets != 0 {
		return 2
	}
	return 1
}

type hostView struct {
	flows       uint64
	apps, peers tallies
}

// host is the host page of addr over the sensor's flows.
func (c *corpus) host(addr string) hostView {
	h := hostView{apps: tallies{}, peers: tallies{}}
	for i := range c.sensorFlows {
		f := &c.sensorFlows[i]
		client, server := f.Client.Unmap().String(), f.Server.Unmap().String()
		var peer string
		switch addr {
		case client:
			peer = server
		case server:
			peer = client
		default:
			continue
		}
		n := sensorRows(f)
		h.flows += n
		h.apps.add(f.Application, f.ClientOctets+f.ServerOctets, n)
		h.peers.add(peer, f.ClientOctets+f.ServerOctets, n)
	}
	return h
}

// ---- the child: fill the store ----

func loadCorpus(t *testing.T) *corpus {
	dir := t.TempDir()
	cfg := embedded.DefaultConfig()
	cfg.DataDir = dir
	cfg.BatchInterval = 50 * time.Millisecond
	cfg.Tables.TTLDays, cfg.Tables.RollupTTLDays = 0, 0 // the captures are years old: keep them
	log := slog.New(slog.DiscardHandler)
	s, err := embedded.New(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	chain, err := enrich.New(enrich.DefaultConfig(), log, nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := chain.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := &corpus{store: s, dir: dir, dec: decoder.New(decoder.DefaultConfig()), tshark: map[string]tally{},
		vendorAll: tallies{}, vendorApps: map[string]tallies{}, softflowdApps: tallies{},
		sensorApps: tallies{}, sensorCats: tallies{}, sensorServers: tallies{}}

	// Export captures: the collector's path (decode, enrich, store).
	for _, x := range append(slices.Clone(corpusVendors), corpusSoftflowd...) {
		c.readExpect(t, x)
		vendor := slices.Contains(corpusVendors, x)
		if vendor && c.vendorApps[x.exporter] == nil {
			c.vendorApps[x.exporter] = tallies{}
		}
		c.decodeCapture(t, x, func(f *schema.Flow) {
			chain.Enrich(f)
			s.Put(f)
			if vendor {
				c.vendorAll.add(f.Protocol, f.Bytes, 1)
				c.vendorApps[x.exporter].add(f.Protocol, f.Bytes, 1)
			} else {
				c.softflowdApps.add(f.Protocol, f.Bytes, 1)
			}
		})
	}
	// DPI captures: the sensor's pipeline, its IPFIX encoder, then the
	// collector's path from the sensor's address.
	for _, name := range corpusDPI {
		c.sensorFlows = append(c.sensorFlows, classify(t, filepath.Join(corpusRoot, "dpi", "public", name))...)
	}
	for i := range c.sensorFlows {
		f := &c.sensorFlows[i]
		n := sensorRows(f)
		c.sensorApps.add(f.Application, f.ClientOctets+f.ServerOctets, n)
		c.sensorCats.add(f.Category, f.ClientOctets+f.ServerOctets, n)
		if f.ServerName != "" {
			c.sensorServers.add(f.ServerName, f.ClientOctets+f.ServerOctets, n)
		}
	}
	c.exportSensor(t, func(f *schema.Flow) { chain.Enrich(f); s.Put(f) })
	chain.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.Flush(ctx)
	c.checkStore(t)
	return c
}

func (c *corpus) readExpect(t *testing.T, x corpusCapture) {
	raw, err := os.ReadFile(filepath.Join(corpusRoot, "flows", x.name+".expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		DataRecords uint64 `json:"data_records"`
		BytesSum    uint64 `json:"bytes_sum"`
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatalf("%s.expect.json: %v", x.name, err)
	}
	e := c.tshark[x.exporter]
	e.flows += exp.DataRecords
	e.bytes += exp.BytesSum
	c.tshark[x.exporter] = e
}

// decodeCapture is `flowlens decode`'s path: the capture's datagrams in
// order through the collector's decoder, at the capture's times.
func (c *corpus) decodeCapture(t *testing.T, x corpusCapture, emit func(*schema.Flow)) {
	f, err := os.Open(filepath.Join(corpusRoot, "flows", x.name+".pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := netip.MustParseAddr(x.exporter)
	_, err = pcap.ReadUDP(bufio.NewReader(f), func(d pcap.Datagram) error {
		if d.Src.Addr().Unmap() != want {
			return fmt.Errorf("datagram from %s, not %s", d.Src, want)
		}
		return c.dec.Decode(d.Payload, d.Src, d.Timestamp, emit)
	})
	if err != nil {
		t.Fatalf("%s: %v", x.name, err)
	}
}

// classify runs the sensor's pipeline on one capture (`flowlens classify`).
func classify(t *testing.T, path string) []export.Flow {
	var mu sync.Mutex
	var out []export.Flow
	cfg := sensor.DefaultConfig()
	cfg.CaptureClock = true
	log := slog.New(slog.DiscardHandler)
	s, _, err := sensor.New(cfg, 1, func(hs []capture.Handler) (capture.Source, error) {
		return capture.NewFile(capture.FileConfig{Path: path}, log, nil, hs[0])
	}, func(f *export.Flow) { mu.Lock(); out = append(out, *f); mu.Unlock() }, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not read within 30 s", path)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return out
}

// exportSensor encodes the sensor's flows as its exporter does (IPFIX,
// default template: biflow with ntop's fields) and decodes them as the
// collector receives them from the sensor at sensorReplay.
func (c *corpus) exportSensor(t *testing.T, emit func(*schema.Flow)) {
	enc, err := export.NewEncoder(export.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(sensorReplay, 0)
	src := netip.AddrPortFrom(netip.MustParseAddr(sensorExporter), 50000)
	send := func() {
		if err := c.dec.Decode(enc.Finish(), src, at, emit); err != nil {
			t.Fatal(err)
		}
	}
	enc.Begin(at, true)
	for i := range c.sensorFlows {
		if !enc.Add(&c.sensorFlows[i]) {
			send()
			enc.Begin(at, false)
			if !enc.Add(&c.sensorFlows[i]) {
				t.Fatalf("flow %d does not fit an empty message", i)
			}
		}
	}
	send()
}

// checkStore compares the store with the expectations before any page is
// opened, so that a failure in the browser is the console's: per exporter,
// tshark's records and bytes; per application of the sensor, the
// classification's bytes and rows.
func (c *corpus) checkStore(t *testing.T) {
	rows := func(q string) map[string]tally {
		out, err := c.store.Query(context.Background(), q, "TSVRaw")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]tally{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Split(line, "\t")
			if len(f) != 3 {
				continue
			}
			n, _ := strconv.ParseUint(f[1], 10, 64)
			b, _ := strconv.ParseUint(f[2], 10, 64)
			m[f[0]] = tally{bytes: b, flows: n}
		}
		return m
	}
	byExporter := rows(`SELECT replaceOne(toString(exporter_address), '::ffff:', ''), count(), sum(bytes) FROM flows GROUP BY 1`)
	want := map[string]tally{sensorExporter: c.sensorApps.total()}
	for e, x := range c.tshark {
		want[e] = x
	}
	if fmt.Sprint(byExporter) != fmt.Sprint(want) {
		t.Fatalf("the store by exporter (records, bytes) %v\nwant (tshark; the sensor's classification) %v", byExporter, want)
	}
	byApp := rows(`SELECT protocol, count(), sum(bytes) FROM flows WHERE exporter_address = toIPv6('::ffff:` + sensorExporter + `') GROUP BY 1`)
	wantApp := map[string]tally{}
	for k, x := range c.sensorApps {
		wantApp[k] = *x
	}
	if fmt.Sprint(byApp) != fmt.Sprint(wantApp) {
		t.Fatalf("the sensor's rows by application %v\nwant (classification) %v", byApp, wantApp)
	}
}

// serve is the console on the corpus store, with the collector's view of
// the exporters (the decoder's counts) and the clock now.
func (c *corpus) serve(t *testing.T, now func() time.Time) *httptest.Server {
	cfg := testConfig()
	q, err := OpenEmbedded(c.dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	exporters := func() any {
		var out []map[string]any
		for _, e := range c.dec.Exporters() {
			out = append(out, map[string]any{"address": e.Addr.Unmap().String(), "datagrams": e.Datagrams, "flows": e.Flows, "templates": len(e.Templates)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i]["address"].(string) < out[j]["address"].(string) })
		return out
	}
	con, err := New(cfg, Deps{Querier: q, SQL: q, Now: now, Exporters: exporters})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con.Handler())
	t.Cleanup(srv.Close)
	return srv
}
