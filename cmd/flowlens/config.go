package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"flowlens/collector/udp"
	"flowlens/console"
	"flowlens/decoder"
	"flowlens/enrich"
	"flowlens/internal/httpd"
	"flowlens/lander"
	"flowlens/sensor/export"
	"flowlens/sink/clickhouse"
	"flowlens/sink/embedded"
	"flowlens/sink/kafka"
)

// Config is the daemon's configuration. Every field is read from the
// environment (FLOWLENS_ + the env tag); flags override the common ones.
// Defaults are set before parsing, so an empty variable means "empty"
// (e.g. FLOWLENS_SFLOW_LISTEN= disables the sFlow listener).
type Config struct {
	DataDir           string        `env:"DATA_DIR" json:"data_dir"`
	HTTPListen        string        `env:"HTTP_LISTEN" json:"http_listen"`
	HTTPSQLRemote     bool          `env:"HTTP_SQL_REMOTE" json:"http_sql_remote"`
	NetFlowListen     []string      `env:"NETFLOW_LISTEN" json:"netflow_listen"`
	IPFIXListen       []string      `env:"IPFIX_LISTEN" json:"ipfix_listen"`
	SFlowListen       []string      `env:"SFLOW_LISTEN" json:"sflow_listen"`
	UDPSockets        int           `env:"UDP_SOCKETS" json:"udp_sockets"`
	UDPRcvBuf         int           `env:"UDP_RCVBUF" json:"udp_rcvbuf"`
	Workers           int           `env:"WORKERS" json:"workers"`
	QueueSize         int           `env:"QUEUE_SIZE" json:"queue_size"`
	BatchSize         int           `env:"BATCH_SIZE" json:"batch_size"`
	BatchInterval     time.Duration `env:"BATCH_INTERVAL" json:"batch_interval"`
	MaxPending        int           `env:"MAX_PENDING_BATCHES" json:"max_pending_batches"`
	TTLDays           int           `env:"TTL_DAYS" json:"ttl_days"`
	RollupTTLDays     int           `env:"ROLLUP_TTL_DAYS" json:"rollup_ttl_days"`
	PendingTTL        time.Duration `env:"TEMPLATE_WAIT" json:"template_wait"`
	MaxExporters      int           `env:"MAX_EXPORTERS" json:"max_exporters"`
	SamplingDefault   uint32        `env:"SAMPLING_DEFAULT" json:"sampling_default"`
	SamplingOverrides []string      `env:"SAMPLING_OVERRIDES" json:"sampling_overrides"`
	ExporterAllow     []string      `env:"EXPORTER_ALLOW" json:"exporter_allow"`
	RateLimit         float64       `env:"EXPORTER_RATE_LIMIT" json:"exporter_rate_limit"`
	MemoryLimit       int64         `env:"MEMORY_LIMIT" json:"memory_limit"`
	LogLevel          string        `env:"LOG_LEVEL" json:"log_level"`
	LogFormat         string        `env:"LOG_FORMAT" json:"log_format"`
	// Kafka is read by `flowlens collect` and `flowlens land`, and by
	// `flowlens run` when FLOWLENS_KAFKA_BROKERS is set (FLOWLENS_KAFKA_*).
	Kafka kafka.Config `json:"kafka"`
	// Land is the consumer side (FLOWLENS_LAND_*).
	Land lander.Config `json:"land"`
	// Sensor is the DPI sensor (`flowlens sensor`, `flowlens run
	// --interface`; FLOWLENS_SENSOR_*), Export its IPFIX export
	// (FLOWLENS_EXPORT_*).
	Sensor sensorConfig  `json:"sensor"`
	Export export.Config `json:"export"`
	// Console is the web console served on the HTTP port (FLOWLENS_CONSOLE_*).
	Console console.Config `json:"console"`
	// Enrich is the enrich stage: the policy file (host pools, categories,
	// detections) and GeoIP (FLOWLENS_POLICY_FILE, FLOWLENS_GEOIP_*).
	Enrich enrich.Config `json:"enrich"`
	// ClickHouse is the server `flowlens migrate` uses instead of the
	// embedded store when its address is set (FLOWLENS_CLICKHOUSE_*).
	ClickHouse clickhouse.Config `json:"clickhouse"`
}

