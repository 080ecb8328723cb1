package sharedobject_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/sharedobject"
	"github.com/rso-server/rso/sharedobject/backend"
)

// TestMetricsCountWhatHappened does real things over real sockets and reads /metrics as Prometheus would.
func TestMetricsCountWhatHappened(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) {
		c.Registerer = reg
		c.Limits.OutboundBytes = 1 << 20
		c.Limits.FramesPerSecond = 1e6 // the slow-consumer flood goes as fast as commits do
		c.HookTimeout = 100 * time.Millisecond
	})
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	scrape := func() []metrics.Sample {
		t.Helper()
		s, err := metrics.Scrape(ms.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	type want struct {
		name   string
		labels []string
		value  float64
	}
	// check waits a moment for the values wanted: a frame is counted once queued, and its peer may read it
	// before the count is in.
	check := func(wants ...want) (got []metrics.Sample) {
		t.Helper()
		deadline := time.Now().Add(waitLimit)
		for {
			got = scrape()
			var wrong []string
			for _, w := range wants {
				if v := metrics.Sum(got, w.name, w.labels...); v != w.value {
					wrong = append(wrong, fmt.Sprintf("%s%v = %v, want %v", w.name, w.labels, v, w.value))
				}
			}
			if len(wrong) == 0 {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatal(strings.Join(wrong, "\n"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	so := "endpoint=so"

	a, b := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, a, "doc", false)
	sub(t, b, "doc", false)
	got := check(
		want{"rso_connections", []string{so}, 2}, want{"rso_connections_opened_total", []string{so}, 2},
		want{"rso_so_subscriptions", nil, 2}, want{"rso_so_objects_loaded", nil, 1},
		want{"rso_so_commits_total", nil, 0}, want{"rso_refusals_total", nil, 0},
		want{"rso_connection_closes_total", nil, 0},
		want{"rso_so_deliveries_total", nil, 4}) // hello and the first sync of each
	if metrics.Sum(got, "rso_so_catchup_duration_seconds") < 1 {
		t.Error("loading the object read its log, but no catch-up was timed")
	}

	// An accepted change: one commit, one accepted slot, a publish timed, and the answer plus the broadcast.
	update(t, a, "doc", false, set("x", 0, 1))
	nextSync(t, b)
	// A stale base: rejected for a conflict, nothing committed.
	if s := update(t, b, "doc", false, set("x", 0, 2)); codes(s) != "reject:x=1" {
		t.Fatalf("stale update: %q", codes(s))
	}
	// A frame that is not JSON: refused with bad_json.
	a.WriteRaw([]byte(`{"op":`))
	if ev := next(t, a); ev.Error == nil || ev.Error.Code != "bad_json" {
		t.Fatalf("after bad JSON: %s", describe(ev))
	}
	// The server-side API.
	if _, err := backend.NewAPI(n.nc).Get(ctxT(t), backend.Temporary("doc")); err != nil {
		t.Fatal(err)
	}
	got = check(
		want{"rso_so_commits_total", nil, 1},
		want{"rso_so_slot_changes_total", []string{"outcome=accepted", "reason=none"}, 1},
		want{"rso_so_slot_changes_total", []string{"outcome=rejected", "reason=conflict"}, 1},
		want{"rso_so_slot_changes_total", nil, 2},
		want{"rso_so_write_retries_total", nil, 0},
		want{"rso_refusals_total", []string{so, "code=bad_json"}, 1}, want{"rso_refusals_total", nil, 1},
		want{"rso_so_api_requests_total", []string{"op=get", "result=ok"}, 1}, want{"rso_so_api_requests_total", nil, 1},
		want{"rso_so_hook_calls_total", nil, 0},
		// 4 before, then a's answer, b's broadcast, b's reject, a's error
		want{"rso_so_deliveries_total", nil, 8})
	if metrics.Sum(got, "rso_so_publish_duration_seconds") < 1 {
		t.Error("no publish timed")
	}
	if metrics.Sum(got, "rso_so_outbound_bytes_total") < 8*20 {
		t.Errorf("outbound bytes: %v", metrics.Sum(got, "rso_so_outbound_bytes_total"))
	}

	// A client that closes: the server closes with 1000, and the session is gone.
	b.Close()
	waitFor(t, "the close to be counted", func() bool {
		return metrics.Sum(scrape(), "rso_connection_closes_total", so, "code=1000") == 1
	})
	check(want{"rso_connections", []string{so}, 1}, want{"rso_so_subscriptions", nil, 1},
		want{"rso_connection_closes_total", nil, 1})

	// A slow consumer: subscribes, never reads, and is closed with 4008.
	slow, _, err := websocket.DefaultDialer.Dial(n.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.WriteMessage(websocket.TextMessage, []byte(`{"op":"sub","obj":"feed","id":"s"}`))
	sub(t, a, "feed", false)
	waitFor(t, "the slow subscriber", func() bool { return metrics.Sum(scrape(), "rso_so_subscriptions") == 3 })
	big := strings.Repeat("z", 60<<10)
	version := uint64(0)
	for i := range 150 { // 9 MB: more than the queue and the socket buffers hold
		s := update(t, a, "feed", false, set("blob", version, big[:len(big)-i%2]))
		version = s.Version
	}
	// Reading again lets the writer finish the write it was blocked in, and send the close frame (which
	// may still be lost: the count is of the code the server closed with, not of what the peer saw).
	slow.SetReadDeadline(time.Now().Add(waitLimit))
	for {
		if _, _, err := slow.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != 4008 || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("slow consumer: %v, want close 4008", err)
			}
			break
		}
	}
	waitFor(t, "the 4008 to be counted", func() bool {
		return metrics.Sum(scrape(), "rso_connection_closes_total", so, "code=4008") == 1
	})
	check(want{"rso_connection_closes_total", nil, 2}, want{"rso_connections", []string{so}, 1},
		want{"rso_so_subscriptions", nil, 2}, want{"rso_refusals_total", nil, 1})

	// A validation hook whose backend answers too late: the write is refused with hook_unavailable.
	stop, err := backend.RegisterHook(context.Background(), n.nc, "slow", backend.HookConfig{Pattern: "gated/*"},
		func(*backend.HookRequest) backend.HookVerdict {
			time.Sleep(300 * time.Millisecond)
			return backend.HookVerdict{}
		})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sub(t, a, "gated/1", true)
	base := uint64(0)
	waitFor(t, "the hook to time out", func() bool {
		s, err := a.Update(ctxT(t), "gated/1", true, []client.Change{set("v", base, 1)})
		if err == nil {
			base = s.Version // committed before the node knew the hook
			return false
		}
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != "hook_unavailable" {
			t.Fatalf("update under a slow hook: %v", err)
		}
		return true
	})
	check(want{"rso_so_hook_calls_total", []string{"result=timeout"}, 1}, want{"rso_so_hook_calls_total", nil, 1},
		want{"rso_so_hook_duration_seconds", nil, 1},
		want{"rso_refusals_total", []string{so, "code=hook_unavailable"}, 1}, want{"rso_refusals_total", nil, 2})
}
