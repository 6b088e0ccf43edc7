package dpi

// Ids of the protocols and applications the dissectors name. They are
// nDPI's ids; apps.txt gives each its name and category, and
// TestDissectorIDsDefined checks that every one is there.
const (
	pFTPControl  = 1
	pPOP3        = 2
	pSMTP        = 3
	pIMAP        = 4
	pDNS         = 5
	pHTTP        = 7
	pMDNS        = 8
	pNTP         = 9
	pNetBIOS     = 10
	pSSDP        = 12
	pSNMP        = 14
	pSMBv1       = 16
	pSyslog      = 17
	pDHCP        = 18
	pPostgreSQL  = 19
	pMySQL       = 20
	pPOPS        = 23
	pSMTPS       = 29
	pDTLS        = 30
	pSkypeCall   = 38
	pBitTorrent  = 37
	pSMBv23      = 41
	pModbus      = 44
	pRTSP        = 50
	pIMAPS       = 51
	pDiscord     = 58
	pVXLAN       = 64
	pJabber      = 67
	pVRRP        = 73
	pSteam       = 74
	pTelnet      = 77
	pSTUN        = 78
	pIPSec       = 79
	pGRE         = 80
	pICMP        = 81
	pIGMP        = 82
	pSCTP        = 84
	pOSPF        = 85
	pIPinIP      = 86
	pRTP         = 87
	pRDP         = 88
	pVNC         = 89
	pTLS         = 91
	pSSH         = 92
	pTFTP        = 96
	pSIP         = 100
	pICMPv6      = 102
	pDHCPv6      = 103
	pKerberos    = 111
	pLDAP        = 112
	pFacebook    = 119
	pDropbox     = 121
	pGoogle      = 126
	pNetFlow     = 128
	pSFlow       = 129
	pHTTPConnect = 130
	pHTTPProxy   = 131
	pWhatsApp    = 142
	pTeamViewer  = 148
	pLLMNR       = 154
	pSpotify     = 156
	pOpenVPN     = 159
	pTor         = 163
	pRTCP        = 165
	pFTPData     = 175
	pTelegram    = 185
	pQUIC        = 188
	pZoom        = 189
	pOokla       = 191
	pDoHDoT      = 196
	pWireGuard   = 206
	pTeredo      = 214
	pMQTT        = 222
	pSteamDR     = 235
	pAnyDesk     = 252
	pFBVoip      = 268
	pCFWarp      = 300
	pTuyaLP      = 331
	pGoogleCall  = 404
	pCoAP        = 27
)

// dissectorIDs lists the ids above for the table test.
var dissectorIDs = []uint16{
	pFTPControl, pPOP3, pSMTP, pIMAP, pDNS, pHTTP, pMDNS, pNTP, pNetBIOS, pSSDP, pSNMP, pSMBv1,
	pSyslog, pDHCP, pPostgreSQL, pMySQL, pPOPS, pSMTPS, pDTLS, pSkypeCall, pBitTorrent, pSMBv23,
	pModbus, pRTSP, pIMAPS, pDiscord, pVXLAN, pJabber, pVRRP, pSteam, pTelnet, pSTUN, pIPSec, pGRE,
	pICMP, pIGMP, pSCTP, pOSPF, pIPinIP, pRTP, pRDP, pVNC, pTLS, pSSH, pTFTP, pSIP, pICMPv6,
	pDHCPv6, pKerberos, pLDAP, pFacebook, pDropbox, pGoogle, pNetFlow, pSFlow, pHTTPConnect,
	pHTTPProxy, pWhatsApp, pTeamViewer, pLLMNR, pSpotify, pOpenVPN, pTor, pRTCP, pFTPData,
	pTelegram, pQUIC, pZoom, pOokla, pDoHDoT, pWireGuard, pTeredo, pMQTT, pSteamDR, pAnyDesk,
	pFBVoip, pCFWarp, pTuyaLP, pGoogleCall, pCoAP,
}
