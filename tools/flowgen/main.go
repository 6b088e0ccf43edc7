// Command flowgen is a NetFlow v5/v9 and IPFIX load generator for loopback
// benchmarks. It prebuilds a pool of datagrams, patches only the header on
// each send, paces them with a per-millisecond token bucket and prints one
// JSON line with exactly what it sent.
//
// It only sends to loopback addresses, and always stops after -duration or
// -count, whichever comes first.
//
//	flowgen -addr 127.0.0.1:2055 -rate 500000 -duration 5s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Hard bounds, whatever the flags say.
const (
	maxDuration = 10 * time.Minute
	maxSockets  = 64
)

type config struct {
	addr          string
	proto         string
	rate          float64 // records/s, 0 = unpaced
	duration      time.Duration
	count         int64 // records, 0 = bounded by duration only
	records       int   // records per datagram
	templateEvery int   // datagrams between template resends, per socket
	sockets       int
	variants      int
	tick          time.Duration
	maxBurst      time.Duration
	templateWait  time.Duration
	publicDst     bool
}

// result is the JSON line printed at the end. Records counts data records
// only; datagrams includes those that carried a template.
type result struct {
	Proto             string  `json:"proto"`
	Addr              string  `json:"addr"`
	Sockets           int     `json:"sockets"`
	RecordsPerDgram   int     `json:"records_per_datagram"`
	TargetRate        float64 `json:"target_rate"`
	Datagrams         int64   `json:"datagrams"`
	TemplateDatagrams int64   `json:"template_datagrams"`
	Records           int64   `json:"records"`
	Bytes             int64   `json:"bytes"`
	SendErrors        int64   `json:"send_errors"`
	ElapsedS          float64 `json:"elapsed_s"`
	AchievedRate      float64 `json:"achieved_rate"`
	LateTicks         int64   `json:"late_ticks"`
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:2055", "destination `host:port`; must be loopback (127.0.0.0/8 or ::1)")
	flag.StringVar(&cfg.proto, "proto", protoV9, "export protocol: v5, v9 or ipfix")
	flag.Float64Var(&cfg.rate, "rate", 100_000, "target records/s over all sockets (0 = as fast as possible)")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long to send (at most 10m)")
	flag.Int64Var(&cfg.count, "count", 0, "stop after this many records (0 = duration only)")
	flag.IntVar(&cfg.records, "records", 30, "data records per datagram")
	flag.IntVar(&cfg.templateEvery, "template-every", 100, "resend the template every N datagrams per socket (v9, ipfix)")
	flag.IntVar(&cfg.sockets, "sockets", 1, "number of sending sockets, one goroutine each")
	flag.IntVar(&cfg.variants, "variants", 64, "distinct prebuilt datagrams per socket (address/port variety)")
	flag.DurationVar(&cfg.tick, "tick", time.Millisecond, "pacing interval of the token bucket")
	flag.DurationVar(&cfg.maxBurst, "max-burst", 5*time.Millisecond, "most sending time a late tick may catch up on at once")
	flag.DurationVar(&cfg.templateWait, "template-wait", 100*time.Millisecond, "send a template-only datagram per socket, then wait this long before the paced data (0 = no separate template)")
	flag.BoolVar(&cfg.publicDst, "public-dst", false, "destinations in 20.0.0.0/16 (public: GeoIP enrichment looks them up) instead of 198.18.0.0/15")
	flag.Parse()

	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "flowgen:", err)
		os.Exit(1)
	}
}

func (c *config) check() (*net.UDPAddr, error) {
	ap, err := netip.ParseAddrPort(c.addr)
	if err != nil {
		// Accept "localhost:port" too, but only if it resolves to loopback.
		ua, rerr := net.ResolveUDPAddr("udp", c.addr)
		if rerr != nil {
			return nil, fmt.Errorf("-addr %q: %w", c.addr, err)
		}
		ap = ua.AddrPort()
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return nil, fmt.Errorf("-addr %s is not a loopback address; flowgen only sends to 127.0.0.0/8 or ::1", ap)
	}
	switch {
	case c.proto != protoV5 && c.proto != protoV9 && c.proto != protoIPFIX:
		return nil, fmt.Errorf("-proto %q: accepted values are v5, v9, ipfix", c.proto)
	case c.rate < 0:
		return nil, errors.New("-rate must be >= 0")
	case c.duration <= 0 || c.duration > maxDuration:
		return nil, fmt.Errorf("-duration must be in (0, %s]", maxDuration)
	case c.count < 0:
		return nil, errors.New("-count must be >= 0")
	case c.records < 1:
		return nil, errors.New("-records must be >= 1")
	case c.templateEvery < 1:
		return nil, errors.New("-template-every must be >= 1")
	case c.sockets < 1 || c.sockets > maxSockets:
		return nil, fmt.Errorf("-sockets must be in [1, %d]", maxSockets)
	case c.variants < 1 || c.variants > 4096:
		return nil, errors.New("-variants must be in [1, 4096]")
	case c.tick < 10*time.Microsecond || c.tick > time.Second:
		return nil, errors.New("-tick must be in [10µs, 1s]")
	case c.maxBurst < c.tick:
		return nil, errors.New("-max-burst must be >= -tick")
	case c.templateWait < 0 || c.templateWait > 10*time.Second:
		return nil, errors.New("-template-wait must be in [0, 10s]")
	}
	return net.UDPAddrFromAddrPort(ap), nil
}

// worker is one sending socket with its own copy of the datagram pool, so
// that header patching needs no locking.
type worker struct {
	conn      *net.UDPConn
	template  datagram // template only, no data records
	plain     []datagram
	templated []datagram // same as plain, with the template set in front
	sourceID  uint32

	datagrams, templates, records, bytes, errs, late int64
}

