// Package flowtable keeps the sensor's bidirectional flows: one Table per
// capture worker, fed every parsed packet, emitting each flow when it
// ends, times out or reaches the active timeout.
//
// Why one table per worker and no locks: PACKET_FANOUT hashes both
// directions of a flow to the same socket, so a flow lives on one worker
// and its table is touched by one goroutine only. Only the statistics are
// atomics, for the metrics scrape.
//
// Why packet time: timeouts compare packet timestamps, never the wall
// clock, so a pcap replays into the same flows however fast it is read.
// Live capture adds Expire(now) on a ticker so flows end on a quiet link.
//
// Memory is bounded by Config.MaxFlows. Entries live in fixed chunks that
// are reused (no allocation per flow once the table has grown), the index
// is a Go map from a pointer-free Key to a slot number (so the garbage
// collector never scans it), and the flows of each timeout class sit on an
// LRU list ordered by their last packet: expiring and evicting look at
// list heads only, O(1) per flow, never a scan.
package flowtable

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"flowlens/sensor/packet"
)

// Reason says why an entry reaches the emit callback.
type Reason uint8

// Reasons. Every reason but Active ends the flow: the entry is freed when
// the callback returns. Active emits a slice of a long flow: the counters
// restart, State and the client side carry on.
const (
	ReasonIdle    Reason = iota // no packet for the idle timeout of its class
	ReasonActive                // the slice lasted the active timeout
	ReasonEnd                   // TCP: FIN both ways or RST, plus the linger; or a new SYN reused the ports
	ReasonEvicted               // the table was full and this was the flow nearest its idle timeout
	ReasonFlush                 // Flush: end of a capture file, shutdown
	numReasons
)

func (r Reason) String() string {
	switch r {
	case ReasonIdle:
		return "idle"
	case ReasonActive:
		return "active"
	case ReasonEnd:
		return "end"
	case ReasonEvicted:
		return "evicted"
	case ReasonFlush:
		return "flush"
	}
	return "unknown"
}

// Reasons lists every Reason, for metric labels.
func Reasons() []Reason {
	return []Reason{ReasonIdle, ReasonActive, ReasonEnd, ReasonEvicted, ReasonFlush}
}

// Dir is a packet's direction within its flow.
type Dir uint8

// Directions. The client is the sender of the flow's first packet, except
// that a flow first seen at a TCP SYN-ACK belongs to the SYN-ACK's receiver.
const (
	FromClient Dir = 0
	FromServer Dir = 1
)

// Key identifies a bidirectional flow. The two endpoints are ordered (Lo
// is the lower address, then port), so both directions give the same key.
// IPv4 addresses are stored IPv4-mapped. The key holds no pointers, so the
// index map is invisible to the garbage collector.
type Key struct {
	Lo, Hi         [16]byte
	LoPort, HiPort uint16
	VLAN           uint16
	Proto          uint8
	IPv4           bool
	// Network is the VXLAN/Geneve VNI or GRE key of the tunnel the packet
	// came through: overlapping tenant address spaces stay apart.
	Network uint32
}

// KeyOf returns p's flow key and whether p was sent by the key's Lo
// endpoint.
func KeyOf(p *packet.Packet) (k Key, fromLo bool) {
	src, dst := p.SrcIP.As16(), p.DstIP.As16()
	sp, dp := p.SrcPort, p.DstPort
	k.VLAN = p.VLAN
	k.Proto = p.Proto
	k.IPv4 = !p.IsIPv6
	switch p.Tunnel {
	case packet.TunnelVXLAN, packet.TunnelGeneve, packet.TunnelGRE:
		k.Network = p.TunnelID
	}
	if c := compare16(&src, &dst); c < 0 || c == 0 && sp <= dp {
		k.Lo, k.Hi, k.LoPort, k.HiPort = src, dst, sp, dp
		return k, true
	}
	k.Lo, k.Hi, k.LoPort, k.HiPort = dst, src, dp, sp
	return k, false
}

