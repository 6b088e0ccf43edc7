package dpi

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/dpi-accuracy.md (make dpi-accuracy)")

// reportPath is the accuracy report, kept with the docs and checked to be
// the output of this build.
var reportPath = filepath.Join("..", "..", "docs", "dpi-accuracy.md")

// expected is one flow of nDPI's expected output (NAME.out).
type expected struct {
	key      flowKey
	line     string // "TCP a:p <-> b:p" as nDPI prints it
	label    string
	conf     string // nDPI's confidence text
	category string
	bytes    int
	sni      string
	ja4      string
}

var (
	outFlow  = regexp.MustCompile(`^\s+\d+\s+(\S+)\s+(\S+)\s+(?:<->|->)\s+(\S+)\s+(.*)$`)
	outProto = regexp.MustCompile(`\[proto: (?:[A-Za-z0-9]+:)?[0-9.]+/([^\]]+)\]`)
	outConf  = regexp.MustCompile(`\[Confidence: ([^\]]+)\]`)
	outCat   = regexp.MustCompile(`\[cat: ([^/\]]+)/`)
	outBytes = regexp.MustCompile(`\[(\d+) pkts/(\d+) bytes (?:<->|->) (\d+) pkts/(\d+) bytes\]`)
	outSNI   = regexp.MustCompile(`\[Hostname/SNI: ([^\]]*)\]`)
	outJA4   = regexp.MustCompile(`\[JA4: ([^\]]*)\]`)
)

func parseEndpoint(s string) (netip.AddrPort, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, false
	}
	h, p := s[:i], s[i+1:]
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.AddrPort{}, false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), true
}

var protoNums = map[string]uint8{"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPV6": 58, "IGMP": 2, "GRE": 47, "ESP": 50, "SCTP": 132}

// readExpected parses the per-flow lines of a NAME.out file.
func readExpected(path string) ([]expected, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []expected
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := outFlow.FindStringSubmatch(line)
		if m == nil || !strings.Contains(line, "[proto:") {
			continue
		}
		pn, ok := protoNums[m[1]]
		if !ok {
			continue
		}
		a, ok1 := parseEndpoint(m[2])
		b, ok2 := parseEndpoint(m[3])
		if !ok1 || !ok2 {
			continue
		}
		x := expected{key: keyOf(pn, a, b), line: m[1] + " " + m[2] + " <-> " + m[3]}
		if pm := outProto.FindStringSubmatch(line); pm != nil {
			x.label = pm[1]
		}
		if cm := outConf.FindStringSubmatch(line); cm != nil {
			x.conf = cm[1]
		}
		if cm := outCat.FindStringSubmatch(line); cm != nil {
			x.category = cm[1]
		}
		if bm := outBytes.FindStringSubmatch(line); bm != nil {
			b1, _ := strconv.Atoi(bm[2])
			b2, _ := strconv.Atoi(bm[4])
			x.bytes = b1 + b2
		}
		if sm := outSNI.FindStringSubmatch(line); sm != nil {
			x.sni = sm[1]
		}
		if jm := outJA4.FindStringSubmatch(line); jm != nil {
			x.ja4 = jm[1]
		}
		out = append(out, x)
	}
	return out, sc.Err()
}

func masterOf(label string) string {
	if i := strings.IndexByte(label, '.'); i >= 0 {
		return label[:i]
	}
	return label
}

// isDPI is whether nDPI named the flow from its payload.
func isDPI(conf string) bool { return strings.HasPrefix(conf, "DPI") }

// tally counts agreement by flows and by bytes.
type tally struct {
	flows, master, label, cat    int
	bytes, bMaster, bLabel, bCat int
}

func (t *tally) add(x expected, r Result) {
	t.flows++
	t.bytes += x.bytes
	if masterOf(x.label) == r.Master {
		t.master++
		t.bMaster += x.bytes
	}
	if x.label == r.Label {
		t.label++
		t.bLabel += x.bytes
	}
	if x.category == r.Category || x.category == "" && r.Category == "Unspecified" {
		t.cat++
		t.bCat += x.bytes
	}
}

func pct(n, d int) float64 {
	if d == 0 {
		return 100
	}
	return 100 * float64(n) / float64(d)
}

func (t tally) row(name string) string {
	return fmt.Sprintf("| %s | %d | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% |", name, t.flows,
		pct(t.master, t.flows), pct(t.label, t.flows), pct(t.cat, t.flows),
		pct(t.bMaster, t.bytes), pct(t.bLabel, t.bytes), pct(t.bCat, t.bytes))
}

// diff is a flow where we differ from nDPI, with the reason.
type diff struct {
	file   string
	x      expected
	r      Result
	reason string
}

