package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"flowlens/collector/pcap"
	"flowlens/internal/chdb"
	"flowlens/internal/pcapfile/pcapfiletest"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// These tests run the real binary with the embedded store and drive it
// with Debian's exporters (softflowd, pmacctd), the independent peers.

var flowlensBin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "flowlens-e2e")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		flowlensBin = filepath.Join(dir, "flowlens")
		if out, err := exec.Command("go", "build", "-o", flowlensBin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build flowlens: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

const corpus = "../../../shared/corpus"

func needChdb(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chdb.LibraryPath()); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("libchdb missing in CI (make test fetches it): %v", err)
		}
		t.Skipf("libchdb not found (%v): run `make chdb`", err)
	}
}

func needCmd(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI (make test installs it)", name)
		}
		t.Skipf("%s not installed", name)
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

type daemon struct {
	t                     *testing.T
	dir                   string
	netflow, sflow, httpP int
	cmd                   *exec.Cmd
	log                   *os.File
	env                   []string
	command               string // "run" unless set
}

func startDaemon(t *testing.T, dir string, extraEnv ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, dir: dir, netflow: freePort(t, "udp"), sflow: freePort(t, "udp"), httpP: freePort(t, "tcp"), env: extraEnv}
	d.start()
	t.Cleanup(func() { d.stop() })
	return d
}

func (d *daemon) start() {
	t := d.t
	t.Helper()
	log, err := os.OpenFile(filepath.Join(d.dir, "flowlens.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.log = log
	command := d.command
	if command == "" {
		command = "run"
	}
	d.cmd = exec.Command(flowlensBin, command)
	d.cmd.Env = append(os.Environ(),
		"FLOWLENS_DATA_DIR="+filepath.Join(d.dir, "data"),
		fmt.Sprintf("FLOWLENS_HTTP_LISTEN=127.0.0.1:%d", d.httpP),
		fmt.Sprintf("FLOWLENS_NETFLOW_LISTEN=127.0.0.1:%d", d.netflow),
		"FLOWLENS_IPFIX_LISTEN=",
		fmt.Sprintf("FLOWLENS_SFLOW_LISTEN=127.0.0.1:%d", d.sflow),
		"FLOWLENS_BATCH_INTERVAL=200ms",
	)
	d.cmd.Env = append(d.cmd.Env, d.env...)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", d.httpP))
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			d.stop()
			t.Fatalf("daemon did not start: %v\n%s", err, d.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "flowlens.log"))
	return string(b)
}

// stop sends SIGTERM and waits: the daemon must flush and exit 0.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Errorf("daemon exit: %v\n%s", err, d.logText())
		}
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		d.t.Errorf("daemon did not stop within 60s\n%s", d.logText())
	}
	d.cmd = nil
	d.log.Close()
}

func (d *daemon) query(sql string) string {
	d.t.Helper()
	u := fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?format=TSV", d.httpP)
	resp, err := http.Post(u, "text/plain", strings.NewReader(sql))
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		d.t.Fatalf("%s: %s", sql, b)
	}
	return strings.TrimSpace(string(b))
}

// metric reads name from /metrics, summed over its label sets.
func (d *daemon) metric(name string) float64 { return d.metricBy(name, "") }

// metricBy returns name's samples whose labels contain label (e.g.
// `reason="not_allowed"`; "" for all), summed.
func (d *daemon) metricBy(name, label string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", d.httpP))
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		match := strings.HasPrefix(line, name+"{") && strings.Contains(line, label)
		if label == "" {
			match = match || strings.HasPrefix(line, name+" ")
		}
		if match {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// metricNames lists the flowlens_ metric families exported.
func (d *daemon) metricNames() []string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", d.httpP))
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var names []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "flowlens_") {
			names = append(names, f[2])
		}
	}
	if len(names) < 10 {
		d.t.Fatalf("only %d flowlens metrics exported", len(names))
	}
	return names
}

