// Package chhttp serves chDB sessions over the part of ClickHouse's HTTP
// interface that flowlens speaks (console.Server): the query in the body,
// param_<name> bound by the engine, default_format, and readonly=1 as the
// last setting. It stands in for a ClickHouse server in tests, so that the
// HTTP transport is proved on the same engine: no server runs here.
package chhttp

import (
	"context"
	"io"
	"net/http"
	"strings"
)

// Runner runs a query with engine-bound parameters in a session.
type Runner interface {
	QueryParams(ctx context.Context, query, format string, params map[string]string) ([]byte, error)
}

// SQLRunner runs a user's query in a session holding the SQL page's
// limits.
type SQLRunner interface {
	QuerySQL(ctx context.Context, query, format string) ([]byte, error)
}

// Handler answers with pages, or with sql when the request carries the
// SQL page's row limit (max_result_rows): its session holds the limits.
// A request without readonly=1 as its last setting is refused, as a
// read-only user's server would refuse a write.
func Handler(pages Runner, sql SQLRunner) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		v := r.URL.Query()
		if v.Get("readonly") != "1" || !strings.HasSuffix(r.URL.RawQuery, "&readonly=1") {
			http.Error(w, "Code: 164. readonly=1 missing or not the last setting", http.StatusForbidden)
			return
		}
		params := map[string]string{}
		for k := range v {
			if name, ok := strings.CutPrefix(k, "param_"); ok {
				params[name] = v.Get(k)
			}
		}
		var out []byte
		if v.Get("max_result_rows") != "" {
			out, err = sql.QuerySQL(r.Context(), string(b), v.Get("default_format"))
		} else {
			out, err = pages.QueryParams(r.Context(), string(b), v.Get("default_format"), params)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(out)
	})
}
