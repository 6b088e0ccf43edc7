//go:build browser

// The console in a real headless Chromium, driven by chromedp: each page
// against the fixture store, filters changed in place, numbers read back
// from the tables and the charts, screenshots kept. Build tag browser
// (chromedp is a test-only dependency): go test -tags browser ./console/.
// Screenshots go to $CONSOLE_SCREENSHOTS, else to the test's artifact
// directory (kept with go test -artifacts -outputdir DIR).
package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium (apt-get install chromium)")
	}
	t.Skip("no chromium (apt-get install chromium)")
	return ""
}

// browser is one Chromium tab on the console.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string // screenshots
	shot []string
}

func newBrowser(t *testing.T, base string) *browser {
	// Not t.TempDir: Chromium may still write its profile while it exits.
	profile, err := os.MkdirTemp("", "console-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(profile), chromedp.WindowSize(1400, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelT()
		cancelC()
		cancelA()
		time.Sleep(200 * time.Millisecond)
		_ = os.RemoveAll(profile)
	})
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.ArtifactDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, base: base, dir: dir}
}

func (b *browser) run(actions ...chromedp.Action) {
	b.t.Helper()
	if err := chromedp.Run(b.ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

// step runs actions that make the page render again (a hash change) and
// waits for the new rendering to be ready: a new <main>, data-state=ready.
func (b *browser) step(actions ...chromedp.Action) {
	b.t.Helper()
	all := append([]chromedp.Action{chromedp.Evaluate(`window.__old = document.querySelector('main'); true`, nil)}, actions...)
	all = append(all, chromedp.Poll(`(() => { const m = document.querySelector('main'); return m !== window.__old && m.dataset.state === 'ready'; })()`,
		nil, chromedp.WithPollingTimeout(20*time.Second)))
	b.run(all...)
}

// fill sets an input's value.
func (b *browser) fill(sel, value string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`(() => { document.querySelector(%q).value = %q; return true; })()`, sel, value), nil)
}

