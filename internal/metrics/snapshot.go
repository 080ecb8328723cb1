package metrics

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

// Series is one series of a snapshot, as JSON: its labels and value (a histogram's count), and for a
// histogram its sum and cumulative bucket counts. The admin page reads these from every node
// (rso.admin.so.stats) and draws rates and quantiles from the differences between two snapshots.
type Series struct {
	Labels  map[string]string `json:"labels,omitempty"`
	Value   float64           `json:"value"`
	Sum     float64           `json:"sum,omitempty"`
	Buckets [][2]float64      `json:"buckets,omitempty"` // [upper bound, count at or below it]; +Inf is Value
}

// Snapshot gathers g and keeps the families named in names, by name, leaving out series that are zero
// (most close and refusal codes never happen): a series that is absent is zero.
func Snapshot(g prometheus.Gatherer, names []string) (map[string][]Series, error) {
	families, err := g.Gather()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string][]Series{}
	for _, f := range families {
		if !want[f.GetName()] {
			continue
		}
		for _, m := range f.GetMetric() {
			s := Series{Value: value(f.GetType(), m)}
			if s.Value == 0 {
				continue
			}
			if len(m.GetLabel()) > 0 {
				s.Labels = map[string]string{}
				for _, l := range m.GetLabel() {
					s.Labels[l.GetName()] = l.GetValue()
				}
			}
			if h := m.GetHistogram(); h != nil {
				s.Sum = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), +1) {
						s.Buckets = append(s.Buckets, [2]float64{b.GetUpperBound(), float64(b.GetCumulativeCount())})
					}
				}
			}
			out[f.GetName()] = append(out[f.GetName()], s)
		}
	}
	return out, err
}
