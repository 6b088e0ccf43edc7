package chdb

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// openTest opens a session in a temp dir, skipping when libchdb is absent
// outside CI (CI always has it: make test fetches it).
func openTest(t *testing.T) *Conn {
	t.Helper()
	c, err := Open(t.TempDir())
	if errors.Is(err, ErrNoLibrary) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestQuery(t *testing.T) {
	c := openTest(t)
	out, err := c.Query([]byte("SELECT 1+1 AS x"), "CSV")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "2" {
		t.Fatalf("got %q", out)
	}
	_, err = c.Query([]byte("SELECT nonsense("), "CSV")
	var qe *QueryError
	if !errors.As(err, &qe) {
		t.Fatalf("want QueryError, got %v", err)
	}
	// Binary data after FORMAT, NUL bytes included, must reach the engine.
	if _, err := c.Query([]byte("CREATE TABLE t (a UInt32, s String) ENGINE = MergeTree ORDER BY a"), ""); err != nil {
		t.Fatal(err)
	}
	q := append([]byte("INSERT INTO t FORMAT RowBinary\n"), 0, 0, 0, 0, 1, 0, 1, 2, 0, 0, 2, 'h', 'i')
	if _, err := c.Query(q, ""); err != nil {
		t.Fatal(err)
	}
	out, err = c.Query([]byte("SELECT a, s FROM t ORDER BY a"), "CSV")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "0,\"\x00\"\n513,\"hi\"\n" {
		t.Fatalf("got %q", got)
	}
}
