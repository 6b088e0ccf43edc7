// Package pcapfiletest writes small classic pcap files for tests, with any
// link type and snapshot length (pcapgo's writer knows only some link
// types and always writes a sane snapshot length).
package pcapfiletest

import (
	"bytes"
	"encoding/binary"
)

// Classic returns a little-endian, microsecond pcap of link type link and
// snapshot length snap holding frames, one second apart from 1700000000.
func Classic(link, snap uint32, frames ...[]byte) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], snap)
	binary.LittleEndian.PutUint32(hdr[20:], link)
	b.Write(hdr)
	for i, f := range frames {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(1700000000+i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		b.Write(rec)
		b.Write(f)
	}
	return b.Bytes()
}
