package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
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

	// Real actions through the binary, then the numbers: a subscribe, an accepted and a conflicting
	// update, a refused frame on /so; a private message and a refused frame on /relay.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	so, err := client.Dial(ctx, "ws://"+addr+"/so?user=ann", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	if _, err := so.Subscribe(ctx, "room", true, 0, ""); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is stale (base 0 again): rejected
		if _, err := so.Update(ctx, "room", true, []client.Change{{Name: "x", Base: 0, Value: json.RawMessage("1")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := so.Update(ctx, "room", true, []client.Change{{Name: "", Base: 0, Value: json.RawMessage("1")}}); err == nil {
		t.Fatal("an update of a slot without a name was accepted")
	}
	bob, carol := relayWS(t, addr, "bob"), relayWS(t, addr, "carol")
	bob.write(map[string]any{"op": "send", "id": "m1", "to": "carol", "body": map[string]any{"text": "hi"}})
	bob.expect("sent")
	carol.expect("message")
	bob.send([]byte(`{"op":`))
	bob.expect("error")

	auth := http.Header{"Authorization": {"Bearer " + testAdminToken}}
	want := []struct {
		name   string
		labels []string
		min    float64
	}{
		{"rso_connections", []string{"endpoint=so"}, 1},
		{"rso_connections", []string{"endpoint=relay"}, 2},
		{"rso_so_subscriptions", nil, 1},
		{"rso_so_commits_total", nil, 1},
		{"rso_so_slot_changes_total", []string{"outcome=rejected", "reason=conflict"}, 1},
		{"rso_refusals_total", []string{"endpoint=so", "code=bad_name"}, 1},
		{"rso_refusals_total", []string{"endpoint=relay", "code=bad_json"}, 1},
		{"rso_chat_messages_stored_total", nil, 1},
		{"rso_relay_deliveries_total", nil, 1},
		{"rso_so_publish_duration_seconds", nil, 1},
	}
	waitFor(t, 10*time.Second, "the numbers to move", func() (bool, string) {
		got, err := metrics.Scrape(url, auth)
		if err != nil {
			return false, err.Error()
		}
		for _, w := range want {
			if v := metrics.Sum(got, w.name, w.labels...); v < w.min {
				return false, fmt.Sprintf("%s%v = %v, want at least %v", w.name, w.labels, v, w.min)
			}
		}
		return true, ""
	})

	// The dashboard and the README's table name only metrics that exist.
	got, err = metrics.Scrape(url, auth)
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, s := range got {
		exported[s.Name] = true
	}
	for _, doc := range []string{"../../docs/grafana/rso.json", "../../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`\brso_[a-z_]+`).FindAllString(string(b), -1) {
			if base := strings.TrimSuffix(name, "_bucket"); !exported[base] {
				t.Errorf("%s names %s, which rso does not export", doc, name)
			}
		}
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