// DefaultConfig is what `make run` starts with.
func DefaultConfig() Config {
	u := udp.DefaultConfig()
	s := embedded.DefaultConfig()
	k := kafka.DefaultConfig()
	k.SpoolDir = "" // collect puts it in the data directory
	k.Brokers = nil // set: run goes through Kafka; collect and land need it
	d := decoder.DefaultConfig()
	return Config{
		DataDir:       s.DataDir,
		HTTPListen:    ":8080",
		NetFlowListen: []string{":2055"},
		IPFIXListen:   []string{":4739"},
		SFlowListen:   []string{":6343"},
		UDPSockets:    u.Sockets,
		UDPRcvBuf:     u.RcvBuf,
		Workers:       u.Workers,
		QueueSize:     u.QueueSize,
		BatchSize:     s.BatchSize,
		BatchInterval: s.BatchInterval,
		MaxPending:    s.MaxPending,
		TTLDays:       s.Tables.TTLDays,
		RollupTTLDays: s.Tables.RollupTTLDays,
		PendingTTL:    d.PendingTTL,
		MaxExporters:  d.MaxExporters,
		LogLevel:      "info",
		Kafka:         k,
		Land:          lander.DefaultConfig(),
		Sensor:        defaultSensorConfig(),
		Export:        export.DefaultConfig(),
		ClickHouse:    clickhouse.DefaultConfig(),
		Enrich:        enrich.DefaultConfig(),
		Console:       console.DefaultConfig(),
		LogFormat:     "text",
	}
}

const envPrefix = "FLOWLENS_"

// roleFlags defines a daemon role's flags (the common settings, the role's
// own through extra, --check and --dump) and reads the environment and args
// into cfg. dumped is true when --dump printed the configuration: the role
// then returns err at once.
func roleFlags(name string, args []string, stdout, stderr io.Writer, cfg *Config, extra func(*flag.FlagSet)) (check, dumped bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	bindFlags(fs, cfg)
	if extra != nil {
		extra(fs)
	}
	c := fs.Bool("check", false, "validate the configuration and exit")
	d := fs.Bool("dump", false, "print the effective configuration and exit")
	if err := loadConfig(fs, args, cfg); err != nil {
		return false, false, err
	}
	if *d {
		return false, true, cfg.dump(stdout)
	}
	return *c, false, nil
}

// newRegistry is a daemon's metrics registry, with the Go runtime's and the
// process's collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// loadConfig reads the environment, then the flags of fs (already defined
// by bindFlags) from args.
func loadConfig(fs *flag.FlagSet, args []string, cfg *Config) error {
	if err := env.ParseWithOptions(cfg, env.Options{Prefix: envPrefix}); err != nil {
		return envError(err)
	}
	// env leaves a list untouched when its variable is set but empty; for
	// listeners, empty means disabled.
	for name, dst := range map[string]*[]string{"NETFLOW_LISTEN": &cfg.NetFlowListen, "IPFIX_LISTEN": &cfg.IPFIXListen, "SFLOW_LISTEN": &cfg.SFlowListen} {
		if v, ok := os.LookupEnv(envPrefix + name); ok && strings.TrimSpace(v) == "" {
			*dst = nil
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return cfg.Validate()
}

// bindFlags defines the common settings as flags overriding the environment.
func bindFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "embedded store directory ($FLOWLENS_DATA_DIR)")
	fs.StringVar(&cfg.HTTPListen, "http", cfg.HTTPListen, "HTTP address for /metrics, /healthz and SQL ($FLOWLENS_HTTP_LISTEN)")
	fs.Func("netflow", "NetFlow v5/v9 + IPFIX listen addresses, comma-separated, empty to disable ($FLOWLENS_NETFLOW_LISTEN)", listFlag(&cfg.NetFlowListen))
	fs.Func("ipfix", "IPFIX listen addresses ($FLOWLENS_IPFIX_LISTEN)", listFlag(&cfg.IPFIXListen))
	fs.Func("sflow", "sFlow v5 listen addresses ($FLOWLENS_SFLOW_LISTEN)", listFlag(&cfg.SFlowListen))
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "decoder workers ($FLOWLENS_WORKERS)")
	fs.IntVar(&cfg.TTLDays, "ttl-days", cfg.TTLDays, "days of raw flows kept, 0 = forever ($FLOWLENS_TTL_DAYS)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error ($FLOWLENS_LOG_LEVEL)")
}

