package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestIsPrivateFast: IsPrivate's IPv4 byte tests agree with netip's on
// every range edge and on random addresses.
func TestIsPrivateFast(t *testing.T) {
	var addrs []netip.Addr
	for _, p := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "100.64.0.0/10", "0.0.0.0/32"} {
		pfx := netip.MustParsePrefix(p)
		first := pfx.Addr()
		// Around both edges of each range.
		for _, a := range []netip.Addr{first, first.Prev(), first.Next(), lastOf(pfx), lastOf(pfx).Next(), lastOf(pfx).Prev()} {
			if a.IsValid() {
				addrs = append(addrs, a, netip.AddrFrom16(a.As16()))
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var b [4]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		addrs = append(addrs, netip.AddrFrom4(b))
	}
	addrs = append(addrs, netip.Addr{}, netip.MustParseAddr("::1"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("2001:db8::1"))
	for _, a := range addrs {
		if got, want := IsPrivate(a), isPrivateSlow(a); got != want {
			t.Errorf("IsPrivate(%v) = %v, netip says %v", a, got, want)
		}
	}
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}
