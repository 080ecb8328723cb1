package sharedobject

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/internal/apiwire"
)

// nodeMetrics are the node's Prometheus collectors (Config.Registerer). Labels take bounded values only:
// never an object, slot, user or session name. The children of fixed label sets are resolved here, so that
// counting on the hot path is one atomic add.
type nodeMetrics struct {
	ep *metrics.Endpoint // rso_connections, _opened_total, rso_connection_closes_total, rso_refusals_total (endpoint="so")

	subscriptions prometheus.Gauge // rso_so_subscriptions: session × object
	objects       prometheus.Gauge // rso_so_objects_loaded: replicas in memory

	commits          prometheus.Counter // rso_so_commits_total: entries this node committed for writes
	accepted         prometheus.Counter // rso_so_slot_changes_total{outcome="accepted",reason="none"}
	rejectedConflict prometheus.Counter // {outcome="rejected",reason="conflict"}
	rejectedHook     prometheus.Counter // {outcome="rejected",reason="hook"}: a hook's text is not a label
	retries          prometheus.Counter // rso_so_write_retries_total

	publish prometheus.Histogram // rso_so_publish_duration_seconds
	commit  prometheus.Histogram // rso_so_commit_duration_seconds
	catchUp prometheus.Histogram // rso_so_catchup_duration_seconds

	deliveries prometheus.Counter // rso_so_deliveries_total: frames queued to sessions
	outBytes   prometheus.Counter // rso_so_outbound_bytes_total: their bytes

	hookAccepted, hookRejected, hookTimeout, hookUnavailable, hookGarbled prometheus.Counter // rso_so_hook_calls_total{result}
	hookDuration                                                          prometheus.Histogram

	api   *prometheus.CounterVec                   // rso_so_api_requests_total{op,result}: result "ok" or the error code
	apiOK map[string]prometheus.Counter            // by op
	apiBy map[string]map[string]prometheus.Counter // op → error code
}

// Reasons of rejected slot changes, as labels.
const (
	reasonConflict = "conflict"
	reasonHook     = "hook"
)

func newNodeMetrics(reg prometheus.Registerer) *nodeMetrics {
	f := metrics.Factory(reg)
	changes := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_so_slot_changes_total",
		Help: "Slot changes judged, by outcome (accepted, rejected) and reason (none, conflict: a stale base, hook: refused by a validation hook)."},
		[]string{"outcome", "reason"})
	hooks := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_so_hook_calls_total",
		Help: "Validation hook calls, by result (accepted, rejected: some change refused, timeout, unavailable: no backend, garbled: not a JSON object)."},
		[]string{"result"})
	m := &nodeMetrics{
		ep: metrics.NewEndpoint(f, "so"),
		subscriptions: f.NewGauge(prometheus.GaugeOpts{Name: "rso_so_subscriptions",
			Help: "Subscriptions of /so sessions to shared objects."}),
		objects: f.NewGauge(prometheus.GaugeOpts{Name: "rso_so_objects_loaded",
			Help: "Shared objects whose replica this node holds in memory."}),
		commits: f.NewCounter(prometheus.CounterOpts{Name: "rso_so_commits_total",
			Help: "Log entries this node committed for client and server-API writes."}),
		accepted:         changes.WithLabelValues("accepted", "none"),
		rejectedConflict: changes.WithLabelValues("rejected", reasonConflict),
		rejectedHook:     changes.WithLabelValues("rejected", reasonHook),
		retries: f.NewCounter(prometheus.CounterOpts{Name: "rso_so_write_retries_total",
			Help: "Writes judged again after another node committed first (or the object changed while a hook decided)."}),
		publish: f.NewHistogram(prometheus.HistogramOpts{Name: "rso_so_publish_duration_seconds",
			Help: "JetStream publishes of object log entries, from publish to ack (or failure).", Buckets: metrics.LatencyBuckets}),
		commit: f.NewHistogram(prometheus.HistogramOpts{Name: "rso_so_commit_duration_seconds",
			Help: "Writes stored, from queued on this node to stored in the object's log: waiting behind other writes, hooks, retries and the publish.", Buckets: metrics.LatencyBuckets}),
		catchUp: f.NewHistogram(prometheus.HistogramOpts{Name: "rso_so_catchup_duration_seconds",
			Help: "Catch-ups of a replica: reading its object's log.", Buckets: metrics.LatencyBuckets}),
		deliveries: f.NewCounter(prometheus.CounterOpts{Name: "rso_so_deliveries_total",
			Help: "Frames queued to /so sessions (a broadcast counts once per session)."}),
		outBytes: f.NewCounter(prometheus.CounterOpts{Name: "rso_so_outbound_bytes_total",
			Help: "Bytes of the frames queued to /so sessions."}),
		hookAccepted:    hooks.WithLabelValues("accepted"),
		hookRejected:    hooks.WithLabelValues("rejected"),
		hookTimeout:     hooks.WithLabelValues("timeout"),
		hookUnavailable: hooks.WithLabelValues("unavailable"),
		hookGarbled:     hooks.WithLabelValues("garbled"),
		hookDuration: f.NewHistogram(prometheus.HistogramOpts{Name: "rso_so_hook_duration_seconds",
			Help: "Validation hook calls, from request to answer (or giving up).", Buckets: metrics.LatencyBuckets}),
		api: f.NewCounterVec(prometheus.CounterOpts{Name: "rso_so_api_requests_total",
			Help: "Server-side API requests (rso.api.<op>) and admin requests (rso.admin.so.<op>, op admin.<op>), by op and result (ok, or the error code)."}, []string{"op", "result"}),
		apiOK: map[string]prometheus.Counter{},
		apiBy: map[string]map[string]prometheus.Counter{},
	}
	for _, op := range slices.Concat(apiwire.Ops, adminOps()) {
		m.apiOK[op] = m.api.WithLabelValues(op, "ok")
		m.apiBy[op] = map[string]prometheus.Counter{}
		for _, code := range wire.Codes {
			m.apiBy[op][code] = m.api.WithLabelValues(op, code)
		}
	}
	return m
}

// apiAnswered counts a server-API request by its reply's error code (nil: ok).
func (m *nodeMetrics) apiAnswered(op string, e *wire.Error) {
	if e == nil {
		m.apiOK[op].Inc()
		return
	}
	if c, ok := m.apiBy[op][e.Code]; ok {
		c.Inc()
		return
	}
	m.api.WithLabelValues(op, e.Code).Inc()
}

// delivered counts a frame of size bytes queued to n sessions.
func (m *nodeMetrics) delivered(n, size int) {
	if n > 0 {
		m.deliveries.Add(float64(n))
		m.outBytes.Add(float64(n * size))
	}
}

// slotOutcomes counts the judged changes of one write.
func (m *nodeMetrics) slotOutcomes(accepted int, rejects []rejectNote) {
	if accepted > 0 {
		m.accepted.Add(float64(accepted))
	}
	for _, r := range rejects {
		if r.hook {
			m.rejectedHook.Inc()
		} else {
			m.rejectedConflict.Inc()
		}
	}
}
