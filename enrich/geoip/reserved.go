package geoip

import (
	"encoding/binary"
	"net/netip"
)

// keyOf returns the address a lookup is about, as IPv6 (IPv4 mapped),
// and false for addresses no GeoIP database places, which are answered
// empty without touching the cache. IPv4-mapped addresses and NAT64 ones
// (64:ff9b::/96, RFC 6052: an IPv6-only network reaching the IPv4
// Internet) stand for their IPv4 address; zones are dropped. Working on
// the 16 bytes spares the hot path netip conversions.
func keyOf(a netip.Addr) ([16]byte, bool) {
	if !a.IsValid() {
		return [16]byte{}, false
	}
	k := a.As16()
	hi, mid := binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint32(k[8:12])
	switch {
	case hi == 0 && mid == 0xffff:
		return k, !reserved4(k[12], k[13], k[14])
	case hi == 0x0064_ff9b_0000_0000 && mid == 0:
		k = [16]byte{10: 0xff, 11: 0xff, 12: k[12], 13: k[13], 14: k[14], 15: k[15]}
		return k, !reserved4(k[12], k[13], k[14])
	}
	// Only 2000::/3 is global unicast; 2001:db8::/32 is documentation.
	return k, k[0]&0xe0 == 0x20 && hi>>32 != 0x2001_0db8
}

// reserved4 reports the IPv4 networks no database places, from the first
// three bytes: private, shared (CGNAT), loopback, link-local,
// documentation, benchmarking, multicast and the rest of 240/4. Most
// flows have one such end, so they are worth keeping out of the cache.
func reserved4(a, b, c byte) bool {
	switch a {
	case 0, 10, 127:
		return true
	case 100:
		return b&0xc0 == 64 // 100.64.0.0/10
	case 169:
		return b == 254
	case 172:
		return b&0xf0 == 16 // 172.16.0.0/12
	case 192:
		return b == 168 || (b == 0 && (c == 0 || c == 2)) // 192.0.0.0/24, 192.0.2.0/24
	case 198:
		return b&0xfe == 18 || (b == 51 && c == 100) // 198.18.0.0/15, 198.51.100.0/24
	case 203:
		return b == 0 && c == 113
	}
	return a >= 224
}
