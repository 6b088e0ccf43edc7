// Package pcapfile reads pcap and pcapng captures with gopacket's pure-Go
// pcapgo (no libpcap, no cgo) behind guards on every size a file claims:
// snapshot lengths are clamped, pcapng blocks are checked whole before
// pcapgo sees them, so a hostile file gets ErrFormat, never a huge
// allocation. The sensor's file source and the collector's replay of
// export captures both read through it.
package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// MaxSnapLen bounds the bytes kept per packet of a file. pcapgo allocates
// the snapshot length a file claims before reading; a hostile header must
// not make it allocate gigabytes.
const MaxSnapLen = 256 << 10

// MaxBlock bounds one pcapng block, which the reader holds whole to check
// it before pcapgo sees it.
const MaxBlock = 16 << 20

// ErrFormat is returned for input that is neither pcap nor pcapng, or whose
// structure is invalid.
var ErrFormat = errors.New("not a valid pcap or pcapng capture")

// Reader reads a pcap or pcapng capture (told apart by the magic, not
// the name) with gopacket's pure-Go pcapgo, behind guards on the sizes a
// file claims. Not safe for concurrent use.
type Reader struct {
	src interface {
		ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	link   uint16   // classic pcap
	ng     *ngGuard // pcapng: maps pcapgo's 8-bit link types back
	closer io.Closer
}

// Info describes one packet.
type Info struct {
	Timestamp      time.Time
	Length         int    // on the wire, at least CaptureLength
	CaptureLength  int    // bytes kept
	LinkType       uint16 // the interface's DLT/LINKTYPE, all 16 bits
	InterfaceIndex int    // pcapng interface
}

// Open opens a capture file.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// NewReader reads a capture from r.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read capture header: %w", ErrFormat)
	}
	fr := &Reader{}
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a {
		fr.ng = &ngGuard{r: br, links: map[uint8]uint16{}}
		ng, err := pcapgo.NewNgReader(fr.ng, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("pcapng: %w: %w", ErrFormat, err)
		}
		fr.src = ng
		return fr, nil
	}
	hdr, err := br.Peek(24)
	if err != nil {
		return nil, fmt.Errorf("read pcap header: %w", ErrFormat)
	}
	fixed, order, err := clampPcapHeader(hdr)
	if err != nil {
		return nil, err
	}
	// pcapgo keeps the link type in 8 bits; the header has all of it (the
	// low 16 bits: the high ones carry FCS information).
	fr.link = uint16(order.Uint32(fixed[20:]) & 0xffff)
	if _, err := br.Discard(24); err != nil {
		return nil, fmt.Errorf("read pcap header: %w", err)
	}
	pr, err := pcapgo.NewReader(io.MultiReader(bytesReader(fixed), br))
	if err != nil {
		return nil, fmt.Errorf("pcap: %w: %w", ErrFormat, err)
	}
	fr.src = pr
	return fr, nil
}

// Next returns the next packet; data is valid until the next call. At the
// end it returns io.EOF, or io.ErrUnexpectedEOF if the file ends inside a
// packet (a capture cut while written): what came before is good.
func (r *Reader) Next() ([]byte, Info, error) {
	data, gci, err := r.src.ZeroCopyReadPacketData()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return nil, Info{}, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, Info{}, io.ErrUnexpectedEOF
		case errors.Is(err, ErrFormat):
			return nil, Info{}, err
		}
		return nil, Info{}, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	link := r.link
	if r.ng != nil {
		if len(gci.AncillaryData) > 0 {
			if lt, ok := gci.AncillaryData[0].(layers.LinkType); ok {
				link = r.ng.linkType(uint8(lt))
			}
		}
	}
	ci := Info{Timestamp: gci.Timestamp, Length: gci.Length, CaptureLength: len(data), LinkType: link, InterfaceIndex: gci.InterfaceIndex}
	if ci.Length < ci.CaptureLength {
		ci.Length = ci.CaptureLength
	}
	return data, ci, nil
}

// Close closes the file Open opened.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

type byteReader struct {
	b []byte
}

func bytesReader(b []byte) io.Reader { return &byteReader{b} }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// clampPcapHeader checks a classic pcap global header and returns a copy
// whose snapshot length is at most MaxSnapLen, and its byte order.
func clampPcapHeader(hdr []byte) ([]byte, binary.ByteOrder, error) {
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, nil, fmt.Errorf("magic %x: %w", hdr[:4], ErrFormat)
	}
	fixed := append([]byte(nil), hdr[:24]...)
	if snap := order.Uint32(fixed[16:]); snap == 0 || snap > MaxSnapLen {
		order.PutUint32(fixed[16:], MaxSnapLen)
	}
	return fixed, order, nil
}

// ngGuard passes a pcapng stream to pcapgo one whole block at a time,
// checked first: block lengths within MaxBlock, packet lengths within
// their block, interface snapshot lengths clamped to MaxSnapLen. pcapgo
// would otherwise allocate whatever a header claims. It also records the
// interfaces' link types, which pcapgo truncates to 8 bits.
type ngGuard struct {
	r     io.Reader
	order binary.ByteOrder
	buf   []byte
	off   int
	links map[uint8]uint16 // low byte -> link type, 0 when ambiguous
	err   error
}

func (g *ngGuard) Read(p []byte) (int, error) {
	if g.off == len(g.buf) {
		if g.err != nil {
			return 0, g.err
		}
		if g.err = g.next(); g.err != nil {
			return 0, g.err
		}
	}
	n := copy(p, g.buf[g.off:])
	g.off += n
	return n, nil
}

