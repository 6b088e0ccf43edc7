package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Flood test bounds. The Go runtime's soft limit is floodGoLimit; the RSS
// bound adds 256 MiB for the embedded engine (libchdb: about 210 MiB
// resident when idle, its code and its own allocator, which the Go limit
// does not cover).
const (
	floodGoLimit  = 256 << 20
	floodRSSBound = floodGoLimit + 256<<20
	floodDuration = 10 * time.Second
	floodRate     = 15_000  // datagrams per second, all hostile sources together
	floodMax      = 150_000 // datagrams, whatever the time
)

// hostile kinds: what the sender mixes.
const (
	kRandom        = iota // random bytes, 0..1500 (some up to 60000)
	kV9Truncated          // a valid v9 template set cut short
	kV9Extreme            // v9 templates with 65535-length and zero-length fields, huge field counts
	kIPFIXExtreme         // IPFIX templates with 65535 (variable) lengths, zero lengths, enterprise fields, data sets for them
	kTemplateFlood        // many valid templates per datagram, new ids and domains each time
	kSFlowHuge            // sFlow v5 claiming 2^32-1 samples, or a flow sample with 2^32-1 records
	kV5Huge               // NetFlow v5 header claiming 65535 records
	kBadSets              // v9/IPFIX sets of length 0, 1, 3, or longer than the datagram
	numKinds
)

var kindNames = [numKinds]string{"random", "v9_truncated", "v9_extreme_fields", "ipfix_extreme_fields", "template_flood", "sflow_huge_counts", "v5_huge_count", "bad_set_lengths"}

type hostileGen struct {
	r   *rand.Rand
	buf []byte
}

func (g *hostileGen) u16(v uint16) { g.buf = binary.BigEndian.AppendUint16(g.buf, v) }
func (g *hostileGen) u32(v uint32) { g.buf = binary.BigEndian.AppendUint32(g.buf, v) }

func (g *hostileGen) v9Header(count uint16) {
	g.u16(9)
	g.u16(count)
	g.u32(g.r.Uint32())              // sysUptime
	g.u32(uint32(time.Now().Unix())) // unix secs
	g.u32(g.r.Uint32())              // sequence
	g.u32(uint32(g.r.IntN(4)))       // source id
}

func (g *hostileGen) ipfixHeader() {
	g.u16(10)
	g.u16(0) // length, patched by ipfixDone
	g.u32(uint32(time.Now().Unix()))
	g.u32(g.r.Uint32())
	g.u32(uint32(g.r.IntN(4))) // observation domain
}

func (g *hostileGen) ipfixDone() { binary.BigEndian.PutUint16(g.buf[2:], uint16(len(g.buf))) }

// set writes a set header and returns where its length goes.
func (g *hostileGen) set(id uint16) int {
	at := len(g.buf)
	g.u16(id)
	g.u16(0)
	return at
}

func (g *hostileGen) setDone(at int) { binary.BigEndian.PutUint16(g.buf[at+2:], uint16(len(g.buf)-at)) }

