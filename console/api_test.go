package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"flowlens/schema"
)

func newConsole(cfg Config) *Console {
	c, err := New(cfg, Deps{Querier: fixQ, SQL: fixQ, Now: func() time.Time { return fixNow },
		Exporters: func() any {
			return []map[string]any{{"address": "192.0.2.1", "datagrams": 12, "errors": 1, "templates": 2}}
		}})
	if err != nil {
		panic(err) // only a registration failure, and tests register nothing
	}
	return c
}

// get calls the console's API and decodes the answer into v, checking the
// status.
func get(t *testing.T, h http.Handler, path string, q url.Values, want int, v any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil)
	req.RemoteAddr = "127.0.0.1:4000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		t.Fatalf("GET %s?%s: status %d, want %d: %s", path, q.Encode(), rec.Code, want, rec.Body)
	}
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
		}
	}
}

func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func totals(s Series) map[string]float64 {
	m := map[string]float64{}
	for _, r := range s.Series {
		m[r.Name] = r.Total
		sum := 0.0
		for _, v := range r.Values {
			sum += v
		}
		if sum != r.Total {
			panic("series values do not add up to the total")
		}
	}
	return m
}

func eqMap(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", what, got, want)
			return
		}
	}
}

func TestOverview(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	for _, tc := range []struct {
		name  string
		q     url.Values
		table string
		step  int64
		want  map[string]float64
	}{
		{"15m", vals("range", "15m"), "flows", 10, map[string]float64{"TLS.YouTube": 10000, "SSH": 1400, "DNS": 500, "HTTP": 300}},
		{"1h is fine-grained, from flows", vals("range", "1h"), "flows", 10, map[string]float64{"TLS.YouTube": 10000, "SSH": 1400, "DNS": 500, "HTTP": 300}},
		{"6h from the rollup", vals("range", "6h"), "flows_1m", 60, map[string]float64{"TLS.YouTube": 15000, "SSH": 1400, "DNS": 500, "HTTP": 300}},
		{"7d from the hourly rollup", vals("range", "7d"), "flows_1h", 3600, map[string]float64{"BitTorrent": 1e6, "TLS.YouTube": 15000, "SSH": 1400, "DNS": 500, "HTTP": 300}},
		{"30d", vals("range", "30d"), "flows_1h", 7200, map[string]float64{"BitTorrent": 1e6, "TLS.YouTube": 15000, "SSH": 1400, "DNS": 500, "HTTP": 300}},
		{"rollup takes exporter", vals("range", "6h", "exporter", "192.0.2.2"), "flows_1m", 60, map[string]float64{"SSH": 1400, "HTTP": 300}},
		{"rollup takes app", vals("range", "24h", "app", "TLS.YouTube"), "flows_1m", 300, map[string]float64{"TLS.YouTube": 15000}},
		{"pool needs flows", vals("range", "6h", "pool", "guest-wifi"), "flows", 60, map[string]float64{"SSH": 1400}},
		{"hourly rollup takes pool", vals("range", "7d", "pool", "guest-wifi"), "flows_1h", 3600, map[string]float64{"SSH": 1400, "BitTorrent": 1e6}},
		{"hourly rollup by category", vals("range", "30d", "by", "category"), "flows_1h", 7200, map[string]float64{"Streaming": 15000, "RemoteAccess": 1400, "Network": 500, "Web": 300, "Download": 1e6}},
		{"30d with a port: flows", vals("range", "30d", "port", "6881"), "flows", 7200, map[string]float64{"BitTorrent": 1e6}},
		{"30d with an address: conversations_1h", vals("range", "30d", "addr", "198.51.100.7"), "conversations_1h", 7200, map[string]float64{"BitTorrent": 1e6}},
		{"cidr", vals("range", "1h", "addr", "10.0.0.0/24"), "flows", 10, map[string]float64{"TLS.YouTube": 10000, "DNS": 500, "HTTP": 300}},
		{"ipv6 cidr", vals("range", "1h", "addr", "2001:db8::/32"), "flows", 10, map[string]float64{"SSH": 1400}},
		{"one address", vals("range", "1h", "addr", "10.0.0.2"), "flows", 10, map[string]float64{"DNS": 500}},
		{"port", vals("range", "1h", "port", "22"), "flows", 10, map[string]float64{"SSH": 1400}},
		{"by category", vals("range", "1h", "by", "category"), "flows", 10, map[string]float64{"Streaming": 10000, "RemoteAccess": 1400, "Network": 500, "Web": 300}},
		{"flows metric", vals("range", "6h", "metric", "flows"), "flows_1m", 60, map[string]float64{"TLS.YouTube": 11, "SSH": 2, "DNS": 5, "HTTP": 1}},
		{"packets metric", vals("range", "1h", "metric", "packets"), "flows", 10, map[string]float64{"TLS.YouTube": 100, "SSH": 14, "DNS": 5, "HTTP": 3}},
		{"custom range", vals("from", itoa(fixNow.Unix()-4*3600), "to", itoa(fixNow.Unix()-2*3600)), "flows", 30, map[string]float64{"TLS.YouTube": 5000}},
		{"rfc3339 range", vals("from", fixNow.Add(-4*time.Hour).UTC().Format(time.RFC3339), "to", fixNow.Add(-time.Hour).Format(time.RFC3339)), "flows", 30, map[string]float64{"TLS.YouTube": 5000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Series
			get(t, h, APIPrefix+"overview", tc.q, 200, &s)
			if s.Table != tc.table || s.Step != tc.step {
				t.Errorf("table %s step %d, want %s %d", s.Table, s.Step, tc.table, tc.step)
			}
			if len(s.Times) == 0 || len(s.Times) > 400 {
				t.Errorf("%d buckets", len(s.Times))
			}
			for _, r := range s.Series {
				if len(r.Values) != len(s.Times) {
					t.Errorf("series %s: %d values for %d buckets", r.Name, len(r.Values), len(s.Times))
				}
			}
			eqMap(t, "totals", totals(s), tc.want)
			if len(s.Series) > 0 && tc.want[s.Series[0].Name] == 0 {
				t.Errorf("first series %s", s.Series[0].Name)
			}
		})
	}
}

