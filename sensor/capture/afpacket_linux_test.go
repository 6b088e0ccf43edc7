//go:build linux && cgo

package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"flowlens/sensor/flowtable"
	"flowlens/sensor/packet"
)

// The AF_PACKET tests run in two network namespaces of their own joined
// by a veth pair: the capture in one (interface vcap), the sender in the
// other (vsnd). Neither has addresses, routes or IPv6, so nothing but the
// test's frames crosses the pair, and nothing can leave it.
type vethPair struct {
	capNS, sndNS string
	capIf, sndIf string
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newVethPair(t *testing.T) *vethPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("AF_PACKET tests need root (network namespaces, packet sockets)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("AF_PACKET tests need iproute2's ip")
	}
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	v := &vethPair{capNS: "flcap" + id, sndNS: "flsnd" + id, capIf: "vcap", sndIf: "vsnd"}
	for _, ns := range []string{v.capNS, v.sndNS} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("network namespaces unavailable: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		// No IPv6: no router solicitations, DAD or MLD reports on the pair.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	run(t, "ip", "-n", v.capNS, "link", "add", v.capIf, "type", "veth", "peer", "name", v.sndIf, "netns", v.sndNS)
	run(t, "ip", "-n", v.capNS, "link", "set", v.capIf, "mtu", "9000", "address", "02:00:00:00:00:ca", "up")
	run(t, "ip", "-n", v.sndNS, "link", "set", v.sndIf, "mtu", "9000", "address", "02:00:00:00:00:5d", "up")
	return v
}

// inNetns runs fn on a thread in namespace ns: sockets fn opens belong to
// it.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime discards it with the
			// goroutine instead of reusing it in the wrong namespace.
			t.Errorf("restore network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// send writes frames on the sender's interface from a packet socket in
// its namespace, paced so the veth's receive backlog never overflows.
func (v *vethPair) send(t *testing.T, frames [][]byte) {
	t.Helper()
	inNetns(t, v.sndNS, func() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		ifi, err := net.InterfaceByName(v.sndIf)
		if err != nil {
			t.Fatal(err)
		}
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		for i, f := range frames {
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				t.Fatalf("send frame %d: %v", i, err)
			}
			if i%32 == 31 {
				time.Sleep(200 * time.Microsecond)
			}
		}
	})
}

// recorder is a worker's Handler: it parses every frame and keeps the flow
// keys, VLANs and frame digests it saw.
type recorder struct {
	mu          sync.Mutex
	worker      int
	keys        map[flowtable.Key]int
	vlans       map[[2]uint16]int
	digests     [][32]byte
	parseErrors int
	ticks       int
	ends        int
}

func (r *recorder) Packet(data []byte, ci *CaptureInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.digests = append(r.digests, sha256.Sum256(data))
	var p packet.Packet
	if err := packet.Parse(ci.Link, data, &p); err != nil {
		r.parseErrors++
		return
	}
	p.Len = ci.Length
	ci.ApplyVLAN(&p)
	k, _ := flowtable.KeyOf(&p)
	r.keys[k]++
	if p.VLAN != 0 {
		r.vlans[[2]uint16{p.VLAN, p.InnerVLAN}]++
	}
}

func (r *recorder) Tick(time.Time) { r.mu.Lock(); r.ticks++; r.mu.Unlock() }
func (r *recorder) End()           { r.mu.Lock(); r.ends++; r.mu.Unlock() }

func recorders(n int) ([]*recorder, []Handler) {
	rs := make([]*recorder, n)
	hs := make([]Handler, n)
	for i := range rs {
		rs[i] = &recorder{worker: i, keys: map[flowtable.Key]int{}, vlans: map[[2]uint16]int{}}
		hs[i] = rs[i]
	}
	return rs, hs
}

