package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/internal/pcapfile"
	"flowlens/sensor/packet"
)

// MaxSnapLen bounds the bytes kept per packet of a file (pcapfile's guard).
const MaxSnapLen = pcapfile.MaxSnapLen

// ErrFormat is returned for input that is neither pcap nor pcapng, or whose
// structure is invalid.
var ErrFormat = pcapfile.ErrFormat

// FileReader reads a pcap or pcapng capture (internal/pcapfile: pcapgo
// behind guards on the sizes a file claims) and describes each packet as
// capture sources do. Not safe for concurrent use.
type FileReader struct {
	r  *pcapfile.Reader
	ci CaptureInfo
}

// OpenFile opens a capture file.
func OpenFile(path string) (*FileReader, error) {
	r, err := pcapfile.Open(path)
	if err != nil {
		return nil, err
	}
	return &FileReader{r: r}, nil
}

// NewFileReader reads a capture from r.
func NewFileReader(r io.Reader) (*FileReader, error) {
	pr, err := pcapfile.NewReader(r)
	if err != nil {
		return nil, err
	}
	return &FileReader{r: pr}, nil
}

// Next returns the next packet. data and ci are valid until the next call.
// At the end it returns io.EOF, or io.ErrUnexpectedEOF if the file ends
// inside a packet (a capture cut while written): what came before is good.
func (r *FileReader) Next() ([]byte, *CaptureInfo, error) {
	data, pi, err := r.r.Next()
	if err != nil {
		return nil, nil, err
	}
	r.ci = CaptureInfo{
		Timestamp:      pi.Timestamp,
		Length:         pi.Length,
		CaptureLength:  pi.CaptureLength,
		Link:           packet.LinkType(pi.LinkType),
		VLAN:           -1,
		InterfaceIndex: pi.InterfaceIndex,
	}
	return data, &r.ci, nil
}

// Close closes the file OpenFile opened.
func (r *FileReader) Close() error { return r.r.Close() }

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
