// Package dpi classifies flows by application, in pure Go, with nDPI's
// names: "TLS.YouTube", "QUIC.Google", "DNS.WhatsApp", "SSH", "Unknown".
// Routers tell us how much; this tells us what, for the flowlens sensor to
// export in IPFIX (applicationName, applicationId) and ntop's fields.
//
// # Use
//
// One Engine is shared by all workers: it holds the application table
// and the DNS cache, both safe for concurrent use. Each flow embeds a
// State by value (48 bytes; its zero value is a fresh flow) and the caller
// feeds packets with Inspect until it returns true, then asks Result when
// it exports the flow, as often as it likes. A flow dropped from the table
// before Inspect said done must be passed to Release, which gives back its
// buffers. Each State must be used by one goroutine at a time.
//
// # How a label is found
//
// The flow's first payload packets (Config.MaxPackets with payload, 16 by
// default) go through the dissectors, specific signatures first, loose
// heuristics (RTP) last. The core ones read what names a flow:
//
//   - TLS: the ClientHello's SNI, ALPN and supported versions, and its JA4
//     fingerprint; without SNI, the server certificate's subject CN and SAN
//     (TLS <= 1.2 sends it in clear). Both may span segments, so each TCP
//     direction is reassembled, out of order and retransmissions included,
//     into a pooled buffer of at most Config.ReassemblyBytes, held only
//     while a flow needs it and bounded in total by Config.ReassemblyMemory.
//   - QUIC v1 (RFC 9001), v2 (RFC 9369), drafts and Google's T05x/Q050:
//     the client Initial is decrypted with keys derived from its
//     Destination Connection ID, CRYPTO frames are reassembled across
//     packets and offsets, and the ClientHello read as for TLS (JA4 'q').
//     Older gQUIC carries a clear "CHLO" whose SNI and UAID are read.
//   - HTTP/1.x on any port: Host, User-Agent, and the response's
//     Content-Type (downloads get nDPI's Download category).
//   - DNS over UDP and TCP (and mDNS, LLMNR, NetBIOS names): the query
//     names the flow; A/AAAA answers feed the DNS cache.
//
// Then SSH, RDP, SMB (nDPI's NetBIOS.SMBv1 / NetBIOS.SMBv23), VNC, Telnet,
// FTP (control, and data connections it announces), SMTP/POP3/IMAP (and
// their TLS ports), NTP, SNMP, DHCP/DHCPv6, SSDP, NetBIOS, Syslog,
// Kerberos, LDAP, SIP, RTP/RTCP, STUN (with the call service behind it),
// DTLS, WireGuard, OpenVPN, IKE/IPsec, BitTorrent, MQTT, TFTP, MySQL,
// PostgreSQL, Modbus, CoAP, Teredo, VXLAN, sFlow/NetFlow/IPFIX, ICMP and
// the IP protocols without ports, and a few applications' own protocols
// (Dropbox LAN sync, Spotify, Steam, Zoom, Discord, TuyaLP, Ookla, ...).
//
// The application comes from the table (apps.txt, embedded; users add
// files with Config.ExtraRules): the longest matching domain suffix of the
// name the flow carried, an ALPN, a certificate or a User-Agent. Like
// current nDPI, a flow the payload named keeps the payload's label: the
// address blocks do not add an application to it (nDPI prints those
// apart, as "[IP: 126/Google]").
//
// A flow no dissector named falls back, in Result, on the DNS cache for
// its addresses (ConfDNSCache), then the address blocks (ConfIPList), for
// the application, and on the well-known port (ConfPort) for the protocol:
// a mid-stream flow to Google on 443 is "TLS.Google" (ip_list), as nDPI 4.2
// labelled it. Confidence is that of the application when there is one.
//
// The category is the application's (or the matching rule's), except
// under DNS, whose flows stay Network whatever they resolve, as in nDPI.
//
// # Application ids
//
// Result.AppID is an RFC 6759 applicationId for IPFIX: classification
// engine 13 (PANA-L7: a vendor's own layer-7 numbering) in the top byte, then nDPI's id of the master
// protocol in 12 bits and of the application in 12 bits, so
// "TLS.YouTube" is 13<<24 | 91<<12 | 124; sensor/export writes the engine and the 3-byte selector. The ids come from apps.txt's
// `proto` lines (nDPI's numbering); names only user rules know get a
// stable automatic id in 3072..4095.
//
// # Cost
//
// After a flow's first packets nothing allocates: a classified flow's
// packets return at once, undecided flows' payloads are matched in place,
// and Result reads cached label strings. What a flow carries (its names,
// JA4) is allocated once; QUIC key setup costs a few microseconds per
// flow. BenchmarkInspect gives the figures on corpus captures.
//
// Accuracy against nDPI's own expected output on the nDPI project's
// captures, and where and why we differ, is in docs/dpi-accuracy.md
// (go test ./sensor/dpi -run TestAccuracy -update).
package dpi
