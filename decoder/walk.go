package decoder

import (
	"net/netip"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"flowlens/schema"
)

// varLength is the template field length that announces a variable-length
// field (RFC 7011 §7). goflow2 honours it for NetFlow v9 too, and so do we,
// so that both data-record paths read the same records.
const varLength = 0xffff

// dataTemplate is a NetFlow v9 / IPFIX data template as stored per
// exporter: goflow2's parse (for the reference path) and the plan our
// walker follows, compiled once when the template is learnt.
type dataTemplate struct {
	fields []netflow.Field
	plan   fieldPlan
}

// fieldPlan is a data template compiled for walkDataSet.
type fieldPlan struct {
	fields []planField
	// fixed is the sum of the fixed field lengths: a set holds another
	// record while at least that many bytes are left (goflow2's
	// GetTemplateSize rule, kept for identical record counts).
	fixed int
	// variable is true when a field has varLength; offsets are then
	// meaningless and the walker reads fields in sequence.
	variable bool
}

type planField struct {
	off    uint32 // offset in the record when !fieldPlan.variable
	length uint16 // varLength for variable-length fields
	ie     uint16 // enterprise bit stripped
	pen    uint32
	hasPen bool
}

// compilePlan builds the plan of a data template. The field count is
// bounded by Config.MaxTemplateFields before goflow2 parses the template.
func compilePlan(fields []netflow.Field) fieldPlan {
	p := fieldPlan{fields: make([]planField, len(fields))}
	off := 0
	for i, f := range fields {
		p.fields[i] = planField{off: uint32(off), length: f.Length, ie: f.Type, pen: f.Pen, hasPen: f.PenProvided}
		if f.Length == varLength {
			p.variable = true
			continue
		}
		off += int(f.Length)
	}
	p.fixed = off
	return p
}

// walkDataSet decodes the records of a data set by walking its bytes with
// the template's plan, without allocating. It reads exactly the records
// goflow2's DecodeDataSet would read: records while the fixed part fits,
// short values when a variable-length field overruns the set, and a record
// whose variable-length header is cut off is dropped (as trailing padding).
func (d *Decoder) walkDataSet(ex *exporterState, addr netip.Addr, hdr msgHeader, plan *fieldPlan, body []byte, received time.Time, emit func(*schema.Flow)) {
	p := body
	if !plan.variable {
		if plan.fixed == 0 {
			return // not stored: usableFields rejects such templates
		}
		for len(p) >= plan.fixed {
			rec := p[:plan.fixed]
			p = p[plan.fixed:]
			d.beginRecord(addr, hdr, received)
			for i := range plan.fields {
				f := &plan.fields[i]
				d.mapField(f.ie, f.pen, f.hasPen, rec[f.off:f.off+uint32(f.length)])
			}
			d.finishRecord(ex, hdr)
			d.emitFlow(emit)
			if d.rec.revOctets|d.rec.revPackets != 0 {
				d.emitReverse(emit) // RFC 5103 biflow
			}
		}
		return
	}
	if cap(d.vals) < len(plan.fields) {
		d.vals = make([][]byte, len(plan.fields))
	}
	vals := d.vals[:len(plan.fields)]
records:
	for len(p) >= plan.fixed {
		// Cut the record into values first: a record whose length
		// header is cut off is not emitted, and mapping has side effects
		// (interned labels) that it must not have.
		for i := range plan.fields {
			n := int(plan.fields[i].length)
			if n == varLength {
				if len(p) < 1 {
					break records
				}
				n, p = int(p[0]), p[1:]
				if n == 0xff {
					if len(p) < 2 {
						break records
					}
					n, p = int(p[0])<<8|int(p[1]), p[2:]
				}
			}
			n = min(n, len(p))
			vals[i], p = p[:n:n], p[n:]
		}
		d.beginRecord(addr, hdr, received)
		for i := range plan.fields {
			f := &plan.fields[i]
			d.mapField(f.ie, f.pen, f.hasPen, vals[i])
		}
		d.finishRecord(ex, hdr)
		d.emitFlow(emit)
		if d.rec.revOctets|d.rec.revPackets != 0 {
			d.emitReverse(emit) // RFC 5103 biflow
		}
	}
	clear(vals)
}
