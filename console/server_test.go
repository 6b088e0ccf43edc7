package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
