package dpi

// stream reassembles one direction of a TCP flow, or QUIC's CRYPTO
// stream, into a bounded buffer. Bytes land at their offset from the
// stream start, so segments may come in any order or more than once;
// contig is the length of the gap-free prefix the parsers read. Up to
// maxGaps runs of bytes beyond a gap are remembered; more, or bytes past
// the bound, are dropped and counted. A DPI sensor needs only the first
// few kilobytes of a stream (a ClientHello, a certificate), so the bound
// is small and the buffer is pooled and held only while a flow needs it.
type stream struct {
	buf    []byte // len == the bound
	contig int
	runs   [maxGaps]run
	nruns  int
}

type run struct{ s, e int }

const maxGaps = 4

func (s *stream) reset() {
	s.contig, s.nruns = 0, 0
}

// write puts b at offset off of the stream.
func (s *stream) write(off int, b []byte, c *counters) {
	if off < 0 {
		if off+len(b) <= 0 {
			c.retrans.Add(1)
			return
		}
		b = b[-off:]
		off = 0
	}
	end := off + len(b)
	if end <= s.contig {
		c.retrans.Add(1)
		return
	}
	if off >= len(s.buf) {
		c.drops.Add(uint64(len(b)))
		return
	}
	if end > len(s.buf) {
		c.drops.Add(uint64(end - len(s.buf)))
		end = len(s.buf)
		b = b[:end-off]
	}
	copy(s.buf[off:end], b)
	c.segments.Add(1)
	if off <= s.contig {
		s.contig = end
	} else {
		c.ooo.Add(1)
		s.addRun(off, end, c)
	}
	// Runs that the prefix now reaches join it.
	for changed := true; changed; {
		changed = false
		for i := 0; i < s.nruns; i++ {
			if s.runs[i].s <= s.contig {
				if s.runs[i].e > s.contig {
					s.contig = s.runs[i].e
				}
				s.runs[i] = s.runs[s.nruns-1]
				s.nruns--
				changed = true
				break
			}
		}
	}
}

func (s *stream) addRun(a, b int, c *counters) {
	for i := 0; i < s.nruns; i++ {
		r := &s.runs[i]
		if a <= r.e && b >= r.s { // overlaps or touches: merge
			if a < r.s {
				r.s = a
			}
			if b > r.e {
				r.e = b
			}
			return
		}
	}
	if s.nruns == maxGaps {
		c.drops.Add(uint64(b - a))
		return
	}
	s.runs[s.nruns] = run{a, b}
	s.nruns++
}

// data is the gap-free prefix.
func (s *stream) data() []byte { return s.buf[:s.contig] }

// full reports whether the buffer holds all it can.
func (s *stream) full() bool { return s.contig == len(s.buf) }

// streamOff is the packet's offset in its direction's TCP stream: from the
// sequence number after the SYN, or from the first payload seen when the
// capture missed the handshake.
func (p *pkt) streamOff() int {
	st := p.st
	if st.flags&(fSyn0<<p.dir) == 0 {
		st.isn[p.dir] = p.seq
		st.flags |= fSyn0 << p.dir
	}
	if p.tcpf&tcpSYN != 0 {
		return 0 // data on a SYN (TCP Fast Open) starts the stream
	}
	return int(int32(p.seq - st.isn[p.dir]))
}

// streamData returns the direction's stream from its first byte, including
// this packet. While nothing was buffered and the packet begins the
// stream, that is the payload itself, with no copy.
func (e *Engine) streamData(p *pkt) []byte {
	off := p.streamOff()
	var s *stream
	if p.st.x != nil {
		s = p.st.x.s[p.dir]
	}
	if s == nil {
		if off == 0 {
			return p.p
		}
		if off < 0 || off >= e.cfg.ReassemblyBytes {
			return nil
		}
		if s = e.newStream(p); s == nil {
			return nil
		}
	}
	s.write(off, p.p, &e.ctr)
	return s.data()
}

// keep makes sure the direction has a buffer holding this packet, because
// its parser needs the bytes that follow. It is a no-op once buffered.
func (e *Engine) keep(p *pkt) {
	x := e.ext(p.st)
	if x.s[p.dir] != nil {
		return
	}
	s := e.newStream(p)
	if s == nil {
		return
	}
	off := p.streamOff()
	if off >= 0 {
		s.write(off, p.p, &e.ctr)
	}
}

// newStream gives the direction a buffer, or nil when the engine's buffer
// budget is spent.
func (e *Engine) newStream(p *pkt) *stream {
	if !e.reserve(e.cfg.ReassemblyBytes) {
		return nil
	}
	x := e.ext(p.st)
	s := e.streamPool.Get().(*stream)
	s.reset()
	x.s[p.dir] = s
	return s
}

// streamFull reports whether the direction's buffer can take no more.
func (p *pkt) streamFull() bool {
	return p.st.x != nil && p.st.x.s[p.dir] != nil && p.st.x.s[p.dir].full()
}

// releaseDir gives back one direction's buffer.
func (e *Engine) releaseDir(st *State, d Dir) {
	if st.x == nil || st.x.s[d] == nil {
		return
	}
	s := st.x.s[d]
	st.x.s[d] = nil
	e.putStream(s)
}