func compare16(a, b *[16]byte) int {
	ah, bh := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if ah != bh {
		if ah < bh {
			return -1
		}
		return 1
	}
	al, bl := binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	switch {
	case al < bl:
		return -1
	case al > bl:
		return 1
	}
	return 0
}

// Entry is one flow. The table owns it: a pointer from Packet is valid
// until the next call into the table, one given to the emit callback only
// during the call.
type Entry[S any] struct {
	// Counters of the current slice, indexed by Dir. Bytes are IP bytes
	// (the IP header's length, as NetFlow and IPFIX count), of the inner
	// packet for a tunnel.
	Packets [2]uint64
	Bytes   [2]uint64
	// First and Last are the times (Unix ns) of the slice's first and last
	// packets; Start is the flow's first packet over all its slices.
	First, Last, Start int64
	TCPFlags           [2]uint8
	// Slice counts the slices emitted before this one (ReasonActive).
	Slice uint32

	// What every packet touches comes first, so it shares cache lines
	// with the counters.
	clientIsLo bool
	closing    bool
	fin        uint8 // FIN seen, bit per Dir
	class      uint8
	prev, next uint32 // LRU list links, or free list link
	touch      int64  // table time of the last packet
	moved      int64  // table time the entry was last put at its list's tail: the LRU order
	sliceStart int64  // table time the slice started

	Key Key

	// State is the caller's per-flow data (the sensor's DPI state). It is
	// the zero value for a new flow, kept across slices, and zeroed when
	// the flow ends.
	State S
}

// Client is the endpoint that opened the flow.
func (e *Entry[S]) Client() netip.AddrPort {
	if e.clientIsLo {
		return addrPort(e.Key.Lo, e.Key.LoPort, e.Key.IPv4)
	}
	return addrPort(e.Key.Hi, e.Key.HiPort, e.Key.IPv4)
}

// Server is the other endpoint.
func (e *Entry[S]) Server() netip.AddrPort {
	if e.clientIsLo {
		return addrPort(e.Key.Hi, e.Key.HiPort, e.Key.IPv4)
	}
	return addrPort(e.Key.Lo, e.Key.LoPort, e.Key.IPv4)
}

// FirstSeen and LastSeen are the slice's first and last packet times.
func (e *Entry[S]) FirstSeen() time.Time { return time.Unix(0, e.First) }

// LastSeen is the time of the slice's last packet.
func (e *Entry[S]) LastSeen() time.Time { return time.Unix(0, e.Last) }

// Ended reports whether TCP saw FIN both ways or a RST.
func (e *Entry[S]) Ended() bool { return e.closing }

func addrPort(a [16]byte, port uint16, v4 bool) netip.AddrPort {
	ip := netip.AddrFrom16(a)
	if v4 {
		ip = ip.Unmap()
	}
	return netip.AddrPortFrom(ip, port)
}

// Timeout classes, each with its own LRU list.
const (
	classTCP = iota
	classUDP
	classOther
	classClosing // TCP after FIN both ways or RST
	numClasses
)

// Config of a Table.
type Config struct {
	// MaxFlows bounds the entries; a new flow beyond it evicts the flow
	// nearest its idle timeout (counted).
	MaxFlows int
	// Idle timeouts: a flow without packets for this long ends. UDP and the
	// other protocols (ICMP, ESP, ...) have their own, shorter by default:
	// most of them are a request and a response.
	IdleTimeout      time.Duration // TCP
	UDPIdleTimeout   time.Duration
	OtherIdleTimeout time.Duration
	// ActiveTimeout slices a long flow: at its first packet after this
	// long since the slice started, the slice is emitted (ReasonActive) and
	// the counters restart.
	ActiveTimeout time.Duration
	// TCPLinger is how long a TCP flow that saw FIN both ways or a RST
	// waits for the last ACKs (and retransmissions) before it ends.
	TCPLinger time.Duration
}

