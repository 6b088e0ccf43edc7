package export

import (
	"encoding/binary"
	"net/netip"
	"time"
	"unicode/utf8"
)

// Encoder builds IPFIX messages from flows: pure encoding, no I/O, one
// reused buffer. It is not safe for concurrent use; the Exporter owns one.
//
// A message is Begin, Add until it returns false, Finish. The bytes Finish
// returns are valid until the next Begin.
type Encoder struct {
	cfg    Config
	tpl    [2]template // IPv4, IPv6
	tplSet []byte      // the template set of both templates, ready to copy

	buf      []byte // the message; cap MTU
	setStart int    // offset of the open data set's header, -1 when none
	setTpl   int    // template index of the open data set
	records  int    // data records in the message
	open     bool
	seq      uint32 // data records sent before the open message (mod 2^32)
}

// templateSet returns the template set (set id 2) holding the IPv4 and the
// IPv6 template of cfg's layout.
func templateSet(cfg Config) []byte {
	b := []byte{0, 2, 0, 0}
	for _, v6 := range []bool{false, true} {
		t := compile(v6, cfg.Unidirectional, cfg.Ntop)
		b = t.appendRecord(b)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// NewEncoder checks the encoding part of cfg (MTU, string bounds,
// classification engine, the options that shape the templates).
func NewEncoder(cfg Config) (*Encoder, error) {
	if err := cfg.validateEncoding(); err != nil {
		return nil, err
	}
	e := &Encoder{cfg: cfg, setStart: -1, tplSet: templateSet(cfg), buf: make([]byte, 0, cfg.MTU)}
	e.tpl[0] = compile(false, cfg.Unidirectional, cfg.Ntop)
	e.tpl[1] = compile(true, cfg.Unidirectional, cfg.Ntop)
	return e, nil
}

// TemplateIDs returns the ids of the IPv4 and IPv6 templates.
func (e *Encoder) TemplateIDs() (v4, v6 uint16) { return e.tpl[0].id, e.tpl[1].id }

// Sequence returns the sequence number the next message will carry: the
// data records sent (or skipped) so far, modulo 2^32.
func (e *Encoder) Sequence() uint32 { return e.seq }

// Skip counts n data records that were lost before they reached a message
// (a full queue): RFC 7011 §10.2.2 asks that sequence numbers reflect
// discarded records, so collectors see the loss as a gap. Call it between
// messages.
func (e *Encoder) Skip(n uint32) { e.seq += n }

// Begin starts a message exported at t (the header's export time, in
// seconds), with the template set first when templates is true.
func (e *Encoder) Begin(t time.Time, templates bool) {
	b := e.buf[:0]
	b = binary.BigEndian.AppendUint16(b, 10) // version: IPFIX
	b = binary.BigEndian.AppendUint16(b, 0)  // length, set by Finish
	b = binary.BigEndian.AppendUint32(b, uint32(max(t.Unix(), 0)))
	b = binary.BigEndian.AppendUint32(b, e.seq)
	b = binary.BigEndian.AppendUint32(b, e.cfg.ObservationDomainID)
	if templates {
		b = append(b, e.tplSet...)
	}
	e.buf, e.setStart, e.records, e.open = b, -1, 0, true
}

// SetExportTime replaces the open message's export time: the header
// should say when the message leaves the exporter (RFC 7011 §3.1), which
// for a message filled over a second is later than Begin.
func (e *Encoder) SetExportTime(t time.Time) {
	if e.open {
		binary.BigEndian.PutUint32(e.buf[4:], uint32(max(t.Unix(), 0)))
	}
}

// Records returns the data records in the open message.
func (e *Encoder) Records() int { return e.records }

// Len returns the size of the open message so far.
func (e *Encoder) Len() int { return len(e.buf) }

// Finish closes the open message and returns it (nil when none is open).
// Its records count as sent for the sequence number of the next one.
func (e *Encoder) Finish() []byte {
	if !e.open {
		return nil
	}
	e.closeSet()
	binary.BigEndian.PutUint16(e.buf[2:], uint16(len(e.buf)))
	e.seq += uint32(e.records)
	e.open = false
	return e.buf
}

func (e *Encoder) closeSet() {
	if e.setStart >= 0 {
		binary.BigEndian.PutUint16(e.buf[e.setStart+2:], uint16(len(e.buf)-e.setStart))
		e.setStart = -1
	}
}

// prepared is one flow reduced to what its records need.
type prepared struct {
	v6                    bool
	tpl                   int      // index in Encoder.tpl
	client, server        [16]byte // As16 when v6, first 4 bytes when v4
	app, cat, host, query string   // truncated to the configured bounds
	size                  int      // bytes of one record
}

// fit truncates s to at most n bytes, at a UTF-8 boundary.
func fit(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (e *Encoder) prepare(f *Flow, p *prepared) {
	c, s := f.Client.Unmap(), f.Server.Unmap()
	p.v6 = c.Is6() || s.Is6()
	if p.v6 {
		p.client, p.server = as16(c), as16(s)
	} else {
		p.client, p.server = [16]byte{}, [16]byte{}
		if c.Is4() {
			a := c.As4()
			copy(p.client[:], a[:])
		}
		if s.Is4() {
			a := s.As4()
			copy(p.server[:], a[:])
		}
	}
	p.app = fit(f.Application, e.cfg.MaxLabelLen)
	p.cat = fit(f.Category, e.cfg.MaxLabelLen)
	p.host = fit(f.ServerName, e.cfg.MaxNameLen)
	p.query = fit(f.DNSQuery, e.cfg.MaxNameLen)
	p.tpl = 0
	if p.v6 {
		p.tpl = 1
	}
	t := &e.tpl[p.tpl]
	per := varSize(len(p.app)) + varSize(len(p.cat))
	p.size = t.fixed + t.labels/2*per
	if t.names > 0 {
		p.size += varSize(len(p.host)) + varSize(len(p.query))
	}
}

// as16 is a.As16 for a valid address and zeros (::) for the zero Addr.
func as16(a netip.Addr) [16]byte {
	if !a.IsValid() {
		return [16]byte{}
	}
	return a.As16()
}

// Add appends the record(s) of f: one biflow record, or in unidirectional
// mode a client→server record and, when the server sent anything, a
// server→client one; both or neither. It returns false when the open
// message has no room for them (the message is then unchanged) or no
// message is open. Configuration checks guarantee that one record fits an
// empty message, not two: a unidirectional flow whose strings are near
// their bounds may need AddRecord, one message per direction.
func (e *Encoder) Add(f *Flow) bool {
	if !e.open {
		return false
	}
	var p prepared
	e.prepare(f, &p)
	n := 1
	if e.cfg.Unidirectional && (f.ServerPackets != 0 || f.ServerOctets != 0) {
		n = 2
	}
	if !e.room(&p, n) {
		return false
	}
	e.put(f, &p, false)
	if n == 2 {
		e.put(f, &p, true)
	}
	return true
}

// AddRecord appends one record of f: the biflow record, or in
// unidirectional mode the client→server record (serverToClient false) or
// the server→client one. It returns false when the record does not fit
// (or serverToClient is asked of a biflow encoder).
func (e *Encoder) AddRecord(f *Flow, serverToClient bool) bool {
	if !e.open || (serverToClient && !e.cfg.Unidirectional) {
		return false
	}
	var p prepared
	e.prepare(f, &p)
	if !e.room(&p, 1) {
		return false
	}
	e.put(f, &p, serverToClient)
	return true
}

// room reports whether n records of p fit in the open message (with a set
// header when the open set is of the other template).
func (e *Encoder) room(p *prepared, n int) bool {
	need := n * p.size
	if e.setStart < 0 || e.setTpl != p.tpl {
		need += setHeaderLen
	}
	return len(e.buf)+need <= e.cfg.MTU
}

// put appends one record, opening a data set for its template if needed.
func (e *Encoder) put(f *Flow, p *prepared, reverse bool) {
	if e.setStart < 0 || e.setTpl != p.tpl {
		e.closeSet()
		e.setStart, e.setTpl = len(e.buf), p.tpl
		e.buf = binary.BigEndian.AppendUint16(e.buf, e.tpl[p.tpl].id)
		e.buf = binary.BigEndian.AppendUint16(e.buf, 0)
	}
	e.buf = e.appendRecord(e.buf, &e.tpl[p.tpl], f, p, reverse)
	e.records++
}

func appendVar(b []byte, s string) []byte {
	if len(s) < 255 {
		b = append(b, byte(len(s)))
	} else {
		b = append(b, 255, byte(len(s)>>8), byte(len(s)))
	}
	return append(b, s...)
}

func appendMs(b []byte, t time.Time) []byte {
	ms := int64(0)
	if !t.IsZero() {
		ms = max(t.UnixMilli(), 0)
	}
	return binary.BigEndian.AppendUint64(b, uint64(ms))
}

// appendRecord appends one data record of template t. reverse writes the
// server→client record of unidirectional mode: addresses, ports, counters
// and flags swapped.
func (e *Encoder) appendRecord(b []byte, t *template, f *Flow, p *prepared, reverse bool) []byte {
	src, dst := &p.client, &p.server
	sport, dport := f.ClientPort, f.ServerPort
	octets, packets, flags := f.ClientOctets, f.ClientPackets, f.ClientTCPFlags
	if reverse {
		src, dst = dst, src
		sport, dport = dport, sport
		octets, packets, flags = f.ServerOctets, f.ServerPackets, f.ServerTCPFlags
	}
	alen := 4
	if p.v6 {
		alen = 16
	}
	for i := range t.fields {
		switch t.fields[i].kind {
		case kSrcAddr:
			b = append(b, src[:alen]...)
		case kDstAddr:
			b = append(b, dst[:alen]...)
		case kSrcPort:
			b = binary.BigEndian.AppendUint16(b, sport)
		case kDstPort:
			b = binary.BigEndian.AppendUint16(b, dport)
		case kProtocol:
			b = append(b, f.Protocol)
		case kVLAN:
			b = binary.BigEndian.AppendUint16(b, f.VLAN&0x0fff)
		case kStart:
			b = appendMs(b, f.Start)
		case kEnd:
			b = appendMs(b, f.End)
		case kOctets:
			b = binary.BigEndian.AppendUint64(b, octets)
		case kPackets:
			b = binary.BigEndian.AppendUint64(b, packets)
		case kFlags:
			b = binary.BigEndian.AppendUint16(b, uint16(flags))
		case kRevOctets:
			b = binary.BigEndian.AppendUint64(b, f.ServerOctets)
		case kRevPackets:
			b = binary.BigEndian.AppendUint64(b, f.ServerPackets)
		case kRevFlags:
			b = binary.BigEndian.AppendUint16(b, uint16(f.ServerTCPFlags))
		case kEndReason:
			b = append(b, byte(f.EndReason))
		case kAppID:
			b = append(b, e.cfg.ApplicationEngine)
			b = binary.BigEndian.AppendUint32(b, f.ApplicationID)
		case kConfidence:
			b = append(b, f.Confidence.ndpiConfidence())
		case kDNSQType:
			b = binary.BigEndian.AppendUint16(b, f.DNSQType)
		case kDNSRCode:
			rc := uint16(NoDNSAnswer)
			if f.DNSAnswered {
				rc = uint16(f.DNSRCode)
			}
			b = binary.BigEndian.AppendUint16(b, rc)
		case kAppName:
			b = appendVar(b, p.app)
		case kCategory:
			b = appendVar(b, p.cat)
		case kServerName:
			b = appendVar(b, p.host)
		case kDNSQuery:
			b = appendVar(b, p.query)
		}
	}
	return b
}
