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
	"slices"
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
	id := fmt.Sprintf("fl%d", os.Getpid()%100000)
	sensorNS, replayNS := id+"s", id+"r"
	for _, ns := range []string{sensorNS, replayNS} {
		ipNetns(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipNetns(t, "link", "add", id+"a", "netns", sensorNS, "type", "veth", "peer", "name", id+"b", "netns", replayNS)
	for _, c := range [][]string{
		{"-n", sensorNS, "link", "set", "lo", "up"},
		{"-n", sensorNS, "link", "set", id + "a", "up"},
		{"-n", replayNS, "link", "set", id + "b", "up"},
	} {
		ipNetns(t, c...)
	}
	// No IPv6 on the veth: no router solicitations among the flows.
	for _, c := range [][]string{{sensorNS, id + "a"}, {replayNS, id + "b"}} {
		_ = exec.Command("ip", "netns", "exec", c[0], "sysctl", "-qw", "net.ipv6.conf."+c[1]+".disable_ipv6=1").Run()
	}

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	logf, err := os.Create(filepath.Join(dir, "flowlens.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	run := exec.Command("ip", "netns", "exec", sensorNS, flowlensBin, "run", "--interface", id+"a")
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
		out, err := exec.Command("ip", "netns", "exec", replayNS, "tcpreplay", "-q", "-i", id+"b", "--topspeed", path).CombinedOutput()
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
