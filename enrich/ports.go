// Package enrich adds what the exporter did not say to a flow, between the
// decoder and the sinks. For now: an application label guessed from the
// well-known port when no source labelled the flow.
package enrich

import "flowlens/schema"

type portKey struct {
	proto uint8
	port  uint16
}

// portLabels maps (IP protocol, server port) to the nDPI protocol name, so
// that a guess and a later DPI label read the same in queries.
var portLabels = map[portKey]string{
	{6, 20}: "FTP_DATA", {6, 21}: "FTP_CONTROL", {6, 22}: "SSH", {6, 23}: "Telnet",
	{6, 25}: "SMTP", {6, 465}: "SMTPS", {6, 587}: "SMTP", {6, 53}: "DNS", {17, 53}: "DNS",
	{17, 67}: "DHCP", {17, 68}: "DHCP", {17, 546}: "DHCPV6", {17, 547}: "DHCPV6",
	{17, 69}: "TFTP", {6, 80}: "HTTP", {6, 8080}: "HTTP_Proxy", {6, 3128}: "HTTP_Proxy",
	{6, 88}: "Kerberos", {17, 88}: "Kerberos", {6, 110}: "POP3", {6, 995}: "POP3S",
	{17, 123}: "NTP", {6, 135}: "DCE_RPC", {17, 137}: "NetBIOS", {17, 138}: "NetBIOS", {6, 139}: "NetBIOS",
	{6, 143}: "IMAP", {6, 993}: "IMAPS", {17, 161}: "SNMP", {17, 162}: "SNMP",
	{6, 179}: "BGP", {6, 389}: "LDAP", {17, 389}: "LDAP", {6, 636}: "LDAPS",
	{6, 443}: "TLS", {17, 443}: "QUIC", {6, 8443}: "TLS", {6, 445}: "SMBv23",
	{17, 500}: "IPSec", {17, 4500}: "IPSec", {17, 514}: "Syslog", {6, 514}: "Syslog", {6, 6514}: "Syslog",
	{6, 853}: "DoH_DoT", {17, 1194}: "OpenVPN", {6, 1194}: "OpenVPN", {17, 51820}: "WireGuard",
	{6, 1433}: "MsSQL-TDS", {6, 1521}: "Oracle", {6, 1883}: "MQTT", {6, 8883}: "MQTT",
	{17, 1812}: "Radius", {17, 1813}: "Radius", {17, 1900}: "SSDP", {6, 2049}: "NFS", {17, 2049}: "NFS",
	{17, 2055}: "NetFlow", {17, 4739}: "IPFIX", {17, 6343}: "sFlow", {17, 5353}: "MDNS", {17, 5355}: "LLMNR",
	{6, 3306}: "MySQL", {6, 3389}: "RDP", {17, 3389}: "RDP", {6, 3478}: "STUN", {17, 3478}: "STUN",
	{6, 5060}: "SIP", {17, 5060}: "SIP", {6, 5061}: "SIP", {6, 5222}: "Jabber", {6, 5432}: "PostgreSQL",
	{6, 5672}: "AMQP", {6, 5900}: "VNC", {6, 6379}: "Redis", {6, 6667}: "IRC", {6, 9092}: "Kafka",
	{6, 9200}: "Elasticsearch", {6, 9418}: "Git", {6, 11211}: "Memcached", {17, 11211}: "Memcached",
	{6, 27017}: "MongoDB", {6, 502}: "Modbus", {6, 554}: "RTSP", {6, 1080}: "SOCKS", {6, 10050}: "Zabbix",
	{6, 6881}: "BitTorrent", {17, 6881}: "BitTorrent", {6, 5938}: "TeamViewer", {6, 7070}: "AnyDesk",
	{6, 9100}: "Printer", {6, 631}: "IPP", {6, 3260}: "iSCSI", {6, 1723}: "PPTP",
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
		dl, dok := portLabels[portKey{p, f.DstPort}]
		sl, sok := portLabels[portKey{p, f.SrcPort}]
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
