package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"flowlens/internal/chdb/chhttp"
)

// The ClickHouse server path as the server sees it (a stand-in on
// httptest; no ClickHouse server runs here): the query in the body, its
// parameters as param_<name>, the limits as settings with readonly=1
// last (after it the server changes no setting), basic auth.
func TestServerRequests(t *testing.T) {
	var got *http.Request
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		_, _ = io.WriteString(w, `{"meta":[],"data":[]}`)
	}))
	defer srv.Close()
	s := &Server{URL: srv.URL, Database: "flowlens", User: "console", Password: "secret", Cfg: DefaultConfig()}
	q := "SELECT count() FROM flows WHERE protocol = {app:String}"
	if _, err := s.QueryParams(context.Background(), q, "JSONCompact", map[string]string{"app": "' OR 1=1 --"}); err != nil {
		t.Fatal(err)
	}
	v := got.URL.Query()
	if got.Method != http.MethodPost || body != q || v.Get("param_app") != "' OR 1=1 --" || v.Get("database") != "flowlens" ||
		v.Get("default_format") != "JSONCompact" || v.Get("max_execution_time") != "10" {
		t.Errorf("pages query: %s %s body %q", got.Method, got.URL.RawQuery, body)
	}
	if u, p, ok := got.BasicAuth(); !ok || u != "console" || p != "secret" {
		t.Errorf("auth %q %q %v", u, p, ok)
	}
	if !strings.HasSuffix(got.URL.RawQuery, "&readonly=1") {
		t.Errorf("readonly is not the last setting: %s", got.URL.RawQuery)
	}
	if _, err := s.QuerySQL(context.Background(), "SELECT 1", "CSV"); err != nil {
		t.Fatal(err)
	}
	v = got.URL.Query()
	if v.Get("max_result_rows") != "10000" || v.Get("result_overflow_mode") != "break" || !strings.HasSuffix(got.URL.RawQuery, "&readonly=1") {
		t.Errorf("SQL page query: %s", got.URL.RawQuery)
	}
	// An error of the server is the caller's error, with its text.
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "Code: 164. DB::Exception: Cannot execute query in readonly mode", http.StatusForbidden)
	}))
	defer fail.Close()
	s.URL = fail.URL
	if _, err := s.QuerySQL(context.Background(), "DROP TABLE flows", ""); err == nil || !strings.Contains(err.Error(), "readonly mode") {
		t.Errorf("server error: %v", err)
	}
}

// Every page answers the same through a ClickHouse server's HTTP interface
// (the `flowlens console` role) as from the embedded store.
func TestServerAnswersLikeEmbedded(t *testing.T) {
	needStore(t)
	srv := httptest.NewServer(chhttp.Handler(fixQ, fixQ))
	defer srv.Close()
	embedded := newConsole(testConfig()).Handler()
	remote, err := New(testConfig(), Deps{Querier: &Server{URL: srv.URL, Cfg: testConfig()}, SQL: &Server{URL: srv.URL, Cfg: testConfig()},
		Now: func() time.Time { return fixNow }})
	if err != nil {
		t.Fatal(err)
	}
	rh := remote.Handler()
	paths := []string{"options?range=30d", "alerts?range=24h", "exporters"}
	for _, rng := range []string{"1h", "24h", "30d"} {
		paths = append(paths, "overview?range="+rng, "overview?by=category&range="+rng+"&pool=office",
			"host?host=10.0.0.1&range="+rng, "host?host=2001:db8::1&range="+rng+"&port=22")
		for _, d := range TopDims {
			paths = append(paths, "top?dim="+d+"&range="+rng, "top?dim="+d+"&range="+rng+"&addr=10.0.0.0/24")
		}
	}
	answer := func(h http.Handler, path string) string {
		m := getMap(t, h, path)
		delete(m, "elapsed_ms")
		delete(m, "collector") // the embedded console's test exporters
		out, _ := json.Marshal(m)
		return string(out)
	}
	for _, p := range paths {
		if got, want := answer(rh, p), answer(embedded, p); got != want {
			t.Errorf("%s through the server:\n%s\nembedded:\n%s", p, got, want)
		}
	}
	// The SQL page goes to the SQL session, with its limits.
	req := httptest.NewRequest(http.MethodPost, APIPrefix+"sql", strings.NewReader(`{"query":"SELECT number FROM numbers(100)"}`))
	req.RemoteAddr = "127.0.0.1:1234"
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	rh.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"rows":[[0],[1],`) || strings.Contains(rec.Body.String(), `[10]`) {
		t.Errorf("SQL page through the server: %d %s", rec.Code, rec.Body)
	}
}
