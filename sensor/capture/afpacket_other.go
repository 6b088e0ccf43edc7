//go:build !linux || !cgo

package capture

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/sensor/packet"
)

// AFPacket is live capture, not built in here: it needs Linux and cgo
// (gopacket's afpacket binds the kernel's structures with cgo).
type AFPacket struct{}

// NewAFPacket returns ErrUnavailable.
func NewAFPacket(cfg AFPacketConfig, log *slog.Logger, reg prometheus.Registerer, handlers []Handler) (*AFPacket, error) {
	return nil, ErrUnavailable
}

// Workers implements Source.
func (s *AFPacket) Workers() int { return 0 }

// LinkType is the link type of the packets delivered.
func (s *AFPacket) LinkType() packet.LinkType { return packet.LinkEthernet }

// Start returns ErrUnavailable.
func (s *AFPacket) Start(ctx context.Context) error { return ErrUnavailable }

// Stop does nothing.
func (s *AFPacket) Stop() {}

// Done is closed.
func (s *AFPacket) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Err returns ErrUnavailable.
func (s *AFPacket) Err() error { return ErrUnavailable }

// Stats returns nothing.
func (s *AFPacket) Stats() []Stats { return nil }
