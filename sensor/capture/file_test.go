package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/bpf"

	"flowlens/internal/pcapfile/pcapfiletest"
	"flowlens/sensor/packet"
)

const corpusDir = "../../../shared/corpus/dpi/public"

func corpusFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Skipf("corpus not available: %v", err)
	}
	var files []string
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".pcap") || strings.HasSuffix(n, ".pcapng") {
			files = append(files, filepath.Join(corpusDir, n))
		}
	}
	if len(files) == 0 {
		t.Skip("corpus holds no captures")
	}
	return files
}

// oraclePackets reads a capture with plain pcapgo: the frames, their
// wire lengths and link types.
type oracleFrame struct {
	sum    [32]byte
	length int
	link   packet.LinkType
	ts     time.Time
}

func oraclePackets(t *testing.T, path string) []oracleFrame {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []oracleFrame
	if binary.BigEndian.Uint32(raw) == 0x0a0d0d0a {
		r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatal(err)
		}
		for {
			data, ci, err := r.ReadPacketData()
			if err != nil {
				break
			}
			out = append(out, oracleFrame{sha256.Sum256(data), ci.Length, packet.LinkType(ci.AncillaryData[0].(layers.LinkType)), ci.Timestamp})
		}
		return out
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, oracleFrame{sha256.Sum256(data), ci.Length, packet.LinkType(r.LinkType()), ci.Timestamp})
	}
	return out
}

// TestFileReaderCorpus reads every corpus capture, pcap and pcapng, and
// requires the frames pcapgo reads unguarded, and frames Parse accepts.
func TestFileReaderCorpus(t *testing.T) {
	var files, frames, parsed int
	kinds := map[string]int{}
	for _, path := range corpusFiles(t) {
		want := oraclePackets(t, path)
		r, err := OpenFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var p packet.Packet
		i := 0
		for ; ; i++ {
			data, ci, err := r.Next()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s #%d: %v", path, i+1, err)
			}
			if i >= len(want) {
				t.Fatalf("%s: more packets than pcapgo reads", path)
			}
			w := want[i]
			if sha256.Sum256(data) != w.sum || ci.Length != w.length || ci.Link != w.link || !ci.Timestamp.Equal(w.ts) || ci.CaptureLength != len(data) {
				t.Fatalf("%s #%d: link %v len %d/%d at %v, pcapgo: link %v len %d at %v", path, i+1, ci.Link, len(data), ci.Length, ci.Timestamp, w.link, w.length, w.ts)
			}
			if packet.Parse(ci.Link, data, &p) == nil {
				parsed++
			}
		}
		if i != len(want) {
			t.Errorf("%s: %d packets, pcapgo reads %d", path, i, len(want))
		}
		r.Close()
		files++
		frames += i
		raw, _ := os.ReadFile(path)
		if binary.BigEndian.Uint32(raw) == 0x0a0d0d0a {
			kinds["pcapng"]++
		} else {
			kinds["pcap"]++
		}
	}
	t.Logf("%d files (%d pcap, %d pcapng), %d packets, %d parsed to a flow", files, kinds["pcap"], kinds["pcapng"], frames, parsed)
	if kinds["pcap"] == 0 || kinds["pcapng"] == 0 {
		t.Errorf("corpus lacks a format: %v", kinds)
	}
	if parsed < frames*9/10 {
		t.Errorf("only %d of %d packets parsed", parsed, frames)
	}
}

// pcapFile builds a classic pcap with a link type pcapgo cannot write.
func pcapFile(link uint32, snap uint32, frames ...[]byte) []byte {
	return pcapfiletest.Classic(link, snap, frames...)
}