// reasonOf explains a difference in the terms of issue 5: the naming
// table, a gap in our lists, a missing dissector, or nDPI guessing.
func reasonOf(e *Engine, x expected, r Result) string {
	xm := masterOf(x.label)
	switch {
	case !isDPI(x.conf) && x.label == "Unknown":
		return "nDPI found nothing; we say " + r.Confidence.String()
	case !isDPI(x.conf):
		return "nDPI guessed (" + x.conf + ")"
	case xm == r.Master:
		xa := strings.TrimPrefix(x.label, xm+".")
		if xa == x.label {
			xa = ""
		}
		switch {
		case xa == "" && r.App != "":
			return "naming table: our rules name " + r.App + " (nDPI gives no application)"
		case r.App == "" && x.sni != "":
			return "list gap: no rule names " + strconv.Quote(x.sni)
		case r.App == "":
			return "list gap: nDPI names " + xa + " without a name in the flow (address list or cache heuristics)"
		default:
			return "naming table: we map to " + r.App + ", nDPI to " + xa
		}
	case r.Confidence != ConfDPI:
		return "missing dissector: no " + xm + " signature matched"
	default:
		return "dissector difference: we read " + r.Master + ", nDPI " + xm
	}
}

// coreOf groups nDPI's master protocols for the per-protocol table.
func coreOf(label string) string {
	switch m := masterOf(label); m {
	case "TLS", "QUIC", "HTTP", "DNS":
		return m
	}
	return "other"
}

type runResult struct {
	all, dpi, other tally
	core            map[string]*tally // DPI flows by core protocol
	coreLabel       map[string]*tally // all flows of TLS/QUIC/HTTP/DNS
	diffs           []diff
	perFile         map[string]*tally
	ja4, ja4Same    int
	ja4Hashes       int // the cipher and extension hashes (JA4_b, JA4_c) equal
	unmatched       int
	files           []string
	v42             tally // against Debian's nDPI 4.2 (NAME.ndpi42.txt), all its flows
}

// readNDPI42 parses NAME.ndpi42.txt: "proto src dst label category bytes packets".
func readNDPI42(path string) ([]expected, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []expected
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 7 {
			continue
		}
		pn, ok := protoNums[f[0]]
		a, ok1 := parseEndpoint(f[1])
		b, ok2 := parseEndpoint(f[2])
		if !ok || !ok1 || !ok2 {
			continue
		}
		n, _ := strconv.Atoi(f[5])
		out = append(out, expected{key: keyOf(pn, a, b), line: f[0] + " " + f[1] + " <-> " + f[2], label: f[3], category: f[4], bytes: n, conf: "nDPI 4.2"})
	}
	return out, nil
}

func runCorpus(t *testing.T) runResult {
	rr := runResult{core: map[string]*tally{}, coreLabel: map[string]*tally{}, perFile: map[string]*tally{}}
	for _, path := range corpusFiles(t) {
		name := filepath.Base(path)
		exp, err := readExpected(path + ".out")
		if err != nil {
			t.Logf("%s: no expected output: %v", name, err)
			continue
		}
		rr.files = append(rr.files, name)
		flows, idx, e := classify(t, path)
		pf := &tally{}
		rr.perFile[name] = pf
		seen := map[flowKey]bool{}
		for _, x := range exp {
			if seen[x.key] {
				continue // nDPI split a 5-tuple into two flows; ours is one
			}
			seen[x.key] = true
			var r Result
			if i, ok := idx[x.key]; ok {
				fl := flows[i]
				r = e.Result(&fl.st, &fl.f)
			} else {
				rr.unmatched++
				r = Result{Label: "Unknown", Master: "Unknown", Category: "Unspecified"}
			}
			rr.all.add(x, r)
			pf.add(x, r)
			if isDPI(x.conf) {
				rr.dpi.add(x, r)
				c := coreOf(x.label)
				if rr.core[c] == nil {
					rr.core[c] = &tally{}
				}
				rr.core[c].add(x, r)
			} else {
				rr.other.add(x, r)
			}
			if c := coreOf(x.label); c != "other" {
				if rr.coreLabel[c] == nil {
					rr.coreLabel[c] = &tally{}
				}
				rr.coreLabel[c].add(x, r)
			}
			if x.ja4 != "" {
				rr.ja4++
				if x.ja4 == r.JA4 {
					rr.ja4Same++
				}
				if len(x.ja4) == 36 && len(r.JA4) == 36 && x.ja4[10:] == r.JA4[10:] && x.ja4[:3] == r.JA4[:3] {
					rr.ja4Hashes++
				}
			}
			if x.label != r.Label {
				rr.diffs = append(rr.diffs, diff{name, x, r, reasonOf(e, x, r)})
			}
		}
		old, err := readNDPI42(path + ".ndpi42.txt")
		if err != nil {
			continue
		}
		for _, x := range old {
			r := Result{Label: "Unknown", Master: "Unknown", Category: "Unspecified"}
			if i, ok := idx[x.key]; ok {
				r = e.Result(&flows[i].st, &flows[i].f)
			}
			rr.v42.add(x, r)
		}
	}
	return rr
}

