package decoder

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"flowlens/schema"
)

// ErrState: UnmarshalState was given bytes that are not a valid state.
var ErrState = errors.New("invalid decoder state")

// State format, big-endian:
//
//	"FLDS" version(1)=1 exporters(u32)
//	per exporter: addrLen(u8: 4|16) addr
//	  templates(u16), each: port(u16) version(u16: 9|10) domain(u32)
//	    kind(u8: 0 data, 1 options) len(u16) the template record's wire bytes
//	  samplers(u16), each: version(u16) domain(u32) sampler(u64) rate(u32)
//	  sysInit(u16), each: version(u16) domain(u32) ms(u64)
//
// Templates are saved as the bytes they came in and learnt again on load
// through the same validation as wire input.
const (
	stateMagic   = "FLDS"
	stateVersion = 1
	tplKindData  = 0
	tplKindOpts  = 1
)

// MarshalState returns the template and sampling state of every exporter,
// so that the collector can save it and, after a restart, decode data at
// once (UnmarshalState). Like Decode, it must not run concurrently with
// Decode: call it from the goroutine that decodes, or once it stopped.
func (d *Decoder) MarshalState() ([]byte, error) {
	addrs := slices.SortedFunc(maps.Keys(d.exporters), netip.Addr.Compare)
	b := append([]byte(stateMagic), stateVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(addrs)))
	for _, a := range addrs {
		ex := d.exporters[a]
		raw := a.AsSlice()
		b = append(b, byte(len(raw)))
		b = append(b, raw...)

		n, at := 0, len(b)
		b = append(b, 0, 0)
		for _, k := range slices.Sorted(maps.Keys(ex.templates.m)) {
			slots := slices.Clone(ex.templates.m[k])
			slices.SortFunc(slots, func(x, y tplSlot) int { return cmp.Compare(x.port, y.port) })
			for _, s := range slots {
				if len(s.raw) == 0 || len(s.raw) > 0xffff || n == 0xffff {
					continue // parsed from a set it could not be cut from: not saved
				}
				kind := byte(tplKindOpts)
				if _, ok := s.tpl.(*dataTemplate); ok {
					kind = tplKindData
				}
				b = binary.BigEndian.AppendUint16(b, s.port)
				b = binary.BigEndian.AppendUint16(b, uint16(k>>48))
				b = binary.BigEndian.AppendUint32(b, uint32(k>>16))
				b = append(b, kind)
				b = binary.BigEndian.AppendUint16(b, uint16(len(s.raw)))
				b = append(b, s.raw...)
				n++
			}
		}
		binary.BigEndian.PutUint16(b[at:], uint16(n))

		sk := slices.SortedFunc(maps.Keys(ex.samplers), func(x, y samplerKey) int {
			return cmp.Or(cmp.Compare(x.version, y.version), cmp.Compare(x.obsDomain, y.obsDomain), cmp.Compare(x.id, y.id))
		})
		b = binary.BigEndian.AppendUint16(b, uint16(len(sk)))
		for _, k := range sk {
			b = binary.BigEndian.AppendUint16(b, k.version)
			b = binary.BigEndian.AppendUint32(b, k.obsDomain)
			b = binary.BigEndian.AppendUint64(b, k.id)
			b = binary.BigEndian.AppendUint32(b, ex.samplers[k])
		}
		ik := slices.SortedFunc(maps.Keys(ex.sysInit), func(x, y domainKey) int {
			return cmp.Or(cmp.Compare(x.version, y.version), cmp.Compare(x.obsDomain, y.obsDomain))
		})
		b = binary.BigEndian.AppendUint16(b, uint16(len(ik)))
		for _, k := range ik {
			b = binary.BigEndian.AppendUint16(b, k.version)
			b = binary.BigEndian.AppendUint32(b, k.obsDomain)
			b = binary.BigEndian.AppendUint64(b, ex.sysInit[k])
		}
	}
	return b, nil
}

// stateReader reads the state format with bounds checks.
type stateReader struct {
	p   []byte
	err error
}

func (r *stateReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.p) {
		r.err = fmt.Errorf("%w: truncated at %d bytes left, %d wanted", ErrState, len(r.p), n)
		return nil
	}
	v := r.p[:n]
	r.p = r.p[n:]
	return v
}

func (r *stateReader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *stateReader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *stateReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *stateReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *stateReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrState, fmt.Sprintf(format, args...))
	}
}

