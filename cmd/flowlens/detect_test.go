package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"flowlens/internal/scenario"
)

// The policy of the security scenarios (internal/scenario's addresses).
const scenarioPolicy = `
pools:
  iot: [10.0.20.0/24]
  staff: [10.0.30.0/24]
  servers: [10.0.1.0/24]
rules:
  - name: iot-no-remote-access
    from: iot
    to: servers
    categories: [RemoteAccess]
    severity: high
dns:
  allowed_resolvers: [10.0.1.53]
saas:
  staff: {allow: [Microsoft365], deny: [Dropbox]}
`

// queryDataDir runs `flowlens query` on a stopped daemon's data directory
// (TSV, no daemon asked).
func queryDataDir(t *testing.T, data, sql string) string {
	t.Helper()
	q := exec.Command(flowlensBin, "query", "--data-dir", data, "--format", "TSV", sql)
	q.Env = append(os.Environ(), "FLOWLENS_HTTP_LISTEN=127.0.0.1:1")
	out, err := q.CombinedOutput()
	if err != nil {
		t.Fatalf("query: %v: %s", err, out)
	}
	return string(out)
}

// waitDecodedStored waits until the daemon stored a row for every flow it
// decoded.
func waitDecodedStored(t *testing.T, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.metric("flowlens_store_rows_total") == 0 || d.metric("flowlens_store_rows_total") < d.metric("flowlens_decoder_flows_total") {
		if time.Now().After(deadline) {
			t.Fatalf("flows not stored\n%s", d.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDetectionsEndToEnd replays generated captures through the whole
// chain — flowlens sensor --pcap (DPI) → IPFIX → flowlens run (collector,
// enrich: pools, categories, detections) → the alerts table — and checks
// that exactly the expected alerts are stored: none on normal traffic;
// on the attack capture one per attack (an alert's repeats are folded
// into its count).
func TestDetectionsEndToEnd(t *testing.T) {
	needChdb(t)
	start := time.Now().Add(-2 * time.Minute)
	for _, tc := range []struct {
		name    string
		capture *scenario.Capture
		want    []string // kind rule src dst protocol
	}{
		{"normal", scenario.Normal(start), nil},
		{"attacks", scenario.Attacks(start), []string{
			"dns_resolver\tallowed_resolvers\t10.0.20.5\t104.16.248.249\tTLS.DoH_DoT",
			"dns_resolver\tallowed_resolvers\t10.0.20.5\t9.9.9.9\tDNS",
			"dns_tunnel\tdnscat-example.org\t10.0.30.10\t10.0.1.53\tDNS",
			"dns_tunnel\ttunnel-example.net\t10.0.30.9\t10.0.1.53\tDNS",
			"policy\tiot-no-remote-access\t10.0.20.5\t10.0.1.10\tRDP",
			"policy\tiot-no-remote-access\t10.0.20.5\t10.0.1.10\tSSH",
			"saas\tstaff: TLS.Dropbox\t10.0.30.7\t162.125.64.18\tTLS.Dropbox",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pol := filepath.Join(dir, "policy.yaml")
			capture := filepath.Join(dir, tc.name+".pcap")
			data, err := tc.capture.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(pol, []byte(scenarioPolicy), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(capture, data, 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, dir, "FLOWLENS_POLICY_FILE="+pol)
			sensor := exec.Command(flowlensBin, "sensor", "--pcap", capture, "--export", fmt.Sprintf("127.0.0.1:%d", d.netflow))
			if out, err := sensor.CombinedOutput(); err != nil {
				t.Fatalf("sensor: %v\n%s", err, out)
			}
			// Every exported flow stored (biflows: two rows each), then stop:
			// the detections emit their pending counts, the store flushes.
			waitDecodedStored(t, d)
			pools := d.query("SELECT count() FROM flows WHERE src_pool != '' OR dst_pool != ''")
			d.stop()
			if pools == "0" {
				t.Error("no flow was put in a pool")
			}
			out := queryDataDir(t, filepath.Join(dir, "data"),
				"SELECT kind, rule, replaceOne(toString(src_addr), '::ffff:', ''), replaceOne(toString(dst_addr), '::ffff:', ''), protocol, sum(count), any(severity), any(evidence) "+
					"FROM alerts GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5")
			var got []string
			for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
				if f := strings.Split(line, "\t"); len(f) >= 5 {
					got = append(got, strings.Join(f[:5], "\t"))
					t.Logf("alert: %s", line)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestDetectionsOnCorpusTunnels runs the DNS tunnel captures of the nDPI
// corpus through the same chain and reports what fires, the tunnel
// detection alone (no resolver allow-list). The iodine capture is one
// socket (one flow of 222 queries): the sensor reports its longest query
// name, and it fires. dns-exf is a single query, below any statistical
// gate; dns2tcp runs over TLS to 1.1.1.1 without an SNI, which DPI labels
// TLS: neither fires. Asserted: the query types that arrive and what fires
// today, so that a change shows.
func TestDetectionsOnCorpusTunnels(t *testing.T) {
	needChdb(t)
	for _, tc := range []struct {
		capture string
		qtypes  string // distinct dns_qtype of the stored DNS rows
		alerts  string // kind of each alert
	}{
		{"dns-tunnel-iodine.pcap", "NULL", "dns_tunnel"},
		{"dns-exf.pcap", "A", ""},
		{"dns2tcp_tunnel.pcap", "", ""},
	} {
		t.Run(tc.capture, func(t *testing.T) {
			path := filepath.Join(corpus, "dpi", "public", tc.capture)
			if _, err := os.Stat(path); err != nil {
				t.Skipf("corpus: %v", err)
			}
			dir := t.TempDir()
			pol := filepath.Join(dir, "policy.yaml")
			// The tunnel detection alone: the captures' resolvers are not ours.
			if err := os.WriteFile(pol, []byte("dns: {}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, dir, "FLOWLENS_POLICY_FILE="+pol)
			if out, err := exec.Command(flowlensBin, "sensor", "--pcap", path, "--export", fmt.Sprintf("127.0.0.1:%d", d.netflow)).CombinedOutput(); err != nil {
				t.Fatalf("sensor: %v\n%s", err, out)
			}
			waitDecodedStored(t, d)
			qtypes := d.query("SELECT arrayStringConcat(groupUniqArray(dns_qtype), ',') FROM flows WHERE protocol LIKE 'DNS%' AND dns_qtype != ''")
			t.Logf("DNS flows: %s", d.query("SELECT src_port, dst_port, packets, dns_qtype, dns_rcode, dns_query FROM flows WHERE protocol LIKE 'DNS%' ORDER BY packets DESC LIMIT 3"))
			d.stop()
			alerts := strings.TrimSpace(queryDataDir(t, filepath.Join(dir, "data"),
				"SELECT arrayStringConcat(groupArray(kind), ',') FROM (SELECT kind FROM alerts ORDER BY kind)"))
			t.Logf("%s: alerts %q", tc.capture, alerts)
			if qtypes != tc.qtypes || alerts != tc.alerts {
				t.Errorf("qtypes %q alerts %q, want %q and %q", qtypes, alerts, tc.qtypes, tc.alerts)
			}
		})
	}
}
