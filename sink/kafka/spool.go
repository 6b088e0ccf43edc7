package kafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The spool keeps records Kafka did not take, in append-only segment files
// named <sequence>.seg. A record on disk is
//
//	u32 length of the rest | u32 CRC-32C of the rest | u8 key length | key | value
//
// little-endian. Only the newest segment is ever written; older ones are
// sealed and read back whole by the drainer, which deletes a segment once
// Kafka acknowledged all its records. A crash can leave a torn last record:
// the reader stops at the first record whose length runs past the end of
// the file or whose checksum fails, and counts it.

const (
	spoolHeader = 9 // length, crc, key length
	segSuffix   = ".seg"
)

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)

	errSpoolFull   = errors.New("spool full")
	errSpoolClosed = errors.New("spool closed")
)

type spool struct {
	dir      string
	maxBytes int64
	segBytes int64

	mu      sync.Mutex
	sealed  []uint64 // sequence numbers of sealed segments, oldest first
	next    uint64   // sequence of the active segment
	active  *os.File // nil until the first write after a seal
	w       *bufio.Writer
	actSize int64
	total   int64 // bytes in all segments
	closed  bool
	hdr     [spoolHeader]byte
}

func segName(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", seq, segSuffix))
}

// openSpool takes over the segments a previous run left in dir: all of
// them are sealed and will be drained.
func openSpool(dir string, maxBytes, segBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read spool directory: %w", err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, segBytes: segBytes}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("stat spool segment: %w", err)
		}
		s.sealed = append(s.sealed, seq)
		s.total += info.Size()
		s.next = max(s.next, seq+1)
	}
	slices.Sort(s.sealed)
	return s, nil
}

// write appends one record; errSpoolFull when it would pass maxBytes.
func (s *spool) write(key, value []byte) error {
	if len(key) > 255 {
		key = key[:255]
	}
	size := int64(spoolHeader + len(key) + len(value))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSpoolClosed
	}
	if s.total+size > s.maxBytes {
		return errSpoolFull
	}
	if s.active != nil && s.actSize+size > s.segBytes {
		if err := s.sealLocked(); err != nil {
			return err
		}
	}
	if s.active == nil {
		f, err := os.OpenFile(segName(s.dir, s.next), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o640)
		if err != nil {
			return fmt.Errorf("create spool segment: %w", err)
		}
		s.active, s.actSize = f, 0
		if s.w == nil {
			s.w = bufio.NewWriterSize(f, 64<<10)
		} else {
			s.w.Reset(f)
		}
	}
	s.hdr[8] = byte(len(key))
	crc := crc32.Update(0, crcTable, s.hdr[8:9])
	crc = crc32.Update(crc, crcTable, key)
	crc = crc32.Update(crc, crcTable, value)
	binary.LittleEndian.PutUint32(s.hdr[0:], uint32(size-8))
	binary.LittleEndian.PutUint32(s.hdr[4:], crc)
	s.w.Write(s.hdr[:])
	s.w.Write(key)
	if _, err := s.w.Write(value); err != nil {
		// The segment may now hold a partial record: seal it so the reader
		// meets it at the end, where a torn record is expected.
		_ = s.sealLocked()
		return fmt.Errorf("write spool segment: %w", err)
	}
	s.actSize += size
	s.total += size
	return nil
}

// sealLocked flushes and closes the active segment and queues it for draining.
func (s *spool) sealLocked() error {
	if s.active == nil {
		return nil
	}
	err := s.w.Flush()
	if e := s.active.Sync(); err == nil {
		err = e
	}
	if e := s.active.Close(); err == nil {
		err = e
	}
	s.sealed = append(s.sealed, s.next)
	s.next++
	s.active = nil
	if err != nil {
		return fmt.Errorf("seal spool segment: %w", err)
	}
	return nil
}

// flush pushes buffered writes of the active segment to the file, so that
// a crash loses at most one flush interval.
func (s *spool) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return nil
	}
	return s.w.Flush()
}

// oldest returns the oldest sealed segment, sealing the active one first
// when nothing else is waiting. ok is false when the spool is empty.
func (s *spool) oldest() (seq uint64, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sealed) == 0 && s.active != nil && !s.closed {
		err = s.sealLocked()
	}
	if len(s.sealed) == 0 {
		return 0, false, err
	}
	return s.sealed[0], true, err
}

// remove deletes a drained segment.
func (s *spool) remove(seq uint64) error {
	name := segName(s.dir, seq)
	info, statErr := os.Stat(name)
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove spool segment: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if statErr == nil {
		s.total -= info.Size()
	}
	s.sealed = slices.DeleteFunc(s.sealed, func(v uint64) bool { return v == seq })
	return nil
}

// bytes is the spool's size on disk, buffered writes included.
func (s *spool) bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.sealLocked()
	s.closed = true
	return err
}

// readSegment calls fn for each intact record of a segment, in order, and
// returns the number of torn or corrupt bytes it skipped at the end.
func readSegment(name string, fn func(key, value []byte)) (skipped int, err error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, fmt.Errorf("read spool segment: %w", err)
	}
	return parseSegment(b, fn), nil
}

func parseSegment(b []byte, fn func(key, value []byte)) (skipped int) {
	for len(b) > 0 {
		if len(b) < spoolHeader {
			return len(b)
		}
		n := int64(binary.LittleEndian.Uint32(b[0:]))
		crc := binary.LittleEndian.Uint32(b[4:])
		if n < 1 || n > int64(len(b)-8) {
			return len(b)
		}
		rec := b[8 : 8+n]
		if crc32.Checksum(rec, crcTable) != crc {
			return len(b)
		}
		kl := int(rec[0])
		if kl > len(rec)-1 {
			return len(b)
		}
		fn(rec[1:1+kl], rec[1+kl:])
		b = b[8+n:]
	}
	return 0
}
