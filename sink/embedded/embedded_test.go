package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"flowlens/internal/chdb"
	"flowlens/schema"
)

func newStore(t *testing.T, dir string) (*Store, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.BatchSize = 1000
	cfg.BatchInterval = 50 * time.Millisecond
	reg := prometheus.NewRegistry()
	s, err := New(cfg, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		if errors.Is(err, chdb.ErrNoLibrary) && os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	return s, reg
}

func query(t *testing.T, s *Store, q string) string {
	t.Helper()
	out, err := s.Query(context.Background(), q, "TSV")
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return string(out)
}

// The whole embedded path in one engine session (libchdb allows one per
// process): migrations, Native inserts, the classic query verbatim, the
// rollup, TTL reconcile, and a restart that keeps the rows.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	s, reg := newStore(t, dir)
	now := uint32(time.Now().Unix())
	f := schema.Flow{
		TimeReceived: now, FlowStartMs: int64(now-10) * 1000, FlowEndMs: int64(now) * 1000,
		Source: schema.SourceNetFlowV9, ExporterAddr: netip.MustParseAddr("192.0.2.1"), SamplingRate: 1,
		SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("2001:db8::1"),
		SrcPort: 1234, DstPort: 443, IPProtocol: 6, EType: 0x0800,
	}
	f.MPLSLabels[0], f.MPLSLabels[1], f.MPLSLabelsLen = 100, 200, 2
	for i, p := range []struct {
		proto string
		bytes uint64
		n     int
	}{{"TLS", 1000, 3}, {"DNS", 10, 5}, {"HTTP", 500, 2}, {"SSH", 700, 1}, {"NTP", 1, 1}, {"Unknown", 5, 1}} {
		f.Protocol = p.proto
		f.Bytes = p.bytes
		f.Packets = uint64(i + 1)
		for range p.n {
			s.Put(&f)
		}
	}
	// An old row, outside the last hour.
	old := f
	old.TimeReceived = now - 7200
	old.Protocol, old.Bytes = "BitTorrent", 1<<40
	s.Put(&old)
	s.Flush(context.Background())

	if got := testutil.ToFloat64(s.m.rows); got != 14 {
		t.Fatalf("rows metric = %v, want 14", got)
	}
	_ = reg
	classic := "SELECT protocol, sum(bytes) FROM flows WHERE timestamp > now() - 3600 GROUP BY protocol ORDER BY sum(bytes) DESC LIMIT 5;"
	want := "TLS\t3000\nHTTP\t1000\nSSH\t700\nDNS\t50\nUnknown\t5\n"
	if got := query(t, s, classic); got != want {
		t.Fatalf("classic query:\n%s\nwant:\n%s", got, want)
	}
	// Every query the README shows runs on this build's tables: a renamed
	// column or rollup breaks the test, not a user's copy and paste.
	for _, q := range readmeQueries(t) {
		if _, err := s.Query(context.Background(), q, "TSV"); err != nil {
			t.Errorf("README query fails: %v\n%s", err, q)
		}
	}
	if got := query(t, s, "SELECT toString(src_addr), toString(dst_addr), mpls_labels, toUnixTimestamp64Milli(flow_start) FROM flows LIMIT 1"); got != "::ffff:10.0.0.1\t2001:db8::1\t[100,200]\t"+itoa(int64(now-10)*1000)+"\n" {
		t.Fatalf("row: %q", got)
	}
	if got := query(t, s, "SELECT sum(bytes), sum(flows) FROM flows_1m WHERE protocol = 'DNS'"); got != "50\t5\n" {
		t.Fatalf("rollup: %q", got)
	}
	// Interface counters land in their own table at the flush.
	s.PutCounters(&schema.InterfaceCounters{TimeReceived: now, ExporterAddr: netip.MustParseAddr("192.0.2.1"), IfIndex: 7, InOctets: 1 << 40, IfSpeed: 1e10})
	s.Flush(context.Background())
	if got := query(t, s, "SELECT if_index, in_octets, if_speed FROM interface_counters"); got != "7\t1099511627776\t10000000000\n" {
		t.Fatalf("interface_counters: %q", got)
	}
	// Alerts too, with the new flow columns of version 5.
	s.PutAlert(&schema.Alert{Time: now, LastSeen: now + 5, Kind: "policy", Rule: "iot-no-remote-access", Severity: "high",
		SrcAddr: netip.MustParseAddr("10.0.20.5"), DstAddr: netip.MustParseAddr("10.0.1.10"), SrcPool: "iot", DstPool: "servers",
		Protocol: "SSH", Evidence: "SSH from iot to servers", Count: 3})
	g := f
	g.Protocol, g.DNSQType, g.DNSRCode, g.DNSAnswered, g.SrcPool, g.DstCountry, g.DstASName = "DNS", 10, 3, true, "iot", "US", "Google LLC"
	s.Put(&g)
	s.Flush(context.Background())
	if got := query(t, s, "SELECT kind, rule, severity, toString(src_addr), src_pool, protocol, count, last_seen - timestamp FROM alerts"); got != "policy\tiot-no-remote-access\thigh\t::ffff:10.0.20.5\tiot\tSSH\t3\t5\n" {
		t.Fatalf("alerts: %q", got)
	}
	if got := query(t, s, "SELECT dns_qtype, dns_rcode, src_pool, dst_pool, dst_country, dst_as_name FROM flows WHERE dns_qtype != ''"); got != "NULL\tNXDOMAIN\tiot\t\tUS\tGoogle LLC\n" {
		t.Fatalf("v5 columns: %q", got)
	}
	// Migrating again is a no-op.
	if applied, err := schema.Migrate(context.Background(), s, s.cfg.Tables); err != nil || len(applied) != 0 {
		t.Fatalf("second migrate: %v %v", applied, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	// Restart with another TTL: rows survive, the TTL follows the config.
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Tables.TTLDays = 7
	s2, err := New(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	if got := query(t, s2, "SELECT count() FROM flows"); got != "15\n" {
		t.Fatalf("after restart: %q", got)
	}
	if got := query(t, s2, "SELECT engine_full FROM system.tables WHERE name = 'flows'"); !strings.Contains(got, "toIntervalDay(7)") {
		t.Fatalf("TTL not applied: %s", got)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// An engine fault loses nothing accepted: inserts fail while the table is
// away, are retried, and land once it is back. A batch still failing after
// MaxAttempts is dropped and counted, not retried forever.
func TestStoreRetriesThenDrops(t *testing.T) {
	s, _ := newStore(t, t.TempDir())
	defer s.Stop()
	ctx := context.Background()
	f := schema.Flow{TimeReceived: uint32(time.Now().Unix()), Bytes: 1, Packets: 1, Protocol: "DNS"}
	if err := s.Exec(ctx, "RENAME TABLE flows TO flows_away"); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		s.Put(&f)
	}
	go func() {
		time.Sleep(400 * time.Millisecond)
		_ = s.Exec(ctx, "RENAME TABLE flows_away TO flows")
	}()
	s.Flush(ctx)
	if got := query(t, s, "SELECT count() FROM flows"); got != "100\n" {
		t.Fatalf("after the fault: %q", got)
	}
	if testutil.ToFloat64(s.m.errors) == 0 {
		t.Fatal("no failed attempt counted")
	}

	s.cfg.MaxAttempts = 2
	if err := s.Exec(ctx, "RENAME TABLE flows TO flows_gone"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		s.Put(&f)
	}
	s.Flush(ctx)
	if got := testutil.ToFloat64(s.m.dropped.WithLabelValues("insert_failed")); got != 10 {
		t.Fatalf("insert_failed drops = %v, want 10", got)
	}
}

// TestMigrateFromPreviousVersion builds the previous release's schema
// (version 2) with a row in it, then starts the store of this build: the
// new columns and tables appear, the old row keeps its values and gets the
// new columns' defaults, and new rows insert.
func TestMigrateFromPreviousVersion(t *testing.T) {
	dir := t.TempDir()
	conn, err := chdb.Open(dir)
	if errors.Is(err, chdb.ErrNoLibrary) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	old := &Store{conn: conn}
	ctx := context.Background()
	if _, err := schema.MigrateTo(ctx, old, schema.DefaultTableConfig(), 2); err != nil {
		t.Fatal(err)
	}
	if err := old.Exec(ctx, "INSERT INTO flows (timestamp, protocol, bytes) VALUES (now(), 'DNS', 42)"); err != nil {
		t.Fatal(err)
	}
	if got, _ := old.QueryStrings(ctx, "SELECT count() FROM system.columns WHERE table = 'flows' AND name = 'server_name'"); got[0] != "0" {
		t.Fatal("version 2 already has server_name")
	}
	conn.Close()

	s, _ := newStore(t, dir)
	defer s.Stop()
	if got := query(t, s, "SELECT max(version) FROM schema_migrations"); got != fmt.Sprintf("%d\n", schema.Version()) {
		t.Fatalf("schema version %q", got)
	}
	f := schema.Flow{TimeReceived: uint32(time.Now().Unix()), Protocol: "TLS", ServerName: "example.com", SamplingSource: schema.SamplingOptions, Bytes: 7}
	s.Put(&f)
	s.Flush(ctx)
	want := "DNS\t42\t\t\nTLS\t7\texample.com\toptions\n"
	if got := query(t, s, "SELECT protocol, bytes, server_name, sampling_rate_source FROM flows ORDER BY bytes DESC"); got != want {
		t.Fatalf("rows after migration:\n%q\nwant\n%q", got, want)
	}
	// The hourly rollups (version 6) and servers_1d (version 7) hold the
	// flows stored before the migration (backfilled) and those after
	// (their views), once each. hosts_1d adds hours an hour after they end
	// (TestHostsDaily).
	if got := query(t, s, "SELECT (SELECT sum(bytes) FROM flows_1h), (SELECT sum(bytes) FROM conversations_1h), (SELECT sum(bytes) FROM servers_1h), (SELECT sum(flows) FROM conversations_1h), "+
		"(SELECT sum(bytes) FROM servers_1d), (SELECT uniqMerge(clients) FROM servers_1d)"); got != "49\t49\t7\t2\t7\t1\n" {
		t.Fatalf("rollups after migration: %q, want 49 bytes in flows_1h and conversations_1h, 7 in servers_1h and servers_1d", got)
	}
	// The table's columns are exactly the build's list, in its order.
	var names []string
	for _, c := range schema.Columns {
		names = append(names, c.Name)
	}
	if got := query(t, s, "SELECT arrayStringConcat(groupArray(name), ',') FROM (SELECT name FROM system.columns WHERE table = 'flows' ORDER BY position)"); got != strings.Join(names, ",")+"\n" {
		t.Fatalf("columns after migration:\n%s\nwant\n%s", got, strings.Join(names, ","))
	}
}

// Stop with every batch queued and the engine failing returns, and every
// accepted row is either stored or counted as dropped.
func TestStopWithFullBacklog(t *testing.T) {
	s, _ := newStore(t, t.TempDir())
	ctx := context.Background()
	s.cfg.BatchSize = 10
	if err := s.Exec(ctx, "RENAME TABLE flows TO flows_away"); err != nil {
		t.Fatal(err)
	}
	f := schema.Flow{TimeReceived: uint32(time.Now().Unix()), Bytes: 1}
	for range (s.cfg.MaxPending + 2) * 10 {
		s.Put(&f)
	}
	time.Sleep(50 * time.Millisecond)       // let the flusher take a batch and fail
	accepted := 10 * (s.cfg.MaxPending + 1) // MaxPending queued batches plus the active one
	if got := testutil.ToFloat64(s.m.dropped.WithLabelValues("store_backlog")); got != 10 {
		t.Fatalf("backlog drops %v, want 10", got)
	}
	done := make(chan error, 1)
	go func() { done <- s.Stop() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Stop reported no error with the table gone")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop blocked")
	}
	stored := testutil.ToFloat64(s.m.rows)
	lost := testutil.ToFloat64(s.m.dropped.WithLabelValues("stopped"))
	if stored+lost != float64(accepted) {
		t.Fatalf("stored %v + dropped at stop %v, want %d accepted", stored, lost, accepted)
	}
}

// TestDedupToken inserts one batch three times with the same token, as a
// lander retrying after a crash would, and once with another token: flows
// and the flows_1m rollup each count the batch twice, not four times, also
// after the engine is reopened (the deduplication log is on disk); so do
// the hourly rollups and servers_1d, which its view fills in cascade.
func TestDedupToken(t *testing.T) {
	dir := t.TempDir()
	s, _ := newStore(t, dir)
	ctx := context.Background()
	b := schema.NewBatch()
	now := uint32(time.Now().Unix())
	for i := range 100 {
		f := schema.Flow{TimeReceived: now, Bytes: uint64(i), Packets: 1, Protocol: "DNS", ServerName: "example.com"}
		b.Append(&f)
	}
	for _, tok := range []string{"flows-v4/0/0-100", "flows-v4/0/0-100", "flows-v4/1/0-100"} {
		if err := s.InsertFlows(ctx, b, tok); err != nil {
			t.Fatal(err)
		}
	}
	// Every rollup's view sees the retried block too, and only its own
	// deduplication window keeps it out.
	const q = "SELECT (SELECT count() FROM flows), (SELECT sum(flows) FROM flows_1m), (SELECT sum(flows) FROM flows_1h), " +
		"(SELECT sum(flows) FROM conversations_1h), (SELECT sum(flows) FROM servers_1h), (SELECT sum(flows) FROM servers_1d)"
	if got := query(t, s, q); got != "200\t200\t200\t200\t200\t200\n" {
		t.Fatalf("after retried insert: %q, want 200 rows in flows and the rollup", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s, _ = newStore(t, dir)
	defer s.Stop()
	if err := s.InsertFlows(ctx, b, "flows-v4/0/0-100"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s, q); got != "200\t200\t200\t200\t200\t200\n" {
		t.Fatalf("after reopen and retry: %q, want 200 rows", got)
	}
	// The embedded path (no token) never deduplicates identical batches.
	if err := s.InsertFlows(ctx, b, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertFlows(ctx, b, ""); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s, q); got != "400\t400\t400\t400\t400\t400\n" {
		t.Fatalf("identical batches without a token: %q, want 400 rows", got)
	}
}

// TestReports runs every report view of schema.Reports (docs/queries.md)
// on rows whose answers are known, including one row outside the range.
func TestReports(t *testing.T) {
	s, _ := newStore(t, t.TempDir())
	defer s.Stop()
	now := uint32(time.Now().Unix())
	a := netip.MustParseAddr
	for _, r := range []struct {
		src, dst       string
		srcPool, proto string
		cat            string
		bytes          uint64
		ago            uint32
	}{
		{"10.0.20.5", "10.0.1.10", "iot", "SSH", "RemoteAccess", 1000, 10},
		{"10.0.30.7", "52.1.1.1", "staff", "TLS.Microsoft365", "Collaborative", 5000, 20},
		{"10.0.30.8", "52.1.1.1", "staff", "TLS.Microsoft365", "Collaborative", 2000, 30},
		{"10.0.30.8", "162.125.1.1", "staff", "TLS.Dropbox", "Cloud", 3000, 40},
		{"10.0.20.5", "162.125.1.1", "iot", "QUIC.Dropbox", "Cloud", 700, 50},
		{"10.0.30.7", "52.1.1.1", "staff", "TLS.Microsoft365", "Collaborative", 1 << 30, 7200}, // outside the hour
	} {
		f := schema.Flow{TimeReceived: now - r.ago, Source: schema.SourceSensor, SrcAddr: a(r.src), DstAddr: a(r.dst),
			SrcPool: r.srcPool, Protocol: r.proto, AppCategory: r.cat, Bytes: r.bytes, Packets: 1, IPProtocol: 6}
		if r.dst == "10.0.1.10" {
			f.DstPool = "servers"
		}
		s.Put(&f)
	}
	for _, al := range []schema.Alert{
		{Time: now - 10, LastSeen: now - 5, Kind: "policy", Rule: "iot-no-remote-access", Severity: "high", SrcAddr: a("10.0.20.5"), DstAddr: a("10.0.1.10"), Protocol: "SSH", Count: 4},
		{Time: now - 9, LastSeen: now - 9, Kind: "policy", Rule: "iot-no-remote-access", Severity: "high", SrcAddr: a("10.0.20.5"), DstAddr: a("10.0.1.11"), Protocol: "RDP", Count: 1},
		{Time: now - 40, LastSeen: now - 40, Kind: "saas", Rule: "staff", Severity: "medium", SrcAddr: a("10.0.30.8"), Protocol: "TLS.Dropbox", Count: 1},
		{Time: now - 7200, LastSeen: now - 7200, Kind: "saas", Rule: "staff", Severity: "medium", SrcAddr: a("10.0.30.8"), Count: 1},
	} {
		s.PutAlert(&al)
	}
	s.Flush(context.Background())
	rng := "(from = now() - 3600, to = now() + 1)"
	for _, tc := range []struct{ q, want string }{
		{"SELECT protocol, app_category, bytes, flows, clients FROM top_applications" + rng,
			"TLS.Microsoft365\tCollaborative\t7000\t2\t2\nTLS.Dropbox\tCloud\t3000\t1\t1\nSSH\tRemoteAccess\t1000\t1\t1\nQUIC.Dropbox\tCloud\t700\t1\t1\n"},
		{"SELECT address, pool, bytes_sent, bytes_received, bytes, flows FROM top_talkers" + rng + " LIMIT 3",
			"52.1.1.1\t\t0\t7000\t7000\t2\n10.0.30.7\tstaff\t5000\t0\t5000\t1\n10.0.30.8\tstaff\t5000\t0\t5000\t2\n"},
		{"SELECT pool, application, category, bytes, flows, clients FROM saas_usage" + rng,
			"iot\tDropbox\tCloud\t700\t1\t1\nstaff\tMicrosoft365\tCollaborative\t7000\t2\t2\nstaff\tDropbox\tCloud\t3000\t1\t1\n"},
		{"SELECT kind, rule, severity, alerts, flows, clients FROM alerts_by_kind" + rng,
			"policy\tiot-no-remote-access\thigh\t2\t5\t1\nsaas\tstaff\tmedium\t1\t1\t1\n"},
	} {
		if got := query(t, s, tc.q); got != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.q, got, tc.want)
		}
	}
	if len(schema.Reports) != 4 {
		t.Errorf("%d reports: test the new ones here", len(schema.Reports))
	}
}

// readmeQueries are the statements of the README's ```sql blocks.
func readmeQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, block := range strings.Split(string(b), "```sql\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		for _, stmt := range strings.Split(block, ";") {
			var lines []string
			for _, l := range strings.Split(stmt, "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") {
					lines = append(lines, l)
				}
			}
			if len(lines) > 0 {
				out = append(out, strings.Join(lines, "\n"))
			}
		}
	}
	if len(out) < 6 {
		t.Fatalf("found %d README queries, want the six shown", len(out))
	}
	return out
}

