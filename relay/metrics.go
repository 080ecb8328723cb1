package relay

import (
	"bytes"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/internal/wire"
)

// The relay's Prometheus collectors (Config.Registerer). Labels take bounded values only: the endpoint
// (relay: the WebSocket, relay_tcp: raw TCP), a close code, an error code. The children counted per frame
// are resolved once, here, so the hot paths do an atomic add and nothing else.

// endpoint is where a connection came in: its index in the per-endpoint children.
type endpoint int

const (
	epWebSocket endpoint = iota
	epTCP
	numEndpoints
)

var endpointNames = [numEndpoints]string{"relay", "relay_tcp"}

type relayMetrics struct {
	conns    [numEndpoints]prometheus.Gauge
	opened   [numEndpoints]prometheus.Counter
	closes   *prometheus.CounterVec
	refusals [numEndpoints]map[string]prometheus.Counter // by error code; "other" for a code not in wire.Codes

	forwarded  prometheus.Counter
	service    prometheus.Histogram
	deliveries prometheus.Counter
	outBytes   prometheus.Counter
	users      prometheus.Gauge
	signals    prometheus.Counter
}

func newRelayMetrics(reg prometheus.Registerer) *relayMetrics {
	f := metrics.Factory(reg)
	conns := f.NewGaugeVec(prometheus.GaugeOpts{Name: "rso_connections", Help: "Open client sockets, by endpoint."}, []string{"endpoint"})
	opened := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_connections_opened_total", Help: "Client sockets opened (a WebSocket upgraded, a TCP connection accepted), by endpoint."}, []string{"endpoint"})
	refusals := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_refusals_total", Help: "Error frames written to clients (the relay's own and the chat service's), by endpoint and error code."}, []string{"endpoint", "code"})
	m := &relayMetrics{
		closes: f.NewCounterVec(prometheus.CounterOpts{Name: "rso_connection_closes_total", Help: "Client sockets closed, by endpoint and close code (0: a write failed before any close)."}, []string{"endpoint", "code"}),
		forwarded: f.NewCounter(prometheus.CounterOpts{Name: "rso_relay_frames_forwarded_total",
			Help: "Client frames forwarded to the messaging service."}),
		service: f.NewHistogram(prometheus.HistogramOpts{Name: "rso_relay_service_request_duration_seconds",
			Help: "Time from forwarding a client frame to the messaging service to its answer (or failure).", Buckets: metrics.LatencyBuckets}),
		deliveries: f.NewCounter(prometheus.CounterOpts{Name: "rso_relay_deliveries_total",
			Help: "Frames sent to users (messages, receipts, presence, signals) written to their client sockets on this node."}),
		outBytes: f.NewCounter(prometheus.CounterOpts{Name: "rso_relay_outbound_bytes_total",
			Help: "Bytes of frames queued to client sockets (answers and deliveries)."}),
		users: f.NewGauge(prometheus.GaugeOpts{Name: "rso_relay_users", Help: "Users with at least one connection on this node."}),
		signals: f.NewCounter(prometheus.CounterOpts{Name: "rso_relay_signals_total",
			Help: "Signals (rso.p2p.live.*) delivered to a connection on this node."}),
	}
	for ep := range numEndpoints {
		name := endpointNames[ep]
		m.conns[ep] = conns.WithLabelValues(name)
		m.opened[ep] = opened.WithLabelValues(name)
		m.refusals[ep] = make(map[string]prometheus.Counter, len(wire.Codes)+1)
		for _, code := range append(wire.Codes[:len(wire.Codes):len(wire.Codes)], "other") {
			m.refusals[ep][code] = refusals.WithLabelValues(name, code)
		}
	}
	return m
}

// opened counts a socket of ep; closed must follow once it has closed.
func (m *relayMetrics) open(ep endpoint) {
	m.opened[ep].Inc()
	m.conns[ep].Inc()
}

// closed counts a socket's end with the code it was closed with.
func (m *relayMetrics) closed(ep endpoint, code int) {
	m.conns[ep].Dec()
	m.closes.WithLabelValues(endpointNames[ep], strconv.Itoa(code)).Inc()
}

// refused counts an error frame with code.
func (m *relayMetrics) refused(ep endpoint, code string) {
	c, ok := m.refusals[ep][code]
	if !ok {
		c = m.refusals[ep]["other"]
	}
	c.Inc()
}

var errorPrefix = []byte(`{"op":"error","code":"`)

// refusedReply counts the service's answer when it is an error frame (its code, as wire.AppendErrorFrame
// writes it, comes first and is plain ASCII).
func (m *relayMetrics) refusedReply(ep endpoint, reply []byte) {
	if !bytes.HasPrefix(reply, errorPrefix) {
		return
	}
	rest := reply[len(errorPrefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		end = 0
	}
	c, ok := m.refusals[ep][string(rest[:end])] // no allocation: a map lookup by a converted []byte
	if !ok {
		c = m.refusals[ep]["other"]
	}
	c.Inc()
}

func (m *relayMetrics) serviceTime(start time.Time) { m.service.Observe(time.Since(start).Seconds()) }
