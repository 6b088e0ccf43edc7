package kafka

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func readAll(t *testing.T, s *spool) (recs []string, torn int) {
	t.Helper()
	for {
		seq, ok, err := s.oldest()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return recs, torn
		}
		n, err := readSegment(segName(s.dir, seq), func(k, v []byte) { recs = append(recs, string(k)+"="+string(v)) })
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			torn++
		}
		if err := s.remove(seq); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolRoundTripAndSegments(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, 100) // tiny segments: several files
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 50 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("value-%d", i)
		if err := s.write([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		want = append(want, k+"="+v)
	}
	if len(s.sealed) < 5 {
		t.Fatalf("%d sealed segments, want several", len(s.sealed))
	}
	// A restart takes over every segment, the active one included.
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s, err = openSpool(dir, 1<<20, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, torn := readAll(t, s)
	if torn != 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("torn %d, got %v", torn, got)
	}
	if s.bytes() != 0 {
		t.Fatalf("spool bytes %d after draining, want 0", s.bytes())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*"+segSuffix)); len(left) != 0 {
		t.Fatalf("segments left: %v", left)
	}
}

func TestSpoolBound(t *testing.T) {
	s, err := openSpool(t.TempDir(), 100, 1000)
	if err != nil {
		t.Fatal(err)
	}
	v := bytes.Repeat([]byte{'x'}, 40) // 9+1+40 = 50 bytes a record
	for i := range 3 {
		err := s.write([]byte{1}, v)
		if i < 2 && err != nil || i == 2 && !errors.Is(err, errSpoolFull) {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

func TestSpoolTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(dir, 1<<20, 1<<20)
	for i := range 3 {
		if err := s.write([]byte{byte(i)}, []byte("payload")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	name := segName(dir, 0)
	full, _ := os.ReadFile(name)
	for cut := 1; cut < 17; cut++ { // every torn position of the last record
		if err := os.WriteFile(name, full[:len(full)-cut], 0o640); err != nil {
			t.Fatal(err)
		}
		n := 0
		skipped, err := readSegment(name, func(k, v []byte) { n++ })
		if err != nil || n != 2 || skipped != 17-cut {
			t.Fatalf("cut %d: %d records, %d skipped, %v", cut, n, skipped, err)
		}
	}
	corrupt := bytes.Clone(full)
	corrupt[len(corrupt)-1] ^= 1
	n := 0
	if skipped := parseSegment(corrupt, func(k, v []byte) { n++ }); n != 2 || skipped != 17 {
		t.Fatalf("corrupt: %d records, %d skipped", n, skipped)
	}
}
