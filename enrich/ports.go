// Package enrich adds what the exporter did not say to a flow, between the
// decoder and the sinks. For now: an application label guessed from the
// well-known port when no source labelled the flow.
package enrich

import "flowlens/schema"

// portKey is (IP protocol << 16 | port): a uint32 key hashes several
// times faster than a struct one, and Label runs on every flow.
type portKey uint32

func pk(proto uint8, port uint16) portKey { return portKey(proto)<<16 | portKey(port) }

// portLabels maps (IP protocol, server port) to the nDPI protocol name, so
// that a guess and a later DPI label read the same in queries.
var portLabels = map[portKey]string{
	pk(6, 20): "FTP_DATA", pk(6, 21): "FTP_CONTROL", pk(6, 22): "SSH", pk(6, 23): "Telnet",
	pk(6, 25): "SMTP", pk(6, 465): "SMTPS", pk(6, 587): "SMTP", pk(6, 53): "DNS", pk(17, 53): "DNS",
	pk(17, 67): "DHCP", pk(17, 68): "DHCP", pk(17, 546): "DHCPV6", pk(17, 547): "DHCPV6",
	pk(17, 69): "TFTP", pk(6, 80): "HTTP", pk(6, 8080): "HTTP_Proxy", pk(6, 3128): "HTTP_Proxy",
	pk(6, 88): "Kerberos", pk(17, 88): "Kerberos", pk(6, 110): "POP3", pk(6, 995): "POP3S",
	pk(17, 123): "NTP", pk(6, 135): "DCE_RPC", pk(17, 137): "NetBIOS", pk(17, 138): "NetBIOS", pk(6, 139): "NetBIOS",
	pk(6, 143): "IMAP", pk(6, 993): "IMAPS", pk(17, 161): "SNMP", pk(17, 162): "SNMP",
	pk(6, 179): "BGP", pk(6, 389): "LDAP", pk(17, 389): "LDAP", pk(6, 636): "LDAPS",
	pk(6, 443): "TLS", pk(17, 443): "QUIC", pk(6, 8443): "TLS", pk(6, 445): "SMBv23",
	pk(17, 500): "IPSec", pk(17, 4500): "IPSec", pk(17, 514): "Syslog", pk(6, 514): "Syslog", pk(6, 6514): "Syslog",
	pk(6, 853): "DoH_DoT", pk(17, 1194): "OpenVPN", pk(6, 1194): "OpenVPN", pk(17, 51820): "WireGuard",
	pk(6, 1433): "MsSQL-TDS", pk(6, 1521): "Oracle", pk(6, 1883): "MQTT", pk(6, 8883): "MQTT",
	pk(17, 1812): "Radius", pk(17, 1813): "Radius", pk(17, 1900): "SSDP", pk(6, 2049): "NFS", pk(17, 2049): "NFS",
	pk(17, 2055): "NetFlow", pk(17, 4739): "IPFIX", pk(17, 6343): "sFlow", pk(17, 5353): "MDNS", pk(17, 5355): "LLMNR",
	pk(6, 3306): "MySQL", pk(6, 3389): "RDP", pk(17, 3389): "RDP", pk(6, 3478): "STUN", pk(17, 3478): "STUN",
	pk(6, 5060): "SIP", pk(17, 5060): "SIP", pk(6, 5061): "SIP", pk(6, 5222): "Jabber", pk(6, 5432): "PostgreSQL",
	pk(6, 5672): "AMQP", pk(6, 5900): "VNC", pk(6, 6379): "Redis", pk(6, 6667): "IRC", pk(6, 9092): "Kafka",
	pk(6, 9200): "Elasticsearch", pk(6, 9418): "Git", pk(6, 11211): "Memcached", pk(17, 11211): "Memcached",
	pk(6, 27017): "MongoDB", pk(6, 502): "Modbus", pk(6, 554): "RTSP", pk(6, 1080): "SOCKS", pk(6, 10050): "Zabbix",
	pk(6, 6881): "BitTorrent", pk(17, 6881): "BitTorrent", pk(6, 5938): "TeamViewer", pk(6, 7070): "AnyDesk",
	pk(6, 9100): "Printer", pk(6, 631): "IPP", pk(6, 3260): "iSCSI", pk(6, 1723): "PPTP",
}

// protoLabels names flows of IP protocols that have no ports.
var protoLabels = map[uint8]string{
	1: "ICMP", 2: "IGMP", 4: "IP_in_IP", 41: "IPv6", 47: "GRE", 50: "IPSec", 51: "IPSec",
	58: "ICMPV6", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP",
}

// Unknown is the label of flows nothing could classify.
const Unknown = "Unknown"

// Label fills f.Protocol when no source labelled the flow: first from
// protocols without ports, then from the server side's well-known port
// (the lower of two listed ports, the destination on a tie). It never
// overrides a label from the exporter or the sensor.
func Label(f *schema.Flow) {
	if f.Protocol != "" {
		return
	}
	if l, ok := protoLabels[f.IPProtocol]; ok {
		f.Protocol, f.ProtocolConfidence = l, schema.ConfidencePort
		return
	}
	if f.IPProtocol == 6 || f.IPProtocol == 17 || f.IPProtocol == 132 {
		p := f.IPProtocol
		if p == 132 {
			p = 6
		}
		dl, dok := portLabels[pk(p, f.DstPort)]
		sl, sok := portLabels[pk(p, f.SrcPort)]
		switch {
		case dok && (!sok || f.DstPort <= f.SrcPort):
			f.Protocol, f.ProtocolConfidence = dl, schema.ConfidencePort
			return
		case sok:
			f.Protocol, f.ProtocolConfidence = sl, schema.ConfidencePort
			return
		}
	}
	f.Protocol, f.ProtocolConfidence = Unknown, schema.ConfidenceNone
}
