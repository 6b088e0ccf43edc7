package dpi

// The dissectors run in a fixed order on each payload packet of a flow
// that is not classified yet, until one claims it. Cheap, specific
// signatures come first and the loose heuristics (RTP) last, so a loose
// one cannot take a flow a specific one would have named.

// tcpDissect runs the TCP dissectors in order until one claims the packet.
// They are direct calls, not a table of function values, so the packet
// descriptor stays on the stack (escape analysis cannot follow calls
// through function values).
func (e *Engine) tcpDissect(p *pkt) bool {
	return e.tlsTCP(p) ||
		e.httpTCP(p) ||
		e.dnsTCP(p) ||
		sshTCP(e, p) ||
		smbTCP(e, p) ||
		rdpTCP(e, p) ||
		postgresTCP(e, p) ||
		mysqlTCP(e, p) ||
		kerberosTCP(e, p) ||
		ldapTCP(e, p) ||
		mqttTCP(e, p) ||
		modbusTCP(e, p) ||
		bittorrentTCP(e, p) ||
		vncTCP(e, p) ||
		telnetTCP(e, p) ||
		mailTCP(e, p) ||
		sipTCP(e, p) ||
		syslogTCP(e, p) ||
		openvpnTCP(e, p) ||
		whatsappTCP(e, p) ||
		jabberTCP(e, p) ||
		spotifyTCP(e, p) ||
		stunTCP(e, p) ||
		ooklaTCP(e, p) ||
		teamviewerTCP(e, p) ||
		rtpTCP(e, p)
}

// udpDissect runs the UDP dissectors in order until one claims the packet.
func (e *Engine) udpDissect(p *pkt) bool {
	return e.dnsUDP(p) ||
		e.quicUDP(p) ||
		dhcpUDP(e, p) ||
		dhcpv6UDP(e, p) ||
		ntpUDP(e, p) ||
		snmpUDP(e, p) ||
		ssdpUDP(e, p) ||
		netbiosUDP(e, p) ||
		syslogUDP(e, p) ||
		kerberosUDP(e, p) ||
		ldapUDP(e, p) ||
		sipUDP(e, p) ||
		stunUDP(e, p) ||
		e.dtlsUDP(p) ||
		wireguardUDP(e, p) ||
		ikeUDP(e, p) ||
		openvpnUDP(e, p) ||
		bittorrentUDP(e, p) ||
		tftpUDP(e, p) ||
		teredoUDP(e, p) ||
		vxlanUDP(e, p) ||
		sflowUDP(e, p) ||
		netflowUDP(e, p) ||
		dropboxUDP(e, p) ||
		spotifyUDP(e, p) ||
		steamUDP(e, p) ||
		tuyaUDP(e, p) ||
		coapUDP(e, p) ||
		discordUDP(e, p) ||
		zoomUDP(e, p) ||
		rtpUDP(e, p)
}

func (e *Engine) inspectTCP(p *pkt) {
	st := p.st
	if st.flags&fPending != 0 {
		if st.master == pSTUN {
			e.stunFollow(p)
			return
		}
		switch st.phase {
		case phTLSClient, phTLSServer, phTLSServerCS:
			e.tlsTCP(p)
		case phHTTPResp:
			e.httpTCP(p)
		case phDNSAnswer:
			if !e.dnsTCP(p) {
				e.finish(st)
			}
		case phFTP:
			e.ftpFollow(p)
		default:
			e.finish(st)
		}
		return
	}
	e.tcpDissect(p)
}

func (e *Engine) inspectUDP(p *pkt) {
	st := p.st
	if st.flags&fPending != 0 {
		switch st.master {
		case pQUIC:
			e.quicUDP(p)
		case pDNS:
			if !e.dnsUDP(p) {
				e.finish(st)
			}
		case pDTLS:
			e.dtlsUDP(p)
		case pSTUN:
			e.stunFollow(p)
		default:
			e.finish(st)
		}
		return
	}
	e.udpDissect(p)
}

// claim is how the simple dissectors name a flow: from its payload, done.
func claim(p *pkt, master, app uint16) bool {
	p.st.set(master, app)
	return true
}
