package relay

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rso-server/rso/internal/metrics"
)

// TestMetricsCloseCodes: closes are counted by the code the socket ended with, also one decided inside
// wsconn (1009), and the service's refusals are counted by their code.
func TestMetricsCloseCodes(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, nil, true, func(c *Config) { c.Registerer = reg; c.Limits.MaxFrameBytes = 100 })
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	p, _, _ := dialWS(t, f.wsURL("user=alice"), nil)
	p.nextOp("hello")
	p.write(`{"op":"refuse","id":"r1"}`)
	p.nextOp("error")
	p.write(`{"op":"big","x":"` + strings.Repeat("x", 2000) + `"}`) // over the hard limit (16 × 100)
	if code := p.closeCode(); code != 1009 {
		t.Fatalf("closed with %d, want 1009", code)
	}
	tp := dialTCP(t, f.tcp)
	tp.write(`{"op":"ping"}`) // not auth
	if code := tp.closeCode(); code != closeUnauthorized {
		t.Fatalf("TCP closed with %d, want %d", code, closeUnauthorized)
	}
	var got []metrics.Sample
	deadline := time.Now().Add(waitLimit)
	for {
		var err error
		if got, err = metrics.Scrape(srv.URL, nil); err != nil {
			t.Fatal(err)
		}
		if metrics.Sum(got, "rso_connection_closes_total") == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"rso_connection_closes_total", []string{"endpoint=relay", "code=1009"}, 1},
		{"rso_connection_closes_total", []string{"endpoint=relay_tcp", "code=4001"}, 1},
		{"rso_connections", nil, 0},
		{"rso_connections_opened_total", []string{"endpoint=relay"}, 1},
		{"rso_connections_opened_total", []string{"endpoint=relay_tcp"}, 1},
		{"rso_refusals_total", []string{"endpoint=relay", "code=not_found"}, 1},
		{"rso_refusals_total", []string{"endpoint=relay_tcp", "code=unauthorized"}, 1},
		{"rso_relay_frames_forwarded_total", nil, 1},
		{"rso_relay_users", nil, 0},
	} {
		if n := metrics.Sum(got, w.name, w.labels...); n != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, n, w.want)
		}
	}
}
