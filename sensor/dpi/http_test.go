package dpi

import "testing"

func TestHTTP(t *testing.T) {
	e := testEngine(t)
	get := []byte("GET /index.html HTTP/1.1\r\nHost: www.netflix.com:8080\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n")
	ok := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi")
	for _, tt := range []struct {
		name, label, cat, host, ua string
		pkts                       []pk
	}{
		{"request and response", "HTTP.NetFlix", "Video", "www.netflix.com", "curl/8.0",
			tcpPackets(get, ok, cat2(whole(ToServer, get, 1460), whole(ToClient, ok, 1460)))},
		{"headers over three segments", "HTTP.NetFlix", "Video", "www.netflix.com", "curl/8.0",
			tcpPackets(get, ok, cat2(whole(ToServer, get, 20), whole(ToClient, ok, 1460)))},
		{"download without an application", "HTTP", "Download", "203.0.113.9", "",
			tcpPackets([]byte("GET /f.bin HTTP/1.1\r\nHost: 203.0.113.9\r\n\r\n"),
				[]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"),
				[]seg{{ToServer, 0, 100}, {ToClient, 0, 100}})},
		{"user agent rule", "HTTP.WindowsUpdate", "SoftwareUpdate", "151.99.72.125", "Microsoft-Delivery-Optimization/10.0",
			[]pk{{ToServer, []byte("GET /filestreamingservice/files/x HTTP/1.1\r\nHost: 151.99.72.125\r\nUser-Agent: Microsoft-Delivery-Optimization/10.0\r\n\r\n"), tcpACK, 1}}},
		{"CONNECT", "HTTP_Connect.Dropbox", "Cloud", "www.dropbox.com", "",
			[]pk{{ToServer, []byte("CONNECT www.dropbox.com:443 HTTP/1.1\r\nHost: www.dropbox.com:443\r\n\r\n"), tcpACK, 1}}},
		{"response only", "HTTP", "Web", "", "",
			[]pk{{ToServer, nil, tcpACK, 1}, {ToClient, ok, tcpACK, 1}}},
		{"RTSP", "RTSP", "Media", "", "",
			[]pk{{ToServer, []byte("OPTIONS rtsp://cam/stream RTSP/1.0\r\nCSeq: 1\r\n\r\n"), tcpACK, 1}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := runFlow(e, tcpFlow("10.0.0.1:40000", "198.51.100.1:80"), tt.pkts...)
			if r.Label != tt.label || r.Category != tt.cat || r.ServerName != tt.host || r.UserAgent != tt.ua || r.Confidence != ConfDPI {
				t.Errorf("got %+v", r)
			}
		})
	}
}
