package detect

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type dedupKey struct {
	kind     kind
	rule     string
	src, dst netip.Addr
	protocol string
}

// dedupEntry is one open window: the alert emitted when it opened and the
// repeats folded since.
type dedupEntry struct {
	key         dedupKey
	first       *Alert // emitted, so never written again
	until       int64  // unix nanoseconds when the window closes
	repeats     uint64
	firstRepeat time.Time
	last        time.Time
}

// summary returns the alert carrying the repeats folded since the last
// one, or nil when there were none, and starts counting again.
func (e *dedupEntry) summary() *Alert {
	if e.repeats == 0 {
		return nil
	}
	a := new(Alert)
	*a = *e.first
	a.Time, a.Last, a.Count = e.firstRepeat, e.last, e.repeats
	e.repeats = 0
	return a
}

type dedupShard struct {
	mu sync.Mutex
	m  map[dedupKey]*dedupEntry
	// fifo holds the entries in the order they opened, which is the order
	// they close since every window has the same length; entries replaced
	// in m are skipped when they reach the front.
	fifo fifo[*dedupEntry]
	_    [64]byte // keep neighbouring shards' mutexes off one cache line
}

func (s *dedupShard) live(e *dedupEntry) bool { return s.m[e.key] == e }

// deduper folds identical alerts within a window; with window 0 it only
// copies them.
type deduper struct {
	window   time.Duration
	perShard int
	shards   []dedupShard
	mask     uint64
	evicted  *atomic.Uint64 // entries closed early for room
}

func newDeduper(window time.Duration, max, shards int, evicted *atomic.Uint64) *deduper {
	d := &deduper{window: window, shards: make([]dedupShard, shards), mask: uint64(shards - 1), evicted: evicted}
	d.perShard = (max + shards - 1) / shards
	for i := range d.shards {
		d.shards[i].m = map[dedupKey]*dedupEntry{}
	}
	return d
}

// fold records the detection a (whose Evidence is still empty). It returns
// the alerts to emit: the summary of a window closed to make room or found
// expired, and a copy of a when it opens a new window; folded is true when
// a was counted into an open window instead.
func (d *deduper) fold(a *Alert, k kind, now time.Time, evidence func() string) (out [2]*Alert, folded bool) {
	if d.window <= 0 {
		out[1] = d.own(a, evidence)
		return out, false
	}
	key := dedupKey{kind: k, rule: a.Rule, src: a.SrcAddr, dst: a.DstAddr, protocol: a.Protocol}
	s := &d.shards[addrHash(a.SrcAddr)&d.mask]
	ns := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e != nil && ns < e.until {
		e.repeats++
		if e.repeats == 1 {
			e.firstRepeat = now
		}
		e.last = now
		return out, true
	}
	if e != nil {
		// Expired but not swept yet.
		out[0] = e.summary()
		delete(s.m, key)
	} else if len(s.m) >= d.perShard {
		for s.fifo.len() > 0 {
			old := s.fifo.pop()
			if s.live(old) {
				delete(s.m, old.key)
				out[0] = old.summary()
				d.evicted.Add(1)
				break
			}
		}
	}
	na := d.own(a, evidence)
	key.rule, key.protocol = na.Rule, na.Protocol
	ne := &dedupEntry{key: key, first: na, until: now.Add(d.window).UnixNano()}
	s.m[key] = ne
	s.fifo.push(ne)
	out[1] = na
	return out, false
}

// own copies a to the heap with its evidence, and its strings too: they
// may point into a record the decoder reuses.
func (d *deduper) own(a *Alert, evidence func() string) *Alert {
	na := new(Alert)
	*na = *a
	na.Rule, na.Protocol = strings.Clone(a.Rule), strings.Clone(a.Protocol)
	na.SrcPool, na.DstPool = strings.Clone(a.SrcPool), strings.Clone(a.DstPool)
	if evidence != nil {
		na.Evidence = evidence()
	}
	return na
}

// sweep closes the windows ended at now and appends their summaries to out.
func (d *deduper) sweep(now time.Time, out []*Alert) []*Alert {
	ns := now.UnixNano()
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		for s.fifo.len() > 0 && s.fifo.front().until <= ns {
			e := s.fifo.pop()
			if s.live(e) {
				delete(s.m, e.key)
				if a := e.summary(); a != nil {
					out = append(out, a)
				}
			}
		}
		s.mu.Unlock()
	}
	return out
}

// flush appends the summaries of every open window to out.
func (d *deduper) flush(out []*Alert) []*Alert {
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			if a := e.summary(); a != nil {
				out = append(out, a)
			}
		}
		s.mu.Unlock()
	}
	return out
}

func (d *deduper) size() int {
	n := 0
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// fifo is a queue on a slice, compacted as its head advances.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int { return len(q.items) - q.head }
func (q *fifo[T]) front() T { return q.items[q.head] }
func (q *fifo[T]) push(v T) { q.items = append(q.items, v) }
func (q *fifo[T]) pop() T {
	var zero T
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head >= 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	} else if q.head == len(q.items) {
		q.items = q.items[:0]
		q.head = 0
	}
	return v
}

// addrHash spreads addresses over shards.
func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	x := binary.LittleEndian.Uint64(b[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[8:]), 29)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return x
}
