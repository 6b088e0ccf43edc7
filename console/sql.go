package console

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"flowlens/internal/httpd"
)

// SQLRequest is the SQL page's POST body.
type SQLRequest struct {
	Query string `json:"query"`
	// Format is "json" (a table for the page) or "csv" (a download).
	Format string `json:"format"`
}

// SQLResult is the SQL page's table.
type SQLResult struct {
	Table
	// Truncated tells that the row limit cut the answer.
	Truncated bool    `json:"truncated"`
	MaxRows   int     `json:"max_rows"`
	ElapsedMS float64 `json:"elapsed_ms"`
}

// sql runs a user's read-only query: one SELECT, WITH, SHOW, DESCRIBE,
// EXPLAIN or EXISTS statement (httpd.CheckReadOnly), on the SQLQuerier,
// whose session is readonly=1 with the limits set. The answer is read as
// JSONCompact and written out by the console (JSON or CSV), so that the row
// limit holds whatever the engine's block sizes.
func (c *Console) sql(w http.ResponseWriter, r *http.Request) {
	if err := c.runSQL(w, r); err != nil {
		status := statusOf(err)
		if status >= 500 {
			c.deps.Log.Warn("console sql failed", "err", err)
		}
		writeError(w, status, err)
	}
}

func (c *Console) runSQL(w http.ResponseWriter, r *http.Request) error {
	if c.deps.SQL == nil {
		return statusErr(http.StatusServiceUnavailable, "the SQL page is not available on this store")
	}
	if !c.cfg.SQLRemote && !c.cfg.authRequired() {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !ap.Addr().IsLoopback() {
			return statusErr(http.StatusForbidden, "the SQL page is only served to loopback clients unless auth is configured (FLOWLENS_CONSOLE_USER/PASSWORD or TOKEN) or FLOWLENS_CONSOLE_SQL_REMOTE=true")
		}
	}
	// A JSON body: a cross-site form cannot send one without a preflight.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return statusErr(http.StatusUnsupportedMediaType, "send the query as application/json")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, httpd.MaxQueryBytes+1))
	if err != nil || len(body) > httpd.MaxQueryBytes {
		return statusErr(http.StatusRequestEntityTooLarge, "query too long or unreadable")
	}
	var req SQLRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return statusErr(http.StatusBadRequest, "body is not a JSON object with a query: %v", err)
	}
	if err := httpd.CheckReadOnly(req.Query); err != nil {
		return statusErr(http.StatusBadRequest, "%v", err)
	}
	if strings.Contains(req.Query, "\x00") {
		return statusErr(http.StatusBadRequest, "the query holds a NUL byte")
	}
	switch req.Format {
	case "", "json", "csv":
	default:
		return statusErr(http.StatusBadRequest, "format %q is not json or csv", req.Format)
	}
	start := time.Now()
	out, err := c.deps.SQL.QuerySQL(r.Context(), req.Query, "JSONCompact")
	elapsed := time.Since(start)
	if err != nil {
		return statusErr(http.StatusBadRequest, "%v", err)
	}
	res, err := decodeResult(out)
	if err != nil {
		return statusErr(http.StatusBadRequest, "the SQL page reads the JSONCompact format: leave out FORMAT clauses (%v)", err)
	}
	truncated := len(res.Data) >= c.cfg.SQLMaxRows
	if len(res.Data) > c.cfg.SQLMaxRows {
		res.Data = res.Data[:c.cfg.SQLMaxRows]
	}
	if req.Format == "csv" {
		var buf bytes.Buffer
		cw := csv.NewWriter(&buf)
		names := make([]string, len(res.Meta))
		for j, m := range res.Meta {
			names[j] = m.Name
		}
		_ = cw.Write(names)
		for i := range res.Data {
			row := make([]string, len(res.Data[i]))
			for j := range row {
				row[j] = res.str(i, j)
			}
			_ = cw.Write(row)
		}
		cw.Flush()
		if cw.Error() != nil {
			return errors.Join(errors.New("write csv"), cw.Error())
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="flowlens.csv"`)
		if truncated {
			w.Header().Set("X-Flowlens-Truncated", "true")
		}
		_, _ = w.Write(buf.Bytes())
		return nil
	}
	writeJSON(w, http.StatusOK, SQLResult{Table: res.table(), Truncated: truncated, MaxRows: c.cfg.SQLMaxRows,
		ElapsedMS: float64(elapsed.Microseconds()) / 1000})
	return nil
}