// metricsText returns the flowlens_ samples the daemon exports, for
// failure messages: a short count then says which stage lost the rows.
func (d *daemon) metricsText() string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", d.httpP))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "flowlens_") && !strings.Contains(line, "_bucket{") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// waitStored waits until the store holds want rows and the count is stable.
func (d *daemon) waitStored(want int) string {
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got = d.query("SELECT count() FROM flows")
		if got == strconv.Itoa(want) {
			time.Sleep(300 * time.Millisecond)
			return d.query("SELECT count() FROM flows")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return got
}

type expect struct {
	DataRecords int    `json:"data_records"`
	BytesSum    uint64 `json:"bytes_sum"`
	PacketsSum  uint64 `json:"packets_sum"`
	FrameXRate  uint64 `json:"frame_length_x_sampling_rate_sum"`
	Protocol    string `json:"export_protocol"`
}

func readExpect(t *testing.T, name string) expect {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpus, "flows", name+".expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e expect
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func pcapPackets(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := pcap.ReadUDP(f, func(pcap.Datagram) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Packets)
}

// runSoftflowd makes softflowd read input and export everything to port.
// softflowd 1.1.0 does not exit at the end of a file: poll its control
// socket until every packet is processed, then shut it down (which expires
// and exports all flows).
func runSoftflowd(t *testing.T, input string, port, version int) {
	work := t.TempDir()
	in := filepath.Join(work, "in.pcap")
	abs, _ := filepath.Abs(input)
	if err := os.Symlink(abs, in); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(work, "sf.ctl")
	cmd := exec.Command("softflowd", "-D", "-r", "in.pcap", "-n", fmt.Sprintf("127.0.0.1:%d", port),
		"-v", strconv.Itoa(version), "-p", filepath.Join(work, "sf.pid"), "-c", ctl)
	cmd.Dir = work
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	want := fmt.Sprintf("Packets processed: %d\n", pcapPackets(t, input))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return // exited by itself at the end of the file, flows exported
		default:
		}
		s, _ := exec.Command("softflowctl", "-c", ctl, "statistics").CombinedOutput()
		if strings.Contains(string(s), want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = exec.Command("softflowctl", "-c", ctl, "shutdown").Run()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("softflowd did not stop: %s", out.String())
	}
}

func waitCmd(t *testing.T, cmd *exec.Cmd, out *strings.Builder) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish: %s", cmd.Path, out.String())
	}
}

// runPmacctd makes pmacctd read input and export with plugin nfprobe
// (version 9 or 10) or sfprobe (version 5, sampling rate 1).
func runPmacctd(t *testing.T, input string, port, version int) {
	work := t.TempDir()
	abs, _ := filepath.Abs(input)
	conf := fmt.Sprintf("daemonize: false\npcap_savefile: %s\npcap_savefile_wait: false\naggregate: src_host, dst_host, src_port, dst_port, proto, tos\n", abs)
	if version == 5 {
		conf += fmt.Sprintf("plugins: sfprobe\nsfprobe_receiver: 127.0.0.1:%d\nsfprobe_agentip: 127.0.0.1\nsampling_rate: 1\n", port)
	} else {
		conf += fmt.Sprintf("plugins: nfprobe\nnfprobe_receiver: 127.0.0.1:%d\nnfprobe_version: %d\n", port, version)
	}
	path := filepath.Join(work, "pmacctd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("pmacctd", "-f", path)
	cmd.Dir = work
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitCmd(t, cmd, &out)
}

// relay forwards an exporter's datagrams to the daemon and keeps a copy,
// so a test can have tshark read exactly what this run exported.
type relay struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  [][]byte
	last time.Time
	done chan struct{}
}

func startRelay(t *testing.T, to int) *relay {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(8 << 20)
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to}
	r := &relay{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.got = append(r.got, append([]byte(nil), buf[:n]...))
			r.last = time.Now()
			r.mu.Unlock()
			_, _ = conn.WriteToUDP(buf[:n], dst)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-r.done })
	return r
}

func (r *relay) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

// datagrams waits until nothing has arrived for half a second (at most 10 s)
// and returns what was relayed.
func (r *relay) datagrams() [][]byte {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r.mu.Lock()
		quiet := len(r.got) > 0 && time.Since(r.last) > 500*time.Millisecond
		r.mu.Unlock()
		if quiet {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.got...)
}

