// Package httpd serves the daemon's HTTP endpoints: /metrics, /healthz and
// a read-only SQL endpoint, so that `flowlens query` works while `run` holds
// the embedded store (one process per chDB directory).
package httpd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Querier runs a read-only query and returns its output in format.
type Querier interface {
	Query(ctx context.Context, query, format string) ([]byte, error)
}

// Config of the HTTP server.
type Config struct {
	Listen string
	// SQLRemote lets non-loopback clients use /api/v1/query. Off by default:
	// SQL can read local files through table functions.
	SQLRemote bool
}

// QueryPath is the SQL endpoint: POST the query as the body, ?format=NAME.
const QueryPath = "/api/v1/query"

// MaxQueryBytes bounds a query's text.
const MaxQueryBytes = 1 << 20

// Server is the HTTP component.
type Server struct {
	mux  *http.ServeMux
	cfg  Config
	log  *slog.Logger
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// New returns an inert server exposing gatherer and, when q is not nil,
// the SQL endpoint.
func New(cfg Config, log *slog.Logger, gatherer prometheus.Gatherer, q Querier) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	if q != nil {
		mux.HandleFunc(QueryPath, func(w http.ResponseWriter, r *http.Request) { serveQuery(cfg, q, w, r) })
	}
	return &Server{mux: mux, cfg: cfg, log: log, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan error, 1)}
}

// Handle serves h at pattern (the web console's pages and API). Call
// before Start.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleJSON serves the value get returns as JSON at path (read-only views
// such as /api/v1/exporters). Call before Start.
func (s *Server) HandleJSON(path string, get func() any) {
	s.mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(get())
	})
}

// Start binds the listener and serves in the background.
func (s *Server) Start(context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.log.Info("http listening", "addr", ln.Addr().String(), "endpoints", "/metrics /healthz "+QueryPath)
	go func() { s.done <- s.srv.Serve(ln) }()
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Err reports a server that stopped serving on its own.
func (s *Server) Err() <-chan error { return s.done }

// Stop shuts the server down, waiting up to 5 s for running requests.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// ErrNotReadOnly rejects statements other than reads.
var ErrNotReadOnly = errors.New("only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS queries are accepted")

// CheckReadOnly accepts a single read statement.
func CheckReadOnly(q string) error {
	q = strings.TrimSpace(q)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	if q == "" {
		return errors.New("empty query")
	}
	upper := strings.ToUpper(q)
	words := strings.FieldsFunc(upper, func(r rune) bool { return r == ' ' || r == '\n' || r == '\t' || r == '(' || r == '\r' })
	if len(words) == 0 {
		return ErrNotReadOnly
	}
	switch words[0] {
	case "SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS":
	default:
		return ErrNotReadOnly
	}
	if strings.Contains(upper, "INTO OUTFILE") {
		return ErrNotReadOnly
	}
	return nil
}

func serveQuery(cfg Config, q Querier, w http.ResponseWriter, r *http.Request) {
	if !cfg.SQLRemote {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !ap.Addr().IsLoopback() {
			http.Error(w, "SQL is only served to loopback clients (set FLOWLENS_HTTP_SQL_REMOTE=true to allow others)", http.StatusForbidden)
			return
		}
	}
	var query string
	switch r.Method {
	case http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxQueryBytes+1))
		if err != nil || len(b) > MaxQueryBytes {
			http.Error(w, "query too long or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		query = string(b)
	case http.MethodGet:
		query = r.URL.Query().Get("q")
	default:
		http.Error(w, "use GET ?q= or POST", http.StatusMethodNotAllowed)
		return
	}
	if err := CheckReadOnly(query); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "PrettyCompactMonoBlock"
	}
	out, err := q.Query(r.Context(), query, format)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(out)
}
