// Package metrics is how the services expose their numbers to Prometheus (docs/ARCHITECTURE.md,
// "Operating RSO"). Each service defines its own collectors with Factory and registers them on the
// registry cmd/rso serves at /metrics; a service started without one (tests, embedding) counts into a
// registry of its own, so the code that counts never checks for nil.
//
// Names follow Prometheus conventions: rso_<subsystem>_<what>_<unit>, counters end in _total, durations
// are in seconds, and labels take only bounded values (endpoint, outcome, reason, error or close code),
// never an object, user or connection name.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Factory makes collectors registered on reg, or on a private registry when reg is nil.
func Factory(reg prometheus.Registerer) promauto.Factory {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return promauto.With(reg)
}

// LatencyBuckets are the histogram buckets of every latency (seconds): 250 µs to 10 s.
var LatencyBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