func run(cfg config) error {
	dst, err := cfg.check()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nowMs := uint64(time.Now().UnixMilli())
	workers := make([]*worker, cfg.sockets)
	for i := range workers {
		conn, err := net.DialUDP("udp", nil, dst)
		if err != nil {
			return fmt.Errorf("dial %s: %w", dst, err)
		}
		defer conn.Close()
		_ = conn.SetWriteBuffer(4 << 20)
		w := &worker{conn: conn, sourceID: uint32(i + 1)}
		for v := 0; v < cfg.variants; v++ {
			variant := i*cfg.variants + v
			p, err := build(cfg.proto, variant, cfg.records, false, w.sourceID, nowMs, cfg.dstBase())
			if err != nil {
				return err
			}
			t, err := build(cfg.proto, variant, cfg.records, cfg.proto != protoV5, w.sourceID, nowMs, cfg.dstBase())
			if err != nil {
				return err
			}
			w.plain = append(w.plain, p)
			w.templated = append(w.templated, t)
		}
		if cfg.templateWait > 0 && cfg.proto != protoV5 {
			if w.template, err = build(cfg.proto, 0, 0, true, w.sourceID, nowMs, cfg.dstBase()); err != nil {
				return err
			}
		}
		workers[i] = w
	}

	// A collector decoding in parallel drops the data that races ahead of
	// the first template; a real exporter's template is known long before,
	// so it is sent once up front and not counted in the measured period.
	if len(workers[0].template.buf) > 0 {
		for _, w := range workers {
			patchHeader(cfg.proto, w.template.buf, sysUptimeBase, uint32(time.Now().Unix()), 0)
			if _, err := w.conn.Write(w.template.buf); err != nil {
				w.errs++
				continue
			}
			w.datagrams++
			w.templates++
			w.bytes += int64(len(w.template.buf))
		}
		time.Sleep(cfg.templateWait)
	}

	// Split the record budget and the rate evenly over the sockets; the
	// datagram is the unit, so the count is rounded up to whole datagrams.
	var perWorkerDgrams int64 = -1
	if cfg.count > 0 {
		perWorkerRecs := (cfg.count + int64(cfg.sockets) - 1) / int64(cfg.sockets)
		perWorkerDgrams = (perWorkerRecs + int64(cfg.records) - 1) / int64(cfg.records)
	}
	dgramRate := cfg.rate / float64(cfg.sockets) / float64(cfg.records)

	start := time.Now()
	deadline := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.send(ctx, cfg, start, deadline, dgramRate, perWorkerDgrams)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := result{
		Proto: cfg.proto, Addr: dst.String(), Sockets: cfg.sockets,
		RecordsPerDgram: cfg.records, TargetRate: cfg.rate,
		ElapsedS: elapsed.Seconds(),
	}
	for _, w := range workers {
		res.Datagrams += w.datagrams
		res.TemplateDatagrams += w.templates
		res.Records += w.records
		res.Bytes += w.bytes
		res.SendErrors += w.errs
		res.LateTicks += w.late
	}
	res.AchievedRate = float64(res.Records) / elapsed.Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// send paces datagrams: every tick it sends what the elapsed time allows,
// catching up on at most maxBurst worth after a late wake-up (a late tick is
// counted, and what it could not catch up on is lost, not deferred).
func (w *worker) send(ctx context.Context, cfg config, start, deadline time.Time, dgramRate float64, maxDgrams int64) {
	var (
		seq      uint32 // v9: datagrams; v5, IPFIX: records
		n        int64  // datagrams sent or attempted on this socket
		credit   int64  // datagrams due so far
		skipped  int64  // datagrams given up after late ticks
		burstCap = int64(dgramRate*cfg.maxBurst.Seconds()) + 1
		timer    = time.NewTimer(cfg.tick)
	)
	defer timer.Stop()
	for {
		now := time.Now()
		if !now.Before(deadline) || ctx.Err() != nil || (maxDgrams >= 0 && n >= maxDgrams) {
			return
		}
		if dgramRate > 0 {
			credit = int64(now.Sub(start).Seconds()*dgramRate) - skipped
			if credit-n > burstCap {
				w.late++
				skipped += credit - n - burstCap
				credit = n + burstCap
			}
		} else {
			credit = n + 64 // unpaced: send in batches, then check the clock
		}
		if maxDgrams >= 0 && credit > maxDgrams {
			credit = maxDgrams
		}
		for ; n < credit; n++ {
			i := int(n % int64(len(w.plain)))
			d, withTemplate := w.plain[i], n%int64(cfg.templateEvery) == 0 && cfg.proto != protoV5
			if withTemplate {
				d = w.templated[i]
			}
			up := uint32(sysUptimeBase + time.Since(start).Milliseconds())
			patchHeader(cfg.proto, d.buf, up, uint32(now.Unix()), seq)
			if _, err := w.conn.Write(d.buf); err != nil {
				w.errs++
				continue
			}
			if cfg.proto == protoV9 {
				seq++
			} else {
				seq += uint32(d.records)
			}
			w.datagrams++
			if withTemplate {
				w.templates++
			}
			w.records += int64(d.records)
			w.bytes += int64(len(d.buf))
		}
		if dgramRate > 0 {
			// Sleep to the next tick boundary; a timer, not a spin, so the
			// generator leaves the CPU to the kernel's loopback path.
			next := start.Add(time.Duration(float64(n+1) / dgramRate * float64(time.Second)))
			d := time.Until(next)
			if d < cfg.tick {
				d = cfg.tick
			}
			if rem := time.Until(deadline); d > rem {
				d = rem
			}
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (c *config) dstBase() uint32 {
	if c.publicDst {
		return dstPublic
	}
	return dstBenchmark
}
