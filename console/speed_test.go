package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"flowlens/schema"
)

// TestSpeed times every page's API on a generated store, outside the
// normal run: CONSOLE_SPEED_ROWS=100000000 generates that many flows over
// the last 30 days into the test's store (set CONSOLE_SPEED_DIR to keep
// the store and reuse it; rows are only added when it holds fewer), then
// runs each page three times and prints the median.
//
//	CONSOLE_SPEED_ROWS=100000000 CONSOLE_SPEED_DIR=/tmp/console-speed \
//	  go test -run TestSpeed -v -timeout 2h ./console/
func TestSpeed(t *testing.T) {
	n, _ := strconv.ParseInt(os.Getenv("CONSOLE_SPEED_ROWS"), 10, 64)
	if n <= 0 {
		t.Skip("set CONSOLE_SPEED_ROWS (e.g. 100000000) to measure")
	}
	needStore(t)
	ctx := context.Background()
	count := func() int64 {
		out, err := fixQ.Query(ctx, "SELECT count() FROM flows", "TSV")
		if err != nil {
			t.Fatal(err)
		}
		c, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		return c
	}
	now := fixNow.Unix()
	if have := count(); have < n {
		start := time.Now()
		const chunk = 10_000_000
		for off := int64(0); off < n-have; off += chunk {
			m := min(chunk, n-have-off)
			if err := fixStore.Exec(ctx, generateSQL(now, off, m, n)); err != nil {
				t.Fatal(err)
			}
			t.Logf("inserted %d rows (%s)", off+m, time.Since(start).Round(time.Second))
		}
		// Let background merges settle, as on a store that has been running.
		for i := 0; i < 120; i++ {
			out, _ := fixQ.Query(ctx, "SELECT count() FROM system.merges", "TSV")
			if strings.TrimSpace(string(out)) == "0" {
				break
			}
			time.Sleep(5 * time.Second)
		}
		t.Logf("generated %d flows in %s", n, time.Since(start).Round(time.Second))
	}
	start := time.Now()
	if err := schema.CatchUpDaily(ctx, fixStore, schema.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	days, _ := fixQ.Query(ctx, "SELECT (SELECT uniqExact(timestamp) FROM top_conversations_1d), (SELECT max(filled_to) FROM hosts_1d)", "TSV")
	t.Logf("top_conversations_1d days listed, hosts_1d filled to: %s; caught up in %s", strings.TrimSpace(string(days)), time.Since(start).Round(time.Second))
	parts, _ := fixQ.Query(ctx, "SELECT table, count(), sum(rows) FROM system.parts WHERE active GROUP BY table ORDER BY table", "TSV")
	t.Logf("store: %d flows; parts: %s", count(), strings.ReplaceAll(strings.TrimSpace(string(parts)), "\n", "; "))

	h := newConsole(DefaultConfig()).Handler()
	type page struct{ name, path, q string }
	var pages []page
	for _, r := range []string{"15m", "1h", "6h", "24h", "7d", "30d"} {
		pages = append(pages, page{"overview by application " + r, "overview", "range=" + r})
	}
	pages = append(pages,
		page{"overview by category 24h", "overview", "range=24h&by=category"},
		page{"overview by category 30d", "overview", "range=30d&by=category"},
		page{"overview 24h pool filter", "overview", "range=24h&pool=office"},
		page{"overview 30d exporter+app", "overview", "range=30d&exporter=192.0.2.2&app=DNS"},
		page{"overview 24h cidr+port", "overview", "range=24h&addr=10.0.1.0/24&port=443"})
	for _, r := range []string{"1h", "24h", "7d", "30d"} {
		for _, d := range TopDims {
			pages = append(pages, page{"top " + d + " " + r, "top", "dim=" + d + "&range=" + r})
		}
	}
	for _, r := range []string{"1h", "24h", "7d", "30d"} {
		pages = append(pages, page{"host " + r, "host", "host=10.0.0.7&range=" + r})
	}
	pages = append(pages,
		page{"top talkers 24h pool filter", "top", "dim=talkers&range=24h&pool=servers"},
		page{"top talkers 30d app filter", "top", "dim=talkers&range=30d&app=App3"},
		page{"top conversations 7d exporter", "top", "dim=conversations&range=7d&exporter=192.0.2.2"},
		page{"top conversations 30d pool filter", "top", "dim=conversations&range=30d&pool=lab"},
		// Two filters, or an address: no top list answers, conversations_1h does.
		page{"top conversations 7d pool+app", "top", "dim=conversations&range=7d&pool=lab&app=App3"},
		page{"top conversations 30d pool+app", "top", "dim=conversations&range=30d&pool=lab&app=App3"},
		page{"top conversations 30d address", "top", "dim=conversations&range=30d&addr=10.0.3.7"},
		page{"top servers 30d pool filter", "top", "dim=servers&range=30d&pool=guest-wifi"},
		page{"top apps 30d address filter", "top", "dim=applications&range=30d&addr=10.0.3.7"},
		page{"alerts 30d", "alerts", "range=30d"},
		page{"exporters", "exporters", ""},
		page{"options 30d", "options", "range=30d"})
	var lines []string
	for _, p := range pages {
		var times []time.Duration
		table := ""
		failed := ""
		for i := range 3 {
			if i > 0 && (failed != "" || times[0] > 2*time.Second) {
				break // slow pages once: the figure is clear
			}
			q, _ := url.ParseQuery(p.q)
			req := httptest.NewRequest(http.MethodGet, APIPrefix+p.path+"?"+q.Encode(), nil)
			rec := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(rec, req)
			times = append(times, time.Since(start))
			if rec.Code != 200 {
				failed = fmt.Sprintf("status %d: %.120s", rec.Code, rec.Body)
			}
			if i := strings.Index(rec.Body.String(), `"table":"`); i >= 0 {
				table = strings.SplitN(rec.Body.String()[i+9:], `"`, 2)[0]
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		lines = append(lines, fmt.Sprintf("%-34s %-9s median %6d ms  (min %d, max %d, %d runs) %s", p.name, table,
			times[len(times)/2].Milliseconds(), times[0].Milliseconds(), times[len(times)-1].Milliseconds(), len(times), failed))
		t.Log(lines[len(lines)-1])
	}
	t.Logf("page timings on %d flows:\n%s", count(), strings.Join(lines, "\n"))
}

// generateSQL inserts m of n flows spread evenly over the 30 days before
// now, shaped like an office network's traffic rather than uniform noise,
// since rollups shrink real traffic and not noise:
//   - 4 exporters (sites); 4,000 internal hosts 10.0.0.0/20 in 4 pools of
//     1,000 (office, servers, guest-wifi, lab), each behind one exporter;
//     a host's share of the flows falls with its number (the square of a
//     uniform draw: the busiest 1 % make 10 % of the flows);
//   - 40 applications in 10 categories, equally skewed (App0 is the
//     busiest), each served by 200 servers of its own in 4 ASes (the cube
//     of a uniform draw picks one), a third of them with TLS server names
//     (50 per application);
//   - 5 % of the flows go to a long tail of 200,000 addresses in 200 other
//     ASes, 5 % to 50 hosts of the servers pool;
//   - bytes heavy-tailed (100 B to 1.5 MB, fourth power of a uniform draw).
func generateSQL(now, off, m, n int64) string {
	r := strings.NewReplacer("{now}", strconv.FormatInt(now, 10), "{off}", strconv.FormatInt(off, 10),
		"{m}", strconv.FormatInt(m, 10), "{n}", strconv.FormatInt(n, 10))
	return r.Replace(`INSERT INTO flows (timestamp, flow_start, flow_end, flow_source, exporter_address, sampling_rate, sampling_rate_source,
  protocol, protocol_confidence, app_category, server_name, src_pool, dst_pool, dst_country, dst_as, dst_as_name,
  bytes, packets, etype, src_addr, dst_addr, src_port, dst_port, ip_protocol, direction)
SELECT
  toDateTime({now} - 1 - intDiv((number + {off}) * 2592000, {n})) AS ts, ts, ts,
  ['netflow_v9', 'ipfix', 'sflow_v5', 'ipfix'][e + 1],
  toIPv6(concat('::ffff:192.0.2.', toString(e + 1))),
  1, 'none',
  concat('App', toString(a)), 'dpi',
  ['Streaming', 'Web', 'Cloud', 'Network', 'RemoteAccess', 'Collaboration', 'Download', 'Email', 'SocialNetwork', 'Game'][a % 10 + 1],
  if(a % 3 = 0 AND kind = 0, concat('s', toString(k % 50), '.app', toString(a), '.example.com'), ''),
  ['office', 'servers', 'guest-wifi', 'lab'][intDiv(src, 1000) + 1], if(kind = 2, 'servers', ''),
  if(kind = 2, '', ['FR', 'DE', 'US', 'GB', 'NL', 'IE', 'SE', 'JP', 'BR', 'IN', 'CA', 'AU', 'ES', 'IT', 'PL', 'CH', 'BE', 'AT', 'DK', 'FI'][das % 20 + 1]),
  das, if(das = 0, '', concat('AS-', toString(das))),
  100 + toUInt64(1500000 * pow(u4, 4)) AS b, 1 + intDiv(b, 900), 2048,
  toIPv6(concat('::ffff:10.0.', toString(intDiv(src, 256)), '.', toString(src % 256))),
  toIPv6(multiIf(
    kind = 0, concat('::ffff:', toString(100 + a), '.', toString(intDiv(k, 250)), '.', toString(k % 250), '.10'),
    kind = 1, concat('::ffff:', toString(150 + t % 50), '.', toString(intDiv(t, 50) % 250), '.', toString(intDiv(t, 12500)), '.1'),
    concat('::ffff:10.0.', toString(intDiv(1000 + k % 50, 256)), '.', toString((1000 + k % 50) % 256)))),
  1024 + h2 % 60000, [443, 80, 53, 22, 123, 993, 3478, 8080][a % 8 + 1], [6, 6, 17, 6, 17, 6, 17, 6][a % 8 + 1], 'ingress'
FROM (
  SELECT number, cityHash64(number + {off}) AS h, cityHash64(h) AS h2,
    (h % 1000000) / 1000000 AS u1, (intDiv(h, 1000000) % 1000000) / 1000000 AS u2,
    (intDiv(h, 1000000000000) % 1000000) / 1000000 AS u3, (h2 % 1000003) / 1000003 AS u4,
    toUInt32(4000 * u1 * u1) AS src, src % 4 AS e, toUInt32(40 * u2 * u2) AS a, toUInt32(200 * u3 * u3 * u3) AS k,
    multiIf(intDiv(h2, 7) % 20 = 0, 1, intDiv(h2, 7) % 20 = 1, 2, 0) AS kind, intDiv(h2, 140) % 200000 AS t,
    multiIf(kind = 0, 64500 + a * 4 + k % 4, kind = 1, 65000 + t % 200, 0) AS das
  FROM numbers({m})
)`)
}
