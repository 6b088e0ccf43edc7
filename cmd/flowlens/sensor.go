package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/internal/httpd"
	"flowlens/schema"
	"flowlens/sensor"
	"flowlens/sensor/capture"
	"flowlens/sensor/export"
	"flowlens/sensor/flowtable"
)

// sensorConfig is the DPI sensor's part of the configuration
// (FLOWLENS_SENSOR_*; the IPFIX export is FLOWLENS_EXPORT_*).
type sensorConfig struct {
	Interface      string        `env:"SENSOR_INTERFACE" json:"interface"`
	Workers        int           `env:"SENSOR_WORKERS" json:"workers"`
	RingMB         int           `env:"SENSOR_RING_MB" json:"ring_mb"`
	Promiscuous    bool          `env:"SENSOR_PROMISCUOUS" json:"promiscuous"`
	FanoutGroup    int           `env:"SENSOR_FANOUT_GROUP" json:"fanout_group"`
	Filter         string        `env:"SENSOR_FILTER" json:"filter"`
	MaxFlows       int           `env:"SENSOR_MAX_FLOWS" json:"max_flows"`
	IdleTimeout    time.Duration `env:"SENSOR_IDLE_TIMEOUT" json:"idle_timeout"`
	UDPIdleTimeout time.Duration `env:"SENSOR_UDP_IDLE_TIMEOUT" json:"udp_idle_timeout"`
	ActiveTimeout  time.Duration `env:"SENSOR_ACTIVE_TIMEOUT" json:"active_timeout"`
	Rules          []string      `env:"SENSOR_RULES" json:"rules"`
}

func defaultSensorConfig() sensorConfig {
	a := capture.DefaultAFPacketConfig()
	f := flowtable.DefaultConfig()
	return sensorConfig{
		Workers: a.Workers, RingMB: a.RingSizeMB, Promiscuous: a.Promiscuous,
		MaxFlows: f.MaxFlows, IdleTimeout: f.IdleTimeout, UDPIdleTimeout: f.UDPIdleTimeout, ActiveTimeout: f.ActiveTimeout,
	}
}

func (c sensorConfig) sensor() sensor.Config {
	s := sensor.DefaultConfig()
	s.Flows.MaxFlows = c.MaxFlows
	s.Flows.IdleTimeout = c.IdleTimeout
	s.Flows.UDPIdleTimeout = c.UDPIdleTimeout
	s.Flows.ActiveTimeout = c.ActiveTimeout
	s.DPI.ExtraRules = c.Rules
	return s
}

func (c sensorConfig) afpacket() capture.AFPacketConfig {
	a := capture.DefaultAFPacketConfig()
	a.Interface, a.Workers, a.RingSizeMB = c.Interface, c.Workers, c.RingMB
	a.Promiscuous, a.FanoutGroup, a.Filter = c.Promiscuous, c.FanoutGroup, c.Filter
	return a
}

// validate names the variable of every invalid value.
func (c sensorConfig) validate() error {
	var errs []error
	if err := c.sensor().Flows.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%sSENSOR_MAX_FLOWS / _IDLE_TIMEOUT / _ACTIVE_TIMEOUT: %w", envPrefix, err))
	}
	if c.Interface != "" {
		if err := c.afpacket().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%sSENSOR_WORKERS / _RING_MB / _FILTER: %w", envPrefix, err))
		}
	}
	return errors.Join(errs...)
}

// startSensor starts a sensor on the interface or the capture files,
// exporting IPFIX with exp. It returns when capture has started.
func startSensor(ctx context.Context, cfg Config, files []string, exp *export.Exporter, log *slog.Logger, reg prometheus.Registerer) (*sensor.Sensor, error) {
	scfg := cfg.Sensor.sensor()
	workers := cfg.Sensor.Workers
	var newSource sensor.NewSource
	if len(files) > 0 {
		scfg.CaptureClock = true
		workers = 1
		newSource = func(hs []capture.Handler) (capture.Source, error) {
			return newFilesSource(files, log, reg, hs[0])
		}
	} else {
		newSource = func(hs []capture.Handler) (capture.Source, error) {
			return capture.NewAFPacket(cfg.Sensor.afpacket(), log, reg, hs)
		}
	}
	out := func(f *export.Flow) { exp.Export(f) }
	s, _, err := sensor.New(scfg, workers, newSource, out, log, reg)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return s, nil
}