func listFlag(dst *[]string) func(string) error {
	return func(s string) error {
		*dst = splitList(s)
		return nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// envError rewrites env's errors to name the variable, not the Go field.
// env reports only the field's name, which nested configs share (BatchSize
// is BATCH_SIZE and LAND_BATCH_SIZE): the variable is the one of those that
// is set in the environment.
func envError(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("configuration: %w", err)
	}
	var msgs []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if names := envNamesOf(pe.Name); len(names) > 0 {
				msgs = append(msgs, fmt.Sprintf("%s: %v", strings.Join(names, " or "), pe.Err))
				continue
			}
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}

// envNamesOf lists the variables of the fields named field, nested configs
// included, keeping those set in the environment when any is.
func envNamesOf(field string) []string {
	var all, set []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := f.Tag.Get("env"); tag != "" {
				if f.Name == field {
					all = append(all, envPrefix+tag)
					if _, ok := os.LookupEnv(envPrefix + tag); ok {
						set = append(set, envPrefix+tag)
					}
				}
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	if len(set) > 0 {
		return set
	}
	return all
}

// Validate names the variable of every invalid value.
func (c Config) Validate() error {
	var errs []error
	bad := func(v string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", envPrefix, v, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("DATA_DIR", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
		bad("HTTP_LISTEN", "%q is not host:port", c.HTTPListen)
	}
	for v, addrs := range map[string][]string{"NETFLOW_LISTEN": c.NetFlowListen, "IPFIX_LISTEN": c.IPFIXListen, "SFLOW_LISTEN": c.SFlowListen} {
		for _, a := range addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad(v, "%q is not host:port (use :2055, 0.0.0.0:2055 or [::]:2055; empty disables)", a)
			}
		}
	}
	if len(c.NetFlowListen)+len(c.IPFIXListen)+len(c.SFlowListen) == 0 {
		bad("NETFLOW_LISTEN", "every listener is disabled: nothing would be collected")
	}
	ranges := []struct {
		v           string
		val, lo, hi int
	}{
		{"UDP_SOCKETS", c.UDPSockets, 1, 64}, {"WORKERS", c.Workers, 1, 256}, {"QUEUE_SIZE", c.QueueSize, 1, 1 << 20},
		{"UDP_RCVBUF", c.UDPRcvBuf, 0, 1 << 30}, {"BATCH_SIZE", c.BatchSize, 1, 10_000_000},
		{"MAX_PENDING_BATCHES", c.MaxPending, 1, 1024}, {"TTL_DAYS", c.TTLDays, 0, 100_000},
		{"ROLLUP_TTL_DAYS", c.RollupTTLDays, 0, 100_000}, {"MAX_EXPORTERS", c.MaxExporters, 1, 1 << 20},
	}
	for _, r := range ranges {
		if r.val < r.lo || r.val > r.hi {
			bad(r.v, "%d is out of range %d..%d", r.val, r.lo, r.hi)
		}
	}
	for _, p := range c.ExporterAllow {
		if _, err := parsePrefix(p); err != nil {
			bad("EXPORTER_ALLOW", "%q is not an address or CIDR prefix", p)
		}
	}
	for _, o := range c.SamplingOverrides {
		if _, err := parseOverride(o); err != nil {
			bad("SAMPLING_OVERRIDES", "%q: %v (example: 10.0.0.0/8=1000,192.0.2.1=512)", o, err)
		}
	}
	if c.RateLimit < 0 {
		bad("EXPORTER_RATE_LIMIT", "must be >= 0 (0: no limit), got %v", c.RateLimit)
	}
	if c.MemoryLimit < 0 {
		bad("MEMORY_LIMIT", "must be >= 0 bytes (0: no limit), got %d", c.MemoryLimit)
	}
	if c.BatchInterval <= 0 {
		bad("BATCH_INTERVAL", "must be > 0, got %s", c.BatchInterval)
	}
	if c.PendingTTL < 0 {
		bad("TEMPLATE_WAIT", "must be >= 0, got %s", c.PendingTTL)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", "%q is not text or json", c.LogFormat)
	}
	if err := c.ClickHouse.ValidateEnv(envPrefix); err != nil {
		errs = append(errs, err)
	}
	if err := c.Console.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s%w", envPrefix, err))
	}
	if err := c.Enrich.GeoIP.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s%w", envPrefix, err))
	}
	if err := c.Sensor.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Export.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%sEXPORT_*: %w", envPrefix, err))
	}
	l := c.Land
	switch {
	case l.Group == "":
		bad("LAND_GROUP", "must not be empty")
	case l.BatchSize < 1:
		bad("LAND_BATCH_SIZE", "must be >= 1, got %d", l.BatchSize)
	case l.MaxRows < l.BatchSize:
		bad("LAND_MAX_ROWS", "must be >= LAND_BATCH_SIZE (%d), got %d", l.BatchSize, l.MaxRows)
	case l.BatchInterval <= 0:
		bad("LAND_BATCH_INTERVAL", "must be > 0, got %s", l.BatchInterval)
	case l.SessionTimeout < time.Second:
		bad("LAND_SESSION_TIMEOUT", "must be >= 1s, got %s", l.SessionTimeout)
	case l.StopTimeout <= 0:
		bad("LAND_STOP_TIMEOUT", "must be > 0, got %s", l.StopTimeout)
	}
	return errors.Join(errs...)
}

