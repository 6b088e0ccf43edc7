package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func classifyJSON(t *testing.T, files ...string) []classifiedFlow {
	t.Helper()
	cmd := exec.Command(flowlensBin, append([]string{"classify"}, files...)...)
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH=/nonexistent/libchdb.so")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("classify: %v\n%s", err, stderr.String())
	}
	var flows []classifiedFlow
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var f classifiedFlow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("classify line %q: %v", sc.Text(), err)
		}
		flows = append(flows, f)
	}
	return flows
}

// TestClassifyCommand: `flowlens classify` prints one JSON object per
// flow, with labels from the payload (TLS SNI, DNS) and per-direction
// counters; it needs no libchdb.
func TestClassifyCommand(t *testing.T) {
	flows := classifyJSON(t, filepath.Join(corpus, "dpi", "public", "netflix.pcap"))
	if len(flows) < 50 {
		t.Fatalf("%d flows", len(flows))
	}
	var netflix, dns int
	for _, f := range flows {
		if f.ClientPackets == 0 || f.Start.IsZero() || f.End.Before(f.Start) {
			t.Errorf("flow without client packets or times: %+v", f)
		}
		if f.Label == "TLS.NetFlix" && f.Confidence == "dpi" && strings.Contains(f.ServerName, "nflx") {
			netflix++
		}
		if f.Label == "DNS" && f.DNSQuery != "" {
			dns++
		}
	}
	if netflix == 0 || dns == 0 {
		t.Errorf("TLS.NetFlix flows with an SNI: %d, DNS flows with a query: %d", netflix, dns)
	}
}