// The overview stacks OverviewSeries series and folds the rest into Other.
func TestOverviewOther(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	var s Series
	// 30 days: 5 applications, all shown; the fold is checked by
	// counting: no more than OverviewSeries+1 series ever.
	get(t, h, APIPrefix+"overview", vals("range", "30d"), 200, &s)
	if len(s.Series) > OverviewSeries+1 {
		t.Errorf("%d series", len(s.Series))
	}
	if s.Series[0].Name != "BitTorrent" {
		t.Errorf("biggest first: %v", s.Series[0].Name)
	}
}

func itoa(n int64) string { return strconvFormat(n) }

func TestTop(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	for _, tc := range []struct {
		name  string
		q     url.Values
		table string
		first []any // the first row's leading values
		rows  int
	}{
		{"applications 15m", vals("dim", "applications", "range", "15m"), "flows", []any{"TLS.YouTube", "Streaming", 10000.0, 100.0, 10.0}, 4},
		{"applications 1h (rollup)", vals("dim", "applications", "range", "1h"), "flows_1m", []any{"TLS.YouTube", 10000.0, 100.0, 10.0}, 4},
		{"applications 6h (rollup)", vals("dim", "applications", "range", "6h"), "flows_1m", []any{"TLS.YouTube", 15000.0}, 4},
		{"applications pool", vals("dim", "applications", "range", "6h", "pool", "office"), "flows", []any{"TLS.YouTube", "Streaming", 15000.0}, 3},
		{"talkers", vals("dim", "talkers", "range", "1h"), "flows", []any{"10.0.0.1", "office", 10300.0, 500.0, 10800.0, 16.0}, 5},
		{"talkers exporter", vals("dim", "talkers", "range", "1h", "exporter", "192.0.2.2"), "flows", []any{"10.1.0.5", "guest-wifi", 1400.0, 0.0, 1400.0}, 4},
		{"conversations", vals("dim", "conversations", "range", "1h"), "flows", []any{"10.0.0.1", "203.0.113.10", "TLS.YouTube", 10300.0}, 3},
		{"conversations port", vals("dim", "conversations", "range", "1h", "port", "53"), "flows", []any{"10.0.0.2", "10.0.0.1", "DNS", 500.0}, 1},
		{"countries", vals("dim", "countries", "range", "1h"), "flows", []any{"DE", 10300.0, 0.0, 10300.0}, 2},
		{"asns", vals("dim", "asns", "range", "1h"), "flows", []any{64500.0, "Example Transit", 0.0, 10300.0}, 1},
		{"servers", vals("dim", "servers", "range", "1h"), "flows", []any{"www.youtube.com", "TLS.YouTube", 10000.0, 10.0, 1.0}, 2},
		{"limit", vals("dim", "talkers", "range", "1h", "limit", "2"), "flows", []any{"10.0.0.1"}, 2},
		{"nothing", vals("dim", "applications", "range", "1h", "app", "NoSuchApp"), "flows_1m", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r TopResult
			get(t, h, APIPrefix+"top", tc.q, 200, &r)
			if r.Meta.Table != tc.table {
				t.Errorf("table %s, want %s", r.Meta.Table, tc.table)
			}
			if len(r.Rows) != tc.rows {
				t.Fatalf("%d rows, want %d: %v", len(r.Rows), tc.rows, r.Rows)
			}
			if len(tc.first) > len(r.Columns) {
				t.Fatalf("columns %v", r.Columns)
			}
			for j, v := range tc.first {
				if v != nil && r.Rows[0][j] != v {
					t.Errorf("row 0 %s = %v, want %v (%v)", r.Columns[j], r.Rows[0][j], v, r.Rows[0])
				}
			}
		})
	}
}

