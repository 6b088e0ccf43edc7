package main

import (
	"encoding/binary"
	"fmt"
)

// Protocol names accepted by -proto.
const (
	protoV5    = "v5"
	protoV9    = "v9"
	protoIPFIX = "ipfix"
)

// sysUptimeBase makes the exporter look up for an hour, so that the
// prebuilt first/last switched values always lie in the past.
const sysUptimeBase = 3_600_000

// field is one template entry: information element id and length.
type field struct {
	id  uint16
	len uint16
}

// v9Fields is the template of a typical router export: IPv4 5-tuple, ToS,
// TCP flags, interfaces, counters, timestamps, next hop, masks and ASes.
var v9Fields = []field{
	{8, 4},  // IPV4_SRC_ADDR
	{12, 4}, // IPV4_DST_ADDR
	{7, 2},  // L4_SRC_PORT
	{11, 2}, // L4_DST_PORT
	{4, 1},  // PROTOCOL
	{5, 1},  // SRC_TOS
	{6, 1},  // TCP_FLAGS
	{10, 2}, // INPUT_SNMP
	{14, 2}, // OUTPUT_SNMP
	{1, 4},  // IN_BYTES
	{2, 4},  // IN_PKTS
	{22, 4}, // FIRST_SWITCHED
	{21, 4}, // LAST_SWITCHED
	{15, 4}, // IPV4_NEXT_HOP
	{9, 1},  // SRC_MASK
	{13, 1}, // DST_MASK
	{16, 2}, // SRC_AS
	{17, 2}, // DST_AS
}