// choose sets a select's value and fires its change event.
func (b *browser) choose(sel, value string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event('change')); return true; })()`, sel, value), nil)
}

// hash navigates inside the page (no load).
func (b *browser) hash(h string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf("location.hash = %q; true", h), nil)
}

func (b *browser) eval(js string, v any) {
	b.t.Helper()
	b.run(chromedp.Evaluate(js, v))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	var buf []byte
	b.run(chromedp.Sleep(150*time.Millisecond), chromedp.FullScreenshot(&buf, 100))
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.shot = append(b.shot, p)
}

// cells is the data-value of each cell of column col in the table id,
// keyed by the value of column key.
func (b *browser) cells(id, key, col string) map[string]string {
	b.t.Helper()
	var m map[string]string
	b.eval(fmt.Sprintf(`(() => { const out = {};
  for (const tr of document.querySelectorAll('#%s tbody tr')) {
    const k = tr.querySelector('td[data-col="%s"]'), v = tr.querySelector('td[data-col="%s"]');
    if (k && v) out[k.dataset.value] = v.dataset.value;
  } return out; })()`, id, key, col), &m)
	return m
}

func wantCells(t *testing.T, what string, got map[string]string, want map[string]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	var s string
	b.run(chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

func TestBrowser(t *testing.T) {
	needStore(t)
	srv := httptest.NewServer(newConsole(testConfig()).Handler())
	defer srv.Close()
	b := newBrowser(t, srv.URL)
	defer func() { t.Logf("screenshots: %s", strings.Join(b.shot, " ")) }()

	// Overview, last hour: four applications, from flows.
	b.step(chromedp.Navigate(srv.URL + "/#/overview?range=1h"))
	b.eval(`window.__noReload = 1; true`, nil)
	wantCells(t, "overview 1h", b.cells("totals", "application", "bytes"),
		map[string]string{"TLS.YouTube": "10000", "SSH": "1400", "DNS": "500", "HTTP": "300"})
	// The chart holds the same numbers: bit/s per bucket x step / 8.
	var chartBytes map[string]float64
	b.eval(`(() => { const c = window.__flowlens.charts.overview, o = c.getOption(), out = {};
  for (const s of o.series) out[s.name] = Math.round(s.data.reduce((a, p) => a + p[1], 0) * 10 / 8);
  return out; })()`, &chartBytes)
	if fmt.Sprint(chartBytes) != fmt.Sprint(map[string]float64{"TLS.YouTube": 10000, "SSH": 1400, "DNS": 500, "HTTP": 300}) {
		t.Errorf("chart: %v", chartBytes)
	}
	if m := b.text("#meta"); !strings.Contains(m, "from flows") {
		t.Errorf("meta %q", m)
	}
	b.screenshot("overview-1h")

	// Filter bar: exporter 192.0.2.2, applied in place (no reload).
	b.step(b.fill(`#filters input[name="exporter"]`, "192.0.2.2"),
		chromedp.Click(`#filters button[type="submit"]`, chromedp.ByQuery))
	wantCells(t, "overview exporter", b.cells("totals", "application", "bytes"), map[string]string{"SSH": "1400", "HTTP": "300"})
	// Range 6h: the rollup answers, the older YouTube flow shows.
	b.step(b.fill(`#filters input[name="exporter"]`, ""),
		b.choose(`#filters select[name="range"]`, "6h"))
	wantCells(t, "overview 6h", b.cells("totals", "application", "bytes"),
		map[string]string{"TLS.YouTube": "15000", "SSH": "1400", "DNS": "500", "HTTP": "300"})
	if m := b.text("#meta"); !strings.Contains(m, "from flows_1m") {
		t.Errorf("6h meta %q", m)
	}
	// By category.
	b.step(b.choose(`main select[name="by"]`, "category"))
	wantCells(t, "overview category", b.cells("totals", "category", "bytes"),
		map[string]string{"Streaming": "15000", "RemoteAccess": "1400", "Network": "500", "Web": "300"})
	var same int
	b.eval(`window.__noReload || 0`, &same)
	if same != 1 {
		t.Error("changing filters reloaded the page")
	}
	b.screenshot("overview-6h-category")

	// Top talkers, last hour, with a pool filter.
	b.step(b.hash("#/top?range=1h&dim=talkers"))
	wantCells(t, "talkers", b.cells("top-table", "address", "bytes"),
		map[string]string{"10.0.0.1": "10800", "203.0.113.10": "10300", "10.1.0.5": "1400", "2001:db8::1": "1400", "10.0.0.2": "500"})
	b.step(b.fill(`#filters input[name="pool"]`, "guest-wifi"),
		chromedp.Click(`#filters button[type="submit"]`, chromedp.ByQuery))
	wantCells(t, "talkers pool", b.cells("top-table", "address", "bytes"), map[string]string{"10.1.0.5": "1400", "2001:db8::1": "1400"})
	// Server names: a hostile SNI is shown as text, never as markup.
	b.step(b.fill(`#filters input[name="pool"]`, ""),
		chromedp.Click(`#filters button[type="submit"]`, chromedp.ByQuery))
	b.step(chromedp.Click(`#dims button[data-dim="servers"]`, chromedp.ByQuery))
	wantCells(t, "servers", b.cells("top-table", "server_name", "bytes"), map[string]string{"www.youtube.com": "10000", xssName: "300"})
	var injected struct {
		Img   int    `json:"img"`
		Title string `json:"title"`
		Text  bool   `json:"text"`
	}
	b.eval(`({img: document.querySelectorAll('main img').length, title: document.title,
  text: [...document.querySelectorAll('#top-table td')].some((td) => td.textContent === `+"`"+xssName+"`"+`)})`, &injected)
	if injected.Img != 0 || injected.Title != "flowlens console" || !injected.Text {
		t.Errorf("server name rendered as HTML: %+v", injected)
	}
	b.screenshot("top-servers")

	// Host: follow a talker's link.
	b.step(chromedp.Click(`#dims button[data-dim="talkers"]`, chromedp.ByQuery))
	b.step(chromedp.Click(`#top-table td[data-value="10.0.0.1"] a`, chromedp.ByQuery))
	if got := b.text("#host-pool") + " " + b.text("#host-sent") + " " + b.text("#host-received") + " " + b.text("#host-flows"); got != "office 10.3 kB 500 B 16" {
		t.Errorf("host cards %q", got)
	}
	wantCells(t, "host peers", b.cells("host-peers", "peer", "total_bytes"), map[string]string{"203.0.113.10": "10300", "10.0.0.2": "500"})
	b.screenshot("host")

	// Exporters: the store's view and the collector's.
	b.step(b.hash("#/exporters"))
	wantCells(t, "exporters", b.cells("exporters-store", "address", "records_per_s"), map[string]string{"192.0.2.1": "0.05", "192.0.2.2": "0.01"})
	if got := b.cells("exporters-collector", "address", "templates"); got["192.0.2.1"] != "2" {
		t.Errorf("collector %v", got)
	}
	b.screenshot("exporters")

	// Alerts: evidence with markup is text.
	b.step(b.hash("#/alerts?range=1h"))
	wantCells(t, "alerts", b.cells("alerts-table", "rule", "severity"), map[string]string{"guest-to-servers": "high", "dns_tunnel": "medium"})
	var scripts int
	b.eval(`document.querySelectorAll('main script').length`, &scripts)
	if scripts != 0 || b.text("#sev-high") != "1" {
		t.Errorf("alerts: %d scripts, high %q", scripts, b.text("#sev-high"))
	}
	b.step(b.choose(`main select[name="severity"]`, "medium"))
	wantCells(t, "alerts medium", b.cells("alerts-table", "rule", "severity"), map[string]string{"dns_tunnel": "medium"})
	b.screenshot("alerts")

	// SQL: a query, then the row limit.
	b.step(b.hash("#/sql"))
	b.run(b.fill(`#sql-query`, "SELECT protocol, count() AS n FROM flows GROUP BY protocol ORDER BY protocol"))
	b.step(chromedp.Evaluate(`window.__old = null; document.querySelector('main').dataset.state = 'x'; true`, nil),
		chromedp.Click(`#sql-run`, chromedp.ByQuery))
	wantCells(t, "sql", b.cells("sql-table", "protocol", "n"),
		map[string]string{"BitTorrent": "1", "DNS": "5", "HTTP": "1", "SSH": "2", "TLS.YouTube": "11"})
	b.run(b.fill(`#sql-query`, "SELECT number FROM numbers(100000)"))
	b.step(chromedp.Evaluate(`window.__old = null; document.querySelector('main').dataset.state = 'x'; true`, nil),
		chromedp.Click(`#sql-run`, chromedp.ByQuery))
	var rows int
	b.eval(`document.querySelectorAll('#sql-table tbody tr').length`, &rows)
	if rows != 10 || !strings.Contains(b.text("#sql-truncated"), "first 10 rows") {
		t.Errorf("sql limit: %d rows", rows)
	}
	b.run(b.fill(`#sql-query`, "DROP TABLE flows"), chromedp.Click(`#sql-run`, chromedp.ByQuery),
		chromedp.Poll(`!document.querySelector('#error').hidden`, nil, chromedp.WithPollingTimeout(10*time.Second)))
	if e := b.text("#error"); !strings.Contains(e, "only SELECT") {
		t.Errorf("sql error %q", e)
	}
	b.screenshot("sql")

	b.eval(`window.__noReload || 0`, &same)
	if same != 1 {
		t.Error("moving between pages reloaded the page")
	}
}
