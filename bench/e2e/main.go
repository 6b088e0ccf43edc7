// Command e2e is the driver of bench/e2e.sh: for each receiver (goflow2,
// nfcapd, flowlens) it finds the highest rate of NetFlow records per second
// that the receiver stores without loss, sending with tools/flowgen over
// loopback, and prints the figures as ratios against goflow2 measured in the
// same run. Run it through bench/e2e.sh, which installs and builds what it
// needs and passes the paths in the environment.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	// Programs.
	flowgen, goflow2, nfcapd, nfdump, flowlens, chdbLib, kfake string

	workDir                   string
	proto                     string
	records, sockets          int
	step                      time.Duration // sending time of one step
	startRate, maxRate        float64
	factor                    float64
	searchSteps, maxRampSteps int
	retries                   int
	lossMax                   float64
	genShortfall              float64 // achieved/target below 1-this: generator-limited
	quiet, flowlensQuiet      time.Duration
	settleTimeout             time.Duration
	startupTimeout            time.Duration
	genCPUs, recvCPUs         string
	keep                      bool
	busyMax                   float64       // machine busier than this before a step: wait
	idleTimeout               time.Duration // longest wait for the machine to quieten
}

// env reads the settings; every one can be set, none has to be.
func loadConfig(quick bool) (config, error) {
	var errs []error
	str := func(name, def string) string {
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		return def
	}
	num := func(name string, def float64) float64 {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return def
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || x < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a number >= 0", name, v))
		}
		return x
	}
	dur := func(name string, def time.Duration) time.Duration {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			// Plain numbers are seconds.
			x, nerr := strconv.ParseFloat(v, 64)
			if nerr != nil || x <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 5s or 500ms", name, v))
			}
			d = time.Duration(x * float64(time.Second))
		}
		return d
	}

	step, search, ramp := 5*time.Second, 4, 12
	if quick {
		step, search, ramp = time.Second, 1, 4
	}
	genCPUs, recvCPUs := "", ""
	if runtime.NumCPU() >= 2 {
		genCPUs, recvCPUs = "0", "1"
	}
	c := config{
		flowgen:        str("FLOWGEN", "flowgen"),
		goflow2:        str("GOFLOW2", "goflow2"),
		nfcapd:         str("NFCAPD", "nfcapd"),
		nfdump:         str("NFDUMP", "nfdump"),
		flowlens:       str("FLOWLENS", "bin/flowlens"),
		chdbLib:        str("CHDB_LIB_PATH", ""),
		kfake:          str("KFAKE", "kfake"),
		workDir:        str("BENCH_WORKDIR", ""),
		proto:          str("BENCH_PROTO", "v9"),
		records:        int(num("BENCH_RECORDS_PER_DATAGRAM", 30)),
		sockets:        int(num("BENCH_SOCKETS", 1)),
		step:           dur("BENCH_STEP", step),
		startRate:      num("BENCH_START_RATE", 100_000),
		maxRate:        num("BENCH_MAX_RATE", 20_000_000),
		factor:         num("BENCH_RAMP_FACTOR", 2),
		searchSteps:    int(num("BENCH_SEARCH_STEPS", float64(search))),
		maxRampSteps:   int(num("BENCH_RAMP_STEPS", float64(ramp))),
		retries:        int(num("BENCH_RETRIES", 1)),
		lossMax:        num("BENCH_LOSS_MAX", 0.001),
		genShortfall:   num("BENCH_GEN_SHORTFALL", 0.03),
		quiet:          dur("BENCH_QUIET", time.Second),
		flowlensQuiet:  dur("BENCH_FLOWLENS_QUIET", 5*time.Second),
		settleTimeout:  dur("BENCH_SETTLE_TIMEOUT", 60*time.Second),
		startupTimeout: dur("BENCH_STARTUP_TIMEOUT", 60*time.Second),
		genCPUs:        str("BENCH_GEN_CPUS", genCPUs),
		recvCPUs:       str("BENCH_RECV_CPUS", recvCPUs),
		keep:           str("BENCH_KEEP", "") == "1",
		busyMax:        num("BENCH_BUSY_MAX", 0.15),
		idleTimeout:    dur("BENCH_IDLE_TIMEOUT", 120*time.Second),
	}
	switch {
	case c.step <= 0 || c.step > 5*time.Minute:
		errs = append(errs, fmt.Errorf("BENCH_STEP=%s: want (0, 5m]", c.step))
	case c.factor <= 1:
		errs = append(errs, fmt.Errorf("BENCH_RAMP_FACTOR=%g: want > 1", c.factor))
	case c.startRate < 1000 || c.startRate > c.maxRate:
		errs = append(errs, fmt.Errorf("BENCH_START_RATE=%g: want in [1000, BENCH_MAX_RATE=%g]", c.startRate, c.maxRate))
	case c.maxRampSteps < 1 || c.maxRampSteps > 40 || c.searchSteps > 20:
		errs = append(errs, errors.New("BENCH_RAMP_STEPS must be in [1, 40] and BENCH_SEARCH_STEPS in [0, 20]"))
	case c.retries > 5:
		errs = append(errs, errors.New("BENCH_RETRIES must be in [0, 5]"))
	case c.lossMax >= 1:
		errs = append(errs, errors.New("BENCH_LOSS_MAX is a fraction: want [0, 1)"))
	}
	if c.workDir == "" {
		errs = append(errs, errors.New("BENCH_WORKDIR must be set (e2e.sh sets it)"))
	}
	return c, errors.Join(errs...)
}

