package capture

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// AFPacketConfig configures live capture on one interface.
type AFPacketConfig struct {
	Interface string
	// Workers is the number of AF_PACKET sockets, each read by its own
	// goroutine. With more than one they form a PACKET_FANOUT group in hash
	// mode: the kernel hashes the flow (symmetrically: both directions of a
	// flow give the same hash) and a flow always reaches the same worker.
	Workers int
	// FanoutGroup is the fanout group id. Groups are shared by every
	// process of the network namespace: two sensors on one interface need
	// different ids. 0 derives one from the process id.
	FanoutGroup int
	// FanoutDefrag reassembles IPv4 fragments before the fanout hash
	// (PACKET_FANOUT_FLAG_DEFRAG), so a fragmented datagram reaches the
	// worker of its flow whole. IPv6 fragments are not reassembled.
	FanoutDefrag bool
	// The TPACKET_V3 ring of each worker: RingSizeMB of blocks of BlockSize
	// bytes (a power of two, at least a page). The kernel fills a block
	// with packets of any size up to the block and hands it over when full
	// or after BlockTimeout. FrameSize is the nominal frame size the kernel
	// requires for V3 (it must divide BlockSize); it does not cap packets.
	BlockSize    int
	FrameSize    int
	RingSizeMB   int
	BlockTimeout time.Duration
	// PollTimeout is how long a worker waits for the ring before checking
	// for Stop and ticks.
	PollTimeout time.Duration
	// TickInterval is how often Handler.Tick is called.
	TickInterval time.Duration
	// Promiscuous puts the interface in promiscuous mode while capturing
	// (a packet socket membership: the kernel undoes it when the capture
	// stops, also if the process dies). A SPAN port or TAP delivers frames
	// for other hosts, which the interface drops unless promiscuous.
	Promiscuous bool
	// Filter is a classic BPF program in `tcpdump -ddd` or `tcpdump -dd`
	// form, attached to every socket (we do not link libpcap to compile
	// filter expressions: compile on any machine with tcpdump, e.g.
	// `tcpdump -i eth1 -ddd 'not port 4739'`). Empty: no filter.
	Filter string
}

// DefaultAFPacketConfig: one worker, 64 MiB ring of 1 MiB blocks,
// promiscuous, IPv4 defragmentation in the fanout.
func DefaultAFPacketConfig() AFPacketConfig {
	return AFPacketConfig{
		Workers:      1,
		FanoutDefrag: true,
		BlockSize:    1 << 20,
		FrameSize:    2048,
		RingSizeMB:   64,
		BlockTimeout: 64 * time.Millisecond,
		PollTimeout:  100 * time.Millisecond,
		TickInterval: time.Second,
		Promiscuous:  true,
	}
}

// ErrUnavailable is returned where AF_PACKET capture is not built in.
var ErrUnavailable = errors.New("AF_PACKET capture needs Linux and a cgo build (gopacket/afpacket)")

// Validate reports invalid settings.
func (c AFPacketConfig) Validate() error {
	page := os.Getpagesize()
	switch {
	case c.Interface == "":
		return errors.New("capture interface: none given")
	case c.Workers < 1 || c.Workers > 256:
		return fmt.Errorf("capture workers must be 1..256, got %d", c.Workers)
	case c.FanoutGroup < 0 || c.FanoutGroup > 0xffff:
		return fmt.Errorf("fanout group must be 0..65535, got %d", c.FanoutGroup)
	case c.BlockSize < page || c.BlockSize&(c.BlockSize-1) != 0:
		return fmt.Errorf("ring block size must be a power of two of at least %d bytes, got %d", page, c.BlockSize)
	case c.FrameSize < 128 || c.FrameSize%16 != 0 || c.BlockSize%c.FrameSize != 0:
		return fmt.Errorf("ring frame size must be a multiple of 16 of at least 128 dividing the block size %d, got %d", c.BlockSize, c.FrameSize)
	case c.RingSizeMB < 1 || c.RingSizeMB<<20 < c.BlockSize:
		return fmt.Errorf("ring size must be at least one block (%d bytes), got %d MiB", c.BlockSize, c.RingSizeMB)
	case c.BlockTimeout < time.Millisecond:
		return fmt.Errorf("ring block timeout must be >= 1ms, got %v", c.BlockTimeout)
	case c.PollTimeout < time.Millisecond:
		return fmt.Errorf("poll timeout must be >= 1ms, got %v", c.PollTimeout)
	case c.TickInterval <= 0:
		return fmt.Errorf("tick interval must be > 0, got %v", c.TickInterval)
	}
	if c.Filter != "" {
		if _, err := ParseFilter(c.Filter); err != nil {
			return fmt.Errorf("capture filter: %w", err)
		}
	}
	return nil
}

// fanoutGroup returns the configured group or one derived from the pid.
func (c AFPacketConfig) fanoutGroup() uint16 {
	if c.FanoutGroup != 0 {
		return uint16(c.FanoutGroup)
	}
	return uint16(os.Getpid())
}

// numBlocks is the ring's block count.
func (c AFPacketConfig) numBlocks() int { return c.RingSizeMB << 20 / c.BlockSize }