// TestTopConversations: top_conversations_1d keeps each complete UTC
// day's TopConversations pairs with the most bytes, their sums and their
// application with the most bytes, one day a refresh; today has no list.
func TestTopConversations(t *testing.T) {
	s, _ := newStore(t, t.TempDir())
	defer s.Stop()
	ctx := context.Background()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	b := schema.NewBatch()
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	put := func(at time.Time, src, dst int, proto string, bytes uint64) {
		f := schema.Flow{TimeReceived: uint32(at.Unix()), SrcAddr: addr(src), DstAddr: addr(dst), Protocol: proto, Bytes: bytes, Packets: 1}
		b.Append(&f)
	}
	// Two days back: more pairs than a list keeps, pair i with i+1 bytes,
	// so the list is pairs 5 to 1004; pair 1004 also sent 2,000 bytes of
	// DNS in another hour: 3,005 bytes, DNS its application.
	d2 := today.Add(-48 * time.Hour)
	for i := range schema.TopConversations + 5 {
		put(d2.Add(time.Duration(i%24)*time.Hour), i, 5000, "TLS", uint64(i+1))
	}
	put(d2.Add(23*time.Hour), schema.TopConversations+4, 5000, "DNS", 2000)
	// Yesterday: three pairs; today: one.
	d1 := today.Add(-24 * time.Hour)
	put(d1.Add(time.Hour), 1, 2, "SSH", 10)
	put(d1.Add(2*time.Hour), 1, 2, "SSH", 5)
	put(d1, 3, 4, "DNS", 7)
	put(today.Add(time.Minute), 1, 2, "SSH", 99)
	if err := s.InsertFlows(ctx, b, ""); err != nil {
		t.Fatal(err)
	}
	if err := schema.CatchUpDaily(ctx, s, schema.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	got := query(t, s, "SELECT toDate(timestamp), count(), min(bytes), max(bytes), sum(flows) FROM top_conversations_1d WHERE list = 'all' GROUP BY timestamp ORDER BY timestamp")
	want := fmt.Sprintf("%s\t%d\t6\t3005\t%d\n%s\t2\t7\t15\t3\n", d2.Format(time.DateOnly), schema.TopConversations, schema.TopConversations+1, d1.Format(time.DateOnly))
	if got != want {
		t.Errorf("lists:\n%swant\n%s", got, want)
	}
	got = query(t, s, fmt.Sprintf("SELECT list, protocol, application, bytes FROM top_conversations_1d WHERE src_addr = toIPv6('%s') ORDER BY list, protocol", addr(schema.TopConversations+4)))
	if got != "all\t\tDNS\t3005\napplication\tDNS\tDNS\t2000\napplication\tTLS\tTLS\t1005\nexporter\t\tDNS\t3005\n" {
		t.Errorf("the pair with two applications, in every list it is in:\n%s", got)
	}
	// The application lists: TLS's is full (1,005 pairs, 1,000 kept), so
	// are the exporter's (one exporter: ::); no pools, no pool lists.
	got = query(t, s, fmt.Sprintf("SELECT list, protocol, count(), min(bytes) FROM top_conversations_1d WHERE timestamp = toDateTime('%s') GROUP BY list, protocol ORDER BY list, protocol", d2.Format(time.DateTime)))
	if want := "all\t\t1000\t6\napplication\tDNS\t1\t2000\napplication\tTLS\t1000\t6\nexporter\t\t1000\t6\n"; got != want {
		t.Errorf("lists of %s:\n%swant\n%s", d2.Format(time.DateOnly), got, want)
	}
	// Nothing new: a refresh appends nothing.
	if err := schema.CatchUpDaily(ctx, s, schema.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s, "SELECT count() FROM top_conversations_1d WHERE list = 'all'"); got != fmt.Sprintf("%d\n", schema.TopConversations+2) {
		t.Errorf("after another refresh: %s rows", got)
	}
}

// TestHostsDaily: hosts_1d's refreshable view adds conversations_1h's
// complete hours a day at a time, skips days without flows, leaves the
// last hours (RefreshHours) to the console, and adds nothing twice.
func TestHostsDaily(t *testing.T) {
	s, _ := newStore(t, t.TempDir())
	defer s.Stop()
	ctx := context.Background()
	now := time.Now().UTC()
	b := schema.NewBatch()
	put := func(at time.Time, src, dst byte, pool string, bytes uint64) {
		f := schema.Flow{TimeReceived: uint32(at.Unix()), SrcAddr: netip.AddrFrom4([4]byte{10, 0, 0, src}), DstAddr: netip.AddrFrom4([4]byte{10, 0, 0, dst}),
			Protocol: "SSH", SrcPool: pool, Bytes: bytes, Packets: 1}
		b.Append(&f)
	}
	// Five days back, three days back (none between), and this hour.
	d5, d3 := now.Add(-5*24*time.Hour), now.Add(-3*24*time.Hour)
	put(d5, 1, 2, "iot", 100)
	put(d5.Add(time.Hour), 1, 3, "iot", 10)
	put(d3, 2, 1, "", 7)
	put(now, 1, 2, "iot", 1000)
	if err := s.InsertFlows(ctx, b, ""); err != nil {
		t.Fatal(err)
	}
	if err := schema.CatchUpDaily(ctx, s, schema.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	// Per address: sent and received of the two old days only.
	const q = "SELECT replaceOne(toString(host), '::ffff:', ''), sumIf(bytes, sent = 1), sumIf(bytes, sent = 0), sum(flows), max(if(sent = 1, src_pool, dst_pool)) FROM hosts_1d GROUP BY host ORDER BY host"
	want := "10.0.0.1\t110\t7\t3\tiot\n10.0.0.2\t7\t100\t2\t\n10.0.0.3\t0\t10\t1\t\n"
	if got := query(t, s, q); got != want {
		t.Errorf("hosts_1d:\n%swant\n%s", got, want)
	}
	// filled_to: the end of the day after the last old hour (the hours
	// after it, this one included, are the console's to read).
	wantTo := d3.Truncate(time.Hour).Add(24 * time.Hour).Format(time.DateTime)
	if got := query(t, s, "SELECT toString(max(filled_to)) FROM hosts_1d SETTINGS session_timezone = 'UTC'"); got != wantTo+"\n" {
		t.Errorf("filled_to %q, want %s", got, wantTo)
	}
	if err := schema.CatchUpDaily(ctx, s, schema.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s, q); got != want {
		t.Errorf("after another refresh:\n%swant\n%s", got, want)
	}
}