type bench struct {
	cfg   config
	procs *procs
	step  int
}

// genResult is flowgen's JSON line.
type genResult struct {
	Datagrams    int64   `json:"datagrams"`
	Records      int64   `json:"records"`
	SendErrors   int64   `json:"send_errors"`
	ElapsedS     float64 `json:"elapsed_s"`
	AchievedRate float64 `json:"achieved_rate"`
	LateTicks    int64   `json:"late_ticks"`
}

type stepResult struct {
	Target       string  `json:"target"`
	Rate         float64 `json:"rate"`
	Sent         int64   `json:"sent"`
	Received     int64   `json:"received"`
	Loss         float64 `json:"loss"`
	AchievedRate float64 `json:"achieved_rate"`
	GenLimited   bool    `json:"generator_limited"`
	BusyBefore   float64 `json:"busy_before"`       // machine cpu busy fraction just before the step
	CPUPerRecord float64 `json:"cpu_us_per_record"` // receiver cpu time (all its processes) per stored record, µs
	Error        string  `json:"error,omitempty"`
}

func (s stepResult) ok(lossMax float64) bool {
	return s.Error == "" && !s.GenLimited && s.Loss < lossMax
}

// targetResult is the outcome of the search for one receiver.
type targetResult struct {
	Target       string       `json:"target"`
	LossFree     float64      `json:"loss_free_rate"`      // highest target rate without loss, 0 if none
	LossFreeSent float64      `json:"loss_free_achieved"`  // rate the generator actually achieved there
	FirstLossy   float64      `json:"first_lossy_rate"`    // lowest rate with loss, 0 if none found
	LossAtLossy  float64      `json:"loss_at_first_lossy"` // loss fraction there
	Ceiling      string       `json:"ceiling,omitempty"`   // why the ramp stopped without loss
	Steps        []stepResult `json:"steps"`
	Error        string       `json:"error,omitempty"`
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times on Linux.
const clockTicks = 100

func main() {
	quick := false
	var targets []string
	for _, a := range os.Args[1:] {
		switch a {
		case "-quick", "--quick":
			quick = true
		case "goflow2", "nfcapd", "flowlens", "flowlens-kafka", "flowlens-collect":
			targets = append(targets, a)
		default:
			fmt.Fprintf(os.Stderr, "e2e: unknown argument %q (accepted: --quick, goflow2, nfcapd, flowlens, flowlens-kafka, flowlens-collect)\n", a)
			os.Exit(2)
		}
	}
	if len(targets) == 0 {
		targets = []string{"goflow2", "nfcapd", "flowlens"}
	}
	cfg, err := loadConfig(quick)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	b := &bench{cfg: cfg, procs: newProcs(filepath.Join(cfg.workDir, "pids"))}
	code := b.run(ctx, targets)
	b.procs.killAll()
	os.Exit(code)
}

func (b *bench) run(ctx context.Context, targets []string) int {
	c := b.cfg
	fmt.Printf("e2e: proto=%s records/datagram=%d sockets=%d step=%s loss<%.2f%% generator cpus=%q receiver cpus=%q workdir=%s\n",
		c.proto, c.records, c.sockets, c.step, c.lossMax*100, c.genCPUs, c.recvCPUs, c.workDir)
	var results []targetResult
	failed := false
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		var r receiver
		switch t {
		case "goflow2":
			r = &goflow2{base: base{b: b}}
		case "nfcapd":
			r = &nfcapd{base: base{b: b}}
		case "flowlens":
			r = &flowlens{base: base{b: b}}
		case "flowlens-kafka":
			r = &flowlens{base: base{b: b}, mode: "kafka"}
		case "flowlens-collect":
			r = &flowlens{base: base{b: b}, mode: "collect"}
		}
		res := b.search(ctx, r)
		if res.Error != "" {
			failed = true
			fmt.Printf("e2e: %s: %s\n", t, res.Error)
		}
		results = append(results, res)
	}
	b.report(results)
	if ctx.Err() != nil {
		fmt.Println("e2e: interrupted")
		return 130
	}
	if failed {
		return 1
	}
	return 0
}