// next returns a hostile datagram and whether it goes to the sFlow port.
func (g *hostileGen) next(kind int) ([]byte, bool) {
	r := g.r
	g.buf = g.buf[:0]
	switch kind {
	case kRandom:
		n := r.IntN(1500)
		if r.IntN(50) == 0 {
			n = 1500 + r.IntN(58500)
		}
		for range n {
			g.buf = append(g.buf, byte(r.Uint32()))
		}
		// Valid versions first, so the random bodies reach the decoders.
		if n >= 2 && r.IntN(2) == 0 {
			binary.BigEndian.PutUint16(g.buf, []uint16{5, 9, 10}[r.IntN(3)])
		}
		return g.buf, r.IntN(3) == 0
	case kV9Truncated:
		g.v9Header(1)
		at := g.set(0)
		g.u16(uint16(256 + r.IntN(16)))
		g.u16(8)
		for _, f := range [][2]uint16{{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {1, 4}, {2, 4}, {22, 4}} {
			g.u16(f[0])
			g.u16(f[1])
		}
		g.setDone(at)
		return g.buf[:20+r.IntN(len(g.buf)-20)], false
	case kV9Extreme:
		g.v9Header(3)
		at := g.set(0)
		id := uint16(256 + r.IntN(64))
		nf := 1 + r.IntN(40)
		g.u16(id)
		if r.IntN(4) == 0 {
			g.u16(65535) // claims far more fields than present
		} else {
			g.u16(uint16(nf))
		}
		for range nf {
			g.u16(uint16(1 + r.IntN(100)))
			g.u16([]uint16{0, 65535, 65534, 1, 4}[r.IntN(5)])
		}
		g.setDone(at)
		at = g.set(id)
		for range r.IntN(400) {
			g.buf = append(g.buf, byte(r.Uint32()))
		}
		g.setDone(at)
		return g.buf, false
	case kIPFIXExtreme:
		g.ipfixHeader()
		at := g.set(2)
		id := uint16(256 + r.IntN(64))
		nf := 1 + r.IntN(30)
		g.u16(id)
		g.u16(uint16(nf))
		for range nf {
			ie := uint16(1 + r.IntN(500))
			enterprise := r.IntN(3) == 0
			if enterprise {
				ie |= 0x8000
			}
			g.u16(ie)
			g.u16([]uint16{65535, 65535, 0, 0, 65534, 8}[r.IntN(6)])
			if enterprise {
				g.u32([]uint32{35632, 25461, 9, r.Uint32()}[r.IntN(4)])
			}
		}
		g.setDone(at)
		at = g.set(id)
		for range r.IntN(30) {
			// Variable-length encodings: short, long (255 + u16), lying.
			switch r.IntN(3) {
			case 0:
				g.buf = append(g.buf, byte(r.IntN(256)))
			case 1:
				g.buf = append(g.buf, 255)
				g.u16(uint16(r.Uint32()))
			default:
				g.buf = append(g.buf, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))
			}
		}
		g.setDone(at)
		g.ipfixDone()
		return g.buf, false
	case kTemplateFlood:
		ipfix := r.IntN(2) == 0
		if ipfix {
			g.ipfixHeader()
		} else {
			g.v9Header(40)
		}
		at := g.set(map[bool]uint16{false: 0, true: 2}[ipfix])
		for range 40 {
			g.u16(uint16(256 + r.IntN(65280)))
			g.u16(4)
			for _, f := range [][2]uint16{{8, 4}, {12, 4}, {1, 4}, {2, 4}} {
				g.u16(f[0])
				g.u16(f[1])
			}
		}
		g.setDone(at)
		if ipfix {
			binary.BigEndian.PutUint32(g.buf[12:], r.Uint32()) // a new domain each time
			g.ipfixDone()
		} else {
			binary.BigEndian.PutUint32(g.buf[16:], r.Uint32())
		}
		return g.buf, false
	case kSFlowHuge:
		g.u32(5)
		g.u32(1)
		g.u32(0x7f000002)
		g.u32(0)
		g.u32(r.Uint32())
		g.u32(r.Uint32())
		if r.IntN(2) == 0 {
			g.u32(0xffffffff) // samples
			for range r.IntN(64) {
				g.u32(r.Uint32())
			}
			return g.buf, true
		}
		g.u32(1)
		g.u32([]uint32{1, 3}[r.IntN(2)]) // flow sample, expanded flow sample
		lenAt := len(g.buf)
		g.u32(0)
		for range 10 {
			g.u32(r.Uint32()) // seq, source, rate, pool, drops, input, output (and more for expanded)
		}
		g.u32(0xffffffff) // records
		g.u32(1)          // raw packet header
		g.u32(0xfffffff0) // its length
		for range r.IntN(32) {
			g.u32(r.Uint32())
		}
		binary.BigEndian.PutUint32(g.buf[lenAt:], uint32(len(g.buf)-lenAt-4))
		return g.buf, true
	case kV5Huge:
		g.u16(5)
		g.u16(65535)
		for range 22 + 48*r.IntN(3) {
			g.buf = append(g.buf, byte(r.Uint32()))
		}
		return g.buf, false
	case kBadSets:
		ipfix := r.IntN(2) == 0
		if ipfix {
			g.ipfixHeader()
		} else {
			g.v9Header(2)
		}
		g.u16([]uint16{0, 1, 2, 3, 256}[r.IntN(5)])
		g.u16([]uint16{0, 1, 3, 4, 65535}[r.IntN(5)])
		for range r.IntN(16) {
			g.buf = append(g.buf, byte(r.Uint32()))
		}
		if ipfix {
			g.ipfixDone()
		}
		return g.buf, false
	}
	panic("kind")
}

