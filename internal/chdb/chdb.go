// Package chdb binds the C API of libchdb (the ClickHouse engine as a shared
// library) and loads it lazily, on the first Open.
//
// Why not github.com/chdb-io/chdb-go/chdb-purego: that package dlopens
// libchdb in its init() and panics when the library is absent, so any binary
// linking it (even for `flowlens decode` or a Kafka-only collector) would need
// libchdb at start. This file binds the same C functions chdb-go v1.11 binds
// (chdb_connect, chdb_query, chdb_destroy_query_result, ...) with the same
// purego mechanism, plus chdb_query_n, which takes a length and so accepts
// binary input after "INSERT ... FORMAT Native", and
// chdb_query_with_params_n, which binds {name:Type} query parameters.
package chdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ErrNoLibrary is returned when libchdb cannot be found or loaded.
var ErrNoLibrary = errors.New("libchdb not found")

// api holds the resolved C functions. It is filled once per process.
type api struct {
	connect       func(argc int, argv **byte) unsafe.Pointer
	closeConn     func(conn unsafe.Pointer)
	queryN        func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	destroyResult func(res unsafe.Pointer)
	resultBuffer  func(res unsafe.Pointer) unsafe.Pointer
	resultLength  func(res unsafe.Pointer) uintptr
	resultError   func(res unsafe.Pointer) *byte
	rowsRead      func(res unsafe.Pointer) uint64
	// queryParams is nil with a libchdb that lacks it (before 26.5).
	queryParams func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr,
		names **byte, nameLens *uintptr, values **byte, valueLens *uintptr, n uintptr) unsafe.Pointer
}

var (
	loadOnce sync.Once
	loaded   *api
	loadErr  error
)

// LibraryPath returns where libchdb is looked for: $CHDB_LIB_PATH first, then
// the usual system locations.
func LibraryPath() string {
	if p := os.Getenv("CHDB_LIB_PATH"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/local/lib/libchdb.so", "/usr/lib/libchdb.so"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "libchdb.so"
}

func load() (*api, error) {
	loadOnce.Do(func() {
		path := LibraryPath()
		if filepath.IsAbs(path) {
			if _, err := os.Stat(path); err != nil {
				loadErr = fmt.Errorf("%w at %s (run `make chdb` or set CHDB_LIB_PATH): %v", ErrNoLibrary, path, err)
				return
			}
		}
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			loadErr = fmt.Errorf("%w: dlopen %s: %v", ErrNoLibrary, path, err)
			return
		}
		a := &api{}
		for name, fn := range map[string]any{
			"chdb_connect":              &a.connect,
			"chdb_close_conn":           &a.closeConn,
			"chdb_query_n":              &a.queryN,
			"chdb_destroy_query_result": &a.destroyResult,
			"chdb_result_buffer":        &a.resultBuffer,
			"chdb_result_length":        &a.resultLength,
			"chdb_result_error":         &a.resultError,
			"chdb_result_rows_read":     &a.rowsRead,
		} {
			sym, err := purego.Dlsym(h, name)
			if err != nil {
				loadErr = fmt.Errorf("%w: %s lacks %s (libchdb too old?)", ErrNoLibrary, path, name)
				return
			}
			purego.RegisterFunc(fn, sym)
		}
		if sym, err := purego.Dlsym(h, "chdb_query_with_params_n"); err == nil {
			purego.RegisterFunc(&a.queryParams, sym)
		}
		loaded = a
	})
	return loaded, loadErr
}

// Conn is one chDB session; Conn serialises queries on it. libchdb runs
// one engine per process, on one data directory: a further Open of the
// same directory is another session of that engine (with its own
// settings: the console's read-only sessions), another directory fails.
type Conn struct {
	mu     sync.Mutex
	api    *api
	handle unsafe.Pointer // chdb_connection* (pointer to the opaque handle)
}

// Open loads libchdb if needed and opens a session storing its data in dir
// (created if missing). An empty dir means an in-memory session.
func Open(dir string) (*Conn, error) {
	a, err := load()
	if err != nil {
		return nil, err
	}
	args := []string{"clickhouse"}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("chdb: create %s: %w", dir, err)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		args = append(args, "--path="+abs)
	}
	cargs := make([]*byte, len(args))
	keep := make([][]byte, len(args))
	for i, s := range args {
		keep[i] = append([]byte(s), 0)
		cargs[i] = &keep[i][0]
	}
	h := a.connect(len(cargs), &cargs[0])
	runtime.KeepAlive(keep)
	if h == nil || *(*unsafe.Pointer)(h) == nil {
		return nil, fmt.Errorf("chdb: cannot open session at %q (is another process using it?)", dir)
	}
	return &Conn{api: a, handle: h}, nil
}

