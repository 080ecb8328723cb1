package friends

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the friends service. Zero fields take the defaults.
type Config struct {
	// MaxFriends bounds one user's list: friends, requests and blocks together (default 1000).
	MaxFriends int
	// Workers bounds the requests one instance handles at once (default 256), as messaging.Config.Workers does.
	Workers  int
	Replicas int // of the RSO_FRIENDS bucket (default 1)
	Logger   *slog.Logger
	// Registerer, when set, gets the service's Prometheus collectors (rso_friends_*: metrics.go); nil:
	// they count but are not exported. Register one Service per registry.
	Registerer prometheus.Registerer
}

func (c *Config) withDefaults() error {
	setDefault(&c.MaxFriends, 1000)
	setDefault(&c.Workers, 256)
	setDefault(&c.Replicas, 1)
	if c.MaxFriends < 0 || c.Workers < 0 || c.Replicas < 0 {
		return fmt.Errorf("friends: Config.MaxFriends, Workers and Replicas must be positive")
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