// roundRate keeps the rates readable: 3 significant digits.
func roundRate(x float64) float64 {
	if x <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(x))-2)
	return math.Round(x/p) * p
}

// search ramps the rate up by factor until the first lossy step, then
// bisects between the last loss-free and the first lossy rate.
func (b *bench) search(ctx context.Context, r receiver) targetResult {
	c := b.cfg
	res := targetResult{Target: r.name()}
	good, bad := 0.0, 0.0
	try := func(rate float64) (stepResult, bool) {
		var s stepResult
		for attempt := 0; attempt <= c.retries; attempt++ {
			s = b.runStep(ctx, r, rate)
			res.Steps = append(res.Steps, s)
			// A lossy or generator-limited step is tried again: on a shared
			// machine one preemption of the generator or the receiver is
			// enough to spoil a step.
			if s.ok(c.lossMax) || s.Error != "" || ctx.Err() != nil {
				break
			}
		}
		return s, s.ok(c.lossMax)
	}
	rate := c.startRate
	for i := 0; i < c.maxRampSteps && ctx.Err() == nil; i++ {
		s, ok := try(rate)
		if s.Error != "" {
			res.Error = s.Error
			return res
		}
		if s.GenLimited {
			res.Ceiling = fmt.Sprintf("generator reached only %.0f of %.0f records/s", s.AchievedRate, rate)
			break
		}
		if !ok {
			bad, res.LossAtLossy = rate, s.Loss
			break
		}
		good, res.LossFreeSent = rate, s.AchievedRate
		if rate >= c.maxRate {
			res.Ceiling = "BENCH_MAX_RATE reached"
			break
		}
		rate = math.Min(roundRate(rate*c.factor), c.maxRate)
	}
	if bad == 0 && res.Ceiling == "" && ctx.Err() == nil {
		res.Ceiling = "BENCH_RAMP_STEPS reached"
	}
	for i := 0; bad > 0 && i < c.searchSteps && ctx.Err() == nil; i++ {
		mid := roundRate((good + bad) / 2)
		if good == 0 {
			mid = roundRate(bad / 2)
		}
		if mid <= good || mid >= bad || mid < 1000 {
			break
		}
		s, ok := try(mid)
		if s.Error != "" {
			res.Error = s.Error
			break
		}
		if s.GenLimited {
			res.Ceiling = fmt.Sprintf("generator reached only %.0f of %.0f records/s", s.AchievedRate, mid)
			break
		}
		if ok {
			good, res.LossFreeSent = mid, s.AchievedRate
		} else {
			bad, res.LossAtLossy = mid, s.Loss
		}
	}
	res.LossFree, res.FirstLossy = good, bad
	return res
}

// runStep starts a fresh receiver, sends at rate for one step and counts
// what the receiver stored.
func (b *bench) runStep(ctx context.Context, r receiver, rate float64) stepResult {
	c := b.cfg
	b.step++
	s := stepResult{Target: r.name(), Rate: rate}
	dir := filepath.Join(c.workDir, fmt.Sprintf("%s-%02d", r.name(), b.step))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.Error = err.Error()
		return s
	}
	defer func() {
		r.kill()
		if !c.keep && s.Error == "" {
			_ = os.RemoveAll(dir)
		}
	}()
	s.BusyBefore = b.waitIdle(ctx)
	port, err := freePort("udp")
	if err != nil {
		s.Error = err.Error()
		return s
	}
	if err := r.start(ctx, dir, port); err != nil {
		s.Error = err.Error()
		return s
	}
	gen, err := b.generate(ctx, dir, port, rate)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Sent, s.AchievedRate = gen.Records, gen.AchievedRate
	s.GenLimited = gen.AchievedRate < rate*(1-c.genShortfall) || gen.SendErrors > 0
	s.Received, err = r.finish(ctx, gen.Records)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	if s.Sent > 0 {
		s.Loss = 1 - float64(s.Received)/float64(s.Sent)
	}
	if c, ok := r.(interface{ cpuTicks() int64 }); ok && s.Received > 0 {
		s.CPUPerRecord = float64(c.cpuTicks()) / clockTicks * 1e6 / float64(s.Received)
	}
	flag := ""
	if s.BusyBefore > c.busyMax {
		flag = fmt.Sprintf("  (machine %.0f%% busy before)", s.BusyBefore*100)
	}
	switch {
	case s.GenLimited:
		flag = fmt.Sprintf("  GENERATOR-LIMITED (send errors %d)", gen.SendErrors) + flag
	case s.Received > s.Sent:
		flag = "  MORE RECEIVED THAN SENT" + flag
	case s.ok(c.lossMax):
		flag = "  ok" + flag
	default:
		flag = "  LOSS" + flag
	}
	fmt.Printf("  %-8s rate %10.0f/s  sent %10d  stored %10d  loss %7.3f%%  achieved %10.0f/s  cpu %6.2f µs/record%s\n",
		r.name(), rate, s.Sent, s.Received, s.Loss*100, s.AchievedRate, s.CPUPerRecord, flag)
	return s
}