// pcapngFile builds a pcapng with one interface of the given link type.
func pcapngFile(link uint16, snap uint32, frames ...[]byte) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	shb := make([]byte, 28)
	le.PutUint32(shb[0:], 0x0a0d0d0a)
	le.PutUint32(shb[4:], 28)
	le.PutUint32(shb[8:], 0x1a2b3c4d)
	le.PutUint16(shb[12:], 1)
	le.PutUint64(shb[16:], ^uint64(0))
	le.PutUint32(shb[24:], 28)
	b.Write(shb)
	idb := make([]byte, 20)
	le.PutUint32(idb[0:], 1)
	le.PutUint32(idb[4:], 20)
	le.PutUint16(idb[8:], link)
	le.PutUint32(idb[12:], snap)
	le.PutUint32(idb[16:], 20)
	b.Write(idb)
	for _, f := range frames {
		padded := (len(f) + 3) &^ 3
		epb := make([]byte, 32+padded)
		le.PutUint32(epb[0:], 6)
		le.PutUint32(epb[4:], uint32(len(epb)))
		le.PutUint32(epb[20:], uint32(len(f)))
		le.PutUint32(epb[24:], uint32(len(f)))
		copy(epb[28:], f)
		le.PutUint32(epb[len(epb)-4:], uint32(len(epb)))
		b.Write(epb)
	}
	return b.Bytes()
}

// sll2Frame is a Linux cooked v2 frame holding an IPv4/UDP datagram.
func sll2Frame() []byte {
	ip := []byte{0x45, 0, 0, 33, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
		0x13, 0x88, 0x00, 0x35, 0, 13, 0, 0, 'h', 'e', 'l', 'l', 'o'}
	return append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}, ip...)
}

func TestFileReaderFullLinkTypes(t *testing.T) {
	for name, file := range map[string][]byte{
		"pcap":   pcapFile(276, 65535, sll2Frame()),
		"pcapng": pcapngFile(276, 65535, sll2Frame()),
	} {
		t.Run(name, func(t *testing.T) {
			r, err := NewFileReader(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			data, ci, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ci.Link != packet.LinkLinuxSLL2 {
				t.Fatalf("link %v (%d), want Linux SLL2 (pcapgo keeps 8 bits)", ci.Link, ci.Link)
			}
			var p packet.Packet
			if err := packet.Parse(ci.Link, data, &p); err != nil || p.DstPort != 53 || string(p.Payload) != "hello" {
				t.Fatalf("parse: %v %+v", err, p)
			}
			if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("end: %v", err)
			}
		})
	}
}

func TestFileReaderGuards(t *testing.T) {
	frame := sll2Frame()
	hugeSnap := pcapFile(276, 0xffffffff, frame)
	ngHugeSnap := pcapngFile(276, 0xffffffff, frame)
	ngBadLen := pcapngFile(276, 65535, frame)
	binary.LittleEndian.PutUint32(ngBadLen[28+20+20:], 1<<30) // captured length beyond the block
	ngHugeBlock := pcapngFile(276, 65535, frame)
	binary.LittleEndian.PutUint32(ngHugeBlock[28+20+4:], 1<<30)
	cut := pcapFile(1, 65535, frame, frame)
	cut = cut[:len(cut)-5]

	cases := []struct {
		name string
		file []byte
		want error // from the first Next (or NewFileReader)
	}{
		{"huge pcap snaplen is clamped", hugeSnap, nil},
		{"huge pcapng snaplen is clamped", ngHugeSnap, nil},
		{"pcapng packet longer than its block", ngBadLen, ErrFormat},
		{"pcapng block beyond the limit", ngHugeBlock, ErrFormat},
		{"not a capture", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrFormat},
		{"empty", nil, ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtimeMem
			before.read()
			r, err := NewFileReader(bytes.NewReader(c.file))
			if err == nil {
				_, _, err = r.Next()
			}
			after.read()
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if grew := after.total - before.total; grew > 8<<20 {
				t.Errorf("allocated %d bytes for a %d-byte file", grew, len(c.file))
			}
		})
	}
	t.Run("cut inside a packet", func(t *testing.T) {
		r, err := NewFileReader(bytes.NewReader(cut))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
}

type countingHandler struct {
	packets, ticks, ends atomic.Int64
	bytes                atomic.Int64
}

func (h *countingHandler) Packet(data []byte, ci *CaptureInfo) {
	h.packets.Add(1)
	h.bytes.Add(int64(ci.Length))
}
func (h *countingHandler) Tick(time.Time) { h.ticks.Add(1) }
func (h *countingHandler) End()           { h.ends.Add(1) }

func TestFileSource(t *testing.T) {
	path := filepath.Join(corpusDir, "dns.pcap")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("corpus: %v", err)
	}
	want := oraclePackets(t, path)
	var wantBytes int
	for _, w := range want {
		wantBytes += w.length
	}
	reg := prometheus.NewPedanticRegistry()
	h := &countingHandler{}
	f, err := NewFile(FileConfig{Path: path}, nil, reg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("file not read in 10 s")
	}
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
	f.Stop()
	if h.packets.Load() != int64(len(want)) || h.bytes.Load() != int64(wantBytes) || h.ends.Load() != 1 || h.ticks.Load() != 0 {
		t.Errorf("handler saw %d packets, %d bytes, %d ends, %d ticks; want %d, %d, 1, 0",
			h.packets.Load(), h.bytes.Load(), h.ends.Load(), h.ticks.Load(), len(want), wantBytes)
	}
	if st := f.Stats()[0]; st.Packets != uint64(len(want)) || st.Bytes != uint64(wantBytes) {
		t.Errorf("stats %+v", st)
	}
	if got := metricSum(t, reg, MetricPackets); got != float64(len(want)) {
		t.Errorf("%s = %v, want %d", MetricPackets, got, len(want))
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 3 {
		t.Errorf("file source exports %d series (%v), want packets, bytes, truncated", n, err)
	}
	if err := f.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Start: %v", err)
	}
}

