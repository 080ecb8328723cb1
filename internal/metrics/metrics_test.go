package metrics_test

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rso-server/rso/internal/metrics"
)

func TestScrapeSeesWhatWasCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := metrics.Factory(reg)
	closes := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_test_closes_total", Help: "closes"}, []string{"code"})
	lat := f.NewHistogram(prometheus.HistogramOpts{Name: "rso_test_seconds", Help: "latency", Buckets: metrics.LatencyBuckets})
	closes.WithLabelValues("4008").Add(2)
	closes.WithLabelValues("1000").Inc()
	lat.Observe(0.003)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	got, err := metrics.Scrape(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := metrics.Sum(got, "rso_test_closes_total", "code=4008"); n != 2 {
		t.Errorf("closes with 4008: %v, want 2", n)
	}
	if n := metrics.Sum(got, "rso_test_closes_total"); n != 3 {
		t.Errorf("all closes: %v, want 3", n)
	}
	if n := metrics.Sum(got, "rso_test_seconds"); n != 1 {
		t.Errorf("latency observations: %v, want 1", n)
	}
	// Without a registry the collectors still count, privately.
	metrics.Factory(nil).NewCounter(prometheus.CounterOpts{Name: "rso_test_private_total", Help: "x"}).Inc()
}

// Both endpoints register their connection collectors on the one registry cmd/rso serves, under the same
// names: the registry accepts that only because the help texts and label names are the same.
func TestEndpointsShareNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	so, relay := metrics.NewEndpoint(metrics.Factory(reg), "so"), metrics.NewEndpoint(metrics.Factory(reg), "relay")
	so.Opened.Inc()
	so.Connections.Inc()
	so.Closed(4008)
	so.Closed(4999) // a code not known beforehand counts as other (series stay few)
	relay.Closed(4008)
	so.Refused("bad_json")
	so.Refused("made_up")
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	got, err := metrics.Scrape(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want float64
		l    []string
	}{
		{"rso_connections_opened_total", 1, []string{"endpoint=so"}},
		{"rso_connections", 1, []string{"endpoint=so"}},
		{"rso_connections", 0, []string{"endpoint=relay"}},
		{"rso_connection_closes_total", 1, []string{"endpoint=so", "code=4008"}},
		{"rso_connection_closes_total", 1, []string{"endpoint=so", "code=other"}},
		{"rso_connection_closes_total", 1, []string{"endpoint=relay", "code=4008"}},
		{"rso_refusals_total", 1, []string{"endpoint=so", "code=bad_json"}},
		{"rso_refusals_total", 2, []string{"endpoint=so"}},
	} {
		if n := metrics.Sum(got, c.name, c.l...); n != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.l, n, c.want)
		}
	}
}

// A snapshot keeps the families asked for, with labels, values and a histogram's cumulative buckets.
func TestSnapshotKeepsTheNamedFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := metrics.Factory(reg)
	closes := f.NewCounterVec(prometheus.CounterOpts{Name: "rso_test_closes_total", Help: "closes"}, []string{"code"})
	lat := f.NewHistogram(prometheus.HistogramOpts{Name: "rso_test_seconds", Help: "latency", Buckets: []float64{0.01, 0.1}})
	f.NewCounter(prometheus.CounterOpts{Name: "rso_test_other_total", Help: "not asked for"}).Inc()
	closes.WithLabelValues("4008").Add(2)
	closes.WithLabelValues("1000") // zero: left out
	lat.Observe(0.003)
	lat.Observe(0.05)
	lat.Observe(3)

	got, err := metrics.Snapshot(reg, []string{"rso_test_closes_total", "rso_test_seconds"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["rso_test_other_total"]; ok || len(got) != 2 {
		t.Errorf("families %v, want just the two asked for", got)
	}
	if c := got["rso_test_closes_total"]; len(c) != 1 || c[0].Labels["code"] != "4008" || c[0].Value != 2 {
		t.Errorf("closes %+v, want one series code=4008 of 2", c)
	}
	h := got["rso_test_seconds"]
	if len(h) != 1 || h[0].Value != 3 || h[0].Sum != 3.053 || len(h[0].Buckets) != 2 ||
		h[0].Buckets[0] != [2]float64{0.01, 1} || h[0].Buckets[1] != [2]float64{0.1, 2} {
		t.Errorf("histogram %+v, want 3 observations summing to 3.053, buckets [0.01 1] [0.1 2]", h)
	}
}
