package enrich

import (
	"testing"

	"flowlens/schema"
)

func TestLabel(t *testing.T) {
	for _, c := range []struct {
		name           string
		in             schema.Flow
		want           string
		wantConfidence schema.Confidence
	}{
		{"dns to server", schema.Flow{IPProtocol: 17, SrcPort: 53123, DstPort: 53}, "DNS", schema.ConfidencePort},
		{"dns reply", schema.Flow{IPProtocol: 17, SrcPort: 53, DstPort: 53123}, "DNS", schema.ConfidencePort},
		{"quic is udp 443", schema.Flow{IPProtocol: 17, SrcPort: 50000, DstPort: 443}, "QUIC", schema.ConfidencePort},
		{"tls is tcp 443", schema.Flow{IPProtocol: 6, SrcPort: 443, DstPort: 50000}, "TLS", schema.ConfidencePort},
		{"lower listed port wins", schema.Flow{IPProtocol: 6, SrcPort: 22, DstPort: 3306}, "SSH", schema.ConfidencePort},
		{"icmp", schema.Flow{IPProtocol: 1}, "ICMP", schema.ConfidencePort},
		{"nothing known", schema.Flow{IPProtocol: 6, SrcPort: 40000, DstPort: 40001}, "Unknown", schema.ConfidenceNone},
		{"exporter label kept", schema.Flow{IPProtocol: 6, DstPort: 443, Protocol: "TLS.YouTube", ProtocolConfidence: schema.ConfidenceExporter}, "TLS.YouTube", schema.ConfidenceExporter},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.in
			Label(&f)
			if f.Protocol != c.want || f.ProtocolConfidence != c.wantConfidence {
				t.Fatalf("got %s/%s, want %s/%s", f.Protocol, f.ProtocolConfidence, c.want, c.wantConfidence)
			}
		})
	}
}
