package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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
			// The tunnel detection alone: the captures' resolvers are not ours.
			d, dir := corpusDetections(t, tc.capture, "dns: {}\n")
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

// replayCapture writes capture into dir as name.pcap and replays it with
// `flowlens sensor --pcap` to d's NetFlow/IPFIX listener.
func replayCapture(t *testing.T, d *daemon, dir, name string, capture *scenario.Capture) {
	t.Helper()
	data, err := capture.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".pcap")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(flowlensBin, "sensor", "--pcap", path, "--export", fmt.Sprintf("127.0.0.1:%d", d.netflow)).CombinedOutput(); err != nil {
		t.Fatalf("sensor: %v\n%s", err, out)
	}
}

// waitCount waits until sql (a count) returns at least want, and returns it.
func waitCount(t *testing.T, d *daemon, sql string, want int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := strconv.Atoi(d.query(sql))
		if n >= want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d rows, want %d\n%s\n%s", sql, n, want, d.metricsText(), d.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLearnEndToEnd runs the learned service map through the whole chain
// (sensor → IPFIX → flowlens run → alerts table) with a learning period of
// a few seconds of wall clock, the detector's clock. The edges an IoT
// host uses while learning (SSH to a server, DNS to the resolver) raise
// nothing; after the period, the same edges from another source port
// and from another host of the pool stay quiet, a staff host's new edge
// is not watched (learn pools: [iot]), and the one new (iot, server,
// tcp/3389) edge raises exactly one new_edge alert.
func TestLearnEndToEnd(t *testing.T) {
	needChdb(t)
	const period = 8 * time.Second
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	policyText := fmt.Sprintf(`
pools:
  iot: [10.0.20.0/24]
  staff: [10.0.30.0/24]
  servers: [10.0.1.0/24]
learn: {enabled: true, period: %s, pools: [iot]}
`, period)
	if err := os.WriteFile(pol, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	ap := netip.AddrPortFrom
	iot2 := netip.MustParseAddr("10.0.20.6")
	// The detector starts (and its learning period with it) between these
	// two instants.
	before := time.Now()
	d := startDaemon(t, dir, "FLOWLENS_POLICY_FILE="+pol)
	started := time.Now()
	t.Logf("daemon up in %v", started.Sub(before).Round(time.Millisecond))

	learning := scenario.New(time.Now().Add(-time.Minute))
	learning.TCP(ap(scenario.IoTHost, 50022), ap(scenario.ServerHost, 22), scenario.Client(scenario.SSHBanner("OpenSSH_9.2p1")), scenario.Server(scenario.SSHBanner("OpenSSH_9.2p1 Debian-2")))
	learning.UDP(ap(scenario.IoTHost, 50053), ap(scenario.Resolver, 53), scenario.Client(scenario.DNSQuery(1, "ntp.example.com", scenario.TypeA)), scenario.Server(scenario.DNSAnswer(1, "ntp.example.com", scenario.TypeA, 0, netip.MustParseAddr("203.0.113.5"))))
	replayCapture(t, d, dir, "learning", learning)
	waitCount(t, d, "SELECT count() FROM flows WHERE src_port IN (50022, 50053) OR dst_port IN (50022, 50053)", 2)
	if el := time.Since(before); el >= period {
		t.Fatalf("the learning capture took %v to be stored, longer than the learning period %v: the test cannot tell learning from after", el, period)
	}
	if n := d.metric("flowlens_detect_alerts_total"); n != 0 {
		t.Fatalf("%v alerts during the learning period\n%s", n, d.metricsText())
	}
	if n := d.query("SELECT count() FROM alerts"); n != "0" {
		t.Fatalf("%s alerts stored during the learning period", n)
	}

	// Past the end of the period (plus the coarse clock's tick).
	time.Sleep(time.Until(started.Add(period + 500*time.Millisecond)))
	after := scenario.New(time.Now().Add(-time.Minute))
	after.TCP(ap(scenario.IoTHost, 51022), ap(scenario.ServerHost, 22), scenario.Client(scenario.SSHBanner("OpenSSH_9.2p1")), scenario.Server(scenario.SSHBanner("OpenSSH_9.2p1 Debian-2")))
	after.TCP(ap(iot2, 52022), ap(scenario.ServerHost, 22), scenario.Client(scenario.SSHBanner("OpenSSH_9.2p1")), scenario.Server(scenario.SSHBanner("OpenSSH_9.2p1 Debian-2")))
	after.UDP(ap(iot2, 52053), ap(scenario.Resolver, 53), scenario.Client(scenario.DNSQuery(2, "ntp.example.com", scenario.TypeA)), scenario.Server(scenario.DNSAnswer(2, "ntp.example.com", scenario.TypeA, 0, netip.MustParseAddr("203.0.113.5"))))
	after.TCP(ap(scenario.StaffHost, 53389), ap(scenario.ServerHost, 3389), scenario.Client(scenario.RDPConnectionRequest("staff")))
	after.TCP(ap(scenario.IoTHost, 51389), ap(scenario.ServerHost, 3389), scenario.Client(scenario.RDPConnectionRequest("admin")))
	replayCapture(t, d, dir, "after", after)
	waitCount(t, d, "SELECT count() FROM flows WHERE src_port IN (51022, 52022, 52053, 53389, 51389) OR dst_port IN (51022, 52022, 52053, 53389, 51389)", 5)
	waitDecodedStored(t, d)
	if n := d.query("SELECT count() FROM flows WHERE src_pool = 'iot' OR dst_pool = 'iot'"); n == "0" {
		t.Error("no flow was put in pool iot")
	}
	d.stop()

	out := queryDataDir(t, filepath.Join(dir, "data"),
		"SELECT kind, rule, replaceOne(toString(src_addr), '::ffff:', ''), src_pool, replaceOne(toString(dst_addr), '::ffff:', ''), dst_pool, protocol, sum(count), any(evidence) "+
			"FROM alerts GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7")
	var got []string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if f := strings.Split(line, "\t"); len(f) >= 8 {
			got = append(got, strings.Join(f[:8], "\t"))
			t.Logf("alert: %s", line)
		}
	}
	want := []string{"new_edge\tlearned_service_map\t10.0.20.5\tiot\t10.0.1.10\tservers\tRDP\t1"}
	if !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDetectionsOnCorpusResolvers runs the nDPI corpus's tunnel captures
// with a resolver allow-list that holds none of their resolvers, the
// tunnel detection on too: dns_resolver fires on the two captures whose
// DNS DPI labels DNS (iodine, dns-exf), not on dns2tcp, which runs over
// TLS without an SNI.
func TestDetectionsOnCorpusResolvers(t *testing.T) {
	needChdb(t)
	for _, tc := range []struct {
		capture string
		alerts  string // kind protocol dst of each alert
	}{
		{"dns-tunnel-iodine.pcap", "dns_resolver DNS 10.0.2.20,dns_tunnel DNS 10.0.2.20"},
		{"dns-exf.pcap", "dns_resolver DNS 192.168.2.134"},
		// TLS to 1.1.1.1:443 without an SNI: DPI says TLS, not DoH_DoT,
		// so neither DNS check sees it.
		{"dns2tcp_tunnel.pcap", ""},
	} {
		t.Run(tc.capture, func(t *testing.T) {
			d, dir := corpusDetections(t, tc.capture, "dns:\n  allowed_resolvers: [192.0.2.53]\n")
			t.Logf("flows: %s", d.query("SELECT replaceOne(toString(src_addr), '::ffff:', ''), src_port, replaceOne(toString(dst_addr), '::ffff:', ''), dst_port, protocol, packets FROM flows ORDER BY packets DESC LIMIT 4"))
			d.stop()
			alerts := strings.TrimSpace(queryDataDir(t, filepath.Join(dir, "data"),
				"SELECT arrayStringConcat(groupArray(a), ',') FROM (SELECT concat(kind, ' ', protocol, ' ', replaceOne(toString(dst_addr), '::ffff:', '')) AS a FROM alerts GROUP BY a ORDER BY a)"))
			t.Logf("%s: alerts %q", tc.capture, alerts)
			if alerts != tc.alerts {
				t.Errorf("alerts %q, want %q", alerts, tc.alerts)
			}
		})
	}
}

// corpusDetections starts a daemon with the policy, has the sensor export
// the corpus DPI capture to it, and waits until its flows are stored.
func corpusDetections(t *testing.T, capture, policy string) (*daemon, string) {
	t.Helper()
	path := filepath.Join(corpus, "dpi", "public", capture)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("corpus: %v", err)
	}
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, "FLOWLENS_POLICY_FILE="+pol)
	if out, err := exec.Command(flowlensBin, "sensor", "--pcap", path, "--export", fmt.Sprintf("127.0.0.1:%d", d.netflow)).CombinedOutput(); err != nil {
		t.Fatalf("sensor: %v\n%s", err, out)
	}
	waitDecodedStored(t, d)
	return d, dir
}