// sensorCmd is `flowlens sensor`: capture, classify, export IPFIX.
func sensorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("sensor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bindFlags(fs, &cfg)
	bindSensorFlags(fs, &cfg)
	var files []string
	fs.Func("pcap", "read this capture file (pcap or pcapng) instead of an interface; repeatable", func(s string) error {
		files = append(files, s)
		return nil
	})
	check := fs.Bool("check", false, "validate the configuration and exit")
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	if cfg.Sensor.Interface == "" && len(files) == 0 {
		return fmt.Errorf("%sSENSOR_INTERFACE: flowlens sensor needs --interface NAME or --pcap FILE", envPrefix)
	}
	if cfg.Sensor.Interface != "" && len(files) > 0 {
		return errors.New("--interface and --pcap exclude each other")
	}
	if *check {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	log := cfg.logger(stderr)
	reg := newRegistry()
	exp, err := export.New(cfg.Export, log, reg)
	if err != nil {
		return err
	}
	if err := exp.Start(ctx); err != nil {
		return err
	}
	var web *httpd.Server
	if len(files) == 0 {
		web = httpd.New(cfg.http(), log, reg, nil)
		if err := web.Start(ctx); err != nil {
			exp.Stop()
			return err
		}
	}
	s, err := startSensor(ctx, cfg, files, exp, log, reg)
	if err != nil {
		if web != nil {
			web.Stop()
		}
		exp.Stop()
		return err
	}
	log.Info("flowlens sensor running", "interface", cfg.Sensor.Interface, "files", files, "export", cfg.Export.Collectors)
	select {
	case <-ctx.Done():
	case <-s.Done():
	}
	s.Stop()
	exp.Stop()
	if web != nil {
		web.Stop()
	}
	return s.Err()
}

func bindSensorFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Sensor.Interface, "interface", cfg.Sensor.Interface, "capture on this interface, AF_PACKET ($FLOWLENS_SENSOR_INTERFACE)")
	fs.IntVar(&cfg.Sensor.Workers, "sensor-workers", cfg.Sensor.Workers, "capture workers, one fanout socket each ($FLOWLENS_SENSOR_WORKERS)")
	fs.Func("export", "IPFIX collectors, host:port, comma-separated ($FLOWLENS_EXPORT_COLLECTORS)", listFlag(&cfg.Export.Collectors))
}

// filesSource reads capture files one after another as one worker, so
// their flows share a table (the files of one capture split by size).
type filesSource struct {
	files []string
	log   *slog.Logger
	reg   prometheus.Registerer
	h     capture.Handler

	mu   sync.Mutex
	cur  *capture.File
	err  error
	stop chan struct{}
	done chan struct{}
}

