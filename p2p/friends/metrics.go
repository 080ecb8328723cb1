package friends

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/friendlist"
)

// The service's Prometheus collectors (Config.Registerer). Labels take bounded values only: an action of
// friendlist ("other" for an unknown one) and a result; every child is resolved here, once.

// Results of an update (rso_friends_updates_total).
const (
	resultOK          = iota // applied (or already so)
	resultRefused            // refused by the rules or for a bad request
	resultUnavailable        // the lists could not be read or stored, or changed too often at once
	numResults
)

var resultNames = [numResults]string{"ok", "refused", "unavailable"}

var actions = []string{friendlist.ActionRequest, friendlist.ActionAccept, friendlist.ActionRemove,
	friendlist.ActionBlock, friendlist.ActionUnblock, "other"}

type friendsMetrics struct {
	updates map[string]*[numResults]prometheus.Counter // by action
	refused prometheus.Counter
}

func newFriendsMetrics(reg prometheus.Registerer) *friendsMetrics {
	f := metrics.Factory(reg)
	updates := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_friends_updates_total",
		Help: "Friend-list actions handled, by action and result (ok, refused, unavailable)."}, []string{"action", "result"})
	m := &friendsMetrics{
		updates: map[string]*[numResults]prometheus.Counter{},
		refused: f.NewCounter(prometheus.CounterOpts{Name: "rso_friends_requests_refused_total",
			Help: "Requests refused (unavailable) because every worker was busy for too long."}),
	}
	for _, a := range actions {
		var byResult [numResults]prometheus.Counter
		for r := range numResults {
			byResult[r] = updates.WithLabelValues(a, resultNames[r])
		}
		m.updates[a] = &byResult
	}
	return m
}

// update counts an action answered with r.
func (m *friendsMetrics) update(action string, r friendlist.Reply) {
	byResult, ok := m.updates[action]
	if !ok {
		byResult = m.updates["other"]
	}
	res := resultOK
	if e := r.Error; e != nil {
		res = resultRefused
		if wire.Retryable(e.Code) || e.Code == wire.CodeInternal {
			res = resultUnavailable
		}
	}
	byResult[res].Inc()
}