// Close ends the session.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handle != nil {
		c.api.closeConn(c.handle)
		c.handle = nil
	}
}

// ErrClosed is returned by queries on a closed Conn.
var ErrClosed = errors.New("chdb: session closed")

// Query runs query (which may carry binary data after FORMAT) and returns its
// output in format. The returned slice is a copy owned by the caller.
func (c *Conn) Query(query []byte, format string) ([]byte, error) {
	return c.QueryAppend(nil, query, format)
}

// QueryAppend is Query appending the output to dst.
func (c *Conn) QueryAppend(dst []byte, query []byte, format string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handle == nil {
		return dst, ErrClosed
	}
	if len(query) == 0 {
		return dst, errors.New("chdb: empty query")
	}
	fb := append([]byte(format), 0)
	conn := *(*unsafe.Pointer)(c.handle)
	res := c.api.queryN(conn, &query[0], uintptr(len(query)), &fb[0], uintptr(len(format)))
	runtime.KeepAlive(query)
	runtime.KeepAlive(fb)
	return c.result(dst, res)
}

// ErrNoParams is returned by QueryParams with a libchdb that cannot bind
// parameters.
var ErrNoParams = errors.New("chdb: this libchdb has no chdb_query_with_params_n")

// QueryParams runs query binding its {name:Type} placeholders to params:
// the values travel beside the SQL text and the engine reads them as
// values after parsing, so no value can change the statement.
func (c *Conn) QueryParams(query, format string, params map[string]string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handle == nil {
		return nil, ErrClosed
	}
	if c.api.queryParams == nil {
		return nil, ErrNoParams
	}
	if query == "" {
		return nil, errors.New("chdb: empty query")
	}
	q := []byte(query)
	f := append([]byte(format), 0)
	// The arrays are never empty, so that &x[0] is valid when n is 0.
	n := len(params)
	names := make([]*byte, max(n, 1))
	values := make([]*byte, max(n, 1))
	nameLens := make([]uintptr, max(n, 1))
	valueLens := make([]uintptr, max(n, 1))
	keep := make([][]byte, 0, 2*n+1)
	i := 0
	for k, v := range params {
		kb := append([]byte(k), 0)
		// The engine reads a parameter as a TSV field: escape what that
		// reader treats specially, so that the value arrives byte for byte.
		vb := append([]byte(paramEscaper.Replace(v)), 0)
		keep = append(keep, kb, vb)
		names[i], nameLens[i] = &kb[0], uintptr(len(kb)-1)
		values[i], valueLens[i] = &vb[0], uintptr(len(vb)-1)
		i++
	}
	if n == 0 {
		z := []byte{0}
		keep = append(keep, z)
		names[0], values[0] = &z[0], &z[0]
	}
	conn := *(*unsafe.Pointer)(c.handle)
	res := c.api.queryParams(conn, &q[0], uintptr(len(q)), &f[0], uintptr(len(format)),
		&names[0], &nameLens[0], &values[0], &valueLens[0], uintptr(n))
	runtime.KeepAlive(q)
	runtime.KeepAlive(f)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(names)
	runtime.KeepAlive(values)
	runtime.KeepAlive(nameLens)
	runtime.KeepAlive(valueLens)
	return c.result(nil, res)
}

var paramEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`)

// result copies a query result into dst and frees it.
func (c *Conn) result(dst []byte, res unsafe.Pointer) ([]byte, error) {
	if res == nil {
		return dst, nil
	}
	defer c.api.destroyResult(res)
	if e := c.api.resultError(res); e != nil {
		if msg := cString(e); msg != "" {
			return dst, &QueryError{Msg: msg}
		}
	}
	n := c.api.resultLength(res)
	if buf := c.api.resultBuffer(res); buf != nil && n > 0 {
		dst = append(dst, unsafe.Slice((*byte)(buf), n)...)
	}
	return dst, nil
}

// QueryError is an error reported by the engine.
type QueryError struct{ Msg string }

func (e *QueryError) Error() string { return "chdb: " + e.Msg }

func cString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