const tableHead = "| set | flows | master | label | category | master (bytes) | label (bytes) | category (bytes) |\n|---|---|---|---|---|---|---|---|"

func (rr runResult) summary() string {
	var b strings.Builder
	fmt.Fprintln(&b, tableHead)
	fmt.Fprintln(&b, rr.all.row("all flows"))
	fmt.Fprintln(&b, rr.dpi.row("nDPI by DPI"))
	fmt.Fprintln(&b, rr.other.row("nDPI by port/IP/none"))
	for _, c := range []string{"TLS", "QUIC", "HTTP", "DNS", "other"} {
		if t := rr.core[c]; t != nil {
			fmt.Fprintln(&b, t.row("DPI: "+c))
		}
	}
	var cl tally
	for _, c := range []string{"TLS", "QUIC", "HTTP", "DNS"} {
		if t := rr.coreLabel[c]; t != nil {
			cl.flows += t.flows
			cl.master += t.master
			cl.label += t.label
			cl.cat += t.cat
			cl.bytes += t.bytes
			cl.bMaster += t.bMaster
			cl.bLabel += t.bLabel
			cl.bCat += t.bCat
		}
	}
	fmt.Fprintln(&b, cl.row("TLS/QUIC/HTTP/DNS, any confidence"))
	fmt.Fprintln(&b, rr.v42.row("all flows, against nDPI 4.2 (Debian)"))
	fmt.Fprintf(&b, "\nJA4: of %d flows where nDPI printed one, %d are equal to ours and %d have the same version, cipher hash and extension hash.\n",
		rr.ja4, rr.ja4Same, rr.ja4Hashes)
	b.WriteString("The rest differ where nDPI departs from FoxIO's specification, which we follow: nDPI writes the first two\n")
	b.WriteString("characters of the ALPN (`ht` for http/1.1, where the spec says first and last, `h1`), and sets the SNI\n")
	b.WriteString("letter from whether it found a host name (`d` with a name from a certificate or STUN, `i` for an IP-literal\n")
	b.WriteString("SNI) where the spec looks at whether the SNI extension is present.\n")
	fmt.Fprintf(&b, "\n%d expected flows are not in our flow table.\n", rr.unmatched)
	return b.String()
}

// Thresholds, set from the measured figures (see docs/dpi-accuracy.md:
// 99.3%, 100% for each core protocol, 90.2%, 98.1%, 100% when set;
// weighted by bytes 99.9%; categories 96.5%);
// raise them when the classifier improves, never lower them to pass.
const (
	minDPIMaster     = 99.0 // % of flows nDPI names by DPI: same master protocol
	minCoreDPIMaster = 99.0 // same, per core protocol (TLS, QUIC, HTTP, DNS)
	minCoreLabel     = 90.0 // % of TLS/QUIC/HTTP/DNS flows (any confidence): same label
	minAllMaster     = 98.0 // % of all flows: same master
	minJA4           = 99.0 // % of nDPI's JA4 values whose version and hashes we reproduce
	minDPIMasterB    = 99.5 // % of the bytes of flows nDPI names by DPI: same master protocol
	minDPICategory   = 95.0 // % of flows nDPI names by DPI: same category
)

