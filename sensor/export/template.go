package export

import "encoding/binary"

// Enterprise numbers of the non-IANA elements we send.
const (
	penReverse = 29305 // RFC 5103 reverse elements: same id, this PEN
	penNtop    = 35632 // ntop (nProbe's own elements)
)

// What a template field carries; the encoder switches on it per field.
type fieldKind uint8

const (
	kSrcAddr fieldKind = iota
	kDstAddr
	kSrcPort
	kDstPort
	kProtocol
	kVLAN
	kStart
	kEnd
	kOctets
	kPackets
	kFlags
	kRevOctets
	kRevPackets
	kRevFlags
	kEndReason
	kAppID
	kAppName
	kCategory
	kConfidence
	kServerName
	kDNSQuery
	kDNSQType
	kDNSRCode
)

// varLen is the template length of a variable-length field (RFC 7011 §7).
const varLen = 0xffff

// appIDLen is the applicationId length: the classification engine id and
// a 4-byte selector (RFC 6759 §4: the selector's length is the template's
// choice; 4 bytes hold the whole uint32 Flow.ApplicationID).
const appIDLen = 5

type field struct {
	ie     uint16
	pen    uint32 // 0: IANA
	length uint16
	kind   fieldKind
}

// layout returns the fields of one template. The order puts the fixed
// fields first so that a collector walking the record reads the common
// part at fixed offsets.
//
// A mirror port or TAP sees one VLAN for both directions, so postVlanId
// repeats vlanId: collectors that swap ingress and egress VLAN for the
// reverse direction of a biflow (ours does, as routers need) then keep the
// VLAN in the rows of both directions.
//
// Sizes: counters are unsigned64 and times dateTimeMilliseconds (8 bytes,
// the IANA types, no reduced-size encoding); tcpControlBits is unsigned16
// since RFC 7125, so 2 bytes (the high byte carries NS and the reserved
// bits, zero here).
func layout(v6, unidirectional, ntop bool) []field {
	src, dst, alen := uint16(8), uint16(12), uint16(4) // sourceIPv4Address, destinationIPv4Address
	if v6 {
		src, dst, alen = 27, 28, 16 // sourceIPv6Address, destinationIPv6Address
	}
	f := []field{
		{src, 0, alen, kSrcAddr},
		{dst, 0, alen, kDstAddr},
		{7, 0, 2, kSrcPort},     // sourceTransportPort
		{11, 0, 2, kDstPort},    // destinationTransportPort
		{4, 0, 1, kProtocol},    // protocolIdentifier
		{58, 0, 2, kVLAN},       // vlanId
		{59, 0, 2, kVLAN},       // postVlanId: the same (see below)
		{152, 0, 8, kStart},     // flowStartMilliseconds
		{153, 0, 8, kEnd},       // flowEndMilliseconds
		{1, 0, 8, kOctets},      // octetDeltaCount
		{2, 0, 8, kPackets},     // packetDeltaCount
		{6, 0, 2, kFlags},       // tcpControlBits
		{136, 0, 1, kEndReason}, // flowEndReason
	}
	if !unidirectional {
		f = append(f,
			field{1, penReverse, 8, kRevOctets},  // reverseOctetDeltaCount
			field{2, penReverse, 8, kRevPackets}, // reversePacketDeltaCount
			field{6, penReverse, 2, kRevFlags},   // reverseTcpControlBits
		)
	}
	f = append(f, field{95, 0, appIDLen, kAppID}) // applicationId
	if ntop {
		f = append(f,
			field{560, penNtop, 1, kConfidence}, // L7_CONFIDENCE
			field{207, penNtop, 2, kDNSQType},   // DNS_QUERY_TYPE
			field{208, penNtop, 2, kDNSRCode},   // DNS_RET_CODE (0xffff: no answer seen)
		)
	}
	f = append(f,
		field{96, 0, varLen, kAppName},   // applicationName
		field{372, 0, varLen, kCategory}, // applicationCategoryName
	)
	if ntop {
		f = append(f,
			field{119, penNtop, varLen, kAppName},    // L7_PROTO_NAME
			field{501, penNtop, varLen, kCategory},   // L7_PROTO_CATEGORY
			field{188, penNtop, varLen, kServerName}, // TLS_SERVER_NAME
			field{205, penNtop, varLen, kDNSQuery},   // DNS_QUERY
		)
	}
	return f
}

// template is one compiled data template.
type template struct {
	id     uint16
	fields []field
	fixed  int // bytes of the fixed-length fields
	// Variable-length fields by what they carry: the record size is
	// fixed + Σ count × (length header + truncated string).
	labels, names int // app name + category fields; server name + DNS query fields
}

// templateID numbers the layouts so that each distinct layout has its own
// id: a collector that kept the templates of a previous run with other
// options never reads records with a stale layout.
func templateID(v6, unidirectional, ntop bool) uint16 {
	id := uint16(256)
	if v6 {
		id++
	}
	if unidirectional {
		id += 2
	}
	if ntop {
		id += 4
	}
	return id
}

func compile(v6, unidirectional, ntop bool) template {
	t := template{id: templateID(v6, unidirectional, ntop), fields: layout(v6, unidirectional, ntop)}
	for _, f := range t.fields {
		switch {
		case f.length != varLen:
			t.fixed += int(f.length)
		case f.kind == kAppName || f.kind == kCategory:
			t.labels++
		default:
			t.names++
		}
	}
	return t
}

// appendRecord appends the template record of t (RFC 7011 §3.4.1).
func (t *template) appendRecord(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, t.id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.fields)))
	for _, f := range t.fields {
		if f.pen != 0 {
			b = binary.BigEndian.AppendUint16(b, f.ie|0x8000)
			b = binary.BigEndian.AppendUint16(b, f.length)
			b = binary.BigEndian.AppendUint32(b, f.pen)
			continue
		}
		b = binary.BigEndian.AppendUint16(b, f.ie)
		b = binary.BigEndian.AppendUint16(b, f.length)
	}
	return b
}

// varSize is the encoded size of a variable-length value of n bytes: a
// 1-byte length below 255, else 255 and a 2-byte length (RFC 7011 §7).
func varSize(n int) int {
	if n < 255 {
		return 1 + n
	}
	return 3 + n
}
