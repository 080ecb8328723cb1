package sharedobject

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/sharedobject/internal/model"
)

// Limits bound what one client may do. Zero values are replaced by the defaults in DefaultLimits.
type Limits struct {
	MaxFrameBytes    int     // one frame; larger frames get frame_too_large (16× closes the socket)
	MaxValueBytes    int     // one slot value
	MaxSlots         int     // slots in one object
	MaxObjectBytes   int     // sum of slot names and values in one object
	MaxChanges       int     // changes in one update
	MaxSubscriptions int     // objects one connection may subscribe
	MaxNameBytes     int     // object, slot and handler names
	FramesPerSecond  float64 // sustained inbound frames per connection (burst is twice that)
	OutboundBytes    int     // queued outbound bytes per connection before it is closed as slow (4008)
	// MaxRememberedBytes bounds the request ids one object remembers for at-most-once; while it is full of
	// ids younger than the duplicate window, new requests with an id are answered busy. 0: what fits in a
	// snapshot beside a full object under NATS's max_payload, at most 4 MiB (see rememberedBudget).
	MaxRememberedBytes int
	MaxQueuedWrites    int // writes waiting for one object on one node; more are answered busy (default 1024)
}

// DefaultLimits are the limits documented in README.md and docs/PROTOCOL.md.
func DefaultLimits() Limits {
	return Limits{
		MaxFrameBytes:    256 << 10,
		MaxValueBytes:    64 << 10,
		MaxSlots:         1000,
		MaxObjectBytes:   512 << 10, // with room for a snapshot's overhead in NATS's default 1 MiB max_payload
		MaxChanges:       100,
		MaxSubscriptions: 100,
		MaxNameBytes:     200,
		FramesPerSecond:  200,
		OutboundBytes:    8 << 20,

		MaxQueuedWrites: 1024,
	}
}

// Config configures a Node. Only Auth is required.
type Config struct {
	NodeID       string        // unique per process; random when empty
	Limits       Limits        // zero fields take DefaultLimits
	ResyncWindow uint64        // versions a reconnecting client may lag and still get a delta (default 1000)
	TempGrace    time.Duration // how long a temporary object outlives its last subscriber (default 5s)
	// DuplicateWindow is how long an object remembers a committed request id (default 2 minutes).
	DuplicateWindow time.Duration
	HookTimeout     time.Duration // default wait for a validation hook's answer (default 2s)
	Replicas        int           // JetStream replicas of the object streams (default 1)
	Auth            *auth.Verifier
	Logger          *slog.Logger
	// Registerer is where the node registers its Prometheus collectors (cmd/rso passes the registry it
	// serves at /metrics); nil: they count into a private registry, not exported but read by stats. A node registers
	// its collectors once, so two nodes need two registries.
	Registerer prometheus.Registerer
	// Gatherer is what rso.admin.so.stats reads the node's numbers from: cmd/rso passes everything it
	// serves at /metrics (every service's), so the admin page sees the whole process. nil: the
	// Registerer, when it is a registry.
	Gatherer prometheus.Gatherer
}

func (c *Config) withDefaults() error {
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry() // private, but rso.admin.so.stats still reads it
	}
	d := DefaultLimits()
	l := &c.Limits
	setDefault(&l.MaxFrameBytes, d.MaxFrameBytes)
	setDefault(&l.MaxValueBytes, d.MaxValueBytes)
	setDefault(&l.MaxSlots, d.MaxSlots)
	setDefault(&l.MaxObjectBytes, d.MaxObjectBytes)
	setDefault(&l.MaxChanges, d.MaxChanges)
	setDefault(&l.MaxSubscriptions, d.MaxSubscriptions)
	setDefault(&l.MaxNameBytes, d.MaxNameBytes)
	setDefault(&l.OutboundBytes, d.OutboundBytes)
	setDefault(&l.MaxQueuedWrites, d.MaxQueuedWrites)
	if l.FramesPerSecond == 0 {
		l.FramesPerSecond = d.FramesPerSecond
	}
	for name, v := range map[string]int{
		"max frame bytes": l.MaxFrameBytes, "max value bytes": l.MaxValueBytes, "max slots": l.MaxSlots,
		"max object bytes": l.MaxObjectBytes, "max changes": l.MaxChanges, "max subscriptions": l.MaxSubscriptions,
		"max name bytes": l.MaxNameBytes, "outbound bytes": l.OutboundBytes,
		"max remembered bytes": l.MaxRememberedBytes, "max queued writes": l.MaxQueuedWrites,
	} {
		if v < 0 {
			return fmt.Errorf("sharedobject: %s is %d; it must be positive", name, v)
		}
	}
	if l.FramesPerSecond < 0 {
		return fmt.Errorf("sharedobject: frames per second is %g; it must be positive", l.FramesPerSecond)
	}
	if l.MaxValueBytes > l.MaxObjectBytes {
		return fmt.Errorf("sharedobject: max value bytes (%d) exceeds max object bytes (%d)", l.MaxValueBytes, l.MaxObjectBytes)
	}
	if c.ResyncWindow == 0 {
		c.ResyncWindow = 1000
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = model.DefaultDuplicateWindow
	}
	if c.TempGrace == 0 {
		c.TempGrace = 5 * time.Second
	}
	if c.HookTimeout == 0 {
		c.HookTimeout = 2 * time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Auth == nil {
		return fmt.Errorf("sharedobject: Config.Auth is required (auth.NewVerifier(nil) allows anonymous clients)")
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
