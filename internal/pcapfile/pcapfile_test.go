package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// block is one little-endian pcapng block of type typ around body.
func block(typ uint32, body []byte) []byte {
	n := 12 + len(body)
	b := binary.LittleEndian.AppendUint32(nil, typ)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}

// option is a pcapng option with its padding.
func option(code, n int, value ...byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(code))
	b = binary.LittleEndian.AppendUint16(b, uint16(n))
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// capture is a section header, an Ethernet interface with idbOpts, an
// enhanced packet of 60 bytes, and an interface statistics block with
// isbOpts.
func capture(idbOpts, isbOpts []byte) []byte {
	shb := []byte{0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	idb := append([]byte{1, 0, 0, 0, 0, 0, 4, 0}, idbOpts...)
	epb := make([]byte, 20+60)
	binary.LittleEndian.PutUint32(epb[12:], 60)
	binary.LittleEndian.PutUint32(epb[16:], 60)
	isb := append(make([]byte, 12), isbOpts...)
	var out []byte
	for _, b := range [][]byte{block(0x0a0d0d0a, shb), block(1, idb), block(6, epb), block(5, isb)} {
		out = append(out, b...)
	}
	return out
}

func readAll(data []byte) (int, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		if _, _, err := r.Next(); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return n, err
		}
		n++
	}
}

// TestPcapngOptions: options pcapgo would misread are rejected as
// ErrFormat, before pcapgo panics on them or reads the next blocks as
// options (FuzzFileReader found the divisions by zero).
func TestPcapngOptions(t *testing.T) {
	name := option(2, 6, []byte("wlp3s0")...)
	ok := option(1, 8, 0, 0, 0, 0, 0, 0, 0, 0) // isb_comment
	for _, c := range []struct {
		name     string
		idb, isb []byte
		bad      bool
	}{
		{"valid, microseconds", append(append([]byte(nil), name...), option(9, 1, 6)...), ok, false},
		{"valid, 2^-63 s", option(9, 1, 0x80|63), nil, false},
		{"valid, 10^-19 s", option(9, 1, 19), nil, false},
		{"if_tsresol 2^-64 s", option(9, 1, 0x80|64), nil, true},
		{"if_tsresol 10^-20 s", option(9, 1, 20), nil, true},
		{"if_tsresol of 0 bytes after a name ('w': 10^-119 s)", append(append([]byte(nil), name...), option(9, 0)...), nil, true},
		{"if_filter of 0 bytes", option(11, 0), nil, true},
		{"if_tsoffset of 4 bytes", option(14, 4, 1, 2, 3, 4), nil, true},
		{"isb_ifrecv of 0 bytes", nil, option(4, 0), true},
		{"isb_starttime of 4 bytes", nil, option(2, 4, 1, 2, 3, 4), true},
		{"option past its block", option(2, 200, []byte("eth0")...)[:8], nil, true},
	} {
		n, err := readAll(capture(c.idb, c.isb))
		switch {
		case c.bad && !errors.Is(err, ErrFormat):
			t.Errorf("%s: %d packets, %v, want ErrFormat", c.name, n, err)
		case !c.bad && (err != nil || n != 1):
			t.Errorf("%s: %d packets, %v, want 1", c.name, n, err)
		}
	}
}
