package messaging

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Service (the messaging and presence service). Zero fields take the defaults below;
// docs/PROTOCOL.md §3 documents them.
type Config struct {
	// MaxMessageBytes bounds a message's body and a signal's data (compact JSON). Default 16 KiB.
	MaxMessageBytes int
	// FriendsOnly lets only friends write and signal to each other. Off: anyone not blocked may.
	FriendsOnly bool
	// HistoryLimit is how many messages a history answer holds when the client does not say (default 50);
	// MaxHistoryLimit is the most it may ask for (default 200).
	HistoryLimit    int
	MaxHistoryLimit int
	// SyncMaxMessages bounds the messages in one sync answer, over all conversations (default 500). A
	// conversation with more waiting is marked "more": the client syncs again after its receipts.
	SyncMaxMessages int
	// FriendsCacheTTL is how long a cached friend list is trusted without a hash from the client (default 1 min).
	// Changes made through the friends service reach every instance's cache at once; the TTL only bounds
	// how long a lost notice can leave a list stale.
	FriendsCacheTTL time.Duration
	// SweepInterval is how often each instance looks for relay nodes that stopped their heartbeats and takes
	// their users offline (default 5 s). A dead node's users are offline within the relay's node TTL plus this.
	SweepInterval time.Duration
	// DuplicateWindow is how long the message stream remembers message ids (default 10 min): a resend
	// within it is answered with the original sequence instead of being stored again. Clients that resend
	// later first sync, which shows what was stored. Longer windows cost server memory per message.
	DuplicateWindow time.Duration
	// Workers bounds the requests one instance handles at once (default 256). When all are busy a request
	// waits for one, up to a second; past that the instance refuses with unavailable until one is free
	// (Stats counts the refusals).
	Workers int
	// Replicas of the streams and buckets (default 1).
	Replicas int
	Logger   *slog.Logger
	// Registerer, when set, gets the service's Prometheus collectors (rso_chat_*: metrics.go); nil: they
	// count but are not exported. Register one Service per registry.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxMessageBytes: 16 << 10,
		HistoryLimit:    50,
		MaxHistoryLimit: 200,
		SyncMaxMessages: 500,
		FriendsCacheTTL: time.Minute,
		SweepInterval:   5 * time.Second,
		DuplicateWindow: 10 * time.Minute,
		Workers:         256,
		Replicas:        1,
	}
}

func (c *Config) withDefaults() error {
	d := DefaultConfig()
	setDefault(&c.MaxMessageBytes, d.MaxMessageBytes)
	setDefault(&c.HistoryLimit, d.HistoryLimit)
	setDefault(&c.MaxHistoryLimit, d.MaxHistoryLimit)
	setDefault(&c.SyncMaxMessages, d.SyncMaxMessages)
	setDefault(&c.Workers, d.Workers)
	setDefault(&c.Replicas, d.Replicas)
	if c.FriendsCacheTTL == 0 {
		c.FriendsCacheTTL = d.FriendsCacheTTL
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = d.SweepInterval
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = d.DuplicateWindow
	}
	for name, v := range map[string]int{"MaxMessageBytes": c.MaxMessageBytes, "HistoryLimit": c.HistoryLimit,
		"MaxHistoryLimit": c.MaxHistoryLimit, "SyncMaxMessages": c.SyncMaxMessages, "Workers": c.Workers, "Replicas": c.Replicas} {
		if v < 0 {
			return fmt.Errorf("messaging: Config.%s is %d; it must be positive", name, v)
		}
	}
	if c.HistoryLimit > c.MaxHistoryLimit {
		return fmt.Errorf("messaging: Config.HistoryLimit (%d) exceeds MaxHistoryLimit (%d)", c.HistoryLimit, c.MaxHistoryLimit)
	}
	if c.FriendsCacheTTL < 0 || c.SweepInterval < 0 || c.DuplicateWindow < 0 {
		return fmt.Errorf("messaging: FriendsCacheTTL, SweepInterval and DuplicateWindow must be positive")
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
