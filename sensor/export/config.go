package export

import (
	"errors"
	"fmt"
	"time"
)

// Config of the IPFIX exporter. The env names are relative: the daemon
// adds its prefix.
type Config struct {
	// Collectors receive every message (host:port, UDP). Names are
	// resolved once, at Start.
	Collectors []string `env:"EXPORT_COLLECTORS" json:"collectors"`
	// ObservationDomainID is put in every message header.
	ObservationDomainID uint32 `env:"EXPORT_OBSERVATION_DOMAIN" json:"observation_domain_id"`
	// MTU bounds an IPFIX message (the UDP payload). The default, 1400,
	// leaves room for IPv6 and UDP headers and a tunnel on a 1500-byte
	// path (RFC 7011 §10.3.3: a message must not exceed the path MTU).
	MTU int `env:"EXPORT_MTU" json:"mtu"`
	// Unidirectional exports two records per flow (client→server and,
	// when the server sent anything, server→client) instead of one RFC
	// 5103 biflow record, for collectors that ignore reverse elements.
	Unidirectional bool `env:"EXPORT_UNIDIRECTIONAL" json:"unidirectional"`
	// Ntop adds nProbe's elements (enterprise 35632): L7_PROTO_NAME,
	// L7_PROTO_CATEGORY, TLS_SERVER_NAME, DNS_QUERY, L7_CONFIDENCE. IANA
	// has no element for a TLS server name, a DNS query or a label's
	// confidence, so without them collectors (ours included) get the
	// label and category only, and store the label as an exporter label
	// rather than a DPI one.
	Ntop bool `env:"EXPORT_NTOP" json:"ntop"`
	// ApplicationEngine is the RFC 6759 classification engine id written
	// before Flow.ApplicationID in applicationId (IE 95): 13 (PANA-L7, the
	// default) when the ids are the sensor's own numbering, 22 (ntop nDPI)
	// when they are nDPI protocol ids.
	ApplicationEngine uint8 `env:"EXPORT_APPLICATION_ENGINE" json:"application_engine"`
	// MaxLabelLen bounds the application name and category, MaxNameLen
	// the server name and DNS query (253 is the longest DNS name); longer
	// strings are cut at a UTF-8 boundary.
	MaxLabelLen int `env:"EXPORT_MAX_LABEL_LEN" json:"max_label_len"`
	MaxNameLen  int `env:"EXPORT_MAX_NAME_LEN" json:"max_name_len"`

	// QueueSize bounds the flows waiting for the writer; beyond it Export
	// drops (counted, reason queue_full).
	QueueSize int `env:"EXPORT_QUEUE_SIZE" json:"queue_size"`
	// FlushInterval bounds how long a flow waits in a message that is not
	// full yet.
	FlushInterval time.Duration `env:"EXPORT_FLUSH_INTERVAL" json:"flush_interval"`
	// Templates are sent at start, then in the first message after
	// TemplateInterval has passed or TemplateEveryMessages messages were
	// sent (0: by time only), and on their own when nothing else is sent
	// for TemplateInterval. Over UDP a collector that starts late, or
	// lost the datagram, learns them from the next refresh (RFC 7011 §8:
	// periodic retransmission, configurable).
	TemplateInterval      time.Duration `env:"EXPORT_TEMPLATE_INTERVAL" json:"template_interval"`
	TemplateEveryMessages int           `env:"EXPORT_TEMPLATE_EVERY_MESSAGES" json:"template_every_messages"`
	// StopTimeout bounds how long Stop spends sending what is queued.
	StopTimeout time.Duration `env:"EXPORT_STOP_TIMEOUT" json:"stop_timeout"`
}

// Classification engine ids (IANA "Classification Engine IDs", RFC 6759).
const (
	EnginePANAL7 = 13 // proprietary layer 7: the exporter's own registry
	EngineNDPI   = 22 // ntop nDPI protocol ids
)

// DefaultConfig exports biflows with the ntop elements to the local
// collector's IPFIX port.
func DefaultConfig() Config {
	return Config{
		Collectors:            []string{"127.0.0.1:4739"},
		MTU:                   1400,
		Ntop:                  true,
		ApplicationEngine:     EnginePANAL7,
		MaxLabelLen:           64,
		MaxNameLen:            253,
		QueueSize:             65536,
		FlushInterval:         time.Second,
		TemplateInterval:      30 * time.Second,
		TemplateEveryMessages: 100,
		StopTimeout:           5 * time.Second,
	}
}

// maxMessage is the largest IPFIX message: the header's length is 16 bits.
const maxMessage = 65535

const (
	headerLen    = 16
	setHeaderLen = 4
)

// validateEncoding checks what the Encoder needs: a worst-case record (v6,
// every string at its bound) fits in one message, and so does the
// template set, so that no flow is ever unencodable.
func (c Config) validateEncoding() error {
	switch {
	case c.MaxLabelLen < 1 || c.MaxLabelLen > maxMessage:
		return fmt.Errorf("export: MaxLabelLen %d: must be 1..%d", c.MaxLabelLen, maxMessage)
	case c.MaxNameLen < 1 || c.MaxNameLen > maxMessage:
		return fmt.Errorf("export: MaxNameLen %d: must be 1..%d", c.MaxNameLen, maxMessage)
	case c.ApplicationEngine != EnginePANAL7 && c.ApplicationEngine != EngineNDPI:
		return fmt.Errorf("export: ApplicationEngine %d: accepted values are %d (PANA-L7, the sensor's own ids) and %d (ntop nDPI ids)",
			c.ApplicationEngine, EnginePANAL7, EngineNDPI)
	case c.MTU > maxMessage:
		return fmt.Errorf("export: MTU %d: an IPFIX message is at most %d bytes", c.MTU, maxMessage)
	}
	t := compile(true, c.Unidirectional, c.Ntop)
	worst := headerLen + setHeaderLen + t.fixed + t.labels*varSize(c.MaxLabelLen) + t.names*varSize(c.MaxNameLen)
	if worst > c.MTU {
		return fmt.Errorf("export: MTU %d: the largest record needs a %d-byte message (lower MaxLabelLen %d or MaxNameLen %d, or raise the MTU)",
			c.MTU, worst, c.MaxLabelLen, c.MaxNameLen)
	}
	if n := headerLen + len(templateSet(c)); n > c.MTU {
		return fmt.Errorf("export: MTU %d: the template set needs a %d-byte message", c.MTU, n)
	}
	return nil
}

// Validate reports invalid settings (New does too).
func (c Config) Validate() error { return c.validate() }

func (c Config) validate() error {
	switch {
	case len(c.Collectors) == 0:
		return errors.New("export: no collectors")
	case c.QueueSize <= 0:
		return fmt.Errorf("export: QueueSize %d: must be positive", c.QueueSize)
	case c.FlushInterval <= 0 || c.TemplateInterval <= 0 || c.StopTimeout <= 0:
		return errors.New("export: FlushInterval, TemplateInterval and StopTimeout must be positive")
	case c.TemplateEveryMessages < 0:
		return fmt.Errorf("export: TemplateEveryMessages %d: must be 0 (by time only) or positive", c.TemplateEveryMessages)
	}
	return c.validateEncoding()
}
