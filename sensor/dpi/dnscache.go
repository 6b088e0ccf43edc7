package dpi

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// dnsCache maps addresses to the names DNS answers gave them, so a flow
// that carries no name (TLS without SNI, QUIC after the first packets, a
// UDP media stream) can still be named by what its client resolved. It is
// sharded to keep workers off each other's locks, and each shard is an LRU
// list in an array of at most size/16 entries (about 100 bytes each with
// the index): the memory bound is set at start and entries expire after
// their TTL clamped to [min, max].
type dnsCache struct {
	shards         [dnsShards]dnsShard
	minTTL, maxTTL int64 // nanoseconds
	inserts, hits  atomic.Uint64
	evicted        atomic.Uint64
}

const dnsShards = 16

type dnsShard struct {
	mu    sync.Mutex
	idx   map[netip.Addr]int32
	ents  []dnsEnt
	head  int32 // most recently used, -1 when empty
	tail  int32 // least recently used
	limit int   // entries this shard may hold
}

type dnsEnt struct {
	addr       netip.Addr
	name       string
	exp        int64
	prev, next int32
}

func newDNSCache(size int, minTTL, maxTTL time.Duration) *dnsCache {
	per := (size + dnsShards - 1) / dnsShards
	if per < 1 {
		per = 1
	}
	c := &dnsCache{minTTL: int64(minTTL), maxTTL: int64(maxTTL)}
	for i := range c.shards {
		s := &c.shards[i]
		// Grown on demand up to the limit, so a small network does not
		// pay for the bound up front.
		s.idx = make(map[netip.Addr]int32)
		s.head, s.tail, s.limit = -1, -1, per
	}
	return c
}

func (c *dnsCache) shard(a netip.Addr) *dnsShard {
	b := a.As16()
	h := uint32(2166136261)
	for _, x := range b[8:] {
		h = (h ^ uint32(x)) * 16777619
	}
	return &c.shards[h%dnsShards]
}

// put records that name resolved to a for ttl seconds.
func (c *dnsCache) put(a netip.Addr, name string, ttl uint32, now time.Time) {
	a = a.Unmap()
	d := int64(ttl) * int64(time.Second)
	if d < c.minTTL {
		d = c.minTTL
	}
	if d > c.maxTTL {
		d = c.maxTTL
	}
	exp := now.UnixNano() + d
	s := c.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.inserts.Add(1)
	if i, ok := s.idx[a]; ok {
		e := &s.ents[i]
		e.name, e.exp = name, exp
		s.toFront(i)
		return
	}
	var i int32
	if len(s.ents) < s.limit {
		s.ents = append(s.ents, dnsEnt{})
		i = int32(len(s.ents) - 1)
	} else {
		i = s.tail
		s.unlink(i)
		delete(s.idx, s.ents[i].addr)
		c.evicted.Add(1)
	}
	s.ents[i] = dnsEnt{addr: a, name: name, exp: exp, prev: -1, next: -1}
	s.idx[a] = i
	s.pushFront(i)
}

// get returns the name an address resolved from, if still fresh.
func (c *dnsCache) get(a netip.Addr, now time.Time) (string, bool) {
	a = a.Unmap()
	s := c.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.idx[a]
	if !ok {
		return "", false
	}
	e := &s.ents[i]
	if now.UnixNano() > e.exp {
		return "", false
	}
	s.toFront(i)
	c.hits.Add(1)
	return e.name, true
}

func (s *dnsShard) unlink(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *dnsShard) pushFront(i int32) {
	e := &s.ents[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.ents[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

func (s *dnsShard) toFront(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}
