package lander

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The landing benchmarks store the same flows two ways in one run, so that
// their ratio holds on a noisy machine:
//
//	BenchmarkLand:          Kafka (kfake, in-process) → lander → chDB
//	BenchmarkEmbeddedStore: Put → embedded store → chDB (the path of `flowlens run`)
//
// rows/s is wall-clock; cpu-ns/row is the process CPU time per row (for
// BenchmarkLand it includes kfake serving the fetches). Run:
//
//	go test ./lander -run '^$' -bench . -benchtime 3x
const benchChunk = 200_000

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func report(b *testing.B, rows int, wall, cpu time.Duration) {
	b.ReportMetric(float64(rows)/wall.Seconds(), "rows/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(rows), "cpu-ns/row")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkLand(b *testing.B) {
	e := newEnv(b)
	rows := b.N * benchChunk
	for range b.N {
		e.produce(benchChunk)
	}
	cfg := DefaultConfig()
	cfg.SessionTimeout = 6 * time.Second
	if v, err := strconv.Atoi(os.Getenv("LAND_BENCH_BATCH")); err == nil {
		cfg.BatchSize, cfg.MaxRows = v, 4*v
	}
	b.ResetTimer()
	start, cpu := time.Now(), cpuNow()
	l, _ := e.lander(cfg, nil)
	for testutil.ToFloat64(l.m.rows) < float64(rows) {
		time.Sleep(2 * time.Millisecond)
	}
	wall, used := time.Since(start), cpuNow()-cpu
	b.StopTimer()
	l.Stop()
	report(b, rows, wall, used)
	if got := e.checksum(); got != want(rows) {
		b.Fatalf("checksum %s, want %s", got, want(rows))
	}
}

func BenchmarkEmbeddedStore(b *testing.B) {
	e := newEnv(b)
	rows := b.N * benchChunk
	b.ResetTimer()
	start, cpu := time.Now(), cpuNow()
	for i := 1; i <= rows; i++ {
		f := flowNumber(i)
		e.store.Put(&f)
	}
	e.store.Flush(context.Background())
	wall, used := time.Since(start), cpuNow()-cpu
	b.StopTimer()
	report(b, rows, wall, used)
	if got := e.checksum(); got != want(rows) {
		b.Fatalf("checksum %s, want %s", got, want(rows))
	}
}
