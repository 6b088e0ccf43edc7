package geoip

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"sync"
)

// cache keeps the answers for recently seen addresses. It is a two-way
// set-associative table split into shards, each under its own mutex:
// bounded by construction, nothing allocated after newCache, and a hit is
// one hash, one uncontended lock and two compares. Two ways with LRU
// between them keep two hot addresses that hash alike from evicting each
// other on every flow, as a direct-mapped table would. A nil *cache keeps
// nothing.
type cache struct {
	shards    []shard
	shardBits uint
	setMask   uint64
	// seed keeps a sender from choosing addresses that all land in one
	// set; the worst it could do is make every lookup a miss.
	seed uint64
}

const (
	ways      = 2
	maxShards = 16 // enough for the worker counts we run; each adds a mutex
)

type shard struct {
	mu            sync.Mutex
	sets          [][ways]entry
	lookups, hits uint64   // under mu: see DB.countMu
	_             [16]byte // keeps neighbouring shards' mutexes off one cache line
}

type entry struct {
	key    [16]byte // the address as IPv6 (IPv4 mapped)
	info   Info
	valid  bool
	recent bool  // the way of its set hit or filled last
	bits   uint8 // see DB.lookupKey: the IPv4 network info holds for
}

// newCache returns a cache of at least size entries (a power of two), nil
// for size 0.
func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	n := max(uint64(1)<<bits.Len64(uint64(size-1)), ways)
	sets := n / ways
	shards := min(uint64(maxShards), sets)
	c := &cache{
		shards:    make([]shard, shards),
		shardBits: uint(bits.TrailingZeros64(shards)),
		setMask:   sets/shards - 1,
		seed:      rand.Uint64(),
	}
	for i := range c.shards {
		c.shards[i].sets = make([][ways]entry, sets/shards)
	}
	return c
}

func (c *cache) hash(k *[16]byte) uint64 {
	hi := binary.LittleEndian.Uint64(k[:8])
	lo := binary.LittleEndian.Uint64(k[8:])
	h := (lo ^ c.seed) * 0x9e3779b97f4a7c15
	h = (h ^ h>>29 ^ hi) * 0xbf58476d1ce4e5b9
	return h ^ h>>32
}

// slot returns the shard and the set of k: the shard from the hash's top
// bits, the set from its low ones, so the two choices are independent.
func (c *cache) slot(k *[16]byte) (*shard, *[ways]entry) {
	h := c.hash(k)
	sh := &c.shards[h>>(64-c.shardBits)&uint64(len(c.shards)-1)]
	return sh, &sh.sets[h&c.setMask]
}

func (c *cache) get(k [16]byte) (Info, uint8, bool) {
	if c == nil {
		return Info{}, 0, false
	}
	sh, set := c.slot(&k)
	sh.mu.Lock()
	sh.lookups++
	for i := range set {
		if set[i].valid && set[i].key == k {
			set[i].recent, set[i^1].recent = true, false
			sh.hits++
			info, bits := set[i].info, set[i].bits
			sh.mu.Unlock()
			return info, bits, true
		}
	}
	sh.mu.Unlock()
	return Info{}, 0, false
}

// put stores info for k in the way of its set not used last (or in the
// way already holding k, when two workers missed on it together).
func (c *cache) put(k [16]byte, info Info, bits uint8) {
	if c == nil {
		return
	}
	sh, set := c.slot(&k)
	sh.mu.Lock()
	w := 0
	switch {
	case set[0].valid && set[0].key == k:
	case set[1].valid && set[1].key == k:
		w = 1
	case !set[0].valid:
	case !set[1].valid, set[0].recent:
		w = 1
	}
	set[w] = entry{key: k, info: info, valid: true, recent: true, bits: bits}
	set[w^1].recent = false
	sh.mu.Unlock()
}

// counts returns the lookups and hits the cache saw.
func (c *cache) counts() (lookups, hits uint64) {
	if c == nil {
		return 0, 0
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		lookups += sh.lookups
		hits += sh.hits
		sh.mu.Unlock()
	}
	return lookups, hits
}
