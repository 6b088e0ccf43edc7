package detect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// SyslogConfig configures a Syslog notifier.
type SyslogConfig struct {
	Addr     string // host:port of the collector, UDP
	Facility int    // 0..23; default 16 (local0)
	Hostname string // default os.Hostname()
	AppName  string // default "flowlens"
	// MaxSize truncates messages to what the collector accepts; RFC 5426
	// asks receivers for at least 2048 bytes.
	MaxSize int
}

// DefaultSyslogConfig returns the defaults, with no address.
func DefaultSyslogConfig() SyslogConfig {
	return SyslogConfig{Facility: 16, AppName: "flowlens", MaxSize: 2048}
}

// Syslog is a Sink sending each alert as one RFC 5424 message over UDP
// (RFC 5426), the alert's fields as structured data and its evidence as
// the message. Sends are synchronous and cheap; failures are counted.
type Syslog struct {
	cfg    SyslogConfig
	mu     sync.RWMutex
	conn   net.Conn
	sent   prometheus.Counter
	errors prometheus.Counter
}

// NewSyslog checks cfg and registers the metrics (flowlens_detect_syslog_*)
// on reg when it is not nil.
func NewSyslog(cfg SyslogConfig, reg prometheus.Registerer) (*Syslog, error) {
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("%w: syslog addr %q: want host:port", ErrInvalidConfig, cfg.Addr)
	}
	if cfg.Facility < 0 || cfg.Facility > 23 {
		return nil, fmt.Errorf("%w: syslog facility %d: want 0..23", ErrInvalidConfig, cfg.Facility)
	}
	if cfg.MaxSize < 480 {
		return nil, fmt.Errorf("%w: syslog max_size %d: want >= 480", ErrInvalidConfig, cfg.MaxSize)
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	cfg.Hostname, cfg.AppName = printable(cfg.Hostname, 255), printable(cfg.AppName, 48)
	s := &Syslog{cfg: cfg,
		sent:   prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_detect_syslog_sent_total", Help: "Alerts sent to syslog."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_detect_syslog_errors_total", Help: "Alerts syslog sends failed for (not running, socket errors)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.sent, s.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("detect: register syslog metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Start opens the UDP socket.
func (s *Syslog) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return errors.New("syslog: already started")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("syslog: %s: %w", s.cfg.Addr, err)
	}
	s.conn = c
	return nil
}

// Stop closes the socket.
func (s *Syslog) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Alert implements Sink.
func (s *Syslog) Alert(a *Alert) {
	msg := s.format(a)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.conn == nil {
		s.errors.Inc()
		return
	}
	if _, err := s.conn.Write(msg); err != nil {
		s.errors.Inc()
		return
	}
	s.sent.Inc()
}

// syslogSeverity maps ours onto RFC 5424's (2 critical ... 6 informational).
func syslogSeverity(s Severity) int {
	switch s {
	case SeverityCritical:
		return 2
	case SeverityHigh:
		return 3
	case SeverityMedium:
		return 4
	case SeverityLow:
		return 5
	}
	return 6
}

// sdID is our structured data element; 32473 is the private enterprise
// number RFC 5612 reserves for documentation and examples.
const sdID = "flowlens@32473"

func (s *Syslog) format(a *Alert) []byte {
	var b strings.Builder
	b.WriteString("<" + strconv.Itoa(s.cfg.Facility*8+syslogSeverity(a.Severity)) + ">1 ")
	if a.Time.IsZero() {
		b.WriteString("-")
	} else {
		b.WriteString(a.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	}
	b.WriteString(" " + orNil(s.cfg.Hostname) + " " + orNil(s.cfg.AppName) + " - " + orNil(printable(a.Kind, 32)) + " [" + sdID)
	param := func(k, v string) {
		if v != "" {
			b.WriteString(" " + k + `="` + sdEscape(v) + `"`)
		}
	}
	param("kind", a.Kind)
	param("rule", a.Rule)
	param("severity", a.Severity.String())
	param("src", addrText(a.SrcAddr))
	param("dst", addrText(a.DstAddr))
	param("src_pool", a.SrcPool)
	param("dst_pool", a.DstPool)
	param("protocol", a.Protocol)
	param("count", strconv.FormatUint(a.Count, 10))
	b.WriteString("]")
	if a.Evidence != "" {
		b.WriteString(" \xef\xbb\xbf" + strings.ToValidUTF8(a.Evidence, "?"))
	}
	out := b.String()
	if len(out) > s.cfg.MaxSize {
		out = out[:s.cfg.MaxSize]
		for len(out) > 0 && !utf8.ValidString(out) { // do not cut a character in two
			out = out[:len(out)-1]
		}
	}
	return []byte(out)
}

func orNil(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable keeps the printable US-ASCII of s (header fields), at most n bytes.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sdEscape escapes a PARAM-VALUE (RFC 5424 section 6.3.3).
func sdEscape(v string) string {
	v = strings.ToValidUTF8(v, "?")
	if !strings.ContainsAny(v, `"\]`) {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)
	return r.Replace(v)
}
