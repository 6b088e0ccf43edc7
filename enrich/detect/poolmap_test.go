package detect

import (
	"fmt"
	"strings"
	"testing"
)

// TestPoolMap: the short list and the map answer alike, for the keys'
// own strings, copies of them, and names they do not hold.
func TestPoolMap(t *testing.T) {
	for _, n := range []int{0, 1, smallPools, smallPools + 1, 100} {
		m := map[string]int{}
		for i := range n {
			m[fmt.Sprintf("pool%d", i)] = i
		}
		p := newPoolMap(m)
		if (p.m != nil) != (n > smallPools) || p.len() != n {
			t.Errorf("%d pools: map %v, len %d", n, p.m != nil, p.len())
		}
		for i := range n + 2 {
			k := fmt.Sprintf("pool%d", i)
			for _, key := range []string{k, strings.Clone(k)} {
				v, ok := p.get(key)
				want, wantOK := m[key]
				if v != want || ok != wantOK {
					t.Errorf("%d pools: get(%q) = %d, %v; want %d, %v", n, key, v, ok, want, wantOK)
				}
			}
		}
		if _, ok := p.get(""); ok {
			t.Errorf("%d pools: get(\"\") found", n)
		}
	}
}
