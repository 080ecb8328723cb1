package relay

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/auth"
)

// Limits bound what one connection may do. Zero fields take the defaults of DefaultLimits.
type Limits struct {
	MaxFrameBytes     int     // one client frame; larger ones get frame_too_large (16× closes a WebSocket with 1009)
	FramesPerSecond   float64 // sustained frames per connection, any op (burst twice that)
	MessagesPerSecond float64 // sustained send frames per connection (burst twice that)
	OutboundBytes     int     // queued outbound bytes per connection before it is closed as slow (4008)
}

// DefaultLimits are the documented defaults (docs/PROTOCOL.md §3.1).
func DefaultLimits() Limits {
	return Limits{
		MaxFrameBytes:     64 << 10, // room for a 16 KiB message body escaped twice over, and its fields
		FramesPerSecond:   50,
		MessagesPerSecond: 20,
		OutboundBytes:     4 << 20,
	}
}

// Config configures a Server. Only Auth is required.
type Config struct {
	NodeID string // names the node in logs and keys (letters, digits, '-', '_'); each start adds a random suffix
	Auth   *auth.Verifier
	Limits Limits
	// PresenceGrace is how long a user stays online on this node after its last connection closed, so that
	// a reload or a reconnect does not flash "offline" to its friends (default 5 s).
	PresenceGrace time.Duration
	// Heartbeat is how often the node refreshes its key in RSO_RELAY_NODES (default 5 s); NodeTTL is how long
	// the key lives without a refresh (default 3 × Heartbeat). When a node dies, its users go offline
	// within NodeTTL plus the messaging service's sweep interval.
	Heartbeat time.Duration
	NodeTTL   time.Duration
	// RequestTimeout bounds the wait for the messaging service's answer to one frame (default 10 s).
	RequestTimeout time.Duration
	// AuthTimeout is how long a TCP client has to send its auth frame (default 10 s).
	AuthTimeout time.Duration
	Replicas    int // of RSO_RELAY_NODES (default 1)
	Logger      *slog.Logger
	// Registerer, when set, gets the relay's Prometheus collectors (rso_connections,
	// rso_connection_closes_total, rso_refusals_total, rso_relay_*: relay/metrics.go); nil: they count
	// but are not exported. Register one relay Server per registry.
	Registerer prometheus.Registerer
}

func (c *Config) withDefaults() error {
	d := DefaultLimits()
	l := &c.Limits
	setDefault(&l.MaxFrameBytes, d.MaxFrameBytes)
	setDefault(&l.OutboundBytes, d.OutboundBytes)
	if l.FramesPerSecond == 0 {
		l.FramesPerSecond = d.FramesPerSecond
	}
	if l.MessagesPerSecond == 0 {
		l.MessagesPerSecond = d.MessagesPerSecond
	}
	if l.MaxFrameBytes < 0 || l.OutboundBytes < 0 || l.FramesPerSecond < 0 || l.MessagesPerSecond < 0 {
		return fmt.Errorf("relay: limits must be positive")
	}
	if c.PresenceGrace == 0 {
		c.PresenceGrace = 5 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 5 * time.Second
	}
	if c.NodeTTL == 0 {
		c.NodeTTL = 3 * c.Heartbeat
	}
	if c.NodeTTL <= c.Heartbeat {
		return fmt.Errorf("relay: NodeTTL (%s) must be longer than Heartbeat (%s)", c.NodeTTL, c.Heartbeat)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = 10 * time.Second
	}
	setDefault(&c.Replicas, 1)
	if c.Auth == nil {
		return fmt.Errorf("relay: Config.Auth is required (auth.NewVerifier(nil) allows anonymous clients)")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func setDefault(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}
