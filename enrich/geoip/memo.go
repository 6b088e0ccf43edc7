package geoip

import (
	"encoding/binary"
	"net/netip"

	"flowlens/schema"
)

// memoBits sizes a Memo: 4096 networks, 192 KiB. The /24s of a /12 of
// destinations fit without conflicts; the cache behind takes the rest.
const (
	memoBits  = 12
	memoSlots = 1 << memoBits
	memoMask  = memoSlots - 1
	// memoFlush is how many hits a Memo counts before adding them to the
	// DB's: the metrics lag by less than that per memo, for one atomic add
	// per memoFlush hits instead of a shared counter per lookup.
	memoFlush = 64
)

// Memo is one goroutine's memory of recent answers in front of the DB's
// shared cache, for IPv4 addresses. A hit costs a few loads and compares:
// no shard lock, no hashing of a 16-byte key, and no write to memory
// another worker reads, all of which a cache shared by the workers needs.
// It keeps answers by network rather than by address (the network of the
// more specific of the two databases' answers), so that one slot answers
// for a whole /24, or /16 or wider, and a small table covers many
// addresses.
//
// Entries carry the generation of the databases they came from, so a
// reload makes them all stale at once. With the DB's cache off
// (CacheSize 0) it keeps nothing. IPv6 addresses, NAT64 ones included,
// go to the DB. Memo hits count as cache hits in the DB's metrics.
//
// A Memo is not safe for concurrent use: each goroutine needs its own.
type Memo struct {
	db      *DB
	pending uint64 // hits not yet added to db.memoHits
	slots   [memoSlots]memoEntry
}

// memoEntry is the answer for the addresses x in net/bits, valid while
// gen is the DB state's (truncated: a memo would have to sleep through
// 2^32 reloads to be fooled). Info's fields are spread so that an entry
// is 48 bytes, not 56.
type memoEntry struct {
	country, asName string
	asn, net, gen   uint32
	bits            uint8
}

// holds reports whether e answers x in generation gen.
func (e *memoEntry) holds(x, gen uint32) bool {
	return e.gen == gen && x&netMask(e.bits) == e.net
}

// netMask is the mask of a /bits IPv4 network; shifts of 32 give 0.
func netMask(bits uint8) uint32 { return ^uint32(0) << (32 - bits) }

// NewMemo returns a memo in front of d; a nil d gives a memo answering
// every lookup empty.
func (d *DB) NewMemo() *Memo { return &Memo{db: d} }

// Lookup is DB.Lookup, answered from the memo when it can.
func (m *Memo) Lookup(addr netip.Addr) Info {
	d := m.db
	if d == nil {
		return Info{}
	}
	st := d.state.Load()
	if st.country == nil && st.asn == nil {
		return Info{}
	}
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	if st.cache == nil || !addr.Is4() {
		return d.Lookup(addr)
	}
	b := addr.As4()
	if reserved4(b[0], b[1], b[2]) {
		return Info{}
	}
	x, gen := binary.BigEndian.Uint32(b[:]), uint32(st.gen)
	// A network of /24 or wider sits in the slot of its /24s, of /16 or
	// wider in that of its /16s, longer ones in a slot of their address:
	// the first probe answers most lookups.
	e := &m.slots[slot24(x)]
	if !e.holds(x, gen) {
		e = &m.slots[slot16(x)]
		if !e.holds(x, gen) {
			e = &m.slots[slot32(x)]
			if !e.holds(x, gen) {
				return m.fill(st, x)
			}
		}
	}
	if m.pending++; m.pending == memoFlush {
		d.memoHits.Add(memoFlush)
		m.pending = 0
	}
	return Info{Country: e.country, ASName: e.asName, ASN: e.asn}
}

// The slots of the networks holding x: of its /24 (the low bits of its
// number, so that neighbouring /24s never conflict), of its /16 and of x
// alone (multiplicative hashes: a sender choosing addresses that conflict
// only sends lookups to the cache).
func slot24(x uint32) uint32 { return x >> 8 & memoMask }
func slot16(x uint32) uint32 { return (x >> 16) * 0x9e3779b1 >> (32 - memoBits) }
func slot32(x uint32) uint32 { return x * 0x9e3779b1 >> (32 - memoBits) }

// fill answers x from the DB and keeps the answer for its network.
func (m *Memo) fill(st *state, x uint32) Info {
	var key [16]byte
	key[10], key[11] = 0xff, 0xff
	binary.BigEndian.PutUint32(key[12:], x)
	info, bits := m.db.lookupKey(st, key)
	bits = min(bits, 32)
	slot := slot32(x)
	switch {
	case bits <= 16:
		slot = slot16(x)
	case bits <= 24:
		slot = slot24(x)
	}
	m.slots[slot] = memoEntry{country: info.Country, asName: info.ASName, asn: info.ASN,
		net: x & netMask(bits), gen: uint32(st.gen), bits: bits}
	return info
}

// Enrich is DB.Enrich through the memo.
func (m *Memo) Enrich(f *schema.Flow) {
	enrichFrom(f, m.Lookup(f.SrcAddr), m.Lookup(f.DstAddr))
}