// UnmarshalState loads state saved by MarshalState into d, for exporters
// d has no state for yet (call it before the first Decode). Every count
// is bounded by d's Config and every template goes through the validation
// of wire input; a corrupt or hostile input returns an error wrapping
// ErrState and leaves d unchanged. Templates the limits reject are
// counted in Stats as on the wire.
func (d *Decoder) UnmarshalState(b []byte) error {
	r := &stateReader{p: b}
	if string(r.take(len(stateMagic))) != stateMagic {
		return fmt.Errorf("%w: bad magic", ErrState)
	}
	if v := r.u8(); v != stateVersion {
		r.fail("version %d, want %d", v, stateVersion)
	}
	n := r.u32()
	if r.err == nil && n > uint32(d.cfg.MaxExporters) {
		r.fail("%d exporters over the limit %d", n, d.cfg.MaxExporters)
	}
	// Learn into a scratch Decoder: d is only changed when all is valid.
	tmp := New(d.cfg)
	discard := func(*schema.Flow) {}
	for i := uint32(0); i < n && r.err == nil; i++ {
		var addr netip.Addr
		switch l := r.u8(); l {
		case 4, 16:
			if raw := r.take(int(l)); raw != nil {
				addr, _ = netip.AddrFromSlice(raw)
			}
		default:
			r.fail("exporter %d: address length %d", i, l)
		}
		if r.err != nil {
			break
		}
		if _, dup := tmp.exporters[addr]; dup {
			r.fail("exporter %s twice", addr)
			break
		}
		ex := tmp.exporter(addr)
		tmp.cur = ex
		nt := int(r.u16())
		if nt > d.cfg.MaxTemplatesPerExporter*maxPortsPerExporter {
			r.fail("exporter %s: %d templates", addr, nt)
		}
		for j := 0; j < nt && r.err == nil; j++ {
			port, version, domain, kind := r.u16(), r.u16(), r.u32(), r.u8()
			rec := r.take(int(r.u16()))
			if r.err != nil {
				break
			}
			if version != 9 && version != 10 {
				r.fail("exporter %s: template version %d", addr, version)
				break
			}
			if len(rec) < 4 {
				r.fail("exporter %s: template of %d bytes", addr, len(rec))
				break
			}
			if ex.templates.notePort(port) {
				ex.info.setPorts(ex.templates.ports)
			}
			hdr := msgHeader{version: version, obsDomain: domain}
			var err error
			switch kind {
			case tplKindData:
				err = tmp.learnTemplates(ex, addr, hdr, rec, discard)
			case tplKindOpts:
				err = tmp.learnOptionsTemplates(ex, addr, hdr, rec, discard)
			default:
				r.fail("exporter %s: template kind %d", addr, kind)
			}
			if err != nil {
				r.fail("exporter %s: template: %v", addr, err)
			}
		}
		ns := int(r.u16())
		if ns > d.cfg.MaxSamplersPerExporter {
			r.fail("exporter %s: %d samplers over the limit %d", addr, ns, d.cfg.MaxSamplersPerExporter)
		}
		for j := 0; j < ns && r.err == nil; j++ {
			k := samplerKey{version: r.u16(), obsDomain: r.u32(), id: r.u64()}
			rate := r.u32()
			if r.err == nil && (rate == 0 || rate > 1<<31) {
				r.fail("exporter %s: sampling rate %d", addr, rate)
			}
			ex.samplers[k] = rate
		}
		ni := int(r.u16())
		if ni > d.cfg.MaxSamplersPerExporter {
			r.fail("exporter %s: %d system init times over the limit %d", addr, ni, d.cfg.MaxSamplersPerExporter)
		}
		for j := 0; j < ni && r.err == nil; j++ {
			k := domainKey{version: r.u16(), obsDomain: r.u32()}
			ex.sysInit[k] = r.u64()
		}
	}
	if r.err == nil && len(r.p) != 0 {
		r.fail("%d trailing bytes", len(r.p))
	}
	if r.err != nil {
		return fmt.Errorf("load decoder state: %w", r.err)
	}
	// Merge: exporters d already knows keep their live state.
	d.mu.Lock()
	defer d.mu.Unlock()
	st := tmp.Stats()
	d.stats.tplLearnt.Add(st.TemplatesLearnt)
	d.stats.tplRejected.Add(st.TemplatesRejected)
	d.stats.tplOverLimit.Add(st.TemplatesOverLimit)
	for addr, ex := range tmp.exporters {
		if _, ok := d.exporters[addr]; ok || len(d.exporters) >= d.cfg.MaxExporters {
			continue
		}
		if d.stats.templates.Load()+uint64(ex.templates.n) > uint64(d.cfg.MaxTemplatesTotal) {
			d.stats.tplOverLimit.Add(uint64(ex.templates.n))
			continue
		}
		d.tick++
		ex.lastSeen = d.tick
		ex.override = d.overrideRate(addr)
		d.exporters[addr] = ex
		d.stats.exporters.Add(1)
		d.stats.templates.Add(uint64(ex.templates.n))
	}
	return nil
}
