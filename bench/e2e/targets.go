package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// receiver is one collector under test. A fresh receiver is started for
// every step, so that no backlog or background work of one step (merges,
// file rotation) is charged to the next.
type receiver interface {
	name() string
	// start launches the receiver listening on 127.0.0.1:udpPort, keeping
	// its files in dir, and returns when it is ready to receive.
	start(ctx context.Context, dir string, udpPort int) error
	// finish waits until the receiver has stored what it will store of the
	// sent records, stops it and returns how many records it stored.
	finish(ctx context.Context, sent int64) (int64, error)
	// kill ends the receiver if it still runs; safe to call twice.
	kill()
}

// base holds what all receivers share.
type base struct {
	b    *bench
	cmd  *exec.Cmd
	dir  string
	port int
	// ticks is the CPU time (clock ticks) the receiver's processes used,
	// read when they are stopped.
	ticks int64
}

// cpuTicks is the CPU time the receiver used in its last step.
func (r *base) cpuTicks() int64 { return r.ticks }

func (r *base) launch(ctx context.Context, dir string, udpPort int, env []string, argv ...string) error {
	r.dir, r.port = dir, udpPort
	cmd, err := r.b.procs.start(r.b.cfg.recvCPUs, filepath.Join(dir, "receiver.log"), env, argv...)
	if err != nil {
		return err
	}
	r.cmd = cmd
	pid := cmd.Process.Pid
	return waitFor(ctx, r.b.cfg.startupTimeout, fmt.Sprintf("%s to bind udp port %d", argv[0], udpPort), func() bool {
		return !running(pid) || udpBound(udpPort)
	})
}

// alive reports whether the receiver runs (a child that exited but was not
// waited for yet is a zombie: it still answers kill 0, so /proc is read).
func (r *base) alive() bool { return r.cmd != nil && running(r.cmd.Process.Pid) }

func (r *base) stop(grace time.Duration) error {
	if r.cmd == nil {
		return nil
	}
	if t, err := cpuTicks(r.cmd.Process.Pid); err == nil {
		r.ticks += t
	}
	err := r.b.procs.stop(r.cmd, syscall.SIGTERM, grace)
	r.cmd = nil
	return err
}

func (r *base) kill() { _ = r.stop(5 * time.Second) }

// logTail returns the last lines of the receiver log, for error messages.
func (r *base) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "receiver.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}

// ---- goflow2: binary protobuf to a file ----

type goflow2 struct {
	base
	out string
}

func (g *goflow2) name() string { return "goflow2" }

func (g *goflow2) start(ctx context.Context, dir string, udpPort int) error {
	g.out = filepath.Join(dir, "flows.bin")
	httpPort, err := freePort("tcp")
	if err != nil {
		return err
	}
	// An empty separator leaves a clean stream of varint-delimited
	// messages (the file transport appends "\n" after each by default).
	err = g.launch(ctx, dir, udpPort, nil, g.b.cfg.goflow2,
		"-listen", fmt.Sprintf("netflow://127.0.0.1:%d", udpPort),
		"-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"-format", "bin", "-transport", "file", "-transport.file", g.out,
		"-transport.file.sep=", "-loglevel", "warn")
	if err == nil && !g.alive() {
		err = errors.New("exited at start")
	}
	if err != nil {
		return fmt.Errorf("goflow2: %w\n%s", err, g.logTail())
	}
	return nil
}

func (g *goflow2) finish(ctx context.Context, sent int64) (int64, error) {
	// The file transport writes each message as it is produced, so the file
	// stops growing once the queue has drained.
	_, err := settle(ctx, math.MaxInt64, g.b.cfg.quiet, g.b.cfg.settleTimeout, func() (int64, error) {
		st, err := os.Stat(g.out)
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	})
	if err != nil {
		return 0, err
	}
	if err := g.stop(30 * time.Second); err != nil {
		return 0, fmt.Errorf("goflow2 stop: %w", err)
	}
	return countDelimited(g.out)
}

// countDelimited counts the messages of a stream of protobuf messages, each
// prefixed by its length as a varint (protodelim, what goflow2's bin format
// writes). A truncated last message is not counted.
func countDelimited(path string) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var n int64
	for {
		size, err := readUvarint(r)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%s: message %d: %w", path, n, err)
		}
		if size > 1<<20 {
			return n, fmt.Errorf("%s: message %d: implausible length %d (not a delimited stream?)", path, n, size)
		}
		if _, err := r.Discard(int(size)); err != nil {
			return n, nil // truncated tail
		}
		n++
	}
}

