package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"

	"flowlens/sensor/packet"
)

// MaxSnapLen bounds the bytes kept per packet of a file. pcapgo allocates
// the snapshot length a file claims before reading; a hostile header must
// not make it allocate gigabytes.
const MaxSnapLen = 256 << 10

// maxBlock bounds one pcapng block, which the reader holds whole to check
// it before pcapgo sees it.
const maxBlock = 16 << 20

// ErrFormat is returned for input that is neither pcap nor pcapng, or whose
// structure is invalid.
var ErrFormat = errors.New("not a valid pcap or pcapng capture")

// FileReader reads a pcap or pcapng capture (told apart by the magic, not
// the name) with gopacket's pure-Go pcapgo, behind guards on the sizes a
// file claims. Not safe for concurrent use.
type FileReader struct {
	src interface {
		ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	link   packet.LinkType // classic pcap
	ng     *ngGuard        // pcapng: maps pcapgo's 8-bit link types back
	closer io.Closer
	ci     CaptureInfo
}

// OpenFile opens a capture file.
func OpenFile(path string) (*FileReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewFileReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// NewFileReader reads a capture from r.
func NewFileReader(r io.Reader) (*FileReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read capture header: %w", ErrFormat)
	}
	fr := &FileReader{}
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a {
		fr.ng = &ngGuard{r: br, links: map[uint8]packet.LinkType{}}
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
	fr.link = packet.LinkType(order.Uint32(fixed[20:]) & 0xffff)
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

// Next returns the next packet. data and ci are valid until the next call.
// At the end it returns io.EOF, or io.ErrUnexpectedEOF if the file ends
// inside a packet (a capture cut while written): what came before is good.
func (r *FileReader) Next() ([]byte, *CaptureInfo, error) {
	data, gci, err := r.src.ZeroCopyReadPacketData()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return nil, nil, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, nil, io.ErrUnexpectedEOF
		case errors.Is(err, ErrFormat):
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	link := r.link
	if r.ng != nil {
		if len(gci.AncillaryData) > 0 {
			if lt, ok := gci.AncillaryData[0].(layers.LinkType); ok {
				link = r.ng.linkType(uint8(lt))
			}
		}
	}
	r.ci = CaptureInfo{
		Timestamp:      gci.Timestamp,
		Length:         gci.Length,
		CaptureLength:  len(data),
		Link:           link,
		VLAN:           -1,
		InterfaceIndex: gci.InterfaceIndex,
	}
	if r.ci.Length < r.ci.CaptureLength {
		r.ci.Length = r.ci.CaptureLength
	}
	return data, &r.ci, nil
}

// Close closes the file OpenFile opened.
func (r *FileReader) Close() error {
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
// checked first: block lengths within maxBlock, packet lengths within
// their block, interface snapshot lengths clamped to MaxSnapLen. pcapgo
// would otherwise allocate whatever a header claims. It also records the
// interfaces' link types, which pcapgo truncates to 8 bits.
type ngGuard struct {
	r     io.Reader
	order binary.ByteOrder
	buf   []byte
	off   int
	links map[uint8]packet.LinkType // low byte -> link type, 0 when ambiguous
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
func (g *ngGuard) linkType(lt uint8) packet.LinkType {
	if full, ok := g.links[lt]; ok && full != 0 {
		return full
	}
	return packet.LinkType(lt)
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
	if length < 12 || length%4 != 0 || length > maxBlock || shb && length < 28 {
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
	case typ == 1: // interface description
		if length < 20 {
			return fmt.Errorf("pcapng interface block: %w", ErrFormat)
		}
		lt := packet.LinkType(g.order.Uint16(b[8:]))
		if prev, ok := g.links[uint8(lt)]; !ok {
			g.links[uint8(lt)] = lt
		} else if prev != lt {
			g.links[uint8(lt)] = 0
		}
		if snap := g.order.Uint32(b[12:]); snap == 0 || snap > MaxSnapLen {
			g.order.PutUint32(b[12:], MaxSnapLen)
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

// FileConfig configures a File source.
type FileConfig struct {
	Path string
}

// File is a Source over a capture file: one worker, reading the file once
// at full speed. Timeouts follow packet time, so the flows are those of
// the capture whatever the speed.
type File struct {
	cfg  FileConfig
	log  *slog.Logger
	h    Handler
	r    *FileReader
	st   workerStats
	once sync.Once
	stop chan struct{}
	done chan struct{}
	err  error
}

// NewFile returns an inert file source delivering to h.
func NewFile(cfg FileConfig, log *slog.Logger, reg prometheus.Registerer, h Handler) (*File, error) {
	if cfg.Path == "" {
		return nil, errors.New("capture file: no path")
	}
	if h == nil {
		return nil, errors.New("capture file: no handler")
	}
	if log == nil {
		log = slog.Default()
	}
	f := &File{cfg: cfg, log: log, h: h, stop: make(chan struct{}), done: make(chan struct{})}
	if reg != nil {
		if err := reg.Register(newCollector("file", false, f.Stats)); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Workers implements Source: a file has one.
func (f *File) Workers() int { return 1 }

// Start opens the file and starts reading it.
func (f *File) Start(ctx context.Context) error {
	if f.r != nil {
		return ErrClosed
	}
	r, err := OpenFile(f.cfg.Path)
	if err != nil {
		return err
	}
	f.r = r
	go f.run(ctx)
	return nil
}

func (f *File) run(ctx context.Context) {
	defer close(f.done)
	defer f.r.Close()
	var local localStats
	defer func() {
		local.publish(&f.st)
		f.h.End()
	}()
	for i := 0; ; i++ {
		if i&1023 == 0 {
			local.publish(&f.st)
			select {
			case <-f.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
		}
		data, ci, err := f.r.Next()
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return
		case errors.Is(err, io.ErrUnexpectedEOF):
			f.log.Warn("capture file ends inside a packet", "path", f.cfg.Path, "packets", local.packets)
			return
		default:
			f.err = fmt.Errorf("read %s after %d packets: %w", f.cfg.Path, local.packets, err)
			return
		}
		local.count(ci)
		f.h.Packet(data, ci)
	}
}

// Stop stops reading and waits for the worker's End.
func (f *File) Stop() {
	f.once.Do(func() { close(f.stop) })
	if f.r != nil {
		<-f.done
	}
}

// Done implements Source.
func (f *File) Done() <-chan struct{} { return f.done }

// Err implements Source.
func (f *File) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}

// Stats implements Source.
func (f *File) Stats() []Stats { return []Stats{f.st.load()} }
