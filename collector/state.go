package collector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Template and sampling state survives restarts: each worker snapshots its
// decoder (on its own goroutine, since a Decoder is single-threaded) at most
// every snapshotEvery, and at Stop; the file holds one snapshot per worker.
// At start every decoder loads every snapshot: the exporter→worker hash is
// seeded per process, so an exporter may land on any worker, and decoders
// evict exporters they never see again.

const (
	stateMagic    = "FLCS\x01"
	snapshotEvery = time.Minute
	// maxStateFile bounds what Start reads (a corrupt or hostile file).
	maxStateFile = 256 << 20
)

type snapshot struct {
	data atomic.Pointer[[]byte]
	last time.Time // worker goroutine only
}

// maybeSnapshot runs on worker w's goroutine after a datagram.
func (c *Collector) maybeSnapshot(w int, now time.Time) {
	s := &c.snaps[w]
	if now.Sub(s.last) < snapshotEvery {
		return
	}
	s.last = now
	if b, err := c.decoders[w].MarshalState(); err == nil {
		s.data.Store(&b)
	}
}

// saveState writes the latest snapshots atomically (temp file + rename).
func (c *Collector) saveState() error {
	if c.statePath == "" {
		return nil
	}
	var buf bytes.Buffer
	buf.WriteString(stateMagic)
	_ = binary.Write(&buf, binary.BigEndian, uint32(len(c.snaps)))
	for i := range c.snaps {
		var b []byte
		if p := c.snaps[i].data.Load(); p != nil {
			b = *p
		}
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(b)))
		buf.Write(b)
	}
	tmp := c.statePath + ".tmp"
	if err := os.MkdirAll(filepath.Dir(c.statePath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath)
}

// loadState gives every decoder every saved snapshot. A missing file is a
// first start; a bad one is reported and ignored (templates come again).
func (c *Collector) loadState() (exporters int, err error) {
	if c.statePath == "" {
		return 0, nil
	}
	f, err := os.Open(c.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Size() > maxStateFile {
		return 0, fmt.Errorf("%s: %d bytes, over the %d limit", c.statePath, st.Size(), maxStateFile)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return 0, err
	}
	blobs, err := splitState(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", c.statePath, err)
	}
	for _, b := range blobs {
		for _, d := range c.decoders {
			if err := d.UnmarshalState(b); err != nil {
				return 0, fmt.Errorf("%s: %w", c.statePath, err)
			}
		}
	}
	return len(c.decoders[0].Exporters()), nil
}

func splitState(data []byte) ([][]byte, error) {
	if !bytes.HasPrefix(data, []byte(stateMagic)) || len(data) < len(stateMagic)+4 {
		return nil, errors.New("not a flowlens collector state file")
	}
	p := data[len(stateMagic):]
	n := binary.BigEndian.Uint32(p)
	p = p[4:]
	if n > 4096 {
		return nil, fmt.Errorf("%d snapshots: corrupt", n)
	}
	var out [][]byte
	for range n {
		if len(p) < 4 {
			return nil, errors.New("truncated")
		}
		l := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(l) > uint64(len(p)) {
			return nil, errors.New("truncated")
		}
		if l > 0 {
			out = append(out, p[:l])
		}
		p = p[l:]
	}
	return out, nil
}