// tsharkSFlow writes the relayed datagrams to a pcap and reads their flow
// samples with tshark, as the corpus's make-expect.sh does.
func (r *relay) tsharkSFlow(t *testing.T) expect {
	t.Helper()
	needCmd(t, "tshark")
	var frames [][]byte
	for _, d := range r.datagrams() {
		buf := gopacket.NewSerializeBuffer()
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1)}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 6343}
		_ = udp.SetNetworkLayerForChecksum(ip)
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(d)); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, buf.Bytes())
	}
	path := filepath.Join(t.TempDir(), "export.pcap")
	if err := os.WriteFile(path, pcapfiletest.Classic(101, 65535, frames...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tshark", "-r", path, "-d", "udp.port==6343,sflow", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "sflow_245.sampletype", "-e", "sflow_245.header.frame_length", "-e", "sflow.flow_sample.sampling_rate").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	e := expect{Protocol: "sflow"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			continue
		}
		lengths, rates := strings.Split(f[1], ","), strings.Split(f[2], ",")
		for i, l := range lengths {
			if l == "" {
				continue
			}
			n, _ := strconv.ParseUint(l, 10, 64)
			rate := uint64(1)
			if i < len(rates) && rates[i] != "" {
				rate, _ = strconv.ParseUint(rates[i], 10, 64)
			}
			e.DataRecords++
			e.PacketsSum++
			e.BytesSum += n
			e.FrameXRate += n * rate
		}
	}
	if e.DataRecords == 0 {
		t.Fatalf("tshark read no flow samples in %d relayed datagrams", len(frames))
	}
	return e
}

// TestExporters: each Debian exporter reads a capture and exports it to a
// running daemon on loopback; the rows stored match the exporter's totals
// (tshark's reading of the same exporter's output, in the corpus).
func TestExporters(t *testing.T) {
	needChdb(t)
	type tc struct {
		name     string
		exporter string
		version  int
		input    string
		expect   string // corpus expect file of this exporter on this input
	}
	var cases []tc
	for _, in := range []string{"dropbox", "http_ipv6", "kerberos"} {
		cases = append(cases,
			tc{"softflowd-v9-" + in, "softflowd", 9, in, "softflowd-v9-" + in},
			tc{"softflowd-ipfix-" + in, "softflowd", 10, in, "softflowd-ipfix-" + in},
			tc{"pmacctd-nfprobe-v9-" + in, "pmacctd", 9, in, "pmacctd-nfprobe-v9-" + in},
			tc{"pmacctd-nfprobe-ipfix-" + in, "pmacctd", 10, in, "pmacctd-nfprobe-ipfix-" + in},
			tc{"pmacctd-sfprobe-" + in, "pmacctd", 5, in, "pmacctd-sfprobe-" + in},
		)
	}
	// NetFlow v5 carries IPv4 only: kerberos is all IPv4, so softflowd's v5
	// export must hold what its v9 export holds.
	cases = append(cases, tc{"softflowd-v5-kerberos", "softflowd", 5, "kerberos", "softflowd-v9-kerberos"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && !strings.HasSuffix(c.name, "kerberos") {
				t.Skip("short: kerberos cases only")
			}
			needCmd(t, c.exporter)
			e := readExpect(t, c.expect)
			d := startDaemon(t, t.TempDir())
			input := filepath.Join(corpus, "dpi", "public", c.input+".pcap")
			port := d.netflow
			if c.version == 5 && c.exporter == "pmacctd" {
				port = d.sflow
			}
			if c.exporter == "softflowd" {
				runSoftflowd(t, input, port, c.version)
			} else if e.Protocol == "sflow" {
				// pmacctd's sfprobe is not deterministic: a run may send a
				// counter sample in place of a flow sample, or miss a few
				// packets. The oracle is tshark reading this run's export,
				// recorded by a relay between pmacctd and the daemon.
				r := startRelay(t, port)
				runPmacctd(t, input, r.port(), c.version)
				run := r.tsharkSFlow(t)
				if run != e {
					t.Logf("pmacctd sfprobe sent %+v this run; the corpus capture holds %+v", run, e)
				}
				e = run
			} else {
				runPmacctd(t, input, port, c.version)
			}
			wantBytes := e.BytesSum
			if e.Protocol == "sflow" {
				wantBytes = e.FrameXRate
			}
			if got := d.waitStored(e.DataRecords); got != strconv.Itoa(e.DataRecords) {
				t.Fatalf("stored %s rows, want %d\n%s\n%s", got, e.DataRecords, d.logText(), d.metricsText())
			}
			got := d.query("SELECT sum(bytes), sum(packets), uniqExact(flow_source), any(flow_source) FROM flows")
			source := map[int]string{5: "netflow_v5", 9: "netflow_v9", 10: "ipfix"}[c.version]
			if e.Protocol == "sflow" {
				source = "sflow_v5"
			}
			want := fmt.Sprintf("%d\t%d\t1\t%s", wantBytes, e.PacketsSum, source)
			if got != want {
				t.Fatalf("bytes, packets, sources = %q, want %q", got, want)
			}
			if dropped := d.metric("flowlens_store_dropped_rows_total") + d.metric("flowlens_collector_datagrams_dropped_total") + d.metric("flowlens_decoder_errors_total"); dropped != 0 {
				t.Fatalf("%v datagrams or rows dropped or rejected", dropped)
			}
		})
	}
}