// ipfixFields is v9Fields with absolute millisecond timestamps, since IPFIX
// has no sysUptime in its header.
var ipfixFields = []field{
	{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {5, 1}, {6, 1},
	{10, 2}, {14, 2}, {1, 4}, {2, 4},
	{152, 8}, // flowStartMilliseconds
	{153, 8}, // flowEndMilliseconds
	{15, 4}, {9, 1}, {13, 1}, {16, 2}, {17, 2},
}

const templateID = 256

// datagram is one prebuilt export packet; records is the number of data
// records it carries (template records are not counted).
type datagram struct {
	buf     []byte
	records int
}

// flowRec holds the varying part of one synthetic flow.
type flowRec struct {
	src, dst, nexthop uint32
	sport, dport      uint16
	proto, tos, flags uint8
	in, out           uint16
	bytes, pkts       uint32
	first, last       uint32 // ms of sysUptime (v5/v9) or offset before now (IPFIX)
	srcAS, dstAS      uint16
}

// dstBenchmark is the default destination block, 198.18.0.0/15 (RFC 2544
// benchmarking); -public-dst uses dstPublic so that GeoIP lookups happen.
const (
	dstBenchmark uint32 = 0xc6120000
	dstPublic    uint32 = 0x14000000 // 20.0.0.0/16
)

// synth returns a deterministic, cheap-to-compute flow for variant v and
// record r (destinations in dstBase's /16), so that the pool of datagrams
// carries many distinct tuples.
func synth(v, r int, dstBase uint32) flowRec {
	if dstBase == 0 {
		dstBase = dstBenchmark
	}
	x := uint32(v*131+r*7919) * 2654435761 // Knuth multiplicative hash
	proto := uint8(6)
	switch x % 10 {
	case 7, 8:
		proto = 17
	case 9:
		proto = 1
	}
	pkts := 1 + x%200
	dur := x % 30000
	return flowRec{
		src:     0x0a000000 | (uint32(v)<<8|uint32(r))&0x00ffffff, // 10.0.0.0/8
		dst:     dstBase | x&0xffff,
		nexthop: 0xc0000201, // 192.0.2.1
		sport:   uint16(1024 + x%60000),
		dport:   []uint16{443, 80, 53, 22, 123, 8080}[x%6],
		proto:   proto,
		tos:     uint8(x>>8) & 0xfc,
		flags:   0x1b,
		in:      uint16(1 + x%4),
		out:     uint16(5 + x%4),
		bytes:   pkts * (40 + x%1400),
		pkts:    pkts,
		first:   sysUptimeBase - 10_000 - dur,
		last:    sysUptimeBase - 10_000,
		srcAS:   uint16(64512 + x%100),
		dstAS:   uint16(15169),
	}
}

func put16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func put32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func put64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendRecord encodes f in the order of fields. ipfixNowMs is the export
// time used for IPFIX absolute timestamps.
func appendRecord(b []byte, f flowRec, fields []field, ipfixNowMs uint64) []byte {
	for _, fd := range fields {
		switch fd.id {
		case 8:
			b = put32(b, f.src)
		case 12:
			b = put32(b, f.dst)
		case 7:
			b = put16(b, f.sport)
		case 11:
			b = put16(b, f.dport)
		case 4:
			b = append(b, f.proto)
		case 5:
			b = append(b, f.tos)
		case 6:
			b = append(b, f.flags)
		case 10:
			b = put16(b, f.in)
		case 14:
			b = put16(b, f.out)
		case 1:
			b = put32(b, f.bytes)
		case 2:
			b = put32(b, f.pkts)
		case 22:
			b = put32(b, f.first)
		case 21:
			b = put32(b, f.last)
		case 152:
			b = put64(b, ipfixNowMs-uint64(sysUptimeBase-f.first))
		case 153:
			b = put64(b, ipfixNowMs-uint64(sysUptimeBase-f.last))
		case 15:
			b = put32(b, f.nexthop)
		case 9:
			b = append(b, 24)
		case 13:
			b = append(b, 16)
		case 16:
			b = put16(b, f.srcAS)
		case 17:
			b = put16(b, f.dstAS)
		default:
			panic(fmt.Sprintf("flowgen: no encoder for field %d", fd.id))
		}
	}
	return b
}

// appendTemplateSet appends a v9 (set id 0) or IPFIX (set id 2) template set.
func appendTemplateSet(b []byte, setID uint16, fields []field) []byte {
	b = put16(b, setID)
	b = put16(b, uint16(4+4+4*len(fields)))
	b = put16(b, templateID)
	b = put16(b, uint16(len(fields)))
	for _, f := range fields {
		b = put16(b, f.id)
		b = put16(b, f.len)
	}
	return b
}

// appendDataSet appends a data set of n records, padded to 4 bytes.
func appendDataSet(b []byte, variant, n int, fields []field, nowMs uint64, dstBase uint32) []byte {
	start := len(b)
	b = put16(b, templateID)
	b = put16(b, 0) // length, patched below
	for r := 0; r < n; r++ {
		b = appendRecord(b, synth(variant, r, dstBase), fields, nowMs)
	}
	for (len(b)-start)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	return b
}

// build returns the datagram for one pool variant, with or without the
// template set in front of the data. Header fields that change per send
// (sequence, time) are left zero and patched by patchHeader.
func build(proto string, variant, n int, withTemplate bool, sourceID uint32, nowMs uint64, dstBase uint32) (datagram, error) {
	var b []byte
	switch proto {
	case protoV5:
		if n > 30 {
			return datagram{}, fmt.Errorf("netflow v5 carries at most 30 records per datagram, got %d", n)
		}
		b = put16(b, 5)
		b = put16(b, uint16(n))
		b = append(b, make([]byte, 20)...) // uptime, secs, nsecs, sequence, engine, sampling
		for r := 0; r < n; r++ {
			f := synth(variant, r, dstBase)
			b = put32(b, f.src)
			b = put32(b, f.dst)
			b = put32(b, f.nexthop)
			b = put16(b, f.in)
			b = put16(b, f.out)
			b = put32(b, f.pkts)
			b = put32(b, f.bytes)
			b = put32(b, f.first)
			b = put32(b, f.last)
			b = put16(b, f.sport)
			b = put16(b, f.dport)
			b = append(b, 0, f.flags, f.proto, f.tos)
			b = put16(b, f.srcAS)
			b = put16(b, f.dstAS)
			b = append(b, 24, 16, 0, 0)
		}
	case protoV9:
		count := n
		if withTemplate {
			count++
		}
		b = put16(b, 9)
		b = put16(b, uint16(count))
		b = append(b, make([]byte, 12)...) // sysUptime, unix secs, sequence
		b = put32(b, sourceID)
		if withTemplate {
			b = appendTemplateSet(b, 0, v9Fields)
		}
		if n > 0 {
			b = appendDataSet(b, variant, n, v9Fields, nowMs, dstBase)
		}
	case protoIPFIX:
		b = put16(b, 10)
		b = put16(b, 0)                   // length, patched below
		b = append(b, make([]byte, 8)...) // export time, sequence
		b = put32(b, sourceID)
		if withTemplate {
			b = appendTemplateSet(b, 2, ipfixFields)
		}
		if n > 0 {
			b = appendDataSet(b, variant, n, ipfixFields, nowMs, dstBase)
		}
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	default:
		return datagram{}, fmt.Errorf("unknown protocol %q (accepted: v5, v9, ipfix)", proto)
	}
	if len(b) > 65507 {
		return datagram{}, fmt.Errorf("datagram of %d bytes exceeds UDP maximum; lower -records", len(b))
	}
	return datagram{buf: b, records: n}, nil
}

// patchHeader writes the per-send header fields in place: uptime, export
// time and sequence number (v9 counts datagrams, v5 and IPFIX count records).
func patchHeader(proto string, b []byte, uptimeMs, unixSecs, seq uint32) {
	switch proto {
	case protoV5:
		binary.BigEndian.PutUint32(b[4:], uptimeMs)
		binary.BigEndian.PutUint32(b[8:], unixSecs)
		binary.BigEndian.PutUint32(b[16:], seq)
	case protoV9:
		binary.BigEndian.PutUint32(b[4:], uptimeMs)
		binary.BigEndian.PutUint32(b[8:], unixSecs)
		binary.BigEndian.PutUint32(b[12:], seq)
	case protoIPFIX:
		binary.BigEndian.PutUint32(b[4:], unixSecs)
		binary.BigEndian.PutUint32(b[8:], seq)
	}
}
