package scenario

import (
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"
)

// Addresses of the security scenarios; a policy file for them puts
// 10.0.20.0/24 in pool iot, 10.0.30.0/24 in staff, 10.0.1.0/24 in servers
// (the resolver 10.0.1.53 among them).
var (
	IoTHost       = netip.MustParseAddr("10.0.20.5")
	ServerHost    = netip.MustParseAddr("10.0.1.10")
	Resolver      = netip.MustParseAddr("10.0.1.53")
	StaffHost     = netip.MustParseAddr("10.0.30.7")
	TunnelHost    = netip.MustParseAddr("10.0.30.9")
	DnscatHost    = netip.MustParseAddr("10.0.30.10")
	OutsideDNS    = netip.MustParseAddr("9.9.9.9")
	CloudflareDoH = netip.MustParseAddr("104.16.248.249")
	GoogleAddr    = netip.MustParseAddr("142.250.74.36")
	DropboxAddr   = netip.MustParseAddr("162.125.64.18")
	OutlookAddr   = netip.MustParseAddr("52.97.146.178")
	WikiAddr      = netip.MustParseAddr("185.15.58.224")
	TunnelDomain  = "t.tunnel-example.net"
	DnscatDomain  = "c.dnscat-example.org"
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// Browse writes ordinary web use by StaffHost: DNS A lookups through the
// internal resolver, answered, then TLS to the answer.
func (c *Capture) Browse(port uint16, name string, addr netip.Addr) {
	id := uint16(port)
	c.UDP(ap(StaffHost, port), ap(Resolver, 53), Client(DNSQuery(id, name, TypeA)), Server(DNSAnswer(id, name, TypeA, 0, addr)))
	c.TCP(ap(StaffHost, port+1), ap(addr, 443), Client(TLSClientHello(name)))
}

// Normal is traffic on which no detection may fire: browsing (search,
// an encyclopedia, CDN names, telemetry), NTP, and Microsoft 365 from a
// pool allowed to use it.
func Normal(start time.Time) *Capture {
	c := New(start)
	sites := []struct {
		name string
		addr netip.Addr
	}{
		{"www.google.com", GoogleAddr}, {"en.wikipedia.org", WikiAddr}, {"upload.wikimedia.org", WikiAddr},
		{"a1234.dscb.akamaiedge.net", netip.MustParseAddr("23.50.1.9")}, {"e673.dsce9.akamaiedge.net", netip.MustParseAddr("23.50.1.10")},
		{"v10.events.data.microsoft.com", netip.MustParseAddr("20.42.65.92")}, {"www.gstatic.com", GoogleAddr},
		{"outlook.office365.com", OutlookAddr},
	}
	for i, s := range sites {
		c.Browse(uint16(40000+10*i), s.name, s.addr)
		c.Advance(50 * time.Millisecond)
	}
	// 60 lookups of distinct ordinary names under one CDN domain: many
	// subdomains, short and low-entropy labels, all answered.
	for i := range 60 {
		name := fmt.Sprintf("img%d.static.cdn-example.com", i)
		id := uint16(1000 + i)
		c.UDP(ap(StaffHost, uint16(41000+i)), ap(Resolver, 53), Client(DNSQuery(id, name, TypeA)), Server(DNSAnswer(id, name, TypeA, 0, netip.MustParseAddr("198.51.100.7"))))
	}
	c.UDP(ap(StaffHost, 123), ap(netip.MustParseAddr("10.0.1.1"), 123), Client(ntp()), Server(ntp()))
	return c
}

func ntp() []byte {
	b := make([]byte, 48)
	b[0] = 0x23 // v4, client
	return b
}

// Attacks writes what each detection must report once:
//   - IoTHost opens SSH and RDP to ServerHost (policy: iot must not reach
//     servers with RemoteAccess);
//   - StaffHost uses Dropbox (denied for staff) and Microsoft 365 (allowed);
//   - TunnelHost runs an iodine-like tunnel: one socket, NULL queries of
//     long base32 labels under TunnelDomain;
//   - DnscatHost runs a dnscat2-like tunnel: TXT queries of hex labels
//     under DnscatDomain, a new source port each, half NXDOMAIN;
//   - IoTHost asks a resolver outside the allow-list (OutsideDNS), and
//     resolves over HTTPS with Cloudflare (DoH, TLS to CloudflareDoH).
func Attacks(start time.Time) *Capture {
	c := New(start)
	c.TCP(ap(IoTHost, 50022), ap(ServerHost, 22), Client(SSHBanner("OpenSSH_9.2p1")), Server(SSHBanner("OpenSSH_9.2p1 Debian-2")))
	c.TCP(ap(IoTHost, 50389), ap(ServerHost, 3389), Client(RDPConnectionRequest("admin")))
	c.TCP(ap(StaffHost, 50443), ap(DropboxAddr, 443), Client(TLSClientHello("www.dropbox.com")))
	c.TCP(ap(StaffHost, 50444), ap(OutlookAddr, 443), Client(TLSClientHello("outlook.office365.com")))
	r := rand.New(rand.NewPCG(1, 2))
	var iodine []Msg
	for i := range 150 {
		raw := make([]byte, 40)
		for j := range raw {
			raw[j] = byte(r.Uint32())
		}
		label := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw))
		name := label[:63] + "." + label[63:] + "." + TunnelDomain
		id := uint16(i)
		iodine = append(iodine, Client(DNSQuery(id, name, TypeNULL)), Server(DNSAnswer(id, name, TypeNULL, 0)))
	}
	c.UDP(ap(TunnelHost, 53531), ap(Resolver, 53), iodine...)
	for i := range 120 {
		raw := make([]byte, 28)
		for j := range raw {
			raw[j] = byte(r.Uint32())
		}
		name := hex.EncodeToString(raw) + "." + DnscatDomain
		id := uint16(5000 + i)
		rcode := uint8(0)
		if i%2 == 1 {
			rcode = NXDomain
		}
		c.UDP(ap(DnscatHost, uint16(30000+i)), ap(Resolver, 53), Client(DNSQuery(id, name, TypeTXT)), Server(DNSAnswer(id, name, TypeTXT, rcode)))
	}
	c.TCP(ap(IoTHost, 50853), ap(CloudflareDoH, 443), Client(TLSClientHello("mozilla.cloudflare-dns.com")))
	c.UDP(ap(IoTHost, 50053), ap(OutsideDNS, 53), Client(DNSQuery(77, "time.example.com", TypeA)), Server(DNSAnswer(77, "time.example.com", TypeA, 0, netip.MustParseAddr("203.0.113.5"))))
	return c
}