// floodSender sends hostile datagrams from 127.0.0.2..127.0.0.250 (never
// 127.0.0.1, the real exporter's address) until floodDuration or floodMax.
type floodSender struct {
	sent  [numKinds]atomic.Int64
	total atomic.Int64
	errs  atomic.Int64
}

func (fs *floodSender) run(t *testing.T, stop <-chan struct{}, netflowPort, sflowPort int) {
	var socks []*net.UDPConn
	for i := 2; i <= 250; i++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(i))})
		if err != nil {
			t.Errorf("bind 127.0.0.%d: %v", i, err)
			return
		}
		defer c.Close()
		socks = append(socks, c)
	}
	nf := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: netflowPort}
	sf := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sflowPort}
	g := &hostileGen{r: rand.New(rand.NewPCG(1, 2))}
	start := time.Now()
	const tick = time.Millisecond
	perTick := floodRate / int(time.Second/tick)
	for n := 0; n < floodMax && time.Since(start) < floodDuration; {
		select {
		case <-stop:
			return
		default:
		}
		for range perTick {
			kind := g.r.IntN(numKinds)
			b, toSFlow := g.next(kind)
			// A quarter of the traffic comes from 8 chatty sources, over
			// the rate limit; the rest from all of them.
			src := socks[g.r.IntN(len(socks))]
			if g.r.IntN(4) == 0 {
				src = socks[g.r.IntN(8)]
			}
			dst := nf
			if toSFlow {
				dst = sf
			}
			if _, err := src.WriteToUDP(b, dst); err != nil {
				fs.errs.Add(1) // ENOBUFS and the like: not sent
				continue
			}
			fs.sent[kind].Add(1)
			fs.total.Add(1)
			n++
		}
		// Pace against the clock, not the loop: a slow tick is caught up.
		if ahead := time.Duration(n/perTick)*tick - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
}

