package udp

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// The gate decides, in the reader goroutine and before a datagram is
// copied or queued, whether its source may be heard: the allow-list, then
// the per-exporter rate limit. Each reader owns its gate, so there is no
// lock; a known exporter costs a binary search and a map lookup, and no
// allocation.

// verdict of the gate.
type verdict uint8

const (
	admitted verdict = iota
	notAllowed
	rateLimited
)

// u128 is an address in IPv6 form (IPv4 as ::ffff:a.b.c.d), as two halves.
type u128 struct{ hi, lo uint64 }

func u128Of(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// allowList is the union of the allowed prefixes as sorted, disjoint,
// non-adjacent ranges of the IPv6 space (IPv4 prefixes are mapped into
// ::ffff:0:0/96, where received IPv4 sources are looked up too). A lookup
// is a binary search, whatever the number of prefixes.
type allowList struct {
	first, last []u128 // range i is [first[i], last[i]]
}

func newAllowList(prefixes []netip.Prefix) *allowList {
	if len(prefixes) == 0 {
		return nil
	}
	type rng struct{ first, last u128 }
	rs := make([]rng, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		p = p.Masked()
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		first := u128Of(p.Addr())
		// The host part: the low 128-bits bits set.
		var host u128
		switch {
		case bits <= 64:
			host = u128{^uint64(0) >> bits, ^uint64(0)}
		case bits < 128:
			host = u128{0, ^uint64(0) >> (bits - 64)}
		}
		rs = append(rs, rng{first, u128{first.hi | host.hi, first.lo | host.lo}})
	}
	slices.SortFunc(rs, func(a, b rng) int { return a.first.cmp(b.first) })
	l := &allowList{}
	for _, r := range rs {
		n := len(l.first)
		if n > 0 {
			// Merge overlapping or adjacent ranges.
			next := l.last[n-1]
			if next.lo++; next.lo == 0 {
				next.hi++
			}
			if r.first.cmp(next) <= 0 || next == (u128{}) {
				if r.last.cmp(l.last[n-1]) > 0 {
					l.last[n-1] = r.last
				}
				continue
			}
		}
		l.first = append(l.first, r.first)
		l.last = append(l.last, r.last)
	}
	return l
}

func (l *allowList) len() int {
	if l == nil {
		return 0
	}
	return len(l.first)
}

// contains reports whether a is in one of the prefixes.
func (l *allowList) contains(a netip.Addr) bool {
	x := u128Of(a)
	// The last range whose first address is <= x.
	lo, hi := 0, len(l.first)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l.first[m].cmp(x) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && x.cmp(l.last[lo-1]) <= 0
}

// defaultRateTableSize bounds the exporters whose token bucket one reader
// keeps: about 100 bytes each, 400 KiB per reader.
const defaultRateTableSize = 4096

// rateTable holds a token bucket per exporter address, at most size of
// them: when full, the least recently seen address is forgotten (and gets
// a full bucket if it comes back, so eviction can only make the limit
// more lenient, never drop a legitimate exporter's datagram). The entries
// are allocated once; a flood of spoofed sources recycles them.
type rateTable struct {
	rate, burst float64 // tokens per second, bucket size
	idx         map[netip.Addr]int32
	ent         []rateEntry
	head, tail  int32 // most and least recently seen; -1 when empty
}

type rateEntry struct {
	addr       netip.Addr
	tokens     float64
	last       int64 // unix nanoseconds of the last refill
	prev, next int32 // towards head, towards tail
}

func newRateTable(rate float64, size int) *rateTable {
	if rate <= 0 {
		return nil
	}
	if size <= 0 {
		size = defaultRateTableSize
	}
	return &rateTable{
		rate:  rate,
		burst: max(rate, 1), // one second of rate, and at least one datagram
		idx:   make(map[netip.Addr]int32, size),
		ent:   make([]rateEntry, 0, size),
		head:  -1, tail: -1,
	}
}

// allow takes a token from a's bucket at time now (unix nanoseconds).
func (t *rateTable) allow(a netip.Addr, now int64) bool {
	i, ok := t.idx[a]
	if !ok {
		i = t.insert(a, now)
	} else if i != t.head {
		t.unlink(i)
		t.pushFront(i)
	}
	e := &t.ent[i]
	if dt := now - e.last; dt > 0 {
		e.tokens = min(t.burst, e.tokens+float64(dt)*t.rate/1e9)
		e.last = now
	}
	if e.tokens < 1 {
		return false
	}
	e.tokens--
	return true
}

func (t *rateTable) insert(a netip.Addr, now int64) int32 {
	var i int32
	if len(t.ent) < cap(t.ent) {
		i = int32(len(t.ent))
		t.ent = append(t.ent, rateEntry{})
	} else {
		i = t.tail
		t.unlink(i)
		delete(t.idx, t.ent[i].addr)
	}
	t.ent[i] = rateEntry{addr: a, tokens: t.burst, last: now}
	t.idx[a] = i
	t.pushFront(i)
	return i
}

func (t *rateTable) unlink(i int32) {
	e := &t.ent[i]
	if e.prev >= 0 {
		t.ent[e.prev].next = e.next
	} else {
		t.head = e.next
	}
	if e.next >= 0 {
		t.ent[e.next].prev = e.prev
	} else {
		t.tail = e.prev
	}
}

func (t *rateTable) pushFront(i int32) {
	e := &t.ent[i]
	e.prev, e.next = -1, t.head
	if t.head >= 0 {
		t.ent[t.head].prev = i
	}
	t.head = i
	if t.tail < 0 {
		t.tail = i
	}
}

func (t *rateTable) len() int { return len(t.idx) }

// gate is one reader's admission check.
type gate struct {
	allow *allowList // nil: every source
	rate  *rateTable // nil: no limit
}

func (g *gate) admit(a netip.Addr, now int64) verdict {
	if g.allow != nil && !g.allow.contains(a) {
		return notAllowed
	}
	if g.rate != nil && !g.rate.allow(a, now) {
		return rateLimited
	}
	return admitted
}
