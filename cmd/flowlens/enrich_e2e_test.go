package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"flowlens/enrich/geoip/geoiptest"
	"flowlens/internal/scenario"
)

// TestGeoIPEndToEnd gives the daemon small country and ASN databases
// (written here, FLOWLENS_GEOIP_*), replays the normal browsing capture
// through the sensor and checks every stored row: a public end the
// databases hold gets its country, AS number and AS name, on the side
// (src_ or dst_) where it is; a private end and a public one the
// databases do not hold get nothing.
func TestGeoIPEndToEnd(t *testing.T) {
	needChdb(t)
	dir := t.TempDir()
	country, asn := filepath.Join(dir, "country.mmdb"), filepath.Join(dir, "asn.mmdb")
	type geo struct {
		country string
		as      uint32
		name    string
	}
	nets := []struct {
		prefix string
		geo    geo
	}{
		{"142.250.0.0/15", geo{"US", 15169, "GOOGLE"}},
		{"185.15.56.0/22", geo{"NL", 14907, "Wikimedia Foundation Inc."}},
		{"52.96.0.0/14", geo{"IE", 8075, "MICROSOFT-CORP-MSN-AS-BLOCK"}},
	}
	var cs, as geoiptest.Spec
	cs.DBType, as.DBType = "GeoLite2-Country", "GeoLite2-ASN"
	for _, n := range nets {
		cs.Nets = append(cs.Nets, geoiptest.Network{Prefix: n.prefix, Rec: geoiptest.Country(n.geo.country)})
		as.Nets = append(as.Nets, geoiptest.Network{Prefix: n.prefix, Rec: geoiptest.AS(n.geo.as, n.geo.name)})
	}
	geoiptest.Write(t, country, cs)
	geoiptest.Write(t, asn, as)
	lookup := func(a netip.Addr) geo {
		for _, n := range nets {
			if netip.MustParsePrefix(n.prefix).Contains(a) {
				return n.geo
			}
		}
		return geo{}
	}

	d := startDaemon(t, dir, "FLOWLENS_GEOIP_COUNTRY_DATABASE="+country, "FLOWLENS_GEOIP_ASN_DATABASE="+asn)
	replayCapture(t, d, dir, "normal", scenario.Normal(time.Now().Add(-2*time.Minute)))
	waitDecodedStored(t, d)
	out := d.query("SELECT replaceOne(toString(src_addr), '::ffff:', ''), src_country, src_as, src_as_name, " +
		"replaceOne(toString(dst_addr), '::ffff:', ''), dst_country, dst_as, dst_as_name, count() FROM flows GROUP BY ALL ORDER BY ALL")
	d.stop()

	seen := map[string]int{} // "src "/"dst " + address of the databases, rows
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 9 {
			t.Fatalf("row %q", line)
		}
		rows++
		for i, side := range []string{"src", "dst"} {
			a, err := netip.ParseAddr(f[4*i])
			if err != nil {
				t.Fatalf("row %q: %v", line, err)
			}
			n, _ := strconv.ParseUint(f[4*i+2], 10, 32)
			got, want := geo{f[4*i+1], uint32(n), f[4*i+3]}, lookup(a)
			if got != want {
				t.Errorf("%s %s: country, AS, AS name %+v, want %+v (row %q)", side, a, got, want, line)
			}
			if want != (geo{}) {
				seen[side+" "+a.String()]++
			}
		}
	}
	t.Logf("%d distinct rows; GeoIP ends: %v", rows, seen)
	for _, k := range []string{"dst 142.250.74.36", "dst 185.15.58.224", "dst 52.97.146.178", "src 142.250.74.36", "src 185.15.58.224", "src 52.97.146.178"} {
		if seen[k] == 0 {
			t.Errorf("no stored row with %s", k)
		}
	}
}