// DefaultConfig: 256k flows per table, idle 30 s (UDP and others 15 s),
// active 60 s, TCP linger 2 s.
func DefaultConfig() Config {
	return Config{
		MaxFlows:         1 << 18,
		IdleTimeout:      30 * time.Second,
		UDPIdleTimeout:   15 * time.Second,
		OtherIdleTimeout: 15 * time.Second,
		ActiveTimeout:    60 * time.Second,
		TCPLinger:        2 * time.Second,
	}
}

// Validate reports invalid settings.
func (c Config) Validate() error {
	switch {
	case c.MaxFlows < 1 || c.MaxFlows > maxEntries:
		return fmt.Errorf("max flows must be 1..%d, got %d", maxEntries, c.MaxFlows)
	case c.IdleTimeout <= 0 || c.UDPIdleTimeout <= 0 || c.OtherIdleTimeout <= 0:
		return fmt.Errorf("idle timeouts must be > 0, got %v, %v, %v", c.IdleTimeout, c.UDPIdleTimeout, c.OtherIdleTimeout)
	case c.ActiveTimeout <= 0:
		return fmt.Errorf("active timeout must be > 0, got %v", c.ActiveTimeout)
	case c.TCPLinger <= 0:
		return fmt.Errorf("TCP linger must be > 0, got %v", c.TCPLinger)
	}
	return nil
}

const (
	chunkBits  = 10
	chunkSize  = 1 << chunkBits
	chunkMask  = chunkSize - 1
	maxEntries = 1<<31 - chunkSize
	// sweepInterval is how much table time passes between looks at the
	// list heads during Packet. Timeouts stay exact anyway: a flow found
	// by a packet is checked on the spot; the sweep only bounds how late
	// a flow without further packets is emitted.
	sweepInterval = int64(time.Second)
	// maxLRUStep: a flow moves to its list's tail at most once per this
	// much table time (or a quarter of the shortest timeout). Moving
	// touches three other entries, a cache miss each in a large table;
	// the price is that a flow without further packets may be emitted up
	// to this late, and eviction picks the oldest flow within this step.
	maxLRUStep = int64(time.Second)
)

type list struct{ head, tail uint32 }

// Stats are a table's counters, safe to read from any goroutine.
type Stats struct {
	Flows   uint64             // flows in the table
	Created uint64             // flows created
	Emitted [numReasons]uint64 // entries given to the callback, by Reason
}

// Table is a bounded bidirectional flow table with per-flow data S. It is
// not safe for concurrent use: one goroutine (a capture worker) owns it;
// Stats alone may be called from others.
type Table[S any] struct {
	cfg      Config
	emit     func(*Entry[S], Reason)
	index    map[Key]uint32
	chunks   [][]Entry[S]
	next     uint32 // slots handed out so far (slot 0 is the nil index)
	free     uint32 // free list head
	lists    [numClasses]list
	timeouts [numClasses]int64
	active   int64
	now      int64 // table time: the latest packet or Expire time
	sweepAt  int64
	lruStep  int64

	flows   atomic.Uint64
	created atomic.Uint64
	emitted [numReasons]atomic.Uint64
}

// New returns an empty table calling emit for every flow that ends and
// every slice of a long flow.
func New[S any](cfg Config, emit func(*Entry[S], Reason)) (*Table[S], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Table[S]{
		cfg:    cfg,
		emit:   emit,
		index:  make(map[Key]uint32, min(cfg.MaxFlows, chunkSize)),
		next:   1,
		active: int64(cfg.ActiveTimeout),
	}
	t.timeouts = [numClasses]int64{
		classTCP:     int64(cfg.IdleTimeout),
		classUDP:     int64(cfg.UDPIdleTimeout),
		classOther:   int64(cfg.OtherIdleTimeout),
		classClosing: int64(cfg.TCPLinger),
	}
	t.lruStep = maxLRUStep
	for _, d := range t.timeouts {
		t.lruStep = min(t.lruStep, d/4)
	}
	return t, nil
}