func (v *vethPair) start(t *testing.T, cfg AFPacketConfig, reg prometheus.Registerer) (*AFPacket, []*recorder) {
	t.Helper()
	cfg.Interface = v.capIf
	rs, hs := recorders(cfg.Workers)
	s, err := NewAFPacket(cfg, nil, reg, hs)
	if err != nil {
		t.Fatal(err)
	}
	inNetns(t, v.capNS, func() {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(s.Stop)
	return s, rs
}

// waitPackets waits until the workers saw n packets in all.
func waitPackets(t *testing.T, rs []*recorder, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		total := 0
		for _, r := range rs {
			r.mu.Lock()
			total += len(r.digests)
			r.mu.Unlock()
		}
		if total >= n {
			if total > n {
				t.Errorf("captured %d packets, sent %d", total, n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("captured %d of %d packets in 10 s", total, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	testSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x5d}
	testDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77} // not the capture end's: frames for "another host"
)

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// flowFrames builds both directions of n TCP and n UDP flows between
// documentation addresses, plus VLAN and QinQ tagged frames.
func flowFrames(t *testing.T, n int) [][]byte {
	t.Helper()
	var frames [][]byte
	eth := func(et layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: testSrcMAC, DstMAC: testDstMAC, EthernetType: et}
	}
	for i := range n {
		client := net.IP{198, 51, 100, byte(1 + i%200)}
		server := net.IP{203, 0, 113, byte(1 + i%7)}
		cport := layers.TCPPort(40000 + i)
		for j := range 5 {
			frames = append(frames,
				serialize(t, eth(layers.EthernetTypeIPv4),
					&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: client, DstIP: server},
					&layers.TCP{SrcPort: cport, DstPort: 443, Seq: uint32(j), ACK: j > 0, SYN: j == 0, DataOffset: 5}, gopacket.Payload("request")),
				serialize(t, eth(layers.EthernetTypeIPv4),
					&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: server, DstIP: client},
					&layers.TCP{SrcPort: 443, DstPort: cport, Seq: uint32(j), ACK: true, SYN: j == 0, DataOffset: 5}, gopacket.Payload("response")))
		}
		frames = append(frames,
			serialize(t, eth(layers.EthernetTypeIPv4),
				&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: client, DstIP: server},
				&layers.UDP{SrcPort: layers.UDPPort(50000 + i), DstPort: 53}, gopacket.Payload("query")),
			serialize(t, eth(layers.EthernetTypeIPv4),
				&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: server, DstIP: client},
				&layers.UDP{SrcPort: 53, DstPort: layers.UDPPort(50000 + i)}, gopacket.Payload("answer")))
	}
	return frames
}

func taggedFrames(t *testing.T) [][]byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 51, 100, 9}, DstIP: net.IP{203, 0, 113, 9}}
	udp := &layers.UDP{SrcPort: 1234, DstPort: 5678}
	return [][]byte{
		serialize(t, &layers.Ethernet{SrcMAC: testSrcMAC, DstMAC: testDstMAC, EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload("vlan")),
		serialize(t, &layers.Ethernet{SrcMAC: testSrcMAC, DstMAC: testDstMAC, EthernetType: layers.EthernetTypeQinQ},
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload("qinq")),
	}
}