// linkType returns the full link type of the interface pcapgo reported as
// lt.
func (g *ngGuard) linkType(lt uint8) uint16 {
	if full, ok := g.links[lt]; ok && full != 0 {
		return full
	}
	return uint16(lt)
}

func (g *ngGuard) next() error {
	g.buf, g.off = g.buf[:0], 0
	var hdr [12]byte
	if _, err := io.ReadFull(g.r, hdr[:8]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return io.ErrUnexpectedEOF
	}
	shb := binary.LittleEndian.Uint32(hdr[:]) == 0x0a0d0d0a
	if shb {
		if _, err := io.ReadFull(g.r, hdr[8:12]); err != nil {
			return io.ErrUnexpectedEOF
		}
		switch binary.LittleEndian.Uint32(hdr[8:]) {
		case 0x1a2b3c4d:
			g.order = binary.LittleEndian
		case 0x4d3c2b1a:
			g.order = binary.BigEndian
		default:
			return fmt.Errorf("pcapng byte order: %w", ErrFormat)
		}
	} else if g.order == nil {
		return fmt.Errorf("pcapng does not start with a section header: %w", ErrFormat)
	}
	length := int(g.order.Uint32(hdr[4:]))
	if length < 12 || length%4 != 0 || length > MaxBlock || shb && length < 28 {
		return fmt.Errorf("pcapng block length %d: %w", length, ErrFormat)
	}
	if cap(g.buf) < length {
		g.buf = make([]byte, 0, max(length, 64<<10))
	}
	g.buf = g.buf[:length]
	read := 8
	if shb {
		read = 12
	}
	copy(g.buf, hdr[:read])
	if _, err := io.ReadFull(g.r, g.buf[read:]); err != nil {
		return io.ErrUnexpectedEOF
	}
	b := g.buf
	switch typ := g.order.Uint32(b); {
	case shb:
		if err := g.checkOptions(0, b[24:length-4]); err != nil {
			return err
		}
	case typ == 1: // interface description
		if length < 20 {
			return fmt.Errorf("pcapng interface block: %w", ErrFormat)
		}
		lt := g.order.Uint16(b[8:])
		if prev, ok := g.links[uint8(lt)]; !ok {
			g.links[uint8(lt)] = lt
		} else if prev != lt {
			g.links[uint8(lt)] = 0
		}
		if snap := g.order.Uint32(b[12:]); snap == 0 || snap > MaxSnapLen {
			g.order.PutUint32(b[12:], MaxSnapLen)
		}
		if err := g.checkOptions(1, b[16:length-4]); err != nil {
			return err
		}
	case typ == 5: // interface statistics
		if length < 24 {
			return fmt.Errorf("pcapng interface statistics block: %w", ErrFormat)
		}
		if err := g.checkOptions(5, b[20:length-4]); err != nil {
			return err
		}
	case typ == 6 || typ == 2: // enhanced packet, obsolete packet
		if length < 32 || int(g.order.Uint32(b[20:])) > length-32 {
			return fmt.Errorf("pcapng packet length: %w", ErrFormat)
		}
	case typ == 3: // simple packet
		if length < 16 || int(g.order.Uint32(b[8:])) > length-16 {
			return fmt.Errorf("pcapng simple packet length: %w", ErrFormat)
		}
	}
	return nil
}

// optionMin are the shortest values pcapgo reads options of a block type
// with (by the option's code) without checking their length: it indexes
// the value (if_tsresol's first byte, if_filter's after the first, the 8
// bytes of if_tsoffset and of the statistics' times and counters), and an
// option of length 0 keeps the previous option's value, so a shorter one
// makes it panic or read another option's bytes.
var optionMin = map[[2]uint32]int{
	{1, 9}: 1, {1, 11}: 1, {1, 14}: 8,
	{5, 2}: 8, {5, 3}: 8, {5, 4}: 8, {5, 5}: 8,
}

// checkOptions rejects the options of a block of type typ (0: the section
// header) that pcapgo would misread: one running past the block (pcapgo
// would go on reading the next blocks as options), one shorter than it
// reads (optionMin), and an interface's if_tsresol (code 9) whose units
// per second do not fit 64 bits (pcapgo computes them by shifting or
// multiplying in a uint64 and then divides by the result, so 2^-64 or
// 10^-20 second units would make it divide by zero).
func (g *ngGuard) checkOptions(typ uint32, opts []byte) error {
	for len(opts) >= 4 {
		code, n := g.order.Uint16(opts), int(g.order.Uint16(opts[2:]))
		if code == 0 { // opt_endofopt
			return nil
		}
		padded := 4 + (n+3)&^3
		if padded > len(opts) {
			return fmt.Errorf("pcapng option %d of %d bytes past its block: %w", code, n, ErrFormat)
		}
		if n < optionMin[[2]uint32{typ, uint32(code)}] {
			return fmt.Errorf("pcapng option %d of %d bytes: %w", code, n, ErrFormat)
		}
		if typ == 1 && code == 9 {
			v := opts[4]
			if exp := v & 0x7f; v&0x80 != 0 && exp > 63 || v&0x80 == 0 && exp > 19 {
				return fmt.Errorf("pcapng interface timestamp resolution %#x: %w", v, ErrFormat)
			}
		}
		opts = opts[padded:]
	}
	return nil
}

// Packet is one packet of a capture read whole, its data copied.
type Packet struct {
	Data []byte
	Info
}

// ReadAll reads every packet of a capture file, for tests and tools over
// small captures. A file cut inside its last packet keeps the packets
// before it.
func ReadAll(path string) ([]Packet, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Packet
	for {
		data, ci, err := r.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, Packet{Data: append([]byte(nil), data...), Info: ci})
	}
}
