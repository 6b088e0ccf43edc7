package decoder

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"flowlens/schema"
)

// msgHeader is what a data set needs from its NetFlow v9 / IPFIX header.
type msgHeader struct {
	version   uint16
	sysUptime uint32 // v9 only: ms since the exporter booted
	unixSecs  uint32 // v9 unix_secs, IPFIX export time
	obsDomain uint32 // v9 source id, IPFIX observation domain
}

// decodeNetFlow walks the sets of a NetFlow v9 or IPFIX message. goflow2
// parses each set's records; we bound what it is given first.
func (d *Decoder) decodeNetFlow(payload []byte, addr netip.Addr, received time.Time, emit func(*schema.Flow)) error {
	var hdr msgHeader
	hdr.version = binary.BigEndian.Uint16(payload)
	var rest []byte
	if hdr.version == 9 {
		if len(payload) < 20 {
			return fmt.Errorf("v9 header: %w", ErrTruncated)
		}
		hdr.sysUptime = binary.BigEndian.Uint32(payload[4:])
		hdr.unixSecs = binary.BigEndian.Uint32(payload[8:])
		hdr.obsDomain = binary.BigEndian.Uint32(payload[16:])
		rest = payload[20:]
	} else {
		if len(payload) < 16 {
			return fmt.Errorf("ipfix header: %w", ErrTruncated)
		}
		length := int(binary.BigEndian.Uint16(payload[2:]))
		if length < 16 {
			return fmt.Errorf("ipfix message length %d: %w", length, ErrMalformed)
		}
		if length > len(payload) {
			return fmt.Errorf("ipfix message length %d > %d: %w", length, len(payload), ErrTruncated)
		}
		hdr.unixSecs = binary.BigEndian.Uint32(payload[4:])
		hdr.obsDomain = binary.BigEndian.Uint32(payload[12:])
		rest = payload[16:length]
	}
	ex := d.cur
	ex.noteSkew(hdr.unixSecs, received)

	for len(rest) >= 4 {
		id := binary.BigEndian.Uint16(rest)
		length := int(binary.BigEndian.Uint16(rest[2:]))
		if length < 4 {
			// v9 exporters pad the datagram with zeros; anything else
			// would loop forever.
			if hdr.version == 9 && id == 0 && length == 0 {
				break
			}
			return fmt.Errorf("set id %d length %d: %w", id, length, ErrMalformed)
		}
		if length > len(rest) {
			return fmt.Errorf("set id %d length %d > %d: %w", id, length, len(rest), ErrTruncated)
		}
		body := rest[4:length]
		rest = rest[length:]
		var err error
		switch {
		case (hdr.version == 9 && id == 0) || (hdr.version == 10 && id == 2):
			err = d.learnTemplates(ex, addr, hdr, body, emit)
		case (hdr.version == 9 && id == 1) || (hdr.version == 10 && id == 3):
			err = d.learnOptionsTemplates(ex, addr, hdr, body, emit)
		case id >= 256:
			err = d.decodeDataSet(ex, addr, hdr, id, body, received, emit, false)
		default:
			// Reserved set ids are skipped, as RFC 7011 asks.
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// skipFields steps over count field specifiers (4 bytes, plus a 4-byte
// enterprise number when ipfix and the enterprise bit is set).
func skipFields(p []byte, count int, ipfix bool, what string) ([]byte, error) {
	for range count {
		if len(p) < 4 {
			return nil, fmt.Errorf("%s field: %w", what, ErrTruncated)
		}
		pen := ipfix && p[0]&0x80 != 0
		p = p[4:]
		if pen {
			if len(p) < 4 {
				return nil, fmt.Errorf("%s enterprise number: %w", what, ErrTruncated)
			}
			p = p[4:]
		}
	}
	return p, nil
}

// learnTemplates validates a template set, has goflow2 parse it, and stores
// its records. Buffered data sets waiting for these templates are decoded.
func (d *Decoder) learnTemplates(ex *exporterState, addr netip.Addr, hdr msgHeader, body []byte, emit func(*schema.Flow)) error {
	// Validate: goflow2 allocates FieldCount fields before reading them,
	// and fails on trailing padding; give it only whole, bounded records.
	end, p := 0, body
	d.tplExt = d.tplExt[:0]
	for len(p) >= 4 {
		rec := p
		count := int(binary.BigEndian.Uint16(p[2:]))
		if count > d.cfg.MaxTemplateFields {
			d.stats.tplRejected.Add(1)
			break
		}
		var err error
		if p, err = skipFields(p[4:], count, hdr.version == 10, "template"); err != nil {
			return err
		}
		d.noteTemplate(rec, len(rec)-len(p))
		end = len(body) - len(p)
	}
	if end == 0 || d.relearn(ex, addr, hdr, emit) {
		return nil
	}
	d.buf = *bytes.NewBuffer(body[:end])
	records, err := netflow.DecodeTemplateSet(hdr.version, &d.buf)
	if err != nil {
		return malformed("template set", err)
	}
	for i, r := range records {
		if r.TemplateId < 256 {
			d.stats.tplRejected.Add(1)
			continue
		}
		if len(r.Fields) == 0 {
			// IPFIX template withdrawal.
			k := templateKey(hdr.version, hdr.obsDomain, r.TemplateId)
			if d.dropTemplate(ex.templates, k, ex.templates.port) {
				ex.info.removeTemplate(tplKey{k, ex.templates.port})
				d.stats.tplWithdrawn.Add(1)
			}
			continue
		}
		if !usableFields(r.Fields) {
			d.stats.tplRejected.Add(1)
			continue
		}
		d.storeParsed(ex, addr, hdr, r.TemplateId, &dataTemplate{fields: r.Fields, plan: compilePlan(r.Fields)}, i, emit)
	}
	return nil
}

// learnOptionsTemplates is learnTemplates for options template sets.
func (d *Decoder) learnOptionsTemplates(ex *exporterState, addr netip.Addr, hdr msgHeader, body []byte, emit func(*schema.Flow)) error {
	end, p := 0, body
	d.tplExt = d.tplExt[:0]
	if hdr.version == 9 {
		for len(p) >= 6 {
			rec := p
			scope := int(binary.BigEndian.Uint16(p[2:])) / 4
			opts := int(binary.BigEndian.Uint16(p[4:])) / 4
			if scope+opts == 0 {
				break // padding
			}
			if scope+opts > d.cfg.MaxTemplateFields {
				d.stats.tplRejected.Add(1)
				break
			}
			if len(p) < 6+4*(scope+opts) {
				return fmt.Errorf("options template: %w", ErrTruncated)
			}
			p = p[6+4*(scope+opts):]
			d.noteTemplate(rec, len(rec)-len(p))
			end = len(body) - len(p)
		}
		if end == 0 || d.relearn(ex, addr, hdr, emit) {
			return nil
		}
		d.buf = *bytes.NewBuffer(body[:end])
		records, err := netflow.DecodeNFv9OptionsTemplateSet(&d.buf)
		if err != nil {
			return malformed("options template set", err)
		}
		for i, r := range records {
			if r.TemplateId < 256 || !usableFields(r.Options) {
				d.stats.tplRejected.Add(1)
				continue
			}
			d.storeParsed(ex, addr, hdr, r.TemplateId, r, i, emit)
		}
		return nil
	}
	start := 0
	for len(p) >= 4 {
		rec := p
		count := int(binary.BigEndian.Uint16(p[2:]))
		if count == 0 {
			// An options template withdrawal (id, count 0: RFC 7011
			// 8.1), or padding (id 0). Withdrawals are taken before
			// any definition in the set, so that goflow2 is given
			// the definitions as one run.
			if id := binary.BigEndian.Uint16(p); id >= 256 && end == 0 {
				k := templateKey(hdr.version, hdr.obsDomain, id)
				if d.dropTemplate(ex.templates, k, ex.templates.port) {
					ex.info.removeTemplate(tplKey{k, ex.templates.port})
					d.stats.tplWithdrawn.Add(1)
				}
				p = p[4:]
				start = len(body) - len(p)
				continue
			}
			break
		}
		if len(p) < 6 {
			return fmt.Errorf("options template: %w", ErrTruncated)
		}
		scope := int(binary.BigEndian.Uint16(p[4:]))
		if count > d.cfg.MaxTemplateFields || scope > count {
			d.stats.tplRejected.Add(1)
			break
		}
		var err error
		if p, err = skipFields(p[6:], count, true, "options template"); err != nil {
			return err
		}
		d.noteTemplate(rec, len(rec)-len(p))
		end = len(body) - len(p)
	}
	if end == 0 || d.relearn(ex, addr, hdr, emit) {
		return nil
	}
	d.buf = *bytes.NewBuffer(body[start:end])
	records, err := netflow.DecodeIPFIXOptionsTemplateSet(&d.buf)
	if err != nil {
		return malformed("options template set", err)
	}
	for i, r := range records {
		// goflow2 keeps the enterprise bit in options template field types.
		for i := range r.Scopes {
			r.Scopes[i].Type &^= 0x8000
		}
		for i := range r.Options {
			r.Options[i].Type &^= 0x8000
		}
		if r.TemplateId < 256 || !usableFields(append(r.Scopes[:len(r.Scopes):len(r.Scopes)], r.Options...)) {
			d.stats.tplRejected.Add(1)
			continue
		}
		d.storeParsed(ex, addr, hdr, r.TemplateId, r, i, emit)
	}
	return nil
}

// usableFields rejects templates whose records would take no bytes: goflow2
// would loop forever on their data sets.
func usableFields(fields []netflow.Field) bool {
	for _, f := range fields {
		if f.Length != 0 {
			return true
		}
	}
	return false
}

// tplExtent is one validated template record of the set being learnt.
type tplExtent struct {
	id  uint16
	raw []byte
}

// noteTemplate records the first n bytes of rec as one template record.
func (d *Decoder) noteTemplate(rec []byte, n int) {
	d.tplExt = append(d.tplExt, tplExtent{id: binary.BigEndian.Uint16(rec), raw: rec[:n]})
}

// relearn handles a template set whose records are all byte-identical to
// the templates stored under their ids, as exporters resend them (softflowd
// in every datagram): they are stored again, with the same counting and
// pending replay, without goflow2 parsing them anew. The reference path
// always parses.
func (d *Decoder) relearn(ex *exporterState, addr netip.Addr, hdr msgHeader, emit func(*schema.Flow)) bool {
	if d.useGoflow2 {
		return false
	}
	for _, e := range d.tplExt {
		if s := ex.templates.slot(templateKey(hdr.version, hdr.obsDomain, e.id)); s == nil || s.raw == nil || !bytes.Equal(s.raw, e.raw) {
			return false
		}
	}
	for _, e := range d.tplExt {
		tpl := ex.templates.slot(templateKey(hdr.version, hdr.obsDomain, e.id)).tpl
		d.storeTemplate(ex, addr, hdr, e.id, tpl, emit)
	}
	return true
}

// storeParsed stores the i-th record goflow2 parsed from the set and
// remembers its bytes for relearn. goflow2 parses exactly the records
// noted while validating, in order.
func (d *Decoder) storeParsed(ex *exporterState, addr netip.Addr, hdr msgHeader, id uint16, tpl any, i int, emit func(*schema.Flow)) {
	if !d.storeTemplate(ex, addr, hdr, id, tpl, emit) {
		return
	}
	k := templateKey(hdr.version, hdr.obsDomain, id)
	// A fresh parse: a new template or a re-definition.
	ex.info.setTemplate(tplKey{k, ex.templates.port}, describeTemplate(hdr, id, ex.templates.port, tpl))
	if s := ex.templates.slot(k); s != nil {
		s.raw = nil
		if i < len(d.tplExt) && d.tplExt[i].id == id {
			s.raw = bytes.Clone(d.tplExt[i].raw)
		}
	}
}

func (d *Decoder) storeTemplate(ex *exporterState, addr netip.Addr, hdr msgHeader, id uint16, tpl any, emit func(*schema.Flow)) bool {
	k := templateKey(hdr.version, hdr.obsDomain, id)
	if _, err := d.addTemplate(ex, k, tpl); err != nil {
		d.stats.tplRejected.Add(1)
		return false
	}
	if announcesSampling(tpl) {
		ex.announced = true
	}
	d.stats.tplLearnt.Add(1)
	d.takePending(addr, hdr.version, hdr.obsDomain, id, func(p *pendingSet) {
		// A buffered set was valid framing when it came; an error here
		// is counted but must not fail the datagram that held the template.
		d.replaying = true
		if err := d.decodeDataSet(ex, addr, p.hdr, p.id, p.data, p.received, emit, true); err != nil {
			d.stats.errors[reasonMalformed].Add(1)
		}
		d.replaying = false
	})
	return true
}

// decodeDataSet decodes one data set with its template, or counts and
// buffers it when the template is unknown.
func (d *Decoder) decodeDataSet(ex *exporterState, addr netip.Addr, hdr msgHeader, id uint16, body []byte, received time.Time, emit func(*schema.Flow), replay bool) error {
	tpl, ok, fallback := ex.templates.get(templateKey(hdr.version, hdr.obsDomain, id))
	if fallback {
		d.stats.tplPortFallback.Add(1)
	}
	if !ok {
		d.stats.waiting.Add(1)
		ex.info.waiting.Add(1)
		if !replay && d.cfg.PendingMaxSets > 0 {
			d.bufferPending(addr, hdr, id, body, received)
		}
		return nil
	}
	// Data records take our walker; options records (sampling,
	// application names) are rare and stay with goflow2.
	if t, ok := tpl.(*dataTemplate); ok && !d.useGoflow2 {
		d.walkDataSet(ex, addr, hdr, &t.plan, body, received, emit)
		return nil
	}
	d.buf = *bytes.NewBuffer(body)
	switch t := tpl.(type) {
	case *dataTemplate:
		records, err := netflow.DecodeDataSet(hdr.version, &d.buf, t.fields)
		for i := range records {
			d.mapRecord(ex, addr, hdr, received, records[i].Values)
			d.emitFlow(emit)
			if d.rec.revOctets|d.rec.revPackets != 0 {
				d.emitReverse(emit) // RFC 5103 biflow
			}
		}
		if err != nil && !onlyPadding(&d.buf) {
			return malformed("data set", err)
		}
	case netflow.NFv9OptionsTemplateRecord:
		records, err := netflow.DecodeOptionsDataSet(hdr.version, &d.buf, t.Scopes, t.Options)
		for i := range records {
			d.applyOptions(ex, hdr, nil, records[i].OptionsValues)
		}
		if err != nil && !onlyPadding(&d.buf) {
			return malformed("options data set", err)
		}
	case netflow.IPFIXOptionsTemplateRecord:
		records, err := netflow.DecodeOptionsDataSet(hdr.version, &d.buf, t.Scopes, t.Options)
		for i := range records {
			d.applyOptions(ex, hdr, records[i].ScopesValues, records[i].OptionsValues)
		}
		if err != nil && !onlyPadding(&d.buf) {
			return malformed("options data set", err)
		}
	}
	return nil
}

// onlyPadding reports whether what goflow2 could not decode is set padding
// (templates with variable-length fields read into it).
func onlyPadding(b *bytes.Buffer) bool {
	for _, c := range b.Bytes() {
		if c != 0 {
			return false
		}
	}
	return true
}

// announcesSampling reports whether an options template carries a
// sampling rate: its exporter samples, whether or not its data came yet.
func announcesSampling(tpl any) bool {
	var fields []netflow.Field
	switch t := tpl.(type) {
	case netflow.NFv9OptionsTemplateRecord:
		fields = t.Options
	case netflow.IPFIXOptionsTemplateRecord:
		fields = t.Options
	}
	for _, f := range fields {
		switch f.Type {
		case 34, 50, 305, 306:
			return true
		}
	}
	return false
}

// describeTemplate is the Exporters view of a stored template.
func describeTemplate(hdr msgHeader, id, port uint16, tpl any) TemplateInfo {
	t := TemplateInfo{Version: hdr.version, ObservationDomainID: hdr.obsDomain, ID: id, SourcePort: port}
	switch tp := tpl.(type) {
	case *dataTemplate:
		t.Fields = len(tp.fields)
	case netflow.NFv9OptionsTemplateRecord:
		t.Fields, t.Options = len(tp.Scopes)+len(tp.Options), true
	case netflow.IPFIXOptionsTemplateRecord:
		t.Fields, t.Options = len(tp.Scopes)+len(tp.Options), true
	}
	return t
}