// rewriteKeepStat replaces the content of path in place by content of
// the same size and puts its modification time back: the policy
// watcher, which polls mtime, size and inode, sees no change, so only
// SIGHUP can load the new version.
func rewriteKeepStat(t *testing.T, path, content string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(content)) != fi.Size() {
		t.Fatalf("new content is %d bytes, the file %d", len(content), fi.Size())
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// TestPolicySIGHUP sends a real SIGHUP to a running `flowlens run` after
// rewriting its policy file behind the watcher's back (same size, inode
// and mtime, so that only the signal can load it). Flows replayed before
// the signal are in the old pool, even seconds after the rewrite; flows
// after it in the new one. An invalid file and a SIGHUP leave the policy
// in force and log the error with file:line.
func TestPolicySIGHUP(t *testing.T) {
	needChdb(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	const (
		v1  = "pools:\n  alpha: [10.0.20.0/24]\n"
		v2  = "pools:\n  bravo: [10.0.20.0/24]\n"
		bad = "pools:\n  bravo: [10.0.20.0/33]\n"
	)
	if err := os.WriteFile(pol, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, "FLOWLENS_POLICY_FILE="+pol)
	// pool replays an SSH session of 10.0.20.5 from port and returns the
	// pools its rows (both directions) were given.
	pool := func(port uint16) string {
		t.Helper()
		c := scenario.New(time.Now().Add(-time.Minute))
		c.TCP(netip.AddrPortFrom(scenario.IoTHost, port), netip.AddrPortFrom(scenario.ServerHost, 22),
			scenario.Client(scenario.SSHBanner("OpenSSH_9.2p1")), scenario.Server(scenario.SSHBanner("OpenSSH_9.2p1 Debian-2")))
		replayCapture(t, d, dir, fmt.Sprint(port), c)
		where := fmt.Sprintf("(src_port = %d AND src_addr = toIPv6('::ffff:10.0.20.5')) OR (dst_port = %d AND dst_addr = toIPv6('::ffff:10.0.20.5'))", port, port)
		waitCount(t, d, "SELECT count() FROM flows WHERE "+where, 1)
		time.Sleep(300 * time.Millisecond) // the reverse row, if any, stored too
		return d.query(fmt.Sprintf("SELECT arrayStringConcat(arraySort(groupUniqArray(if(src_port = %d, src_pool, dst_pool))), ',') FROM flows WHERE %s", port, where))
	}
	waitReloads := func(result string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for d.metricBy("flowlens_policy_reloads_total", `result="`+result+`"`) < want {
			if time.Now().After(deadline) {
				t.Fatalf("flowlens_policy_reloads_total{result=%q} did not reach %v\n%s\n%s", result, want, d.metricsText(), d.logText())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	hup := func() {
		t.Helper()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	if got := pool(40001); got != "alpha" {
		t.Fatalf("before any change: pool %q, want alpha", got)
	}
	okBefore := d.metricBy("flowlens_policy_reloads_total", `result="ok"`)
	rewriteKeepStat(t, pol, v2)
	// Three polls of the watcher: it must not have seen the rewrite.
	time.Sleep(3 * time.Second)
	if got := pool(40002); got != "alpha" {
		t.Fatalf("after the rewrite, before SIGHUP: pool %q, want alpha (the watcher loaded the file: the test does not prove SIGHUP)", got)
	}
	hup()
	waitReloads("ok", okBefore+1)
	if got := pool(40003); got != "bravo" {
		t.Errorf("after SIGHUP: pool %q, want bravo\n%s", got, d.logText())
	}
	if n := strings.Count(d.logText(), `msg="policy loaded"`); n != 2 {
		t.Errorf("%d policy loaded lines in the log, want 2 (start, SIGHUP)\n%s", n, d.logText())
	}

	// An invalid version: refused, named by file:line, the policy stays.
	errBefore := d.metricBy("flowlens_policy_reloads_total", `result="error"`)
	rewriteKeepStat(t, pol, bad)
	hup()
	waitReloads("error", errBefore+1)
	if got := pool(40004); got != "bravo" {
		t.Errorf("after SIGHUP with an invalid file: pool %q, want bravo (the previous policy)", got)
	}
	line := regexp.MustCompile(`(?m)^.*level=ERROR.*` + regexp.QuoteMeta(pol) + `:2:\d+: .*$`).FindString(d.logText())
	if line == "" || !strings.Contains(line, "10.0.20.0/33") {
		t.Errorf("no error line naming %s:2 and the bad prefix in the log\n%s", pol, d.logText())
	}
	t.Logf("log: %s", line)
	if n := d.metricBy("flowlens_policy_reloads_total", `result="ok"`); n != okBefore+1 {
		t.Errorf("reloads{ok} = %v, want %v: something other than the two SIGHUPs loaded the file", n, okBefore+1)
	}
	d.stop()
}
