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