func newFilesSource(files []string, log *slog.Logger, reg prometheus.Registerer, h capture.Handler) (*filesSource, error) {
	for _, f := range files {
		r, err := capture.OpenFile(f)
		if err != nil {
			return nil, err
		}
		r.Close()
	}
	return &filesSource{files: files, log: log, reg: reg, h: h, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// endless hides End from a file source, so the flow table is flushed once,
// after the last file.
type endless struct{ capture.Handler }

func (endless) End() {}

func (s *filesSource) Workers() int { return 1 }

func (s *filesSource) Start(ctx context.Context) error {
	go func() {
		defer close(s.done)
		defer s.h.End()
		for i, name := range s.files {
			var reg prometheus.Registerer
			if i == 0 {
				reg = s.reg
			}
			f, err := capture.NewFile(capture.FileConfig{Path: name}, s.log, reg, endless{s.h})
			if err == nil {
				err = f.Start(ctx)
			}
			if err != nil {
				s.setErr(err)
				return
			}
			s.mu.Lock()
			s.cur = f
			s.mu.Unlock()
			select {
			case <-f.Done():
			case <-s.stop:
				f.Stop()
			}
			if err := f.Err(); err != nil {
				s.setErr(fmt.Errorf("%s: %w", name, err))
				return
			}
			select {
			case <-s.stop:
				return
			default:
			}
		}
	}()
	return nil
}

func (s *filesSource) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *filesSource) Stop() {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	<-s.done
}

func (s *filesSource) Done() <-chan struct{} { return s.done }

func (s *filesSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *filesSource) Stats() []capture.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.Stats()
}

// classifiedFlow is one line of `flowlens classify`.
type classifiedFlow struct {
	Proto         uint8     `json:"proto"`
	Client        string    `json:"client"`
	Server        string    `json:"server"`
	VLAN          uint16    `json:"vlan,omitempty"`
	ClientBytes   uint64    `json:"client_bytes"`
	ClientPackets uint64    `json:"client_packets"`
	ServerBytes   uint64    `json:"server_bytes"`
	ServerPackets uint64    `json:"server_packets"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	EndReason     uint8     `json:"end_reason"`
	Label         string    `json:"label"`
	Category      string    `json:"category"`
	Confidence    string    `json:"confidence"`
	ServerName    string    `json:"server_name,omitempty"`
	DNSQuery      string    `json:"dns_query,omitempty"`
	DNSQType      string    `json:"dns_qtype,omitempty"`
	DNSRCode      string    `json:"dns_rcode,omitempty"`
}

// classifyCmd is `flowlens classify FILE...`: the sensor's pipeline on
// capture files, one JSON object per flow on stdout (5-tuple, per-direction
// bytes and packets, label, category, confidence, server name). Flows are
// printed as they end, the rest at the end of the files.
func classifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("classify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Func("rules", "extra application rules file (sensor/dpi/apps.txt format); repeatable ($FLOWLENS_SENSOR_RULES)", func(s string) error {
		cfg.Sensor.Rules = append(cfg.Sensor.Rules, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowlens classify [--rules FILE] FILE.pcap...")
		fs.PrintDefaults()
	}
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("classify needs capture files")
	}
	enc := json.NewEncoder(stdout)
	var werr error
	out := func(f *export.Flow) {
		if werr != nil {
			return
		}
		werr = enc.Encode(classifiedFlow{
			Proto: f.Protocol, Client: net.JoinHostPort(f.Client.String(), fmt.Sprint(f.ClientPort)),
			Server: net.JoinHostPort(f.Server.String(), fmt.Sprint(f.ServerPort)), VLAN: f.VLAN,
			ClientBytes: f.ClientOctets, ClientPackets: f.ClientPackets, ServerBytes: f.ServerOctets, ServerPackets: f.ServerPackets,
			Start: f.Start.UTC(), End: f.End.UTC(), EndReason: uint8(f.EndReason),
			Label: f.Application, Category: f.Category, Confidence: f.Confidence.String(),
			ServerName: f.ServerName, DNSQuery: f.DNSQuery,
			DNSQType: schema.DNSTypeName(f.DNSQType), DNSRCode: schema.DNSRCodeName(f.DNSRCode, f.DNSAnswered),
		})
	}
	scfg := cfg.Sensor.sensor()
	scfg.CaptureClock = true
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, _, err := sensor.New(scfg, 1, func(hs []capture.Handler) (capture.Source, error) {
		return newFilesSource(fs.Args(), log, nil, hs[0])
	}, out, log, nil)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		s.Stop()
	}
	return errors.Join(s.Err(), werr)
}
