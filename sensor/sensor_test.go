package sensor

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"flowlens/sensor/capture"
	"flowlens/sensor/export"
)

const corpus = "../../shared/corpus/dpi/public"

// ndpiFlow is one flow line of nDPI's expected output (NAME.out).
type ndpiFlow struct {
	label string // "TLS.Google"
	dpi   bool   // nDPI's confidence is DPI
}

var outLine = regexp.MustCompile(`^\s*\d+\s+(\S+)\s+(\S+)\s+<?->\s+(\S+)\s+\[proto: [0-9.]+/([^\]]+)\].*?\[Confidence: ([^\]]+)\]`)

// flowKey is proto + the unordered endpoint pair, as make-oracle.sh matches.
func flowKey(proto string, a, b string) string {
	if a > b {
		a, b = b, a
	}
	return proto + " " + a + " " + b
}

func readOut(t *testing.T, path string) map[string]ndpiFlow {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]ndpiFlow{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := outLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		out[flowKey(m[1], m[2], m[3])] = ndpiFlow{label: m[4], dpi: strings.HasPrefix(m[5], "DPI")}
	}
	return out
}

var protoNames = map[uint8]string{1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 58: "ICMPV6", 132: "SCTP"}

func endpoint(a netip.Addr, port uint16) string {
	a = a.Unmap()
	if a.Is6() {
		return fmt.Sprintf("[%s]:%d", a, port)
	}
	return fmt.Sprintf("%s:%d", a, port)
}

// classifyFile runs the sensor's pipeline (the real parser, flow table and
// classifier) over one capture file and returns its flows by key, slices
// of a long flow merged under their last label.
func classifyFile(t *testing.T, path string) map[string]export.Flow {
	var mu sync.Mutex
	got := map[string]export.Flow{}
	out := func(f *export.Flow) {
		p, ok := protoNames[f.Protocol]
		if !ok {
			p = fmt.Sprint(f.Protocol)
		}
		k := flowKey(p, endpoint(f.Client, f.ClientPort), endpoint(f.Server, f.ServerPort))
		mu.Lock()
		prev := got[k]
		g := *f
		g.ClientOctets += prev.ClientOctets
		g.ServerOctets += prev.ServerOctets
		got[k] = g
		mu.Unlock()
	}
	cfg := DefaultConfig()
	cfg.CaptureClock = true
	s, _, err := New(cfg, 1, func(hs []capture.Handler) (capture.Source, error) {
		return capture.NewFile(capture.FileConfig{Path: path}, slog.New(slog.DiscardHandler), nil, hs[0])
	}, out, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: not read within 60 s", path)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return got
}

// TestPipelineAgainstNDPI runs every nDPI corpus capture through the whole
// sensor pipeline and compares each flow's label with nDPI's expectation.
// sensor/dpi's TestAccuracy measures the classifier with its own test flow
// table; this measures what the sensor really exports, with our packet
// parser and flow table (timeouts, tunnels, fragments). Thresholds are set
// from the measured figures, a little below.
func TestPipelineAgainstNDPI(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpus, "*.pcap*"))
	var caps []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".out") && !strings.HasSuffix(f, ".txt") {
			caps = append(caps, f)
		}
	}
	if len(caps) == 0 {
		t.Skip("no corpus captures in " + corpus)
	}
	sort.Strings(caps)
	var flows, found, dpiFlows, dpiMaster, dpiLabel int
	var missing []string
	for _, c := range caps {
		want := readOut(t, c+".out")
		got := classifyFile(t, c)
		for k, w := range want {
			flows++
			g, ok := got[k]
			if !ok {
				missing = append(missing, filepath.Base(c)+": "+k)
				continue
			}
			found++
			if !w.dpi {
				continue
			}
			dpiFlows++
			master, _, _ := strings.Cut(w.label, ".")
			gm, _, _ := strings.Cut(g.Application, ".")
			if gm == master {
				dpiMaster++
			}
			if g.Application == w.label {
				dpiLabel++
			}
		}
	}
	pct := func(a, b int) float64 { return 100 * float64(a) / float64(max(b, 1)) }
	t.Logf("flows in nDPI's output %d, exported by the sensor %d (%.1f%%); nDPI-DPI flows %d: master %.1f%%, label %.1f%%",
		flows, found, pct(found, flows), dpiFlows, pct(dpiMaster, dpiFlows), pct(dpiLabel, dpiFlows))
	for _, m := range missing {
		t.Log("not exported:", m)
	}
	for name, c := range map[string]struct{ got, min float64 }{
		"flows found":             {pct(found, flows), 97},
		"master on nDPI-DPI":      {pct(dpiMaster, dpiFlows), 97},
		"exact label on nDPI-DPI": {pct(dpiLabel, dpiFlows), 92},
	} {
		if c.got < c.min {
			t.Errorf("%s: %.1f%% < %.0f%%", name, c.got, c.min)
		}
	}
}
