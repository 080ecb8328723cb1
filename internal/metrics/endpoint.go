package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rso-server/rso/internal/wire"
)

// Endpoint is what every client endpoint (/so, /relay, the raw TCP relay) counts of its connections, under the same names
// with its own endpoint label. The services register these on one registry, and a registry accepts one
// name from several collectors only with the same help text and label names: define them here, once.
type Endpoint struct {
	Connections prometheus.Gauge       // rso_connections: open sessions
	Opened      prometheus.Counter     // rso_connections_opened_total
	Closes      *prometheus.CounterVec // rso_connection_closes_total{code}: by the WebSocket close code
	Refusals    *prometheus.CounterVec // rso_refusals_total{code}: error frames sent, by wire code
	closes      map[int]prometheus.Counter
	refusals    map[string]prometheus.Counter
}

// Close codes counted without a label lookup (any other code is counted too, more slowly).
var knownCloses = []int{0, 1000, 1001, 1003, 1006, 1009, 1011, 1012, 4001, 4003, 4008, 4009, 4010, 4011}

// NewEndpoint makes the connection collectors of one endpoint ("so", "relay").
func NewEndpoint(f promauto.Factory, endpoint string) *Endpoint {
	l := prometheus.Labels{"endpoint": endpoint}
	e := &Endpoint{
		Connections: f.NewGauge(prometheus.GaugeOpts{Name: "rso_connections", ConstLabels: l,
			Help: "Open client connections (WebSocket, or raw TCP for relay_tcp), by endpoint."}),
		Opened: f.NewCounter(prometheus.CounterOpts{Name: "rso_connections_opened_total", ConstLabels: l,
			Help: "Client connections opened, by endpoint."}),
		Closes: f.NewCounterVec(prometheus.CounterOpts{Name: "rso_connection_closes_total", ConstLabels: l,
			Help: "Client connections closed, by endpoint and the close code the server closed with (0: a write failed before any close; the peer saw 1006)."}, []string{"code"}),
		Refusals: f.NewCounterVec(prometheus.CounterOpts{Name: "rso_refusals_total", ConstLabels: l,
			Help: "Error frames sent, by endpoint and error code (docs/PROTOCOL.md; other: a code the server does not know, from a service)."}, []string{"code"}),
		closes: map[int]prometheus.Counter{}, refusals: map[string]prometheus.Counter{},
	}
	for _, c := range append(wire.Codes[:len(wire.Codes):len(wire.Codes)], "other") {
		e.refusals[c] = e.Refusals.WithLabelValues(c)
	}
	for _, c := range knownCloses {
		e.closes[c] = e.Closes.WithLabelValues(strconv.Itoa(c))
	}
	e.closes[-1] = e.Closes.WithLabelValues("other")
	return e
}

// Closed counts one close with code: it fits wsconn.Options.OnClose. A code not in the known list (an
// operator's own disconnect code, say) counts as "other", so that the series stay few.
func (e *Endpoint) Closed(code int) {
	c, ok := e.closes[code]
	if !ok {
		c = e.closes[-1]
	}
	c.Inc()
}

// Refused counts one error frame with code; a code that is not in wire.Codes counts as "other", so
// that what a service answers cannot add series.
func (e *Endpoint) Refused(code string) {
	c, ok := e.refusals[code]
	if !ok {
		c = e.refusals["other"]
	}
	c.Inc()
}