// waitIdle waits, within idleTimeout, until the machine is busy less than
// busyMax (other jobs on a shared machine take the cpus the measurement
// needs) and returns the last busy fraction seen.
func (b *bench) waitIdle(ctx context.Context) float64 {
	deadline := time.Now().Add(b.cfg.idleTimeout)
	warned := false
	for {
		busy, err := cpuBusy(ctx, 500*time.Millisecond)
		if err != nil || busy <= b.cfg.busyMax || !time.Now().Before(deadline) || ctx.Err() != nil {
			return busy
		}
		if !warned {
			fmt.Printf("  (machine %.0f%% busy with other work: waiting up to %s for it to quieten)\n", busy*100, time.Until(deadline).Round(time.Second))
			warned = true
		}
	}
}

func (b *bench) generate(ctx context.Context, dir string, port int, rate float64) (genResult, error) {
	c := b.cfg
	logPath := filepath.Join(dir, "flowgen.json")
	cmd, err := b.procs.start(c.genCPUs, logPath, nil, c.flowgen,
		"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-proto", c.proto,
		"-rate", strconv.FormatFloat(rate, 'f', 0, 64), "-duration", c.step.String(),
		"-records", strconv.Itoa(c.records), "-sockets", strconv.Itoa(c.sockets))
	if err != nil {
		return genResult{}, err
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer b.procs.forget(pid)
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		return genResult{}, ctx.Err()
	case <-time.After(c.step + 30*time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		return genResult{}, errors.New("flowgen did not finish in time")
	}
	out, _ := os.ReadFile(logPath)
	if err != nil {
		return genResult{}, fmt.Errorf("flowgen: %w: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var g genResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &g); err != nil {
		return g, fmt.Errorf("flowgen output %q: %w", out, err)
	}
	return g, nil
}

func (b *bench) report(results []targetResult) {
	// Ratios against goflow2 (the peer) and against flowlens' embedded
	// path (for the Kafka targets), each measured in this run.
	refs := map[string]float64{}
	for _, r := range results {
		if r.Error == "" && (r.Target == "goflow2" || r.Target == "flowlens") {
			refs[r.Target] = r.LossFree
		}
	}
	date := time.Now().UTC().Format("2006-01-02 15:04 UTC")
	host, _ := os.Hostname()
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nhighest loss-free rate (NetFlow %s, %d records/datagram, loss < %.2f%%, %s steps), %s, %s, %d cpus\n\n",
		b.cfg.proto, b.cfg.records, b.cfg.lossMax*100, b.cfg.step, date, host, runtime.NumCPU())
	tw := tabwriter.NewWriter(&sb, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tloss-free records/s\tcpu µs/record there\tfirst lossy rate (loss)\tvs goflow2\tvs flowlens\tnote\t")
	for _, r := range results {
		lossy, note := "-", r.Ceiling
		ratio := func(ref string) string {
			if r.Error != "" || refs[ref] == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2fx", r.LossFree/refs[ref])
		}
		if r.Error != "" {
			note = "error: " + firstLine(r.Error)
		}
		if r.FirstLossy > 0 {
			lossy = fmt.Sprintf("%.0f (%.2f%%)", r.FirstLossy, r.LossAtLossy*100)
		}
		free := fmt.Sprintf("%.0f", r.LossFree)
		if r.Ceiling != "" && r.Error == "" {
			free = ">= " + free
		}
		cpu := "-"
		for _, st := range r.Steps {
			if st.Rate == r.LossFree && st.CPUPerRecord > 0 {
				cpu = fmt.Sprintf("%.2f", st.CPUPerRecord)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Target, free, cpu, lossy, ratio("goflow2"), ratio("flowlens"), note)
	}
	tw.Flush()
	fmt.Print(sb.String())
	_ = os.WriteFile(filepath.Join(b.cfg.workDir, "results.txt"), []byte(sb.String()), 0o644)
	if j, err := json.MarshalIndent(results, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(b.cfg.workDir, "results.json"), j, 0o644)
	}
	fmt.Printf("\nper-step results: %s\n", filepath.Join(b.cfg.workDir, "results.json"))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
