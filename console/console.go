// Package console serves flowlens's web console: overview, top, host,
// exporters, alerts and SQL pages (a single-page front end embedded in the
// binary, console/dist, built from console/web by console/build.sh) and
// the JSON API they read under /api/v1/console/.
//
// The console only speaks SQL through a Querier, so it works the same on
// the embedded store (Embedded: sessions of this process's chDB engine) and
// on a ClickHouse server (Server: its HTTP interface). Every filter value is
// validated by type and travels as an engine-bound query parameter
// ({name:Type}); the SQL text holds constants only. User SQL runs only on a
// SQLQuerier, whose session enforces readonly=1 and the row, time and size
// limits itself.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Querier runs the pages' queries: httpd.Querier plus parameters bound by
// the engine, never spliced into the SQL text.
type Querier interface {
	Query(ctx context.Context, query, format string) ([]byte, error)
	QueryParams(ctx context.Context, query, format string, params map[string]string) ([]byte, error)
}

// SQLQuerier runs the SQL page's user queries in a session that enforces
// readonly=1, max_execution_time, max_result_rows (result_overflow_mode =
// break) and max_result_bytes, so that no SETTINGS clause can lift them.
type SQLQuerier interface {
	QuerySQL(ctx context.Context, query, format string) ([]byte, error)
}

// Deps are what the console reads.
type Deps struct {
	Querier Querier
	// SQL runs the SQL page; nil disables the page (503).
	SQL SQLQuerier
	Log *slog.Logger
	// Exporters returns the collector's per-exporter health (what
	// /api/v1/exporters serves); nil when this process has no collector.
	Exporters func() any
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Registerer receives the console's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Console is the web console component. It has no goroutines of its own:
// Handler is all there is.
type Console struct {
	cfg  Config
	deps Deps
	mux  *http.ServeMux
	m    *metrics
	// rawOnly makes every page read flows: tests compare the rollups'
	// answers with it.
	rawOnly bool
}

// rollups are sources, or none when the console reads flows only.
func (c *Console) rollups(sources ...source) []source {
	if c.rawOnly {
		return nil
	}
	return sources
}

//go:embed dist
var dist embed.FS

// APIPrefix is where the console's JSON lives.
const APIPrefix = "/api/v1/console/"

// New returns the console; cfg is assumed valid (Validate). It fails only
// when its metrics cannot be registered.
func New(cfg Config, deps Deps) (*Console, error) {
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("console metrics: %w", err)
	}
	c := &Console{cfg: cfg, deps: deps, mux: http.NewServeMux(), m: m}
	api := map[string]func(*http.Request) (any, error){
		"overview":  c.overview,
		"top":       c.top,
		"host":      c.host,
		"alerts":    c.alerts,
		"exporters": c.exporters,
		"options":   c.options,
	}
	for name, h := range api {
		c.mux.Handle("GET "+APIPrefix+name, m.instrument(name, c.auth(c.jsonHandler(h))))
	}
	c.mux.Handle("POST "+APIPrefix+"sql", m.instrument("sql", c.auth(http.HandlerFunc(c.sql))))
	c.mux.Handle("GET "+APIPrefix+"config", c.auth(c.jsonHandler(func(*http.Request) (any, error) {
		return map[string]any{"sql": c.deps.SQL != nil, "sql_max_rows": c.cfg.SQLMaxRows,
			"exporters": c.deps.Exporters != nil, "ranges": []string{"15m", "1h", "6h", "24h", "7d", "30d"}}, nil
	})))
	c.mux.Handle(APIPrefix, c.auth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, errors.New("no such console endpoint"))
	})))
	static, _ := fs.Sub(dist, "dist")
	files := http.FileServerFS(static)
	c.mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, errors.New("the console's pages are read with GET"))
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return c, nil
}

// Handler serves the pages at / and the API at /api/v1/console/.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The page loads only its own script and style; data is set with
		// textContent (never as HTML), this is the second fence.
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		c.mux.ServeHTTP(w, r)
	})
}

// Register adds the console to the daemon's mux: "/" (pages; more specific
// paths such as /metrics keep their handlers) and the API prefix.
func (c *Console) Register(mux interface{ Handle(string, http.Handler) }) {
	h := c.Handler()
	mux.Handle("/", h)
	mux.Handle(APIPrefix, h)
}

// auth asks for the configured credentials: basic auth, a bearer token,
// or either when both are set.
func (c *Console) auth(next http.Handler) http.Handler {
	if !c.cfg.authRequired() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.authorized(r) {
			next.ServeHTTP(w, r)
			return
		}
		if c.cfg.BasicUser != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="flowlens", charset="UTF-8"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="flowlens"`)
		}
		writeError(w, http.StatusUnauthorized, errors.New("authentication required"))
	})
}

func (c *Console) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if c.cfg.Token != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok &&
			subtle.ConstantTimeCompare([]byte(tok), []byte(c.cfg.Token)) == 1 {
			return true
		}
	}
	if c.cfg.BasicUser != "" {
		if u, p, ok := r.BasicAuth(); ok {
			uok := subtle.ConstantTimeCompare([]byte(u), []byte(c.cfg.BasicUser))
			pok := subtle.ConstantTimeCompare([]byte(p), []byte(c.cfg.BasicPassword))
			if uok&pok == 1 {
				return true
			}
		}
	}
	return false
}

// jsonHandler writes h's value as JSON; a filter error is a 400, others
// (the engine's) a 502 with the engine's message.
func (c *Console) jsonHandler(h func(*http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			status := http.StatusBadGateway
			if errors.Is(err, ErrBadFilter) {
				status = http.StatusBadRequest
			} else if errors.Is(err, errUnavailable) {
				status = http.StatusServiceUnavailable
			}
			if status != http.StatusBadRequest {
				c.deps.Log.Warn("console query failed", "path", r.URL.Path, "err", err)
			}
			writeError(w, status, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

var errUnavailable = errors.New("unavailable")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
