package relay

import (
	"bytes"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/internal/wsconn"
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
	endpoints [numEndpoints]*metrics.Endpoint // connections, closes and refusals, as /so counts them

	forwarded  prometheus.Counter
	service    prometheus.Histogram
	deliveries prometheus.Counter
	outBytes   prometheus.Counter
	users      prometheus.Gauge
	signals    prometheus.Counter
}

func newRelayMetrics(reg prometheus.Registerer) *relayMetrics {
	f := metrics.Factory(reg)
	m := &relayMetrics{
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
		m.endpoints[ep] = metrics.NewEndpoint(f, endpointNames[ep])
	}
	return m
}

// open counts a socket of ep; closed must follow once it has closed.
func (m *relayMetrics) open(ep endpoint) {
	m.endpoints[ep].Opened.Inc()
	m.endpoints[ep].Connections.Inc()
}

// closed counts a socket's end with the code it was closed with.
func (m *relayMetrics) closed(ep endpoint, code int) {
	m.endpoints[ep].Connections.Dec()
	m.endpoints[ep].Closed(code)
}

// refused counts an error frame with code.
func (m *relayMetrics) refused(ep endpoint, code string) { m.endpoints[ep].Refused(code) }

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
	m.endpoints[ep].Refused(string(rest[:end]))
}

func (m *relayMetrics) serviceTime(start time.Time) { m.service.Observe(time.Since(start).Seconds()) }

// alarmBurst lines of one kind are logged at once, then one per alarmEvery; the rest are counted.
const (
	alarmBurst = 20
	alarmEvery = 5 * time.Second
)

// alarmClose logs the closes an operator wants to hear of (abuse, slow consumers, oversize messages),
// rate-limited; args say whose connection it was.
func (s *Server) alarmClose(endpoint string, code int, args ...any) {
	var why string
	switch code {
	case closeAbuse:
		why = "abuse"
	case wsconn.CloseSlowConsumer:
		why = "slow consumer"
	case websocket.CloseMessageTooBig:
		why = "message too big"
	default:
		return
	}
	s.alarms.Warn(why, "connection closed: "+why, append([]any{"endpoint", endpoint, "code", code}, args...)...)
}
