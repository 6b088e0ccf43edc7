package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs tracks every process the driver starts, so that all of them are
// ended on the way out, whatever the way out is. Each pid is also appended
// to a file that e2e.sh reads in its trap, in case the driver itself dies.
type procs struct {
	mu      sync.Mutex
	live    map[int]*exec.Cmd
	pidFile string
}

func newProcs(pidFile string) *procs {
	return &procs{live: map[int]*exec.Cmd{}, pidFile: pidFile}
}

// start runs argv in its own process group, optionally pinned to cpus with
// taskset (which execs, so the pid is the program's), with stdout and
// stderr to logPath.
func (p *procs) start(cpus string, logPath string, env []string, argv ...string) (*exec.Cmd, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	log.Close() // the child holds its own descriptor
	p.mu.Lock()
	p.live[cmd.Process.Pid] = cmd
	p.mu.Unlock()
	if p.pidFile != "" {
		if f, err := os.OpenFile(p.pidFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(f, cmd.Process.Pid)
			f.Close()
		}
	}
	return cmd, nil
}

// stop sends sig to the process group, waits up to grace, then kills it.
// It returns the exit error of the program, if any, other than the signal.
func (p *procs) stop(cmd *exec.Cmd, sig syscall.Signal, grace time.Duration) error {
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		err = <-done
		err = fmt.Errorf("pid %d did not stop within %s after %s, killed: %v", pid, grace, sig, err)
	}
	p.mu.Lock()
	delete(p.live, pid)
	p.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(err, &ee) && !ee.Exited() {
		return nil // ended by our signal
	}
	return err
}

// forget drops a process that was waited for elsewhere.
func (p *procs) forget(pid int) {
	p.mu.Lock()
	delete(p.live, pid)
	p.mu.Unlock()
}

// killAll ends whatever is still running; used on every exit path.
func (p *procs) killAll() {
	p.mu.Lock()
	cmds := make([]*exec.Cmd, 0, len(p.live))
	for _, c := range p.live {
		cmds = append(cmds, c)
	}
	p.mu.Unlock()
	for _, c := range cmds {
		_ = p.stop(c, syscall.SIGTERM, 3*time.Second)
	}
}

// udpBound reports whether some socket is bound to the UDP port, from
// /proc/net/udp and udp6 (no dependency on ss or netstat).
func udpBound(port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 1 && strings.HasSuffix(fields[1], want) {
				fh.Close()
				return true
			}
		}
		fh.Close()
	}
	return false
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// cpuTicks is utime+stime of a process, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

// waitFor polls cond every 100 ms until it is true, ctx ends or timeout.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
}

// settle polls value until it reaches want or stays unchanged for quiet,
// bounded by timeout. It returns the last value seen.
func settle(ctx context.Context, want int64, quiet, timeout time.Duration, value func() (int64, error)) (int64, error) {
	deadline := time.Now().Add(timeout)
	last, err := value()
	if err != nil {
		return 0, err
	}
	since := time.Now()
	for time.Now().Before(deadline) {
		if last >= want {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		v, err := value()
		if err != nil {
			return last, err
		}
		if v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= quiet {
			return last, nil
		}
	}
	return last, nil
}

// cpuBusy samples /proc/stat over d and returns the busy fraction of all
// cpus (everything but idle and iowait).
func cpuBusy(ctx context.Context, d time.Duration) (float64, error) {
	read := func() (busy, total int64, err error) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 6 || f[0] != "cpu" {
			return 0, 0, errors.New("malformed /proc/stat")
		}
		for i, v := range f[1:] {
			x, _ := strconv.ParseInt(v, 10, 64)
			total += x
			if i != 3 && i != 4 { // idle, iowait
				busy += x
			}
		}
		return busy, total, nil
	}
	b0, t0, err := read()
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	b1, t1, err := read()
	if err != nil || t1 == t0 {
		return 0, err
	}
	return float64(b1-b0) / float64(t1-t0), nil
}
