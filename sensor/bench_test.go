package sensor

import (
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"flowlens/sensor/capture"
	"flowlens/sensor/dpi"
	"flowlens/sensor/export"
	"flowlens/sensor/flowtable"
)

// The classification benchmarks compare the sensor's pipeline with Debian's
// ndpiReader (nDPI 4.2) on the same captures (every nDPI corpus capture),
// in one run, one core each:
//
//	go test ./sensor -run '^$' -bench 'Pipeline|NDPIReader' -benchtime 20x
//
// BenchmarkPipeline: parse → flow table → classify → label every flow, for
// all packets of the corpus read from the files (page cache), a fresh flow
// table per capture as ndpiReader starts each file afresh, wall clock.
// BenchmarkNDPIReader: ndpiReader's own "nDPI throughput" per capture (the
// median of 5 loops), which times its packet processing without its
// start-up. Both report ns/packet and packets/s over the whole corpus.

type frame struct {
	data []byte
	ci   capture.CaptureInfo
}

func corpusCaptures(tb testing.TB) []string {
	files, _ := filepath.Glob(filepath.Join(corpus, "*.pcap*"))
	var caps []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".out") && !strings.HasSuffix(f, ".txt") {
			caps = append(caps, f)
		}
	}
	if len(caps) == 0 {
		tb.Skip("no corpus captures in " + corpus)
	}
	return caps
}

func loadFrames(tb testing.TB, path string) []frame {
	r, err := capture.OpenFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	var out []frame
	for {
		data, ci, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		out = append(out, frame{data: append([]byte(nil), data...), ci: *ci})
	}
}

func BenchmarkPipeline(b *testing.B) {
	caps := corpusCaptures(b)
	var packets int
	for _, c := range caps {
		packets += len(loadFrames(b, c))
	}
	eng, err := dpi.NewEngine(dpi.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	m, _ := NewMetrics(nil)
	var flows int
	out := func(*export.Flow) { flows++ }
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for _, c := range caps {
			w, err := NewWorker(eng, flowtable.DefaultConfig(), m, out)
			if err != nil {
				b.Fatal(err)
			}
			r, err := capture.OpenFile(c)
			if err != nil {
				b.Fatal(err)
			}
			for {
				data, ci, err := r.Next()
				if err != nil {
					break
				}
				w.Packet(data, ci)
			}
			r.Close()
			w.End()
		}
	}
	el := time.Since(start)
	n := float64(b.N * packets)
	b.ReportMetric(float64(el.Nanoseconds())/n, "ns/packet")
	b.ReportMetric(n/el.Seconds(), "packets/s")
	b.ReportMetric(float64(flows)/float64(b.N), "flows/pass")
	b.ReportMetric(float64(flows)/el.Seconds(), "flows/s")
	b.ReportMetric(float64(packets), "packets/pass")
	b.ReportMetric(0, "ns/op")
}

var (
	throughput  = regexp.MustCompile(`nDPI throughput:\s+([0-9.]+) ([KMG]?) ?pps`)
	uniqueFlows = regexp.MustCompile(`Unique flows:\s+([0-9]+)`)
)

// ndpiTime runs ndpiReader over path for loops loops and returns the
// processing time of one pass as ndpiReader measures it itself (packets /
// its "nDPI throughput", the median of the loops): its own figure, without
// its start-up and its per-loop set-up of the detection module), and the
// flows it counted in one pass.
func ndpiTime(b *testing.B, path string, packets, loops int) (time.Duration, int) {
	out, err := exec.Command("ndpiReader", "-i", path, "-l", strconv.Itoa(loops), "-v", "1").CombinedOutput()
	if err != nil {
		b.Fatalf("ndpiReader %s: %v", path, err)
	}
	var pps []float64
	for _, m := range throughput.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		switch string(m[2]) {
		case "K":
			v *= 1e3
		case "M":
			v *= 1e6
		case "G":
			v *= 1e9
		}
		pps = append(pps, v)
	}
	if len(pps) == 0 {
		b.Fatalf("ndpiReader %s: no throughput in its output", path)
	}
	sort.Float64s(pps)
	var flows int
	if m := uniqueFlows.FindSubmatch(out); m != nil {
		flows, _ = strconv.Atoi(string(m[1]))
	}
	return time.Duration(float64(packets) / pps[len(pps)/2] * 1e9), flows
}

func BenchmarkNDPIReader(b *testing.B) {
	if _, err := exec.LookPath("ndpiReader"); err != nil {
		b.Skip("ndpiReader not installed (Debian libndpi-bin)")
	}
	caps := corpusCaptures(b)
	counts := make([]int, len(caps))
	var packets int
	for i, c := range caps {
		counts[i] = len(loadFrames(b, c))
		packets += counts[i]
	}
	b.ResetTimer()
	var el time.Duration
	var flows int
	for range b.N {
		for i, c := range caps {
			d, f := ndpiTime(b, c, counts[i], 5)
			el += d
			flows += f
		}
	}
	n := float64(b.N * packets)
	b.ReportMetric(float64(el.Nanoseconds())/n, "ns/packet")
	b.ReportMetric(n/el.Seconds(), "packets/s")
	b.ReportMetric(float64(flows)/float64(b.N), "flows/pass")
	b.ReportMetric(float64(flows)/el.Seconds(), "flows/s")
	b.ReportMetric(0, "ns/op")
}