// TestAFPacketFanout: every frame sent is captured once, the kernel
// counts no drop, the flows spread over the workers and both directions
// of each flow land on one worker; stripped VLAN tags come back.
func TestAFPacketFanout(t *testing.T) {
	v := newVethPair(t)
	cfg := DefaultAFPacketConfig()
	cfg.Workers = 3
	cfg.RingSizeMB = 4
	cfg.TickInterval = 50 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	s, rs := v.start(t, cfg, reg)
	frames := append(flowFrames(t, 64), taggedFrames(t)...)
	v.send(t, frames)
	waitPackets(t, rs, len(frames))
	time.Sleep(100 * time.Millisecond) // anything extra would arrive now
	s.Stop()

	owner := map[flowtable.Key]int{}
	perWorker := make([]int, len(rs))
	vlans := map[[2]uint16]int{}
	var total int
	for w, r := range rs {
		if r.ends != 1 || r.ticks == 0 {
			t.Errorf("worker %d: %d ends, %d ticks", w, r.ends, r.ticks)
		}
		if r.parseErrors != 0 {
			t.Errorf("worker %d: %d frames did not parse", w, r.parseErrors)
		}
		total += len(r.digests)
		for k := range r.keys {
			if prev, ok := owner[k]; ok && prev != w {
				t.Errorf("flow %v on workers %d and %d", k, prev, w)
			}
			owner[k] = w
			perWorker[w]++
		}
		for vl, n := range r.vlans {
			vlans[vl] += n
		}
	}
	if total != len(frames) {
		t.Errorf("captured %d frames, sent %d", total, len(frames))
	}
	if want := 64*2 + 2; len(owner) != want { // the tagged frames: one flow per VLAN
		t.Errorf("%d flows, want %d", len(owner), want)
	}
	spread := 0
	for _, n := range perWorker {
		if n > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Errorf("flows per worker %v: fanout did not spread", perWorker)
	}
	t.Logf("flows per worker: %v", perWorker)
	if vlans[[2]uint16{42, 0}] != 1 || vlans[[2]uint16{100, 200}] != 1 {
		t.Errorf("VLANs seen %v, want 42 and 100 outer/200 inner", vlans)
	}
	var kernelPackets, drops uint64
	for _, st := range s.Stats() {
		kernelPackets += st.KernelPackets
		drops += st.KernelDrops
	}
	if kernelPackets != uint64(len(frames)) || drops != 0 {
		t.Errorf("kernel counted %d packets, %d drops; sent %d", kernelPackets, drops, len(frames))
	}
	if got := metricSum(t, reg, MetricKernelPackets); got != float64(len(frames)) {
		t.Errorf("%s = %v", MetricKernelPackets, got)
	}
	if got := metricSum(t, reg, MetricPackets); got != float64(len(frames)) {
		t.Errorf("%s = %v", MetricPackets, got)
	}
}

func promiscuity(t *testing.T, v *vethPair) string {
	out := run(t, "ip", "-n", v.capNS, "-d", "link", "show", v.capIf)
	i := strings.Index(out, "promiscuity ")
	if i < 0 {
		t.Fatalf("no promiscuity in %q", out)
	}
	return strings.Fields(out[i:])[1]
}

// TestAFPacketPromiscuous: promiscuous while capturing, not after Stop.
func TestAFPacketPromiscuous(t *testing.T) {
	v := newVethPair(t)
	cfg := DefaultAFPacketConfig()
	cfg.RingSizeMB = 1
	if got := promiscuity(t, v); got != "0" {
		t.Fatalf("promiscuity %s before capture", got)
	}
	s, _ := v.start(t, cfg, nil)
	if got := promiscuity(t, v); got != "1" {
		t.Errorf("promiscuity %s while capturing", got)
	}
	s.Stop()
	if got := promiscuity(t, v); got != "0" {
		t.Errorf("promiscuity %s after Stop", got)
	}
}

// TestAFPacketFilter: a pre-compiled filter (tcpdump -ddd form) keeps
// only UDP to port 53.
func TestAFPacketFilter(t *testing.T) {
	v := newVethPair(t)
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},                          // ethertype
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 7},  // IPv4
		bpf.LoadAbsolute{Off: 23, Size: 1},                          // protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipFalse: 5},      // UDP
		bpf.LoadAbsolute{Off: 20, Size: 2},                          // fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 3}, // not a later fragment
		bpf.LoadMemShift{Off: 14},                                   // X = IP header length
		bpf.LoadIndirect{Off: 16, Size: 2},                          // destination port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 53, SkipTrue: 1},       // 53
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 262144},
	})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	fmt.Fprintf(&text, "%d\n", len(prog))
	for _, ins := range prog {
		fmt.Fprintf(&text, "%d %d %d %d\n", ins.Op, ins.Jt, ins.Jf, ins.K)
	}
	cfg := DefaultAFPacketConfig()
	cfg.RingSizeMB = 1
	cfg.Filter = text.String()
	s, rs := v.start(t, cfg, nil)
	frames := flowFrames(t, 10) // 10 of the 120 frames go to UDP port 53
	v.send(t, frames)
	waitPackets(t, rs, 10)
	time.Sleep(100 * time.Millisecond)
	s.Stop()
	if n := len(rs[0].digests); n != 10 {
		t.Errorf("captured %d frames through the filter, want 10", n)
	}
	for k := range rs[0].keys {
		if k.Proto != packet.ProtoUDP || (k.LoPort != 53 && k.HiPort != 53) {
			t.Errorf("filter let %+v through", k)
		}
	}
}

