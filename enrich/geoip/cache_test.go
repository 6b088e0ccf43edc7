package geoip

import (
	"encoding/binary"
	"testing"
)

// len counts the valid entries.
func (c *cache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, set := range sh.sets {
			for _, e := range set {
				if e.valid {
					n++
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

func key(i uint32) (k [16]byte) {
	k[10], k[11] = 0xff, 0xff
	binary.BigEndian.PutUint32(k[12:], i)
	return k
}

func TestCacheSize(t *testing.T) {
	for _, c := range []struct{ size, entries, shards int }{
		{1, 2, 1}, {2, 2, 1}, {3, 4, 2}, {100, 128, 16}, {1 << 16, 1 << 16, 16},
	} {
		ca := newCache(c.size)
		got := 0
		for i := range ca.shards {
			got += len(ca.shards[i].sets) * ways
		}
		if got != c.entries || len(ca.shards) != c.shards {
			t.Errorf("newCache(%d): %d entries in %d shards, want %d in %d", c.size, got, len(ca.shards), c.entries, c.shards)
		}
	}
	if newCache(0) != nil {
		t.Error("newCache(0) is not nil")
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(100)
	for i := range uint32(10_000) {
		c.put(key(i), Info{ASN: i}, 32)
	}
	if n := c.len(); n > 128 {
		t.Errorf("%d entries, more than 128", n)
	}
	if info, _, ok := c.get(key(9999)); !ok || info.ASN != 9999 {
		t.Errorf("last put: %+v %v", info, ok)
	}
	var nilCache *cache
	nilCache.put(key(1), Info{ASN: 1}, 32)
	if _, _, ok := nilCache.get(key(1)); ok {
		t.Error("nil cache kept something")
	}
}

// TestCacheLRU fills one set with two keys, uses the first, and checks a
// third evicts the second.
func TestCacheLRU(t *testing.T) {
	c := newCache(64)
	var same [][16]byte
	_, set0 := c.slot(new(key(0)))
	for i := uint32(0); len(same) < 3; i++ {
		k := key(i)
		if _, s := c.slot(&k); s == set0 {
			same = append(same, k)
		}
	}
	a, b, d := same[0], same[1], same[2]
	c.put(a, Info{ASN: 1}, 32)
	c.put(b, Info{ASN: 2}, 32)
	c.put(b, Info{ASN: 2}, 32) // a second miss on b takes b's way, not a's
	if _, _, ok := c.get(a); !ok {
		t.Fatal("a evicted by b")
	}
	c.put(d, Info{ASN: 3}, 32)
	if _, _, ok := c.get(b); ok {
		t.Error("b, used last before a, was kept")
	}
	if info, _, ok := c.get(a); !ok || info.ASN != 1 {
		t.Error("a, used last, was evicted")
	}
	if info, _, ok := c.get(d); !ok || info.ASN != 3 {
		t.Error("d not stored")
	}
}
