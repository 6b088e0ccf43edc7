package dpi

import (
	"bytes"
	"strings"
)

// HTTP/1.x on any port: the request line and the Host and User-Agent
// headers name the flow; the response's Content-Type marks downloads
// (nDPI's Download category) when no application was named.

var httpMethods = [...]string{
	"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "CONNECT ", "PATCH ", "TRACE ",
	"PROPFIND ", "PROPPATCH ", "MKCOL ", "COPY ", "MOVE ", "LOCK ", "UNLOCK ", "REPORT ",
}

// httpMethod returns the length of the method token and its space.
func httpMethod(b []byte) int {
	for _, m := range httpMethods {
		if len(b) >= len(m) && string(b[:len(m)]) == m {
			return len(m)
		}
	}
	return 0
}

// downloadTypes are response Content-Types of file downloads.
var downloadTypes = [...]string{
	"application/octet-stream", "application/x-msdownload", "application/vnd.ms-cab-compressed",
	"application/x-ms-installer", "application/zip", "application/x-zip-compressed",
	"application/x-rar-compressed", "application/x-7z-compressed", "application/java-archive",
	"application/vnd.android.package-archive", "application/x-debian-package", "application/x-rpm",
	"application/x-iso9660-image", "application/gzip", "application/x-gzip", "application/x-tar",
}

const maxHTTPHeader = 8 << 10

// header returns the value of the first header named name (with its colon,
// lower case) in a header block, without allocating.
func header(block []byte, name string) []byte {
	for len(block) > 0 {
		i := bytes.IndexByte(block, '\n')
		line := block
		if i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = nil
		}
		if len(line) > len(name) && strings.EqualFold(string(line[:len(name)]), name) {
			return bytes.TrimSpace(line[len(name):])
		}
	}
	return nil
}

// hostOnly strips the port from a Host header value.
func hostOnly(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[:i], ':') < 0 {
		return h[:i]
	}
	return h
}

// httpTCP is the HTTP dissector (and RTSP, whose requests look alike).
func (e *Engine) httpTCP(p *pkt) bool {
	st := p.st
	if st.master == 0 {
		if !p.first {
			return false
		}
		switch {
		case httpMethod(p.p) > 0:
			st.set(pHTTP, 0)
			st.setRev(p.dir != ToServer)
			st.phase = phHTTPResp
			st.flags |= fPending
			st.owner = ownHTTPReq
		case bytes.HasPrefix(p.p, []byte("HTTP/1.")) && len(p.p) >= 12 && st.flags&(fSeen0<<(p.dir^1)) == 0:
			// The capture missed the request.
			st.set(pHTTP, 0)
			e.httpResponse(p)
			e.finish(st)
			return true
		default:
			return false
		}
	}
	if p.dir == st.clientDir() {
		if st.owner != ownHTTPReq {
			return true // request already read
		}
		data := e.streamData(p)
		end := bytes.Index(data, []byte("\r\n\r\n"))
		if end < 0 {
			if len(data) < maxHTTPHeader && !p.streamFull() && int(st.npay) < e.cfg.MaxPackets-1 {
				e.keep(p)
				return true // the headers go on in the next segment
			}
			end = len(data)
		}
		e.httpRequest(p, data[:end])
		st.owner = ownNone
		e.releaseDir(st, p.dir)
		return true
	}
	e.httpResponse(p)
	e.finish(st)
	return true
}

func (e *Engine) httpRequest(p *pkt, head []byte) {
	st := p.st
	nl := bytes.IndexByte(head, '\n')
	line := head
	if nl >= 0 {
		line = head[:nl]
	}
	line = bytes.TrimRight(line, "\r")
	if bytes.HasSuffix(line, []byte(" RTSP/1.0")) {
		st.master = pRTSP
		e.finish(st)
		return
	}
	if bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		st.master = pSIP
		e.finish(st)
		return
	}
	ml := httpMethod(line)
	target := line[ml:]
	if i := bytes.IndexByte(target, ' '); i >= 0 {
		target = target[:i]
	}
	var hdrs []byte
	if nl >= 0 {
		hdrs = head[nl+1:]
	}
	m := st.meta()
	host := hostOnly(header(hdrs, "host:"))
	switch {
	case ml == len("CONNECT ") && string(line[:ml]) == "CONNECT ":
		st.master = pHTTPConnect
		if len(host) == 0 {
			host = hostOnly(target)
		}
	case bytes.HasPrefix(target, []byte("http://")):
		st.master = pHTTPProxy
	}
	if len(host) > 0 {
		m.serverName = string(sanitize(host))
	}
	if ua := header(hdrs, "user-agent:"); len(ua) > 0 {
		m.userAgent = string(sanitize(ua))
	}
	app := uint16(0)
	if m.serverName != "" {
		app = e.hostApp(st, m.serverName)
	}
	if app == 0 && m.userAgent != "" {
		if id, ok := matchSub(e.tab.uas, m.userAgent, false); ok {
			app = id
		}
	}
	if app == 0 && (bytes.Contains(target, []byte("/speedtest/")) || strings.Contains(m.serverName, "speedtest")) {
		app = pOokla
	}
	st.app = app
}

func (e *Engine) httpResponse(p *pkt) {
	st := p.st
	if st.app != 0 || !bytes.HasPrefix(p.p, []byte("HTTP/1.")) {
		return
	}
	ct := header(p.p, "content-type:")
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = bytes.TrimSpace(ct[:i])
	}
	for _, t := range downloadTypes {
		if strings.EqualFold(string(ct), t) {
			st.cat = e.tab.catIdx["Download"]
			return
		}
	}
}