// TestClassicQueryAndRestart: the README's first query runs verbatim; rows
// accepted but not yet inserted are flushed on SIGTERM; a restart keeps them.
func TestClassicQueryAndRestart(t *testing.T) {
	needChdb(t)
	needCmd(t, "softflowd")
	dir := t.TempDir()
	// A batch interval longer than the test: only the SIGTERM flush stores.
	d := startDaemon(t, dir, "FLOWLENS_BATCH_INTERVAL=1h")
	runSoftflowd(t, filepath.Join(corpus, "dpi", "public", "kerberos.pcap"), d.netflow, 9)
	e := readExpect(t, "softflowd-v9-kerberos")
	deadline := time.Now().Add(20 * time.Second)
	for d.metric("flowlens_decoder_flows_total") < float64(e.DataRecords) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := d.query("SELECT count() FROM flows"); got != "0" {
		t.Fatalf("rows stored before the batch interval: %s", got)
	}
	d.stop()
	d.start()
	if got := d.query("SELECT count(), sum(bytes) FROM flows"); got != fmt.Sprintf("%d\t%d", e.DataRecords, e.BytesSum) {
		t.Fatalf("after restart: %q", got)
	}
	classic := "SELECT protocol, sum(bytes) FROM flows WHERE timestamp > now() - 3600 GROUP BY protocol ORDER BY sum(bytes) DESC LIMIT 5;"
	got := d.query(classic)
	lines := strings.Split(got, "\n")
	if len(lines) < 2 {
		t.Fatalf("classic query: %q", got)
	}
	prev := uint64(1 << 63)
	for _, l := range lines {
		f := strings.Split(l, "\t")
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || v > prev {
			t.Fatalf("classic query not in descending order: %q", got)
		}
		prev = v
	}
	// kerberos.pcap is Kerberos traffic on port 88: the port guess says so.
	if !strings.HasPrefix(lines[0], "Kerberos\t") {
		t.Fatalf("classic query top protocol: %q", got)
	}
	// `flowlens query` goes through the daemon while it holds the store.
	out, err := exec.Command(flowlensBin, "query", "--http", fmt.Sprintf("127.0.0.1:%d", d.httpP), "--format", "CSV", "SELECT count() FROM flows").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(e.DataRecords) {
		t.Fatalf("flowlens query: %v %s", err, out)
	}
	// Every flowlens metric the daemon exports is documented.
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range d.metricNames() {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("metric %s is not in docs/metrics.md", name)
		}
	}
	// Writes are refused on the SQL endpoint.
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query", d.httpP), "text/plain", strings.NewReader("DROP TABLE flows"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("DROP TABLE answered %d", resp.StatusCode)
	}
}

