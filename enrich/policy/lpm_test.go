package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// randomPrefixes returns n distinct prefixes, many nested: a third are
// drawn inside an earlier one. Top-level prefixes are at least minBits
// long.
func randomPrefixes(r *rand.Rand, n int, v6 bool, minBits int) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	out := make([]netip.Prefix, 0, n)
	width := 32
	if v6 {
		width = 128
	}
	for len(out) < n {
		var a netip.Addr
		var bits int
		if len(out) > 0 && r.IntN(3) == 0 {
			// Inside an earlier prefix, longer.
			outer := out[r.IntN(len(out))]
			if outer.Bits() == width {
				continue
			}
			a = randomIn(r, outer)
			bits = outer.Bits() + 1 + r.IntN(width-outer.Bits())
		} else {
			a = randomAddr(r, v6)
			bits = minBits + r.IntN(width+1-minBits)
		}
		p := netip.PrefixFrom(a, bits).Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func randomAddr(r *rand.Rand, v6 bool) netip.Addr {
	if !v6 {
		var b [4]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if b[0] == 0 {
		b[0] = 0x20 // no IPv4-mapped addresses in the IPv6 tests
	}
	return netip.AddrFrom16(b)
}

// randomIn returns a random address inside p.
func randomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	a := randomAddr(r, p.Addr().Is6())
	b, pb := a.AsSlice(), p.Addr().AsSlice()
	for i := range p.Bits() {
		m := byte(0x80 >> (i % 8))
		b[i/8] = b[i/8]&^m | pb[i/8]&m
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// clustered moves every prefix inside outer (as a LAN's are inside
// 10.0.0.0/8), dropping the duplicates that makes.
func clustered(ps []netip.Prefix, outer netip.Prefix) []netip.Prefix {
	for i, p := range ps {
		b, ob := p.Addr().AsSlice(), outer.Addr().AsSlice()
		for j := range outer.Bits() {
			m := byte(0x80 >> (j % 8))
			b[j/8] = b[j/8]&^m | ob[j/8]&m
		}
		a, _ := netip.AddrFromSlice(b)
		ps[i] = netip.PrefixFrom(a, max(p.Bits(), outer.Bits())).Masked()
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}

// bruteForce is the model: the longest prefix holding a.
func bruteForce(ps []netip.Prefix, a netip.Addr) int32 {
	best, bits := int32(-1), -1
	for i, p := range ps {
		if p.Contains(a) && p.Bits() > bits {
			best, bits = int32(i), p.Bits()
		}
	}
	return best
}

func TestLPMModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 40 {
		v6 := round%2 == 1
		n := 1 + r.IntN(300)
		ps := randomPrefixes(r, n, v6, r.IntN(9))
		if round%4 >= 2 { // all inside one block: the bucket index spans only it
			outer := netip.PrefixFrom(randomAddr(r, v6), 8+r.IntN(20)).Masked()
			ps = clustered(ps, outer)
			r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
			n = len(ps)
		}
		es := make([]lpmEntry, len(ps))
		for i, p := range ps {
			es[i] = lpmEntry{p, int32(i)}
		}
		tab := buildLPM(es)
		probe := func(a netip.Addr) {
			t.Helper()
			if got, want := tab.lookup(a), bruteForce(ps, a); got != want {
				t.Fatalf("round %d (%d prefixes): lookup(%s) = %d, want %d (%v)", round, n, a, got, want, ps)
			}
		}
		for range 2000 {
			probe(randomAddr(r, v6))
			probe(randomIn(r, netip.PrefixFrom(ps[0].Addr(), 4+r.IntN(20)).Masked()))
			probe(randomIn(r, ps[r.IntN(len(ps))]))
		}
		// The edges of every range.
		for _, p := range ps {
			probe(p.Addr())
			probe(lastAddr(p))
			if n := lastAddr(p).Next(); n.IsValid() {
				probe(n)
			}
			if n := p.Addr().Prev(); n.IsValid() {
				probe(n)
			}
		}
		if len(tab.starts4)+len(tab.starts6) > 2*n+1 {
			t.Errorf("%d ranges for %d prefixes", len(tab.starts4)+len(tab.starts6), n)
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestLPMEdges(t *testing.T) {
	tab := buildLPM(nil)
	if tab.lookup(addr("1.2.3.4")) != -1 || tab.lookup(addr("::1")) != -1 || tab.lookup(netip.Addr{}) != -1 {
		t.Error("empty table")
	}
	tab = buildLPM([]lpmEntry{
		{netip.MustParsePrefix("0.0.0.0/0"), 0}, {netip.MustParsePrefix("255.255.255.255/32"), 1},
		{netip.MustParsePrefix("0.0.0.0/32"), 2}, {netip.MustParsePrefix("::/0"), 3},
		{netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), 4},
		{netip.MustParsePrefix("::/128"), 5}, {netip.MustParsePrefix("8000::/1"), 6},
		{netip.MustParsePrefix("7fff:ffff:ffff:ffff:8000::/65"), 7},
	})
	for a, want := range map[string]int32{
		"0.0.0.0": 2, "0.0.0.1": 0, "255.255.255.254": 0, "255.255.255.255": 1, "::ffff:255.255.255.255": 1,
		"::": 5, "::1": 3, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe": 6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": 4,
		"7fff:ffff:ffff:ffff:7fff:ffff:ffff:ffff": 3, "7fff:ffff:ffff:ffff:8000::": 7,
		"7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": 7, "8000::": 6,
	} {
		if got := tab.lookup(addr(a)); got != want {
			t.Errorf("lookup(%s) = %d, want %d", a, got, want)
		}
	}
	if tab.lookup(netip.Addr{}) != -1 {
		t.Error("invalid address")
	}
}

// A policy of n random pools' prefixes, IPv4 and IPv6 half each.
func benchPolicy(tb testing.TB, n int) (*Policy, []netip.Prefix) {
	r := rand.New(rand.NewPCG(3, 4))
	ps := append(randomPrefixes(r, n/2, false, 8), randomPrefixes(r, n-n/2, true, 16)...)
	var b strings.Builder
	b.WriteString("pools:\n")
	for i, p := range ps {
		if i%100 == 0 {
			fmt.Fprintf(&b, "  pool%d:\n", i/100)
		}
		fmt.Fprintf(&b, "    - %q\n", p.String())
	}
	pol, err := Parse("bench.yaml", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	if pol.NumPrefixes() != n {
		tb.Fatalf("%d prefixes", pol.NumPrefixes())
	}
	return pol, ps
}

func TestPoolModel(t *testing.T) {
	pol, ps := benchPolicy(t, 10000)
	r := rand.New(rand.NewPCG(5, 6))
	for range 4000 {
		var a netip.Addr
		if r.IntN(2) == 0 {
			a = randomIn(r, ps[r.IntN(len(ps))])
		} else {
			a = randomAddr(r, r.IntN(2) == 0)
		}
		want := ""
		if i := bruteForce(ps, a); i >= 0 {
			want = fmt.Sprintf("pool%d", i/100)
		}
		if got := pol.Pool(a); got != want {
			t.Fatalf("Pool(%s) = %q, want %q", a, got, want)
		}
		if a.Is4() {
			if got := pol.Pool(netip.AddrFrom16(a.As16())); got != want {
				t.Fatalf("Pool(mapped %s) = %q, want %q", a, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { pol.Pool(ps[7].Addr()); pol.PoolFor(ps[7].Addr(), 3, 12) }); n != 0 {
		t.Errorf("Pool allocates %v times", n)
	}
}

func probes(r *rand.Rand, ps []netip.Prefix, hit, v6 bool) []netip.Addr {
	var out []netip.Addr
	for len(out) < 4096 {
		p := ps[r.IntN(len(ps))]
		if p.Addr().Is6() != v6 {
			continue
		}
		a := randomIn(r, p)
		if !hit {
			a = randomAddr(r, v6)
			if bruteForce(ps, a) >= 0 {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// BenchmarkPool: 10,000 prefixes (5,000 IPv4, 5,000 IPv6, a third
// nested), addresses inside a prefix (hit) or in none (miss).
func BenchmarkPool(b *testing.B) {
	pol, ps := benchPolicy(b, 10000)
	for _, c := range []struct {
		name    string
		hit, v6 bool
	}{{"v4-hit", true, false}, {"v4-miss", false, false}, {"v6-hit", true, true}, {"v6-miss", false, true}} {
		as := probes(rand.New(rand.NewPCG(7, 8)), ps, c.hit, c.v6)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = pol.Pool(as[i&4095])
				i++
			}
		})
	}
	as := probes(rand.New(rand.NewPCG(7, 8)), ps, true, false)
	b.Run("PoolFor-v4-hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = pol.PoolFor(as[i&4095], 20, 0x0200_0000_0001)
			i++
		}
	})
}

func BenchmarkCategory(b *testing.B) {
	var src strings.Builder
	src.WriteString("categories:\n")
	for i := range 500 {
		fmt.Fprintf(&src, "  App%d: Cat%d\n", i, i%20)
	}
	src.WriteString("  TLS.YouTube: Media\n  QUIC: Web\n")
	pol, err := Parse("bench.yaml", []byte(src.String()))
	if err != nil {
		b.Fatal(err)
	}
	for _, label := range []string{"TLS.YouTube", "QUIC.Netflix", "HTTP.App42", "TLS.Unlisted", "DNS"} {
		b.Run(label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = pol.Category(label)
			}
		})
	}
}

// The alternatives the range table was chosen against (see lpm.go).

// trie is a unibit binary trie over IPv4.
type trie struct {
	child [2]*trie
	pool  int32
}

func newTrie(ps []netip.Prefix) *trie {
	root := &trie{pool: -1}
	for i, p := range ps {
		n, k := root, key4(p.Addr())
		for b := range p.Bits() {
			bit := k >> (31 - b) & 1
			if n.child[bit] == nil {
				n.child[bit] = &trie{pool: -1}
			}
			n = n.child[bit]
		}
		n.pool = int32(i)
	}
	return root
}

func (t *trie) lookup(a netip.Addr) int32 {
	best, k := t.pool, key4(a)
	for b := 0; t != nil && b < 32; b++ {
		if t = t.child[k>>(31-b)&1]; t != nil && t.pool >= 0 {
			best = t.pool
		}
	}
	return best
}

// byLength is a map per prefix length, longest first.
type byLength struct {
	lengths []int
	maps    map[int]map[netip.Prefix]int32
}

func newByLength(ps []netip.Prefix) *byLength {
	t := &byLength{maps: map[int]map[netip.Prefix]int32{}}
	for i, p := range ps {
		if t.maps[p.Bits()] == nil {
			t.maps[p.Bits()] = map[netip.Prefix]int32{}
			t.lengths = append(t.lengths, p.Bits())
		}
		t.maps[p.Bits()][p] = int32(i)
	}
	for i := range t.lengths { // descending
		for j := i + 1; j < len(t.lengths); j++ {
			if t.lengths[j] > t.lengths[i] {
				t.lengths[i], t.lengths[j] = t.lengths[j], t.lengths[i]
			}
		}
	}
	return t
}

func (t *byLength) lookup(a netip.Addr) int32 {
	for _, l := range t.lengths {
		p, _ := a.Prefix(l)
		if v, ok := t.maps[l][p]; ok {
			return v
		}
	}
	return -1
}

func BenchmarkLPM(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	b.Run("spread", func(b *testing.B) { benchLPM(b, r, randomPrefixes(r, 10000, false, 8)) })
	// As in a LAN: every prefix inside 10.0.0.0/8.
	ps := clustered(randomPrefixes(r, 10000, false, 12), netip.MustParsePrefix("10.0.0.0/8"))
	b.Run("in-10/8", func(b *testing.B) { benchLPM(b, r, ps) })
}

func benchLPM(b *testing.B, r *rand.Rand, ps []netip.Prefix) {
	es := make([]lpmEntry, len(ps))
	for i, p := range ps {
		es[i] = lpmEntry{p, int32(i)}
	}
	ranges, tr, bl := buildLPM(es), newTrie(ps), newByLength(ps)
	for _, hit := range []bool{true, false} {
		as := probes(r, ps, hit, false)
		for i, a := range as[:200] {
			if w := bruteForce(ps, a); ranges.lookup(a) != w || tr.lookup(a) != w || bl.lookup(a) != w {
				b.Fatalf("probe %d %s: ranges %d trie %d byLength %d, want %d", i, a, ranges.lookup(a), tr.lookup(a), bl.lookup(a), w)
			}
		}
		name := map[bool]string{true: "hit", false: "miss"}[hit]
		for _, impl := range []struct {
			name   string
			lookup func(netip.Addr) int32
		}{{"ranges", ranges.lookup}, {"trie", tr.lookup}, {"map-per-length", bl.lookup}} {
			b.Run(impl.name+"-"+name, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = impl.lookup(as[i&4095])
					i++
				}
			})
		}
	}
}