func (c Config) udp() udp.Config {
	u := udp.Config{Sockets: c.UDPSockets, RcvBuf: c.UDPRcvBuf, Workers: c.Workers, QueueSize: c.QueueSize, RateLimit: c.RateLimit}
	for _, p := range c.ExporterAllow {
		if pfx, err := parsePrefix(p); err == nil {
			u.Allow = append(u.Allow, pfx)
		}
	}
	for _, l := range []struct {
		name  string
		addrs []string
	}{{"netflow", c.NetFlowListen}, {"ipfix", c.IPFIXListen}, {"sflow", c.SFlowListen}} {
		for _, a := range l.addrs {
			u.Listeners = append(u.Listeners, udp.Listener{Name: l.name, Addr: a})
		}
	}
	return u
}

func (c Config) decoder() decoder.Config {
	d := decoder.DefaultConfig()
	d.PendingTTL = c.PendingTTL
	d.MaxExporters = c.MaxExporters
	d.DefaultSamplingRate = c.SamplingDefault
	for _, o := range c.SamplingOverrides {
		if so, err := parseOverride(o); err == nil {
			d.SamplingOverrides = append(d.SamplingOverrides, so)
		}
	}
	return d
}

// parseOverride reads "PREFIX=RATE" (PREFIX a CIDR or an address).
func parseOverride(s string) (decoder.SamplingOverride, error) {
	p, r, ok := strings.Cut(s, "=")
	if !ok {
		return decoder.SamplingOverride{}, errors.New("want PREFIX=RATE")
	}
	pfx, err := parsePrefix(strings.TrimSpace(p))
	if err != nil {
		return decoder.SamplingOverride{}, err
	}
	rate, err := strconv.ParseUint(strings.TrimSpace(r), 10, 32)
	if err != nil || rate < 1 {
		return decoder.SamplingOverride{}, fmt.Errorf("rate %q is not a whole number >= 1", r)
	}
	return decoder.SamplingOverride{Prefix: pfx, Rate: uint32(rate)}, nil
}

func (c Config) store() embedded.Config {
	s := embedded.DefaultConfig()
	s.DataDir = c.DataDir
	s.BatchSize = c.BatchSize
	s.BatchInterval = c.BatchInterval
	s.MaxPending = c.MaxPending
	s.Tables.TTLDays = c.TTLDays
	s.Tables.RollupTTLDays = c.RollupTTLDays
	return s
}

func (c Config) http() httpd.Config {
	return httpd.Config{Listen: c.HTTPListen, SQLRemote: c.HTTPSQLRemote}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func (c Config) logger(w io.Writer) *slog.Logger {
	l, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: l}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// dump prints the effective configuration as environment assignments,
// ready to paste into a systemd unit or a compose file.
func (c Config) dump(w io.Writer) error {
	var err error
	walkEnv(reflect.ValueOf(c), func(name string, v reflect.Value) {
		val := v.Interface()
		if x, ok := val.([]string); ok {
			val = strings.Join(x, ",")
		}
		if err == nil {
			_, err = fmt.Fprintf(w, "%s%s=%v\n", envPrefix, name, val)
		}
	})
	return err
}

// walkEnv calls fn for every field with an env tag, nested structs included.
func walkEnv(v reflect.Value, fn func(name string, v reflect.Value)) {
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if tag := f.Tag.Get("env"); tag != "" {
			fn(tag, v.Field(i))
		} else if f.Type.Kind() == reflect.Struct {
			walkEnv(v.Field(i), fn)
		}
	}
}

func newFlagSet(cfg *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("flowlens", flag.ContinueOnError)
	bindFlags(fs, cfg)
	return fs
}

// parsePrefix accepts a CIDR prefix or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