// Len is the number of flows in the table.
func (t *Table[S]) Len() int { return len(t.index) }

// Stats returns the counters.
func (t *Table[S]) Stats() Stats {
	s := Stats{Flows: t.flows.Load(), Created: t.created.Load()}
	for i := range s.Emitted {
		s.Emitted[i] = t.emitted[i].Load()
	}
	return s
}

func (t *Table[S]) entry(i uint32) *Entry[S] { return &t.chunks[i>>chunkBits][i&chunkMask] }

// Packet accounts one parsed IP packet seen at ts and returns its flow and
// direction. The entry is valid until the next call into the table; the
// caller updates State through it. Packets without ports (ICMP, later
// fragments) share the flow of their addresses and protocol.
func (t *Table[S]) Packet(p *packet.Packet, ts time.Time) (*Entry[S], Dir) {
	tsn := ts.UnixNano()
	if tsn > t.now {
		t.now = tsn
	}
	if t.now >= t.sweepAt {
		t.expire()
		t.sweepAt = t.now + sweepInterval
	}
	k, fromLo := KeyOf(p)
	idx, ok := t.index[k]
	var e *Entry[S]
	if ok {
		e = t.entry(idx)
		switch {
		case t.now-e.touch >= t.timeouts[e.class]:
			// Timed out while no sweep looked: end it, then start anew.
			r := ReasonIdle
			if e.class == classClosing {
				r = ReasonEnd
			}
			t.end(idx, e, r)
			ok = false
		case e.closing && p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn:
			// A new connection on the ports of one that just closed.
			t.end(idx, e, ReasonEnd)
			ok = false
		case t.now-e.sliceStart >= t.active:
			t.slice(e)
		}
	}
	if !ok {
		idx, e = t.create(k)
		e.clientIsLo = fromLo
		if p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck {
			e.clientIsLo = !fromLo // the SYN-ACK's receiver opened it
		}
		e.Start = tsn
		switch p.Proto {
		case packet.ProtoTCP:
			e.class = classTCP
		case packet.ProtoUDP, packet.ProtoUDPLite:
			e.class = classUDP
		default:
			e.class = classOther
		}
	}
	dir := FromServer
	if fromLo == e.clientIsLo {
		dir = FromClient
	}
	if e.Packets[0]|e.Packets[1] == 0 {
		e.First, e.Last = tsn, tsn
	} else if tsn > e.Last {
		e.Last = tsn
	}
	n := p.IPLen
	if n == 0 {
		n = p.Len
	}
	e.Packets[dir]++
	e.Bytes[dir] += uint64(n)
	if p.Proto == packet.ProtoTCP {
		e.TCPFlags[dir] |= p.TCPFlags
		if p.TCPFlags&packet.TCPFin != 0 {
			e.fin |= 1 << dir
		}
		if !e.closing && (p.TCPFlags&packet.TCPRst != 0 || e.fin == 3) {
			e.closing = true
		}
	}
	class := e.class
	if e.closing {
		class = classClosing
	}
	if !ok || class != e.class || t.now-e.moved >= t.lruStep {
		t.unlink(idx, e)
		e.class = class
		e.moved = t.now
		t.push(idx, e)
	}
	e.touch = t.now
	return e, dir
}

// Expire ends the flows whose timeouts passed at now. Call it from the
// worker's goroutine on a ticker during live capture, with the wall clock
// (packet timestamps are wall-clock times too); a time before the latest
// packet changes nothing. Do not call it while replaying a file.
func (t *Table[S]) Expire(now time.Time) {
	if n := now.UnixNano(); n > t.now {
		t.now = n
	}
	t.expire()
	t.sweepAt = t.now + sweepInterval
}

