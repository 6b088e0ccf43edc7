package geoip

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"

	"flowlens/enrich/geoip/geoiptest"
)

// benchNetworks is about the size of a small national file; GeoLite2-ASN
// is ~500k networks, which only adds a few tree levels to a miss.
const benchNetworks = 10_000

// benchDBs writes a Country and an ASN database over the same
// benchNetworks networks (90% IPv4 /24s, 10% IPv6 /48s) and returns one
// address in each of 4096 of them.
func benchDBs(b *testing.B) (countryPath, asnPath string, addrs []netip.Addr) {
	b.Helper()
	r := rand.New(rand.NewPCG(42, 42))
	seen := map[netip.Prefix]bool{}
	var cnets, anets []geoiptest.Network
	for len(cnets) < benchNetworks {
		var p netip.Prefix
		if len(cnets)%10 == 9 {
			var a [16]byte
			binary.BigEndian.PutUint64(a[:], 0x2000_0000_0000_0000|r.Uint64()&0x1fff_ffff_ffff_0000)
			p = netip.PrefixFrom(netip.AddrFrom16(a), 48)
		} else {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], r.Uint32()&0xffff_ff00)
			p = netip.PrefixFrom(netip.AddrFrom4(a), 24)
		}
		if _, ok := keyOf(p.Addr()); seen[p] || !ok {
			continue
		}
		seen[p] = true
		n := len(cnets)
		iso := string([]byte{'A' + byte(n%250/26), 'A' + byte(n%250%26)})
		cnets = append(cnets, geoiptest.Network{Prefix: p.String(), Rec: country(iso, iso)})
		anets = append(anets, geoiptest.Network{Prefix: p.String(), Rec: as(uint32(64512+n%2000), fmt.Sprintf("Example Networks %d Ltd", n%2000))})
		if len(addrs) < 4096 {
			addrs = append(addrs, p.Addr().Next())
		}
	}
	dir := b.TempDir()
	countryPath, asnPath = filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	geoiptest.Write(b, countryPath, geoiptest.Spec{DBType: "GeoLite2-Country", ReservedToo: true, Nets: cnets})
	geoiptest.Write(b, asnPath, geoiptest.Spec{DBType: "GeoLite2-ASN", ReservedToo: true, Nets: anets})
	return countryPath, asnPath, addrs
}

// BenchmarkLookup: hit is an address cache hit; miss goes to both trees
// (no address cache) and finds the records already decoded; decode is
// the first lookup of a record, which each record pays once per loaded
// file; reserved is a private address.
func BenchmarkLookup(b *testing.B) {
	cp, ap, addrs := benchDBs(b)
	cached := newTestDB(b, Config{CountryDatabase: cp, ASNDatabase: ap, CacheSize: 1 << 16}, nil)
	uncached := newTestDB(b, Config{CountryDatabase: cp, ASNDatabase: ap}, nil)
	for _, a := range addrs {
		if cached.Lookup(a).ASN == 0 || uncached.Lookup(a).Country == "" {
			b.Fatalf("%s not found", a)
		}
	}
	mask := len(addrs) - 1
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			cached.Lookup(addrs[i&mask])
			i++
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(addrs))
			for pb.Next() {
				cached.Lookup(addrs[i&mask])
				i++
			}
		})
	})
	// memo: through a Memo, the same addresses (most networks do not fit
	// in it, so this is mostly its misses) and every address of 256 of
	// the IPv4 networks (its hits).
	b.Run("memo", func(b *testing.B) {
		b.ReportAllocs()
		m := cached.NewMemo()
		i := 0
		for b.Loop() {
			m.Lookup(addrs[i&mask])
			i++
		}
	})
	var hot []netip.Addr
	for _, a := range addrs {
		if a.Is4() && len(hot) < 256*16 {
			b := a.As4()
			for h := range 16 {
				b[3] = byte(h * 16)
				hot = append(hot, netip.AddrFrom4(b))
			}
		}
	}
	b.Run("memo-hit", func(b *testing.B) {
		b.ReportAllocs()
		m := cached.NewMemo()
		i := 0
		for b.Loop() {
			m.Lookup(hot[i&(len(hot)-1)])
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			uncached.Lookup(addrs[i&mask])
			i++
		}
	})
	st := uncached.state.Load()
	for _, db := range []*database{st.country, st.asn} {
		b.Run("decode-"+db.kind.String(), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				res := db.reader.Lookup(addrs[i&mask])
				if _, err := uncached.decode(db, res); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	b.Run("reserved", func(b *testing.B) {
		b.ReportAllocs()
		a := netip.MustParseAddr("192.168.1.1")
		for b.Loop() {
			cached.Lookup(a)
		}
	})
}

// BenchmarkLoad is the cost of New or a reload: reading, verifying and
// opening a file of benchNetworks networks.
func BenchmarkLoad(b *testing.B) {
	cp, _, _ := benchDBs(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(Config{CountryDatabase: cp}, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