func TestAccuracy(t *testing.T) {
	rr := runCorpus(t)
	s := rr.summary()
	t.Log("\n" + s)
	check := func(name string, got, min float64) {
		if got < min {
			t.Errorf("%s: %.1f%% < %.1f%%", name, got, min)
		}
	}
	check("master agreement on nDPI-DPI flows", pct(rr.dpi.master, rr.dpi.flows), minDPIMaster)
	check("master agreement on nDPI-DPI flows, by bytes", pct(rr.dpi.bMaster, rr.dpi.bytes), minDPIMasterB)
	check("category agreement on nDPI-DPI flows", pct(rr.dpi.cat, rr.dpi.flows), minDPICategory)
	for _, c := range []string{"TLS", "QUIC", "HTTP", "DNS"} {
		if tl := rr.core[c]; tl != nil {
			check("master agreement on nDPI-DPI "+c+" flows", pct(tl.master, tl.flows), minCoreDPIMaster)
		}
	}
	var cl tally
	for _, c := range []string{"TLS", "QUIC", "HTTP", "DNS"} {
		if tl := rr.coreLabel[c]; tl != nil {
			cl.flows += tl.flows
			cl.label += tl.label
		}
	}
	check("exact label on TLS/QUIC/HTTP/DNS flows", pct(cl.label, cl.flows), minCoreLabel)
	check("master agreement on all flows", pct(rr.all.master, rr.all.flows), minAllMaster)
	check("JA4 version and hashes", pct(rr.ja4Hashes, rr.ja4), minJA4)
	report := buildReport(rr, s)
	if *update {
		if err := os.WriteFile(reportPath, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if old, err := os.ReadFile(reportPath); err != nil || string(old) != report {
		t.Errorf("%s is not this build's accuracy report: run make dpi-accuracy (%v)", reportPath, err)
	}
}

func buildReport(rr runResult, summary string) string {
	var b strings.Builder
	b.WriteString("# DPI accuracy against nDPI\n\n")
	b.WriteString("Generated by `make dpi-accuracy` (`go test ./sensor/dpi -run TestAccuracy -update`): every capture of the\n")
	b.WriteString("corpus (`shared/corpus/dpi/public`, 61 captures from the nDPI project) classified by\n")
	b.WriteString("`sensor/dpi` with the test's own flow table (L4 protocol + unordered endpoints, first packet =\n")
	b.WriteString("client), compared per flow with nDPI's expected output (`NAME.out`, nDPI 4.11-dev). *master*\n")
	b.WriteString("is the protocol before the dot, *label* the whole `Master.App`; byte columns weight each flow by\n")
	b.WriteString("its bytes as nDPI counted them. *nDPI by DPI* are the flows nDPI named from their payload\n")
	b.WriteString("(any `DPI` confidence); the others it guessed from ports or addresses, or left Unknown.\n\n")
	b.WriteString(summary)
	b.WriteString("\n## Why we differ\n\n")
	reasons := map[string]int{}
	for _, d := range rr.diffs {
		k := d.reason
		if i := strings.IndexByte(k, ':'); i > 0 {
			k = k[:i]
		} else if i := strings.IndexByte(k, '('); i > 0 {
			k = strings.TrimSpace(k[:i])
		}
		reasons[k]++
	}
	var ks []string
	for k := range reasons {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		return reasons[ks[i]] > reasons[ks[j]] || reasons[ks[i]] == reasons[ks[j]] && ks[i] < ks[j]
	})
	b.WriteString("| reason | flows |\n|---|---|\n")
	for _, k := range ks {
		fmt.Fprintf(&b, "| %s | %d |\n", k, reasons[k])
	}
	b.WriteString(`
- **nDPI guessed**: nDPI named the flow from its port or address, not its payload. Where its
  port guess is TLS or QUIC and the address is in our table, we add the application
  (` + "`TLS.Google`" + `, confidence ip_list), as nDPI 4.2 did; newer nDPI prints the address match apart.
  SMB on 445 that nDPI guessed by port we read by DPI (` + "`NetBIOS.SMBv23`" + `, nDPI's own DPI label).
- **list gap**: nDPI names the application from state we do not keep: its Teams cache (a host
  that spoke to Teams gets ` + "`TLS.Teams`/`TLS.Skype_Teams`" + ` on later flows, even with an IP literal or an
  unrelated SNI), substring host matches (` + "`captive.apple.com.edgekey.net`" + ` is Apple), VPN
  providers' address lists (` + "`OpenVPN.NordVPN`" + `), or its "aggressive" Ookla guess.
- **missing dissector**: Jabber on 5223 without an XML stream, Ookla's "partial cache" and
  Telegram "partial" guesses, which nDPI makes from earlier flows.
- **naming table**: our Tor heuristic (random ` + "`www.<random>.com`" + ` SNI) names one flow nDPI leaves TLS.
- **nDPI found nothing**: flows we name and nDPI does not (an FTP data connection announced
  after nDPI stopped watching the control connection, RTCP).
`)
	b.WriteString("\n## Per capture\n\n| capture | flows | master | label | category |\n|---|---|---|---|---|\n")
	for _, f := range rr.files {
		t := rr.perFile[f]
		fmt.Fprintf(&b, "| %s | %d | %.0f%% | %.0f%% | %.0f%% |\n", f, t.flows, pct(t.master, t.flows), pct(t.label, t.flows), pct(t.cat, t.flows))
	}
	b.WriteString("\n## Flows with another label\n\n")
	cur := ""
	for _, d := range rr.diffs {
		if d.file != cur {
			cur = d.file
			fmt.Fprintf(&b, "\n### %s\n\n| flow | nDPI | ours | why |\n|---|---|---|---|\n", cur)
		}
		fmt.Fprintf(&b, "| `%s` | %s (%s) | %s (%s) | %s |\n", d.x.line, d.x.label, d.x.conf, d.r.Label, d.r.Confidence, d.reason)
	}
	return b.String()
}