// Flush emits every flow and empties the table: the flows whose timeout
// had passed at the latest packet as such, the others with ReasonFlush.
func (t *Table[S]) Flush() {
	t.expire()
	for c := range t.lists {
		for t.lists[c].head != 0 {
			idx := t.lists[c].head
			t.end(idx, t.entry(idx), ReasonFlush)
		}
	}
}

// expire ends the flows at the list heads whose timeout passed. A list is
// ordered by when its flows were last moved, and a flow's last packet is
// less than lruStep after that: a flow behind a live head is emitted at
// most lruStep late.
func (t *Table[S]) expire() {
	for c := range t.lists {
		r := ReasonIdle
		if c == classClosing {
			r = ReasonEnd
		}
		for t.lists[c].head != 0 {
			idx := t.lists[c].head
			e := t.entry(idx)
			if t.now-e.touch < t.timeouts[c] {
				break
			}
			t.end(idx, e, r)
		}
	}
}

// slice emits the current slice of a long flow and restarts its counters.
func (t *Table[S]) slice(e *Entry[S]) {
	t.emitted[ReasonActive].Add(1)
	t.emit(e, ReasonActive)
	e.Packets, e.Bytes, e.TCPFlags = [2]uint64{}, [2]uint64{}, [2]uint8{}
	e.First, e.Last = 0, 0
	e.Slice++
	e.sliceStart = t.now
}

// create returns a fresh entry for k, evicting one if the table is full.
func (t *Table[S]) create(k Key) (uint32, *Entry[S]) {
	if len(t.index) >= t.cfg.MaxFlows {
		t.expire()
		if len(t.index) >= t.cfg.MaxFlows {
			t.evict()
		}
	}
	var idx uint32
	if t.free != 0 {
		idx = t.free
		t.free = t.entry(idx).next
	} else {
		idx = t.next
		t.next++
		if int(idx>>chunkBits) == len(t.chunks) {
			t.chunks = append(t.chunks, make([]Entry[S], chunkSize))
		}
	}
	e := t.entry(idx)
	e.Key = k
	e.next = 0
	e.sliceStart = t.now
	t.index[k] = idx
	t.created.Add(1)
	t.flows.Add(1)
	return idx, e
}

// evict ends the flow nearest its idle timeout (within lruStep): the head
// of the class list whose head's deadline comes first.
func (t *Table[S]) evict() {
	var best uint32
	var deadline int64
	for c := range t.lists {
		if h := t.lists[c].head; h != 0 {
			if d := t.entry(h).touch + t.timeouts[c]; best == 0 || d < deadline {
				best, deadline = h, d
			}
		}
	}
	if best != 0 {
		t.end(best, t.entry(best), ReasonEvicted)
	}
}

// end emits e and frees it.
func (t *Table[S]) end(idx uint32, e *Entry[S], r Reason) {
	t.emitted[r].Add(1)
	t.emit(e, r)
	t.unlink(idx, e)
	delete(t.index, e.Key)
	*e = Entry[S]{}
	e.next = t.free
	t.free = idx
	t.flows.Add(^uint64(0))
}

func (t *Table[S]) push(idx uint32, e *Entry[S]) {
	l := &t.lists[e.class]
	e.prev, e.next = l.tail, 0
	if l.tail != 0 {
		t.entry(l.tail).next = idx
	} else {
		l.head = idx
	}
	l.tail = idx
}

// unlink takes e off its class list; a fresh entry (not on a list) is
// recognised by being neither linked nor a head.
func (t *Table[S]) unlink(idx uint32, e *Entry[S]) {
	l := &t.lists[e.class]
	if e.prev == 0 && l.head != idx {
		return
	}
	if e.prev != 0 {
		t.entry(e.prev).next = e.next
	} else {
		l.head = e.next
	}
	if e.next != 0 {
		t.entry(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = 0, 0
}