func TestHost(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	var host Host
	get(t, h, APIPrefix+"host", vals("host", "10.0.0.1", "range", "1h"), 200, &host)
	if host.Address != "10.0.0.1" || host.Pool != "office" || host.BytesSent != 10300 || host.BytesRecv != 500 || host.Flows != 16 {
		t.Errorf("host %+v", host)
	}
	if host.Country != "DE" {
		t.Errorf("country %q", host.Country)
	}
	sent, recv := 0.0, 0.0
	for i := range host.Times {
		sent += host.Sent[i]
		recv += host.Received[i]
	}
	if sent != 10300 || recv != 500 || len(host.Sent) != len(host.Times) {
		t.Errorf("series sent %v received %v", sent, recv)
	}
	if len(host.Peers.Rows) != 2 || host.Peers.Rows[0][0] != "203.0.113.10" || host.Peers.Rows[0][4] != 10300.0 || host.Peers.Columns[4] != "total_bytes" ||
		host.Peers.Rows[1][0] != "10.0.0.2" || host.Peers.Rows[1][1] != "servers" || host.Peers.Rows[1][3] != 500.0 {
		t.Errorf("peers %v", host.Peers.Rows)
	}
	if len(host.Applications.Rows) != 3 || host.Applications.Rows[0][0] != "TLS.YouTube" {
		t.Errorf("applications %v", host.Applications.Rows)
	}
	// 6 hours: the older YouTube flow too.
	get(t, h, APIPrefix+"host", vals("host", "10.0.0.1", "range", "6h"), 200, &host)
	if host.BytesSent != 15300 {
		t.Errorf("6h sent %v", host.BytesSent)
	}
	// IPv6, as destination only.
	get(t, h, APIPrefix+"host", vals("host", "2001:db8::1", "range", "1h"), 200, &host)
	if host.BytesRecv != 1400 || host.BytesSent != 0 || len(host.Peers.Rows) != 1 || host.Peers.Rows[0][0] != "10.1.0.5" {
		t.Errorf("v6 host %+v", host)
	}
	// Filters apply: only port 53.
	get(t, h, APIPrefix+"host", vals("host", "10.0.0.1", "range", "1h", "port", "53"), 200, &host)
	if host.BytesRecv != 500 || host.BytesSent != 0 {
		t.Errorf("port filter %+v", host)
	}
	get(t, h, APIPrefix+"host", vals("host", "10.0.0.0/8"), 400, nil)
	get(t, h, APIPrefix+"host", vals(), 400, nil)
}