func readUvarint(r *bufio.Reader) (uint64, error) {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF && shift > 0 {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("varint overflow")
}

// ---- nfcapd: nfdump's collector, nfcapd files ----

type nfcapd struct{ base }

func (n *nfcapd) name() string { return "nfcapd" }

func (n *nfcapd) start(ctx context.Context, dir string, udpPort int) error {
	flows := filepath.Join(dir, "flows")
	if err := os.MkdirAll(flows, 0o755); err != nil {
		return err
	}
	// A long rotation interval: one file per step, written at stop.
	err := n.launch(ctx, dir, udpPort, nil, n.b.cfg.nfcapd,
		"-w", flows, "-b", "127.0.0.1", "-p", strconv.Itoa(udpPort), "-t", "3600", "-I", "bench")
	if err == nil && !n.alive() {
		err = errors.New("exited at start")
	}
	if err != nil {
		return fmt.Errorf("nfcapd: %w\n%s", err, n.logTail())
	}
	return nil
}

func (n *nfcapd) finish(ctx context.Context, sent int64) (int64, error) {
	// nfcapd keeps the current file's blocks in memory until rotation or
	// exit; it is done when it stops using CPU.
	pid := n.cmd.Process.Pid
	_, err := settle(ctx, math.MaxInt64, n.b.cfg.quiet, n.b.cfg.settleTimeout, func() (int64, error) {
		return cpuTicks(pid)
	})
	if err != nil {
		return 0, err
	}
	if err := n.stop(60 * time.Second); err != nil {
		return 0, fmt.Errorf("nfcapd stop: %w", err)
	}
	out, err := exec.CommandContext(ctx, n.b.cfg.nfdump, "-R", filepath.Join(n.dir, "flows"), "-I").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("nfdump -I: %w\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^Flows: (\d+)$`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("nfdump -I: no 'Flows:' line in\n%s", out)
	}
	return strconv.ParseInt(string(m[1]), 10, 64)
}

// ---- flowlens: flowlens run into the embedded store ----

type flowlens struct {
	base
	metricsURL string
	// mode "" is run into the embedded store; "kafka" is run through a
	// Kafka broker (tools/kfake) and the in-process lander; "collect" is
	// collect producing to the broker.
	mode    string
	counter string // the metric of stored (or produced) records
	kafka   *exec.Cmd
	broker  string
}

// startKafka starts tools/kfake on the receiver's cpus: the broker is part
// of the chain measured.
func (f *flowlens) startKafka(ctx context.Context, dir string) error {
	port, err := freePort("tcp")
	if err != nil {
		return err
	}
	f.broker = fmt.Sprintf("127.0.0.1:%d", port)
	cmd, err := f.b.procs.start(f.b.cfg.recvCPUs, filepath.Join(dir, "kfake.log"), nil, f.b.cfg.kfake, "-port", strconv.Itoa(port))
	if err != nil {
		return err
	}
	f.kafka = cmd
	return waitFor(ctx, f.b.cfg.startupTimeout, "kfake to listen", func() bool {
		c, err := net.DialTimeout("tcp", f.broker, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (f *flowlens) stopKafka() {
	if f.kafka == nil {
		return
	}
	if t, err := cpuTicks(f.kafka.Process.Pid); err == nil {
		f.ticks += t
	}
	_ = f.b.procs.stop(f.kafka, syscall.SIGTERM, 10*time.Second)
	f.kafka = nil
}

func (f *flowlens) kill() {
	f.base.kill()
	f.stopKafka()
}

func (f *flowlens) name() string {
	switch f.mode {
	case "kafka":
		return "flowlens-kafka"
	case "collect":
		return "flowlens-collect"
	}
	return "flowlens"
}

func (f *flowlens) start(ctx context.Context, dir string, udpPort int) error {
	f.ticks = 0
	httpPort, err := freePort("tcp")
	if err != nil {
		return err
	}
	f.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)
	command, counter := "run", "flowlens_store_rows_total"
	var kafkaEnv []string
	if f.mode != "" {
		if err := f.startKafka(ctx, dir); err != nil {
			return err
		}
		kafkaEnv = []string{"FLOWLENS_KAFKA_BROKERS=" + f.broker}
		if f.mode == "collect" {
			command, counter = "collect", "flowlens_kafka_produced_total"
		}
	}
	f.counter = counter
	env := []string{
		"FLOWLENS_DATA_DIR=" + filepath.Join(dir, "data"),
		fmt.Sprintf("FLOWLENS_HTTP_LISTEN=127.0.0.1:%d", httpPort),
		fmt.Sprintf("FLOWLENS_NETFLOW_LISTEN=127.0.0.1:%d", udpPort),
		"FLOWLENS_IPFIX_LISTEN=",
		"FLOWLENS_SFLOW_LISTEN=",
		"CHDB_LIB_PATH=" + f.b.cfg.chdbLib,
	}
	env = append(env, kafkaEnv...)
	err = f.launch(ctx, dir, udpPort, env, f.b.cfg.flowlens, command)
	if err == nil {
		err = waitFor(ctx, f.b.cfg.startupTimeout, "flowlens /metrics", func() bool {
			_, err := f.rows()
			return err == nil || !f.alive()
		})
	}
	if err == nil && !f.alive() {
		err = errors.New("exited at start")
	}
	if err != nil {
		return fmt.Errorf("flowlens: %w\n%s", err, f.logTail())
	}
	return nil
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (f *flowlens) scrape() (string, error) {
	resp, err := httpClient.Get(f.metricsURL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", f.metricsURL, resp.Status)
	}
	return string(b), nil
}

// rows reads flowlens_store_rows_total, the rows durably inserted (for
// collect: flowlens_kafka_produced_total, the records Kafka acknowledged).
func (f *flowlens) rows() (int64, error) {
	text, err := f.scrape()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, f.counter+" "); ok {
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(x), err
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", f.counter)
}

func (f *flowlens) finish(ctx context.Context, sent int64) (int64, error) {
	// Rows are inserted in batches on a timer, so the quiet period must be
	// longer than the batch interval (flowlensQuiet).
	n, err := settle(ctx, sent, f.b.cfg.flowlensQuiet, f.b.cfg.settleTimeout, f.rows)
	if err != nil {
		return 0, fmt.Errorf("flowlens: %w\n%s", err, f.logTail())
	}
	// Keep the counters of the step for the reader of a lossy result.
	if text, err := f.scrape(); err == nil {
		_ = os.WriteFile(filepath.Join(f.dir, "metrics.txt"), []byte(text), 0o644)
	}
	err = f.stop(60 * time.Second)
	f.stopKafka()
	if err != nil {
		return n, fmt.Errorf("flowlens stop: %w", err)
	}
	return n, nil
}

// freePort asks the kernel for a free loopback port.
func freePort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}