func vmRSS(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// TestFlood: hostile datagrams from 249 loopback sources for 10 s while
// softflowd exports a real capture from 127.0.0.1. The daemon stays up,
// its RSS under the bound, and every one of softflowd's records is stored.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("short: the flood takes 10 s")
	}
	needChdb(t)
	needCmd(t, "softflowd")
	e := readExpect(t, "softflowd-v9-dropbox")
	d := startDaemon(t, t.TempDir(),
		fmt.Sprintf("FLOWLENS_MEMORY_LIMIT=%d", floodGoLimit),
		"FLOWLENS_QUEUE_SIZE=256",
		// 127.0.0.192/26 is outside the allow-list; 8 sources exceed 200/s.
		"FLOWLENS_EXPORTER_ALLOW=127.0.0.0/25,127.0.0.128/26,::1",
		"FLOWLENS_EXPORTER_RATE_LIMIT=200",
	)
	pid := d.cmd.Process.Pid
	baseRSS, _, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak atomic.Int64
	var rssErr atomic.Value
	wg.Add(1)
	go func() { // RSS every 100 ms
		defer wg.Done()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			rss, _, err := vmRSS(pid)
			if err != nil {
				rssErr.Store(err)
				return
			}
			if rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	fs := &floodSender{}
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		fs.run(t, stop, d.netflow, d.sflow)
	}()
	// The real exporter, in the middle of the flood.
	time.Sleep(2 * time.Second)
	runSoftflowd(t, filepath.Join(corpus, "dpi", "public", "dropbox.pcap"), d.netflow, 9)
	select {
	case <-sendDone:
	case <-time.After(floodDuration + 5*time.Second):
		t.Error("sender did not stop")
	}
	close(stop)
	wg.Wait()
	if err, _ := rssErr.Load().(error); err != nil {
		t.Fatalf("daemon gone during the flood: %v\n%s", err, d.logText())
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", d.httpP))
	if err != nil {
		t.Fatalf("healthz after the flood: %v\n%s", err, d.logText())
	}
	resp.Body.Close()
	_, hwm, _ := vmRSS(pid)
	if p := max(peak.Load(), hwm); p > floodRSSBound {
		t.Errorf("RSS peak %d MiB over the bound %d MiB", p>>20, floodRSSBound>>20)
	}

	// Every record of the real exporter is stored, with its totals.
	real := "SELECT count(), sum(bytes), sum(packets) FROM flows WHERE exporter_address = toIPv6('127.0.0.1')"
	want := fmt.Sprintf("%d\t%d\t%d", e.DataRecords, e.BytesSum, e.PacketsSum)
	var got string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = d.query(real); got == want {
			break
		}
	}
	kept, _ := strconv.Atoi(strings.Fields(got + " 0")[0])
	if got != want {
		t.Errorf("real exporter: stored %q (count, bytes, packets), want %q", got, want)
	}

	// The hostile traffic was seen and accounted.
	m := func(name, label string) float64 { return d.metricBy(name, label) }
	received := d.metric("flowlens_collector_datagrams_received_total")
	kernel := d.metric("flowlens_collector_kernel_drops_total")
	notAllowed := m("flowlens_collector_datagrams_dropped_total", `reason="not_allowed"`)
	rateLimited := m("flowlens_collector_datagrams_dropped_total", `reason="rate_limited"`)
	queueFull := m("flowlens_collector_datagrams_dropped_total", `reason="queue_full"`)
	truncated := m("flowlens_collector_datagrams_dropped_total", `reason="truncated"`)
	decoded := d.metric("flowlens_decoder_datagrams_total")
	decErrs := d.metric("flowlens_decoder_errors_total")
	var errReasons []string
	for _, r := range []string{"truncated", "malformed", "unknown_version"} {
		errReasons = append(errReasons, fmt.Sprintf("%s %.0f", r, m("flowlens_decoder_errors_total", `reason="`+r+`"`)))
	}
	tplRejected := m("flowlens_decoder_template_events_total", `event="rejected"`)
	tplLearnt := m("flowlens_decoder_template_events_total", `event="learnt"`)
	waiting := d.metric("flowlens_decoder_waiting_for_template_total")
	stored := d.query("SELECT count() FROM flows")
	hostileRows := d.query("SELECT count() FROM flows WHERE exporter_address != toIPv6('127.0.0.1')")

	var kinds []string
	for k := range numKinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", kindNames[k], fs.sent[k].Load()))
	}
	t.Logf("hostile datagrams sent: %d (%s); send errors %d", fs.total.Load(), strings.Join(kinds, " "), fs.errs.Load())
	t.Logf("RSS: before %d MiB, peak sampled %d MiB, VmHWM %d MiB, bound %d MiB (Go soft limit %d MiB)",
		baseRSS>>20, peak.Load()>>20, hwm>>20, floodRSSBound>>20, floodGoLimit>>20)
	t.Logf("accounted: received %.0f, kernel drops %.0f; dropped not_allowed %.0f, rate_limited %.0f, queue_full %.0f, truncated %.0f; "+
		"decoded (known version) %.0f, decoder errors %.0f (%s), templates learnt %.0f rejected %.0f, data sets waiting for a template %.0f",
		received, kernel, notAllowed, rateLimited, queueFull, truncated, decoded, decErrs, strings.Join(errReasons, ", "), tplLearnt, tplRejected, waiting)
	t.Logf("real exporter: %d of %d records kept (%.1f%%); rows from hostile sources stored: %s; all rows %s",
		kept, e.DataRecords, 100*float64(kept)/float64(e.DataRecords), hostileRows, stored)

	if fs.total.Load() < floodRate { // at least a second's worth
		t.Errorf("only %d hostile datagrams sent", fs.total.Load())
	}
	if notAllowed == 0 || rateLimited == 0 || decErrs == 0 || tplRejected == 0 {
		t.Errorf("hostile traffic not counted: not_allowed %v, rate_limited %v, decoder errors %v, templates rejected %v",
			notAllowed, rateLimited, decErrs, tplRejected)
	}
}