func TestAlerts(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	var a Alerts
	get(t, h, APIPrefix+"alerts", vals("range", "1h"), 200, &a)
	if len(a.Rows) != 2 || a.BySeverity["high"] != 1 || a.BySeverity["medium"] != 1 {
		t.Fatalf("alerts %+v", a)
	}
	// Newest first; evidence comes back as text, unescaped (the page sets
	// it with textContent).
	if a.Rows[0][2] != "policy" || a.Rows[1][10] != `<script>alert(1)</script>.evil.example: 400 queries` || a.Rows[1][6] != "::" {
		t.Errorf("rows %v", a.Rows)
	}
	for q, n := range map[string]int{"severity=high": 1, "kind=dns_tunnel": 1, "pool=servers": 1, "addr=10.0.0.1": 1,
		"app=SSH": 1, "addr=10.0.0.0/16": 2, "range=15m&port=22&exporter=192.0.2.9": 2} {
		v, _ := url.ParseQuery(q)
		if v.Get("range") == "" {
			v.Set("range", "1h")
		}
		get(t, h, APIPrefix+"alerts", v, 200, &a)
		if len(a.Rows) != n {
			t.Errorf("%s: %d rows, want %d", q, len(a.Rows), n)
		}
	}
	get(t, h, APIPrefix+"alerts", vals("severity", "high' OR '1'='1"), 400, nil)
	get(t, h, APIPrefix+"alerts", vals("kind", "x"), 400, nil)
}

func TestExporters(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	var e struct {
		Collector []map[string]any `json:"collector"`
		Store     Table            `json:"store"`
	}
	get(t, h, APIPrefix+"exporters", nil, 200, &e)
	if len(e.Collector) != 1 || e.Collector[0]["templates"] != 2.0 {
		t.Errorf("collector %v", e.Collector)
	}
	want := [][]any{{"192.0.2.1", "netflow_v9", 0.05, 15.0, 10500.0, "1 (none)"}, {"192.0.2.2", "ipfix", 0.01, 3.0, 1700.0, "1 (options)"}}
	if len(e.Store.Rows) != 2 {
		t.Fatalf("store %v", e.Store)
	}
	for i, w := range want {
		r := e.Store.Rows[i]
		src, _ := r[1].([]any)
		if r[0] != w[0] || len(src) != 1 || src[0] != w[1] || r[3] != w[2] || r[4] != w[3] || r[5] != w[4] || r[6] != w[5] {
			t.Errorf("exporter %d: %v, want %v", i, r, w)
		}
	}
}

func TestOptions(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	var o Options
	get(t, h, APIPrefix+"options", vals("range", "1h"), 200, &o)
	if strings.Join(o.Exporters, ",") != "192.0.2.1,192.0.2.2" || strings.Join(o.Pools, ",") != "guest-wifi,office,servers" ||
		len(o.Applications) != 4 || o.Applications[0] != "TLS.YouTube" {
		t.Errorf("options %+v", o)
	}
}

// Every user value is validated by type before it becomes a parameter:
// injection attempts are refused with 400 and never reach the engine.
func TestFilterRejects(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	for _, q := range []url.Values{
		vals("app", "x' OR 1=1 --"),
		vals("app", "TLS'); DROP TABLE flows; --"),
		vals("pool", "servers' OR src_pool != '"),
		vals("pool", "a\nb"),
		vals("addr", "10.0.0.1' OR '1'='1"),
		vals("addr", "10.0.0.0/33"),
		vals("addr", "not-an-address"),
		vals("exporter", "192.0.2.1; SELECT 1"),
		vals("port", "22 OR 1=1"),
		vals("port", "70000"),
		vals("port", "-1"),
		vals("range", "1h; DROP TABLE flows"),
		vals("range", "2h"),
		vals("from", "yesterday"),
		vals("from", itoa(fixNow.Unix()), "to", itoa(fixNow.Unix()-60)),
		vals("from", itoa(fixNow.Unix()-40*86400)),
		vals("from", "99999999999"),
		vals("by", "protocol; DROP"),
		vals("metric", "sum(bytes)"),
	} {
		for _, page := range []string{"overview", "top", "alerts", "options"} {
			if page != "overview" && (q.Has("by") || q.Has("metric")) {
				continue
			}
			req := httptest.NewRequest(http.MethodGet, APIPrefix+page+"?"+q.Encode(), nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "bad filter") {
				t.Errorf("%s?%s: %d %s", page, q.Encode(), rec.Code, rec.Body)
			}
		}
	}
	for _, q := range []url.Values{vals("dim", "talkers UNION ALL SELECT"), vals("limit", "1; DROP"), vals("limit", "100000")} {
		get(t, h, APIPrefix+"top", q, 400, nil)
	}
	// The table is intact.
	out, err := fixQ.Query(context.Background(), "SELECT count() FROM flows", "TSV")
	if err != nil || strings.TrimSpace(string(out)) != "20" {
		t.Fatalf("flows: %q %v", out, err)
	}
}