// TestDecodeCommand: `flowlens decode` prints one JSON object per flow,
// keys = column names, IPv4 dotted; it needs no libchdb.
func TestDecodeCommand(t *testing.T) {
	cmd := exec.Command(flowlensBin, "decode", filepath.Join(corpus, "flows", "softflowd-v9-kerberos.pcap"))
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH=/nonexistent/libchdb.so")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	e := readExpect(t, "softflowd-v9-kerberos")
	if len(lines) != e.DataRecords {
		t.Fatalf("%d lines, want %d", len(lines), e.DataRecords)
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`).MatchString(fmt.Sprint(row["src_addr"])) || row["flow_source"] != "netflow_v9" {
		t.Fatalf("first row: %s", lines[0])
	}
}

// TestCheckConfig: invalid values fail at start naming the variable.
func TestCheckConfig(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"FLOWLENS_WORKERS=0", "FLOWLENS_WORKERS"},
		{"FLOWLENS_BATCH_INTERVAL=soon", "FLOWLENS_BATCH_INTERVAL"},
		{"FLOWLENS_NETFLOW_LISTEN=nonsense", "FLOWLENS_NETFLOW_LISTEN"},
		{"FLOWLENS_LOG_LEVEL=loud", "FLOWLENS_LOG_LEVEL"},
		{"FLOWLENS_TTL_DAYS=-1", "FLOWLENS_TTL_DAYS"},
	} {
		cmd := exec.Command(flowlensBin, "run", "--check")
		cmd.Env = append(os.Environ(), c.env)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: err %v, output %q", c.env, err, out)
		}
	}
	out, err := exec.Command(flowlensBin, "run", "--check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration ok") {
		t.Fatalf("default config: %v %s", err, out)
	}
}

// replayPcap sends the UDP payloads of a corpus capture, datagrams from..to
// (0-based, to excluded; to < 0 means all), from one new socket.
func replayPcap(t *testing.T, name string, port, from, to int) {
	t.Helper()
	f, err := os.Open(filepath.Join(corpus, "flows", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	i := 0
	if _, err := pcap.ReadUDP(f, func(d pcap.Datagram) error {
		defer func() { i++ }()
		if i < from || (to >= 0 && i >= to) {
			return nil
		}
		_, err := c.Write(d.Payload)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestTemplatesSurviveRestart: a template learnt before a restart decodes
// data sent after it, even from a new source port (the exporter restarted
// too); without the saved state the same data waits for its template.
func TestTemplatesSurviveRestart(t *testing.T) {
	needChdb(t)
	const capture = "akvorado-nfv9-template+data.pcap" // datagram 0: template; then data
	e := readExpect(t, "akvorado-nfv9-template+data")

	fresh := startDaemon(t, t.TempDir())
	replayPcap(t, capture, fresh.netflow, 1, -1)
	deadline := time.Now().Add(10 * time.Second)
	for fresh.metric("flowlens_decoder_waiting_for_template_total") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := fresh.metric("flowlens_decoder_flows_total"); got != 0 {
		t.Fatalf("data without template decoded %v flows", got)
	}
	fresh.stop()

	d := startDaemon(t, t.TempDir())
	replayPcap(t, capture, d.netflow, 0, 1)
	deadline = time.Now().Add(10 * time.Second)
	for d.metric("flowlens_decoder_templates") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	d.stop()
	if _, err := os.Stat(filepath.Join(d.dir, "data", "templates.state")); err != nil {
		t.Fatalf("no state saved: %v", err)
	}
	d.start()
	replayPcap(t, capture, d.netflow, 1, -1)
	if got := d.waitStored(e.DataRecords); got != strconv.Itoa(e.DataRecords) {
		t.Fatalf("after restart %s rows, want %d\n%s", got, e.DataRecords, d.logText())
	}
	var views []map[string]any
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/templates", d.httpP))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&views); err != nil || len(views) == 0 {
		t.Fatalf("/api/v1/templates: %v %v", views, err)
	}
}