// vethNamespaces makes two network namespaces of the test's own joined by a
// veth pair, removed at the end of the test: the sensor's (loopback up)
// and the replayer's. tag keeps the names of several calls in one process
// apart. No addresses, no IPv6 (no router solicitations among the flows),
// an MTU above the corpus's largest frames (captures made with offloads).
func vethNamespaces(t *testing.T, tag string) (sensorNS, replayNS, sensorIf, replayIf string) {
	t.Helper()
	id := fmt.Sprintf("fl%d%s", os.Getpid()%100000, tag)
	sensorNS, replayNS, sensorIf, replayIf = id+"s", id+"r", id+"a", id+"b"
	for _, ns := range []string{sensorNS, replayNS} {
		ipNetns(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipNetns(t, "link", "add", sensorIf, "netns", sensorNS, "type", "veth", "peer", "name", replayIf, "netns", replayNS)
	for _, c := range [][]string{
		{"-n", sensorNS, "link", "set", "lo", "up"},
		{"-n", sensorNS, "link", "set", sensorIf, "mtu", "9000", "up"},
		{"-n", replayNS, "link", "set", replayIf, "mtu", "9000", "up"},
	} {
		ipNetns(t, c...)
	}
	for _, c := range [][]string{{sensorNS, sensorIf}, {replayNS, replayIf}} {
		_ = exec.Command("ip", "netns", "exec", c[0], "sysctl", "-qw", "net.ipv6.conf."+c[1]+".disable_ipv6=1").Run()
	}
	return sensorNS, replayNS, sensorIf, replayIf
}

func ipNetns(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestSensorAFPacket is the sensor end to end on a real interface: two
// network namespaces of our own joined by a veth pair; tcpreplay (Debian)
// sends captures into one end; `flowlens run --interface` captures on the
// other with AF_PACKET, classifies, exports IPFIX to its own collector and
// stores. Every flow `flowlens classify` labels by DPI for the same
// captures is stored with that label, its server name and confidence dpi.
// Nothing leaves the two namespaces.
func TestSensorAFPacket(t *testing.T) {
	needChdb(t)
	needCmd(t, "tcpreplay")
	needCmd(t, "ip")
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	sensorNS, replayNS, sensorIf, replayIf := vethNamespaces(t, "p")

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	logf, err := os.Create(filepath.Join(dir, "flowlens.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	run := exec.Command("ip", "netns", "exec", sensorNS, flowlensBin, "run", "--interface", sensorIf)
	run.Env = append(os.Environ(), "FLOWLENS_DATA_DIR="+data, "FLOWLENS_HTTP_LISTEN=127.0.0.1:8080",
		"FLOWLENS_NETFLOW_LISTEN=", "FLOWLENS_SFLOW_LISTEN=", "FLOWLENS_IPFIX_LISTEN=127.0.0.1:4739",
		"FLOWLENS_BATCH_INTERVAL=200ms", "FLOWLENS_EXPORT_FLUSH_INTERVAL=100ms")
	run.Stdout, run.Stderr = logf, logf
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	logText := func() string { b, _ := os.ReadFile(filepath.Join(dir, "flowlens.log")); return string(b) }
	defer func() {
		if run.Process != nil {
			_ = run.Process.Kill()
		}
	}()
	// Ready when the capture runs (after the store and the collector).
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logText(), "sensor running") {
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready:\n%s", logText())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Ethernet captures (tcpreplay sends the frames as they are).
	captures := []string{"netflix.pcap", "quic-29.pcap", "ssh.pcap", "dns_doh.pcap"}
	var want []classifiedFlow
	for _, c := range captures {
		path := filepath.Join(corpus, "dpi", "public", c)
		for _, f := range classifyJSON(t, path) {
			if f.Confidence == "dpi" {
				want = append(want, f)
			}
		}
		out, err := exec.Command("ip", "netns", "exec", replayNS, "tcpreplay", "-q", "-i", replayIf, "--topspeed", path).CombinedOutput()
		if err != nil {
			t.Fatalf("tcpreplay %s: %v: %s", c, err, out)
		}
		time.Sleep(300 * time.Millisecond) // one capture's flows apart from the next's
	}
	// Let the workers read the ring, then SIGTERM: the sensor exports
	// every flow it holds, the store flushes.
	time.Sleep(time.Second)
	_ = run.Process.Signal(syscall.SIGTERM)
	if err := run.Wait(); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, logText())
	}
	run.Process = nil

	out := queryDataDir(t, data, "SELECT src_addr, src_port, dst_addr, dst_port, protocol, protocol_confidence, server_name FROM flows")
	stored := map[string]string{}
	// Not TrimSpace: the last row may end in an empty column.
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 7 {
			continue
		}
		src := net.JoinHostPort(strings.TrimPrefix(f[0], "::ffff:"), f[1])
		dst := net.JoinHostPort(strings.TrimPrefix(f[2], "::ffff:"), f[3])
		stored[src+" "+dst] = f[4] + " " + f[5] + " " + f[6]
	}
	if len(want) < 20 {
		t.Fatalf("only %d DPI flows in the classify output", len(want))
	}
	// A 5-tuple may be two flows in the capture's time (a packet after the
	// FIN and the linger starts another) and one at replay speed: the
	// stored label must be one classify gives for it.
	labels := map[string][]string{}
	for _, w := range want {
		k := w.Client + " " + w.Server
		labels[k] = append(labels[k], w.Label+" dpi "+w.ServerName)
	}
	var ok int
	for k, exp := range labels {
		got, found := stored[k]
		switch {
		case !found:
			t.Errorf("flow %s (%s) not stored", k, exp[0])
		case !slices.Contains(exp, got):
			t.Errorf("flow %s: stored %q, classify says %q", k, got, exp)
		default:
			ok++
		}
	}
	t.Logf("%d of %d DPI-labelled flows stored with classify's label (%d rows)", ok, len(labels), len(stored))
	if t.Failed() {
		t.Log(logText())
	}
}

// nsProc is a flowlens process run inside a network namespace, its output
// in a log file; killed at the end of the test if still running.
type nsProc struct {
	t   *testing.T
	cmd *exec.Cmd
	log string
}

func startNSProc(t *testing.T, ns, log string, env []string, args ...string) *nsProc {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, flowlensBin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &nsProc{t: t, cmd: cmd, log: log}
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *nsProc) logText() string { b, _ := os.ReadFile(p.log); return string(b) }

// waitLog waits for s in the log.
func (p *nsProc) waitLog(s string, d time.Duration) {
	p.t.Helper()
	for deadline := time.Now().Add(d); !strings.Contains(p.logText(), s); {
		if time.Now().After(deadline) {
			p.t.Fatalf("%q not logged within %v:\n%s", s, d, p.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM (ip netns exec passes it on: it execs the program)
// and waits for a clean exit.
func (p *nsProc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		p.cmd = nil
		if err != nil {
			p.t.Fatalf("%s: exit: %v\n%s", filepath.Base(p.log), err, p.logText())
		}
	case <-time.After(60 * time.Second):
		p.t.Fatalf("%s: not stopped within 60 s\n%s", filepath.Base(p.log), p.logText())
	}
}

// nsMetric reads a metric (summed over its label sets) from a daemon's
// /metrics inside a namespace; -1 when it does not answer.
func nsMetric(ns string, port int, name string) float64 {
	out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-sf", "--max-time", "5",
		fmt.Sprintf("http://127.0.0.1:%d/metrics", port)).Output()
	if err != nil {
		return -1
	}
	var sum float64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

var tcpreplaySent = regexp.MustCompile(`Successful packets:\s+(\d+)`)

// storedConfidence is the protocol_confidence column's name for each
// confidence `flowlens classify` prints (schema.Confidence).
var storedConfidence = map[string]string{"dpi": "dpi", "dns_cache": "dns_cache", "ip_list": "ip_list", "port_guess": "port", "unknown": "none"}

// TestSensorToCollectorAFPacket is the end-to-end case with the
// sensor and the collector as separate processes: two network namespaces
// of our own joined by a veth pair; tcpreplay sends captures into one end;
// `flowlens sensor --interface X --export 127.0.0.1:4739` captures on the
// other (AF_PACKET), classifies and exports IPFIX to a `flowlens run`
// collector in the same namespace, which stores. Then, for every flow
// `flowlens classify` finds in the same captures (all confidences, not
// only dpi), keyed by protocol and endpoints:
//   - the stored rows carry one of the labels classify gives that 5-tuple:
//     protocol, app_category, protocol_confidence (the store's names:
//     port for port_guess, none for unknown), server_name and dns_query;
//   - the packets and bytes stored per direction equal classify's, so no
//     packet was lost between tcpreplay and the store, and no stored row is
//     a flow classify does not know.
//
// A 5-tuple may be several flows in capture time (idle timeouts, a packet
// after the FIN) and one at replay speed, hence "one of the labels" and
// sums per direction. Nothing leaves the two namespaces; the replay is a
// fixed list of small captures at a bounded rate.
func TestSensorToCollectorAFPacket(t *testing.T) {
	needChdb(t)
	needCmd(t, "tcpreplay")
	needCmd(t, "ip")
	needCmd(t, "curl")
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	sensorNS, replayNS, sensorIf, replayIf := vethNamespaces(t, "c")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const collectorHTTP, sensorHTTP = 8080, 8081
	collector := startNSProc(t, sensorNS, filepath.Join(dir, "collector.log"), []string{
		"FLOWLENS_DATA_DIR=" + data, fmt.Sprintf("FLOWLENS_HTTP_LISTEN=127.0.0.1:%d", collectorHTTP),
		"FLOWLENS_NETFLOW_LISTEN=", "FLOWLENS_SFLOW_LISTEN=", "FLOWLENS_IPFIX_LISTEN=127.0.0.1:4739",
		"FLOWLENS_BATCH_INTERVAL=200ms",
	}, "run")
	for deadline := time.Now().Add(60 * time.Second); nsMetric(sensorNS, collectorHTTP, "flowlens_decoder_flows_total") < 0; {
		if time.Now().After(deadline) {
			t.Fatalf("collector not ready:\n%s", collector.logText())
		}
		time.Sleep(200 * time.Millisecond)
	}
	sensorP := startNSProc(t, sensorNS, filepath.Join(dir, "sensor.log"), []string{
		fmt.Sprintf("FLOWLENS_HTTP_LISTEN=127.0.0.1:%d", sensorHTTP), "FLOWLENS_EXPORT_FLUSH_INTERVAL=100ms",
	}, "sensor", "--interface", sensorIf, "--export", "127.0.0.1:4739")
	sensorP.waitLog("flowlens sensor running", 30*time.Second)

	// Ethernet captures without overlapping 5-tuples: TLS, QUIC, DNS,
	// HTTP, SSH, FTP (control and data), mail, STUN, WireGuard, SNMP...,
	// and flows of every confidence (kerberos, sip and tftp have port
	// guesses, syslog and cloudflare-warp unknown flows).
	captures := []string{"netflix.pcap", "quic-29.pcap", "youtube_quic.pcap", "ssh.pcap", "dns_doh.pcap", "http.pcapng",
		"dns.pcap", "ftp.pcap", "smtp.pcap", "wireguard.pcap", "stun.pcap", "google_ssl.pcap", "snmp.pcap", "telnet.pcap",
		"kerberos.pcap", "syslog.pcap", "sip.pcap", "tftp.pcap", "cloudflare-warp.pcap"}
	var paths []string
	var sent int
	for _, c := range captures {
		path := filepath.Join(corpus, "dpi", "public", c)
		paths = append(paths, path)
		// Bounded: one pass of a small file at 5,000 packets/s, 60 s at most.
		cmd := exec.Command("ip", "netns", "exec", replayNS, "timeout", "60", "tcpreplay", "-i", replayIf, "--pps", "5000", path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tcpreplay %s: %v: %s", c, err, out)
		}
		m := tcpreplaySent.FindSubmatch(out)
		if m == nil {
			t.Fatalf("tcpreplay %s: no packet count in %s", c, out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		if want := pcapPackets(t, path); n != want {
			t.Fatalf("tcpreplay %s: sent %d of %d packets: %s", c, n, want, out)
		}
		sent += n
	}
	// Every packet reached a worker, then SIGTERM: the sensor exports
	// every flow it holds.
	for deadline := time.Now().Add(30 * time.Second); nsMetric(sensorNS, sensorHTTP, "flowlens_sensor_packets_total") < float64(sent); {
		if time.Now().After(deadline) {
			t.Fatalf("sensor has %v of %d packets (kernel drops %v)\n%s", nsMetric(sensorNS, sensorHTTP, "flowlens_sensor_packets_total"),
				sent, nsMetric(sensorNS, sensorHTTP, "flowlens_sensor_capture_kernel_drops_total"), sensorP.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := nsMetric(sensorNS, sensorHTTP, "flowlens_sensor_packets_total"); got != float64(sent) {
		t.Errorf("sensor saw %v packets, tcpreplay sent %d", got, sent)
	}
	sensorP.stop()
	// The collector stored what it decoded, and nothing more arrives.
	var last float64 = -1
	for deadline := time.Now().Add(30 * time.Second); ; {
		dec := nsMetric(sensorNS, collectorHTTP, "flowlens_decoder_flows_total")
		rows := nsMetric(sensorNS, collectorHTTP, "flowlens_store_rows_total")
		if dec > 0 && dec == last && rows >= dec {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector: %v flows decoded, %v rows stored\n%s", dec, rows, collector.logText())
		}
		last = dec
		time.Sleep(500 * time.Millisecond)
	}
	collector.stop()

	type labels struct{ label, category, confidence, serverName, dnsQuery string }
	// Classify reads the captures in the replay's order with one engine and
	// one flow table, as the sensor did.
	want := map[string][]labels{}         // proto + unordered endpoints → classify's labels
	wantPackets := map[string][2]uint64{} // proto src → dst: packets, bytes
	for _, f := range classifyJSON(t, paths...) {
		k := flowKey(f.Proto, f.Client, f.Server)
		conf, ok := storedConfidence[f.Confidence]
		if !ok {
			t.Fatalf("classify confidence %q", f.Confidence)
		}
		l := labels{f.Label, f.Category, conf, f.ServerName, f.DNSQuery}
		if !slices.Contains(want[k], l) {
			want[k] = append(want[k], l)
		}
		for _, d := range []struct {
			from, to       string
			packets, bytes uint64
		}{{f.Client, f.Server, f.ClientPackets, f.ClientBytes}, {f.Server, f.Client, f.ServerPackets, f.ServerBytes}} {
			if d.packets > 0 {
				k := fmt.Sprintf("%d %s %s", f.Proto, d.from, d.to)
				v := wantPackets[k]
				wantPackets[k] = [2]uint64{v[0] + d.packets, v[1] + d.bytes}
			}
		}
	}
	out := queryDataDir(t, data, "SELECT ip_protocol, src_addr, src_port, dst_addr, dst_port, protocol, app_category, "+
		"protocol_confidence, server_name, dns_query, packets, bytes FROM flows")
	got := map[string][]labels{}
	gotPackets := map[string][2]uint64{}
	var rows int
	// Not TrimSpace: the last row may end in empty columns.
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 12 {
			t.Fatalf("row %q", line)
		}
		rows++
		proto, _ := strconv.Atoi(f[0])
		src := net.JoinHostPort(strings.TrimPrefix(f[1], "::ffff:"), f[2])
		dst := net.JoinHostPort(strings.TrimPrefix(f[3], "::ffff:"), f[4])
		k := flowKey(uint8(proto), src, dst)
		l := labels{f[5], f[6], f[7], f[8], f[9]}
		got[k] = append(got[k], l)
		packets, _ := strconv.ParseUint(f[10], 10, 64)
		octets, _ := strconv.ParseUint(f[11], 10, 64)
		pk := fmt.Sprintf("%d %s %s", proto, src, dst)
		v := gotPackets[pk]
		gotPackets[pk] = [2]uint64{v[0] + packets, v[1] + octets}
	}
	var matched int
	byConf := map[string]int{}
	for k, ws := range want {
		for _, w := range ws {
			byConf[w.confidence]++
		}
		gs, ok := got[k]
		if !ok {
			t.Errorf("flow %s (%+v) not stored", k, ws[0])
			continue
		}
		good := true
		for _, g := range gs {
			if !slices.Contains(ws, g) {
				t.Errorf("flow %s: stored %+v, classify says %+v", k, g, ws)
				good = false
			}
		}
		if good {
			matched++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("stored flow %s %+v is not in classify's output", k, got[k])
		}
	}
	for k, w := range wantPackets {
		if g := gotPackets[k]; g != w {
			t.Errorf("%s: stored %d packets, %d bytes; classify %d, %d", k, g[0], g[1], w[0], w[1])
		}
	}
	for k, g := range gotPackets {
		if _, ok := wantPackets[k]; !ok {
			t.Errorf("%s: %d packets stored, none in classify's output", k, g[0])
		}
	}
	if len(want) < 150 {
		t.Errorf("only %d flows in classify's output", len(want))
	}
	for _, c := range storedConfidence {
		if byConf[c] == 0 {
			t.Errorf("no flow with confidence %s in the captures", c)
		}
	}
	t.Logf("%d packets replayed; %d of %d 5-tuples stored with classify's labels (%d rows); labels by confidence %v",
		sent, matched, len(want), rows, byConf)
	if t.Failed() {
		t.Logf("sensor:\n%s\ncollector:\n%s", sensorP.logText(), collector.logText())
	}
}

// flowKey is a flow's protocol and unordered endpoints.
func flowKey(proto uint8, a, b string) string {
	if a > b {
		a, b = b, a
	}
	return fmt.Sprintf("%d %s %s", proto, a, b)
}
