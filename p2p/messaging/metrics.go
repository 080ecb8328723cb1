package messaging

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/internal/wire"
)

// The service's Prometheus collectors (Config.Registerer). Labels take bounded values only: an op of the
// client protocol (or "other"), a result, a receipt kind, a presence status. Every child is resolved here,
// once, so counting a message is an atomic add.

// Results of a client request (rso_chat_requests_total).
const (
	resultOK          = iota // answered
	resultRefused            // refused for what the client sent
	resultUnavailable        // refused for the service's state: busy, unavailable, internal
	numResults
)

var resultNames = [numResults]string{"ok", "refused", "unavailable"}

// clientOps are the ops of rso_chat_requests_total; a frame with another (or none) counts as "other".
var clientOps = []string{"send", "receipt", "sync", "history", "friends", "friend", "presence", "signal", "other"}

type chatMetrics struct {
	stored     prometheus.Counter
	duplicates prometheus.Counter
	receipts   map[string]prometheus.Counter // by kind
	requests   map[string]*[numResults]prometheus.Counter
	store      prometheus.Histogram
	presence   map[string]prometheus.Counter // by new status
	busy       prometheus.Counter
	sweeps     prometheus.Counter
}

func newChatMetrics(reg prometheus.Registerer) *chatMetrics {
	f := metrics.Factory(reg)
	receipts := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_chat_receipts_total",
		Help: "Receipts accepted, by kind (delivered, read)."}, []string{"kind"})
	requests := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_chat_requests_total",
		Help: "Client frames answered, by op and result (ok, refused: the client's fault, unavailable: the service's state)."}, []string{"op", "result"})
	presence := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_chat_presence_changes_total",
		Help: "Presence status changes recorded, by new status."}, []string{"status"})
	m := &chatMetrics{
		stored: f.NewCounter(prometheus.CounterOpts{Name: "rso_chat_messages_stored_total",
			Help: "Private messages stored in JetStream."}),
		duplicates: f.NewCounter(prometheus.CounterOpts{Name: "rso_chat_messages_duplicate_total",
			Help: "Resent messages (same id) answered with the stored original instead of being stored again."}),
		store: f.NewHistogram(prometheus.HistogramOpts{Name: "rso_chat_store_duration_seconds",
			Help: "Time of the JetStream publish that stores a message (each attempt).", Buckets: metrics.LatencyBuckets}),
		busy: f.NewCounter(prometheus.CounterOpts{Name: "rso_chat_workers_busy_total",
			Help: "Requests refused (unavailable) because every worker was busy for too long."}),
		sweeps: f.NewCounter(prometheus.CounterOpts{Name: "rso_chat_sweeps_total",
			Help: "Sweeps of relay nodes that stopped their heartbeats (their users taken offline)."}),
		receipts: map[string]prometheus.Counter{},
		requests: map[string]*[numResults]prometheus.Counter{},
		presence: map[string]prometheus.Counter{},
	}
	for _, kind := range []string{KindDelivered, KindRead} {
		m.receipts[kind] = receipts.WithLabelValues(kind)
	}
	for _, op := range clientOps {
		var byResult [numResults]prometheus.Counter
		for r := range numResults {
			byResult[r] = requests.WithLabelValues(op, resultNames[r])
		}
		m.requests[op] = &byResult
	}
	for _, st := range []string{StatusOnline, StatusAway, StatusOffline} {
		m.presence[st] = presence.WithLabelValues(st)
	}
	return m
}

// request counts a client frame of op answered with werr (nil: ok).
func (m *chatMetrics) request(op string, werr *wire.Error) {
	byResult, ok := m.requests[op]
	if !ok {
		byResult = m.requests["other"]
	}
	r := resultOK
	switch {
	case werr == nil:
	case clientsFault(werr):
		r = resultRefused
	default:
		r = resultUnavailable
	}
	byResult[r].Inc()
}

func (m *chatMetrics) receipt(kind string) {
	if c, ok := m.receipts[kind]; ok {
		c.Inc()
	}
}

func (m *chatMetrics) presenceChange(status string) {
	if c, ok := m.presence[status]; ok {
		c.Inc()
	}
}

func (m *chatMetrics) storeTime(start time.Time) { m.store.Observe(time.Since(start).Seconds()) }
