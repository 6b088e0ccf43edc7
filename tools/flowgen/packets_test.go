package main

import (
	"encoding/binary"
	"testing"
)

// TestBuild checks the framing a collector relies on: header count and
// lengths, set lengths and padding, the template's record length.
func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		proto        string
		n            int
		withTemplate bool
		wantLen      int
	}{
		{protoV9, 30, false, 20 + 4 + 30*45 + 2},
		{protoV9, 30, true, 20 + 4 + 4 + 4*18 + 4 + 30*45 + 2},
		{protoV9, 0, true, 20 + 4 + 4 + 4*18},
		{protoIPFIX, 25, true, 16 + 4 + 4 + 4*18 + 4 + 25*53 + 3},
		{protoV5, 30, false, 24 + 30*48},
	} {
		d, err := build(tc.proto, 3, tc.n, tc.withTemplate, 1, 1_700_000_000_000, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.proto, err)
		}
		b := d.buf
		if len(b) != tc.wantLen {
			t.Errorf("%s n=%d template=%v: len %d, want %d", tc.proto, tc.n, tc.withTemplate, len(b), tc.wantLen)
		}
		switch tc.proto {
		case protoV9:
			count := int(binary.BigEndian.Uint16(b[2:]))
			want := tc.n
			if tc.withTemplate {
				want++
			}
			if count != want {
				t.Errorf("v9 count %d, want %d", count, want)
			}
			checkSets(t, b[20:])
		case protoIPFIX:
			if l := int(binary.BigEndian.Uint16(b[2:])); l != len(b) {
				t.Errorf("ipfix length %d, want %d", l, len(b))
			}
			checkSets(t, b[16:])
		case protoV5:
			if c := binary.BigEndian.Uint16(b[2:]); int(c) != tc.n {
				t.Errorf("v5 count %d, want %d", c, tc.n)
			}
		}
	}
	if _, err := build(protoV5, 0, 31, false, 1, 0, 0); err == nil {
		t.Error("v5 with 31 records: want an error")
	}
}

// checkSets walks the sets and checks that their lengths tile the datagram
// and that a template's fields add up to the record length of the data.
func checkSets(t *testing.T, b []byte) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("%d trailing bytes", len(b))
		}
		id, l := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) || l%4 != 0 {
			t.Fatalf("set %d: length %d of %d left", id, l, len(b))
		}
		if id == 0 || id == 2 {
			n := int(binary.BigEndian.Uint16(b[6:]))
			if 8+4*n != l {
				t.Errorf("template set length %d for %d fields", l, n)
			}
		}
		b = b[l:]
	}
}

func TestPatchHeader(t *testing.T) {
	d, err := build(protoV9, 0, 30, false, 7, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	patchHeader(protoV9, d.buf, 11, 22, 33)
	for off, want := range map[int]uint32{4: 11, 8: 22, 12: 33, 16: 7} {
		if got := binary.BigEndian.Uint32(d.buf[off:]); got != want {
			t.Errorf("offset %d: %d, want %d", off, got, want)
		}
	}
}

func TestCheckLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:2055": true, "[::1]:2055": true, "127.1.2.3:9": true,
		"10.0.0.1:2055": false, "192.168.1.1:2055": false, "8.8.8.8:53": false,
	} {
		c := config{addr: addr, proto: protoV9, rate: 1, duration: 1e9, records: 30, templateEvery: 1,
			sockets: 1, variants: 1, tick: 1e6, maxBurst: 1e6}
		if _, err := c.check(); (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", addr, err, ok)
		}
	}
}