// Parameters are bound by the engine: a hostile value is a value, never
// SQL, even where validation would let it through.
func TestParamsAreValues(t *testing.T) {
	needStore(t)
	ctx := context.Background()
	for v, want := range map[string]string{
		"TLS.YouTube":               "11",
		"x' OR '1'='1":              "0",
		`TLS.YouTube\' OR 1=1 --`:   "0",
		"TLS.YouTube\t":             "0",
		"TLS.YouTube' OR 1=1) --\n": "0",
	} {
		out, err := fixQ.QueryParams(ctx, "SELECT count() FROM flows WHERE protocol = {app:String}", "TSV", map[string]string{"app": v})
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("app %q: %q %v, want %s", v, out, err, want)
		}
	}
	// Byte for byte: what goes in comes out.
	for _, v := range []string{`a\b`, "tab\there", "new\nline", `quote'"`, "nul\x00byte", "ünï©ødé"} {
		out, err := fixQ.QueryParams(ctx, "SELECT hex({v:String})", "TSVRaw", map[string]string{"v": v})
		if err != nil || strings.TrimSpace(string(out)) != strings.ToUpper(hexOf(v)) {
			t.Errorf("%q: %q %v", v, out, err)
		}
	}
	// The pages' session is read-only.
	if _, err := fixQ.QueryParams(ctx, "INSERT INTO alerts (kind) VALUES ({k:String})", "", map[string]string{"k": "x"}); err == nil ||
		!strings.Contains(err.Error(), "readonly") {
		t.Errorf("insert on the pages' session: %v", err)
	}
}