func TestFileSourceMissing(t *testing.T) {
	f, err := NewFile(FileConfig{Path: filepath.Join(t.TempDir(), "nope.pcap")}, nil, nil, &countingHandler{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err == nil {
		t.Fatal("started on a missing file")
	}
	f.Stop() // must not block
}

// metricSum sums the samples of one gathered counter family.
func metricSum(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

func TestParseFilter(t *testing.T) {
	want, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipTrue: 0, SkipFalse: 1},
		bpf.RetConstant{Val: 262144},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	ddd := "4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n"
	dd := "{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 1, 0x00000800 },\n{ 0x6, 0, 0, 0x00040000 },\n{ 0x6, 0, 0, 0x00000000 },\n"
	iptables := "4,40 0 0 12,21 0 1 2048,6 0 0 262144,6 0 0 0"
	for name, text := range map[string]string{"-ddd": ddd, "-dd": dd, "iptables": iptables} {
		got, err := ParseFilter(text)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d instructions", name, len(got))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s #%d: %+v, want %+v", name, i, got[i], want[i])
			}
		}
	}
	for _, bad := range []string{"", "3\n40 0 0 12\n", "40 0 0", "{ 0x28, 0, 0 },", "70000 0 0 1", "x y z w"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestAFPacketConfigValidate(t *testing.T) {
	c := DefaultAFPacketConfig()
	c.Interface = "eth1"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*AFPacketConfig){
		"no interface":       func(c *AFPacketConfig) { c.Interface = "" },
		"no workers":         func(c *AFPacketConfig) { c.Workers = 0 },
		"block not pow2":     func(c *AFPacketConfig) { c.BlockSize = 3 << 12 },
		"frame not dividing": func(c *AFPacketConfig) { c.FrameSize = 3000 },
		"ring below a block": func(c *AFPacketConfig) { c.BlockSize = 4 << 20; c.RingSizeMB = 2 },
		"group too large":    func(c *AFPacketConfig) { c.FanoutGroup = 70000 },
		"bad filter":         func(c *AFPacketConfig) { c.Filter = "nonsense" },
		"no poll timeout":    func(c *AFPacketConfig) { c.PollTimeout = 0 },
	} {
		c := DefaultAFPacketConfig()
		c.Interface = "eth1"
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestApplyVLAN(t *testing.T) {
	p := packet.Packet{VLAN: 200, VLANTags: 1}
	ci := CaptureInfo{VLAN: 100}
	ci.ApplyVLAN(&p)
	if p.VLAN != 100 || p.InnerVLAN != 200 || p.VLANTags != 2 {
		t.Errorf("QinQ with the outer tag stripped: %+v", p)
	}
	q := packet.Packet{}
	ci = CaptureInfo{VLAN: -1}
	ci.ApplyVLAN(&q)
	if q.VLAN != 0 || q.VLANTags != 0 {
		t.Errorf("no stripped tag changed the packet: %+v", q)
	}
}
