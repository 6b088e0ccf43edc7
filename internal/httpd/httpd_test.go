package httpd

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func FuzzCheckReadOnly(f *testing.F) {
	f.Add("SELECT 1")
	f.Add("((")
	f.Fuzz(func(t *testing.T, q string) { _ = CheckReadOnly(q) })
}

func TestCheckReadOnly(t *testing.T) {
	for q, ok := range map[string]bool{
		"SELECT 1":                         true,
		"  select count() from flows;  ":   true,
		"WITH 1 AS x SELECT x":             true,
		"SHOW TABLES":                      true,
		"DESCRIBE flows":                   true,
		"EXPLAIN SELECT 1":                 true,
		"(SELECT 1)":                       true,
		"DROP TABLE flows":                 false,
		"INSERT INTO flows VALUES (1)":     false,
		"ALTER TABLE flows DELETE WHERE 1": false,
		"SELECT 1 INTO OUTFILE '/tmp/x'":   false,
		"":                                 false,
		";":                                false,
		"((":                               false,
	} {
		if err := CheckReadOnly(q); (err == nil) != ok {
			t.Errorf("%q: err=%v, want ok=%v", q, err, ok)
		}
	}
}

type fakeQuerier struct{ got, format string }

func (f *fakeQuerier) Query(_ context.Context, q, format string) ([]byte, error) {
	f.got, f.format = q, format
	return []byte("result\n"), nil
}

func TestQueryEndpoint(t *testing.T) {
	q := &fakeQuerier{}
	s := New(Config{Listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), q)
	for _, c := range []struct {
		method, remote, body, target string
		code                         int
	}{
		{"POST", "127.0.0.1:5000", "SELECT 1", QueryPath + "?format=CSV", 200},
		{"GET", "[::1]:5000", "", QueryPath + "?q=SELECT+2", 200},
		{"POST", "192.0.2.7:5000", "SELECT 1", QueryPath, 403},
		{"POST", "127.0.0.1:5000", "DROP TABLE flows", QueryPath, 400},
		{"PUT", "127.0.0.1:5000", "SELECT 1", QueryPath, 405},
		{"POST", "127.0.0.1:5000", strings.Repeat("x", MaxQueryBytes+1), QueryPath, 413},
		{"GET", "192.0.2.7:5000", "", "/healthz", 200},
	} {
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
		req.RemoteAddr = c.remote
		rec := httptest.NewRecorder()
		s.srv.Handler.ServeHTTP(rec, req)
		if rec.Code != c.code {
			body, _ := io.ReadAll(rec.Body)
			t.Errorf("%s %s from %s: %d %s, want %d", c.method, c.target, c.remote, rec.Code, body, c.code)
		}
	}
	if q.got != "SELECT 2" || q.format != "PrettyCompactMonoBlock" {
		t.Fatalf("last query %q format %q", q.got, q.format)
	}
}
