package export

import (
	"net/netip"
	"time"
)

// Flow is one flow as the sensor hands it to the exporter: a bidirectional
// flow seen from the client (the side that sent the first packet) to the
// server. In a biflow record the client is the IPFIX source and the
// client→server counters are the forward ones (RFC 5103 §5: the source of a
// biflow is its initiator, when known).
//
// Export copies the value into its queue: the caller may reuse f at once.
// Strings are not copied (they are immutable), so steady-state export does
// not allocate.
type Flow struct {
	Client, Server         netip.Addr // IPv4, IPv6 or IPv4-mapped IPv6
	ClientPort, ServerPort uint16
	Protocol               uint8  // IP protocol number
	VLAN                   uint16 // 802.1Q VLAN id (12 bits), 0 when untagged

	ClientOctets, ClientPackets uint64 // client → server (IP bytes)
	ServerOctets, ServerPackets uint64 // server → client

	// Start and End are the first and last packet of the flow (or of this
	// slice of a long flow); exported with millisecond precision.
	Start, End time.Time

	// TCP flags seen per direction. A sensor that keeps only the OR of
	// both directions puts it in ClientTCPFlags.
	ClientTCPFlags, ServerTCPFlags uint8

	EndReason EndReason

	// Application is the label in nDPI's names ("TLS.YouTube", "DNS").
	Application string
	// ApplicationID is the label's number, the selector of an RFC 6759
	// applicationId whose classification engine is Config.ApplicationEngine.
	ApplicationID uint32
	// Category is the application's category in nDPI's names
	// ("Streaming", "Cloud").
	Category   string
	Confidence Confidence
	// ServerName is the TLS/QUIC SNI or the HTTP Host.
	ServerName string
	// DNSQuery is the query name of a DNS flow, DNSQType its question's
	// type (0 unknown), DNSRCode the answer's response code when
	// DNSAnswered (ntop's DNS_QUERY_TYPE and DNS_RET_CODE).
	DNSQuery    string
	DNSQType    uint16
	DNSRCode    uint8
	DNSAnswered bool
}

// NoDNSAnswer is the DNS_RET_CODE sent for a DNS flow whose answer was not
// seen (nProbe sends 0, which reads as NOERROR; response codes end at 4095).
const NoDNSAnswer = 0xffff

// EndReason is IPFIX flowEndReason (IE 136). The zero value is not an IANA
// value: it is exported as is and means "not said".
type EndReason uint8

// Flow end reasons (IANA "flowEndReason Values").
const (
	EndIdleTimeout     EndReason = 1 // no packet for the idle timeout
	EndActiveTimeout   EndReason = 2 // a long flow sliced at the active timeout
	EndOfFlow          EndReason = 3 // TCP FIN or RST seen
	EndForced          EndReason = 4 // the sensor is stopping
	EndLackOfResources EndReason = 5 // evicted: the flow table was full
)

// Confidence says how the sensor arrived at a flow's label.
type Confidence uint8

// Confidences, weakest first.
const (
	ConfidenceUnknown   Confidence = iota // no label
	ConfidencePortGuess                   // from the server's well-known port
	ConfidenceIPList                      // the server address is in an address list
	ConfidenceDNSCache                    // the server address was a DNS answer for a labelled name
	ConfidenceDPI                         // the payload of this flow was inspected
)

var confidenceNames = [...]string{"unknown", "port_guess", "ip_list", "dns_cache", "dpi"}

// String returns the name used by `flowlens classify`.
func (c Confidence) String() string {
	if int(c) < len(confidenceNames) {
		return confidenceNames[c]
	}
	return "unknown"
}

// ndpiConfidence is the value of ntop's L7_CONFIDENCE (35632/560), which
// nProbe fills with nDPI's ndpi_confidence_t. The numbers are those of nDPI
// 4.8 and later (and so of current nProbe), where the enum reads UNKNOWN 0,
// MATCH_BY_PORT 1, NBPF 2, DPI_PARTIAL 3, DPI_PARTIAL_CACHE 4, DPI_CACHE 5,
// DPI 6, MATCH_BY_IP 7, DPI_AGGRESSIVE 8, CUSTOM_RULE 9. (nDPI 4.2-4.6
// numbered them differently; the field carries no version.)
//
// The DNS cache maps to DPI_CACHE: nDPI describes it as "correlation among
// sessions", which is what an address learnt from another flow's DNS
// answer is; an address list maps to MATCH_BY_IP.
func (c Confidence) ndpiConfidence() uint8 {
	switch c {
	case ConfidencePortGuess:
		return 1
	case ConfidenceIPList:
		return 7
	case ConfidenceDNSCache:
		return 5
	case ConfidenceDPI:
		return 6
	}
	return 0
}