// TestAFPacketStopWhileIdle: a quiet link still ticks, and Stop returns
// within a few poll intervals.
func TestAFPacketStopWhileIdle(t *testing.T) {
	v := newVethPair(t)
	cfg := DefaultAFPacketConfig()
	cfg.Workers = 2
	cfg.RingSizeMB = 1
	cfg.TickInterval = 30 * time.Millisecond
	cfg.PollTimeout = 20 * time.Millisecond
	s, rs := v.start(t, cfg, nil)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	s.Stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Stop took %v", d)
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	for w, r := range rs {
		if r.ticks < 3 || r.ends != 1 || len(r.digests) != 0 {
			t.Errorf("worker %d: %d ticks, %d ends, %d packets", w, r.ticks, r.ends, len(r.digests))
		}
	}
}

// TestAFPacketContextCancel: cancelling Start's context stops the workers.
func TestAFPacketContextCancel(t *testing.T) {
	v := newVethPair(t)
	cfg := DefaultAFPacketConfig()
	cfg.RingSizeMB = 1
	cfg.PollTimeout = 20 * time.Millisecond
	cfg.Interface = v.capIf
	_, hs := recorders(1)
	s, err := NewAFPacket(cfg, nil, nil, hs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	inNetns(t, v.capNS, func() {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})
	cancel()
	select {
	case <-s.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("workers still running 2 s after cancel")
	}
	s.Stop()
}

func TestAFPacketNoInterface(t *testing.T) {
	v := newVethPair(t)
	cfg := DefaultAFPacketConfig()
	cfg.Interface = "nosuch0"
	s, err := NewAFPacket(cfg, nil, nil, []Handler{Funcs{}})
	if err != nil {
		t.Fatal(err)
	}
	inNetns(t, v.capNS, func() {
		if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "nosuch0") {
			t.Errorf("Start on a missing interface: %v", err)
		}
	})
	s.Stop() // must not block
}

// TestAFPacketTcpreplay replays a corpus capture with Debian's tcpreplay
// into the pair: the capture holds the file's frames, byte for byte.
func TestAFPacketTcpreplay(t *testing.T) {
	if _, err := exec.LookPath("tcpreplay"); err != nil {
		t.Skip("tcpreplay not installed (apt-get install tcpreplay)")
	}
	path, err := filepath.Abs(filepath.Join(corpusDir, "telnet.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("corpus: %v", err)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var want [][32]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		want = append(want, sha256.Sum256(data))
	}
	v := newVethPair(t)
	cfg := DefaultAFPacketConfig()
	cfg.RingSizeMB = 2
	s, rs := v.start(t, cfg, nil)
	out := run(t, "ip", "netns", "exec", v.sndNS, "tcpreplay", "-q", "--pps=2000", "-i", v.sndIf, path)
	if !strings.Contains(out, fmt.Sprintf("Successful packets:        %d", len(want))) && !strings.Contains(out, fmt.Sprintf("Successful packets: %d", len(want))) {
		t.Logf("tcpreplay: %s", out)
	}
	waitPackets(t, rs, len(want))
	s.Stop()
	got := rs[0].digests
	if !slices.Equal(got, want) {
		t.Errorf("captured frames differ from the file (%d vs %d)", len(got), len(want))
	}
	if st := s.Stats()[0]; st.KernelDrops != 0 || st.Packets != uint64(len(want)) {
		t.Errorf("stats %+v", st)
	}
}