func sqlPost(t *testing.T, h http.Handler, body any, remote string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(http.MethodPost, APIPrefix+"sql", bytes.NewReader(b))
	req.RemoteAddr = remote
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestSQL(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	local := "127.0.0.1:5000"
	rec := sqlPost(t, h, SQLRequest{Query: "SELECT protocol, sum(bytes) AS b FROM flows GROUP BY protocol ORDER BY b DESC"}, local, nil)
	var r SQLResult
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &r) != nil {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if len(r.Rows) != 5 || r.Rows[0][0] != "BitTorrent" || r.Rows[0][1] != 1e6 || r.Truncated || r.Columns[1] != "b" {
		t.Errorf("%+v", r)
	}
	// The row limit (10 here) holds whatever the engine's blocks.
	rec = sqlPost(t, h, SQLRequest{Query: "SELECT number FROM numbers(1000000)"}, local, nil)
	if json.Unmarshal(rec.Body.Bytes(), &r) != nil || len(r.Rows) != 10 || !r.Truncated {
		t.Errorf("limit: %d rows truncated=%v", len(r.Rows), r.Truncated)
	}
	// CSV download, quoting done by the console.
	rec = sqlPost(t, h, SQLRequest{Query: "SELECT 'a,b' AS x, 'say \"hi\"' AS y, 3 AS n", Format: "csv"}, local, nil)
	if rec.Code != 200 || rec.Body.String() != "x,y,n\n\"a,b\",\"say \"\"hi\"\"\",3\n" ||
		!strings.Contains(rec.Header().Get("Content-Disposition"), "attachment") {
		t.Errorf("csv: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	for _, tc := range []struct {
		q    string
		code int
		msg  string
	}{
		{"INSERT INTO alerts (kind) VALUES ('x')", 400, "only SELECT"},
		{"DROP TABLE flows", 400, "only SELECT"},
		{"SELECT 1 INTO OUTFILE '/tmp/x'", 400, "only SELECT"},
		{"SELECT 1 SETTINGS readonly = 0", 400, "readonly"},
		{"SELECT number FROM numbers(100) SETTINGS max_result_rows = 1000", 400, "readonly"},
		{"SELECT * FROM file('/etc/passwd', 'LineAsString')", 400, "readonly"},
		{"SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", 400, "readonly"},
		{"WITH 1 AS x SELECT x; DROP TABLE flows", 400, ""},
		{"SELECT count() FROM numbers(1000000000000)", 400, "TIMEOUT_EXCEEDED"},
		{"SELECT 1 FORMAT CSV", 200, `"rows":[[1]]`}, // the session's format wins
		{"", 400, "empty"},
	} {
		rec := sqlPost(t, h, SQLRequest{Query: tc.q}, local, nil)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.msg) {
			t.Errorf("%q: %d %s", tc.q, rec.Code, rec.Body)
		}
	}
	out, err := fixQ.Query(context.Background(), "SELECT count() FROM flows", "TSV")
	if err != nil || strings.TrimSpace(string(out)) != "20" {
		t.Fatalf("flows after the attempts: %q %v", out, err)
	}
	// Loopback only without auth, JSON only.
	if rec := sqlPost(t, h, SQLRequest{Query: "SELECT 1"}, "192.0.2.99:5000", nil); rec.Code != 403 {
		t.Errorf("remote: %d", rec.Code)
	}
	if rec := sqlPost(t, h, SQLRequest{Query: "SELECT 1"}, local, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); rec.Code != 415 {
		t.Errorf("form post: %d", rec.Code)
	}
	// No SQLQuerier: no SQL page.
	c2, err := New(testConfig(), Deps{Querier: fixQ})
	if err != nil {
		t.Fatal(err)
	}
	h2 := c2.Handler()
	if rec := sqlPost(t, h2, SQLRequest{Query: "SELECT 1"}, local, nil); rec.Code != 503 {
		t.Errorf("no sql querier: %d", rec.Code)
	}
}

func TestAuth(t *testing.T) {
	needStore(t)
	cfg := testConfig()
	cfg.BasicUser, cfg.BasicPassword, cfg.Token = "admin", "s3cret", "0123456789abcdef0123"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := newConsole(cfg).Handler()
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	for _, tc := range []struct {
		auth string
		code int
	}{
		{"", 401}, {basic("admin", "wrong"), 401}, {basic("admin", "s3cret"), 200},
		{"Bearer nope", 401}, {"Bearer 0123456789abcdef0123", 200},
	} {
		req := httptest.NewRequest(http.MethodGet, APIPrefix+"top?range=1h", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("%q: %d, want %d", tc.auth, rec.Code, tc.code)
		}
		if rec.Code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic") {
			t.Errorf("401 without a basic challenge: %v", rec.Header())
		}
	}
	// With auth, a remote client may use the SQL page once authenticated.
	if rec := sqlPost(t, h, SQLRequest{Query: "SELECT 1"}, "192.0.2.99:5000", nil); rec.Code != 401 {
		t.Errorf("remote sql without auth: %d", rec.Code)
	}
	if rec := sqlPost(t, h, SQLRequest{Query: "SELECT 1"}, "192.0.2.99:5000", map[string]string{"Authorization": basic("admin", "s3cret")}); rec.Code != 200 {
		t.Errorf("remote sql with auth: %d %s", rec.Code, rec.Body)
	}
	// The page itself (no data) loads without credentials, with its fences.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "<title>flowlens") ||
		!strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("index: %d %v", rec.Code, rec.Header())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"USER":          func(c *Config) { c.BasicUser = "a" },
		"TOKEN":         func(c *Config) { c.Token = "short" },
		"SQL_MAX_ROWS":  func(c *Config) { c.SQLMaxRows = 0 },
		"SQL_TIMEOUT":   func(c *Config) { c.SQLTimeout = 0 },
		"QUERY_TIMEOUT": func(c *Config) { c.QueryTimeout = time.Millisecond },
		"SQL_MAX_BYTES": func(c *Config) { c.SQLMaxBytes = 1 },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CONSOLE_"+name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestUnknownEndpoint(t *testing.T) {
	needStore(t)
	h := newConsole(testConfig()).Handler()
	get(t, h, APIPrefix+"nope", nil, 404, nil)
}

func strconvFormat(n int64) string { return strconv.FormatInt(n, 10) }

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }

// Every page answers the same from the rollups as from flows, over ranges
// aligned to hours (as the rollups align them) and with every filter a
// rollup keeps.
func TestRollupsMatchFlows(t *testing.T) {
	needStore(t)
	rolled := newConsole(testConfig()).Handler()
	rc := newConsole(testConfig())
	rc.rawOnly = true
	raw := rc.Handler()
	var queries []string
	for _, days := range []int64{1, 7, 30} {
		// Whole hours for the hourly rollups, whole days for the daily
		// ones (a week or more), so that they answer the same range.
		end := fixNow.Truncate(time.Hour).Add(time.Hour).Unix()
		if days >= 7 {
			end = fixNow.Truncate(24 * time.Hour).Add(24 * time.Hour).Unix()
		}
		rng := vals("from", itoa(end-days*86400), "to", itoa(end))
		for _, filter := range [][]string{nil, {"exporter", "192.0.2.1"}, {"app", "TLS.YouTube"}, {"pool", "guest-wifi"}, {"pool", "office"}, {"addr", "10.0.0.0/24"}, {"addr", "2001:db8::1"}} {
			q := url.Values{}
			for k, v := range rng {
				q[k] = v
			}
			for i := 0; i+1 < len(filter); i += 2 {
				q.Set(filter[i], filter[i+1])
			}
			for _, by := range []string{"application", "category"} {
				queries = append(queries, "overview?by="+by+"&"+q.Encode())
			}
			for _, d := range TopDims {
				queries = append(queries, "top?dim="+d+"&"+q.Encode())
			}
			for _, host := range []string{"10.0.0.1", "10.1.0.5", "2001:db8::1", "198.51.100.7"} {
				queries = append(queries, "host?host="+host+"&"+q.Encode())
			}
		}
	}
	answer := func(h http.Handler, path string) (map[string]any, string) {
		m := getMap(t, h, path)
		table, _ := m["table"].(string)
		note, _ := m["note"].(string)
		if (table == "top_conversations_1d") != (note != "") {
			t.Errorf("%s from %s: note %q (the top lists, and they only, are approximate)", path, table, note)
		}
		delete(m, "table")
		delete(m, "elapsed_ms")
		delete(m, "note")
		return m, table
	}
	used := map[string]int{}
	for _, path := range queries {
		got, table := answer(rolled, path)
		want, _ := answer(raw, path)
		used[table]++
		if strings.HasPrefix(path, "host?") && table != "flows" {
			// Hour-long rows: first and last seen are the hour's start.
			for _, k := range []string{"first_seen", "last_seen"} {
				if g, w := got[k].(float64), want[k].(float64); g > w || w-g >= 3600 {
					t.Errorf("%s from %s: %s %v, want the hour of %v", path, table, k, g, w)
				}
				delete(got, k)
				delete(want, k)
			}
		}
		if !reflect.DeepEqual(got, want) {
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			t.Errorf("%s from %s:\n%s\nfrom flows:\n%s", path, table, gb, wb)
		}
	}
	// The fixture's days hold fewer pairs than a top list keeps: summing
	// the lists is then exact.
	for _, table := range []string{"flows_1h", "conversations_1h", "servers_1h", "hosts_1d", "servers_1d", "top_conversations_1d"} {
		if used[table] == 0 {
			t.Errorf("no page read %s: %v", table, used)
		}
	}
	// Talkers from hosts_1d read both its rows and conversations_1h's
	// after its filled_to: both must hold some for the comparison to
	// test the seam.
	out, err := fixQ.Query(context.Background(), "SELECT (SELECT count() FROM hosts_1d) > 0, "+
		"(SELECT count() FROM conversations_1h WHERE timestamp >= "+schema.FilledTo("hosts_1d")+") > 0", "TSV")
	if err != nil || string(out) != "1\t1\n" {
		t.Errorf("hosts_1d rows, conversations_1h rows after its filled_to: %q %v, want both", out, err)
	}
	t.Logf("%d pages compared, tables read: %v", len(queries), used)
}

// getMap is the JSON object a GET of the API path answers, which must be
// 200.
func getMap(t *testing.T, h http.Handler, path string) map[string]any {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, APIPrefix+path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}
