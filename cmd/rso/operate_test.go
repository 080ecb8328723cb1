package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rso-server/rso/internal/metrics"
)

const testAdminToken = "0123456789abcdef-admin"

// /metrics is served in the Prometheus text format on -metrics-addr, only with the admin token when there
// is one, and -debug-addr serves the profiler.
func TestMetricsAndProfiler(t *testing.T) {
	addr, metricsAddr, debugAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	p := startRun(t, []string{"-addr", addr, "-data", t.TempDir(), "-metrics-addr", metricsAddr, "-debug-addr", debugAddr, "-demos=false", "-log-format", "json"},
		env{"RSO_ADMIN_TOKEN": testAdminToken})
	waitHealth(t, addr, http.StatusOK)
	waitFor(t, 10*time.Second, "the startup line, in JSON", func() (bool, string) {
		for _, line := range strings.Split(p.out.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "rso started" && rec["metrics"] == metricsAddr {
				return true, ""
			}
		}
		return false, p.out.String()
	})

	url := "http://" + metricsAddr + "/metrics"
	for _, h := range []http.Header{nil, {"Authorization": {"Bearer wrong-token-wrong-token"}}} {
		if _, err := metrics.Scrape(url, h); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("scrape with %v: %v, want 401", h, err)
		}
	}
	got, err := metrics.Scrape(url, http.Header{"Authorization": {"Bearer " + testAdminToken}})
	if err != nil {
		t.Fatal(err)
	}
	if v := metrics.Sum(got, "rso_nats_connected"); v != 1 {
		t.Errorf("rso_nats_connected = %v, want 1", v)
	}
	if v := metrics.Sum(got, "go_goroutines"); v < 1 {
		t.Errorf("go_goroutines = %v: the runtime is not exported", v)
	}

	resp, err := http.Get("http://" + debugAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pprof: %s", resp.Status)
	}
}
