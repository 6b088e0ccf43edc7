package dpi

import (
	"bytes"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// FTP data connections go to an address and port the control connection
// announced: "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)", "229
// Entering Extended Passive Mode (|||port|)", or the client's "PORT
// h1,...,p2" / "EPRT |1|addr|port|". The control flow stays under watch
// for a longer budget (logins take a dozen lines before the first PASV),
// and announced endpoints wait in a small shared table that new TCP flows
// are checked against (nDPI's FTP_DATA).

const (
	ftpExpectMax = 1024
	ftpExpectTTL = 2 * time.Minute
	ftpBudget    = 4 // times MaxPackets for a control connection
)

type expectations struct {
	mu sync.Mutex
	m  map[netip.AddrPort]int64
	n  atomic.Int32
}

func (x *expectations) add(ap netip.AddrPort, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil {
		x.m = map[netip.AddrPort]int64{}
	}
	t := now.UnixNano()
	if len(x.m) >= ftpExpectMax {
		for k, exp := range x.m {
			if exp < t || len(x.m) >= ftpExpectMax {
				delete(x.m, k)
			}
		}
	}
	x.m[ap] = t + int64(ftpExpectTTL)
	x.n.Store(int32(len(x.m)))
}

// take reports whether ap was announced, and forgets it.
func (x *expectations) take(ap netip.AddrPort, now time.Time) bool {
	if x.n.Load() == 0 {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	exp, ok := x.m[ap]
	if !ok {
		return false
	}
	delete(x.m, ap)
	x.n.Store(int32(len(x.m)))
	return exp >= now.UnixNano()
}

// ftpFollow reads a control connection's lines for data endpoints.
func (e *Engine) ftpFollow(p *pkt) {
	b := p.p
	var ap netip.AddrPort
	switch {
	case bytes.HasPrefix(b, []byte("227 ")):
		if i, j := bytes.IndexByte(b, '('), bytes.IndexByte(b, ')'); i > 0 && j > i {
			ap = ftpHostPort(b[i+1 : j])
		}
	case bytes.HasPrefix(b, []byte("229 ")):
		if i := bytes.Index(b, []byte("(|||")); i > 0 {
			r := b[i+4:]
			if j := bytes.IndexByte(r, '|'); j > 0 {
				if port, err := strconv.Atoi(string(r[:j])); err == nil && port > 0 && port < 65536 {
					srv := p.f.Server.Addr()
					if p.dir == ToServer {
						srv = p.f.Client.Addr()
					}
					ap = netip.AddrPortFrom(srv, uint16(port))
				}
			}
		}
	case bytes.HasPrefix(b, []byte("PORT ")):
		ap = ftpHostPort(bytes.TrimSpace(b[5:]))
	case bytes.HasPrefix(b, []byte("EPRT ")):
		f := bytes.Split(bytes.TrimSpace(b[5:]), []byte("|"))
		if len(f) >= 4 {
			a, err1 := netip.ParseAddr(string(f[2]))
			port, err2 := strconv.Atoi(string(f[3]))
			if err1 == nil && err2 == nil && port > 0 && port < 65536 {
				ap = netip.AddrPortFrom(a.Unmap(), uint16(port))
			}
		}
	}
	if ap.IsValid() {
		e.ftp.add(ap, e.now())
	}
}

// ftpHostPort parses "h1,h2,h3,h4,p1,p2".
func ftpHostPort(b []byte) netip.AddrPort {
	var v [6]int
	n := 0
	for _, f := range bytes.Split(bytes.TrimSpace(b), []byte(",")) {
		if n == 6 {
			return netip.AddrPort{}
		}
		x, err := strconv.Atoi(string(bytes.TrimSpace(f)))
		if err != nil || x < 0 || x > 255 {
			return netip.AddrPort{}
		}
		v[n] = x
		n++
	}
	if n != 6 {
		return netip.AddrPort{}
	}
	a := netip.AddrFrom4([4]byte{byte(v[0]), byte(v[1]), byte(v[2]), byte(v[3])})
	return netip.AddrPortFrom(a, uint16(v[4]<<8|v[5]))
}
