package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func TestCountDelimited(t *testing.T) {
	var b []byte
	for i := 0; i < 1000; i++ {
		msg := make([]byte, i%300) // lengths of one and two varint bytes, as protodelim writes
		b = binary.AppendUvarint(b, uint64(len(msg)))
		b = append(b, msg...)
	}
	full := filepath.Join(t.TempDir(), "full.bin")
	if err := os.WriteFile(full, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := countDelimited(full); err != nil || n != 1000 {
		t.Errorf("countDelimited = %d, %v; want 1000", n, err)
	}
	cut := filepath.Join(t.TempDir(), "cut.bin")
	if err := os.WriteFile(cut, b[:len(b)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := countDelimited(cut); err != nil || n != 999 {
		t.Errorf("truncated: countDelimited = %d, %v; want 999", n, err)
	}
	if n, err := countDelimited(filepath.Join(t.TempDir(), "missing")); err != nil || n != 0 {
		t.Errorf("missing file: %d, %v", n, err)
	}
}

func TestRoundRate(t *testing.T) {
	for in, want := range map[float64]float64{150_000: 150_000, 1_234_567: 1_230_000, 99_949: 99_900, 0: 0} {
		if got := roundRate(in); got != want {
			t.Errorf("roundRate(%g) = %g, want %g", in, got, want)
		}
	}
}
