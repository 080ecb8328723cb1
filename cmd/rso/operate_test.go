package main

import (
	"context"
	"encoding/json"
	"errors"
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

// The admin API over HTTP: refused without the token; with it, nodes, objects and one object's slots are
// read, a user is disconnected (the client sees 4011 and the reason), and an object is cleared.
func TestAdminAPI(t *testing.T) {
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	startRun(t, []string{"-addr", addr, "-data", t.TempDir(), "-metrics-addr", metricsAddr, "-demos=false"}, env{"RSO_ADMIN_TOKEN": testAdminToken})
	waitHealth(t, addr, http.StatusOK)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ann, err := client.Dial(ctx, "ws://"+addr+"/so?user=ann", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	if _, err := ann.Subscribe(ctx, "room/1", true, 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ann.Update(ctx, "room/1", true, []client.Change{{Name: "x", Value: json.RawMessage(`"hi"`)}}); err != nil {
		t.Fatal(err)
	}

	call := func(method, path, body, token string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+metricsAddr+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, _ := call("GET", "/admin/api/nodes", "", ""); code != http.StatusUnauthorized {
		t.Errorf("nodes without the token: %d", code)
	}
	if code, _ := call("GET", "/admin/api/nodes", "", "wrong-token-wrong-token"); code != http.StatusUnauthorized {
		t.Errorf("nodes with a wrong token: %d", code)
	}
	code, out := call("GET", "/admin/api/nodes", "", testAdminToken)
	if nodes, _ := out["nodes"].([]any); code != 200 || len(nodes) != 1 || nodes[0].(map[string]any)["connections"] != 1.0 {
		t.Fatalf("nodes: %d %v", code, out)
	}
	code, out = call("GET", "/admin/api/objects?prefix=room/", "", testAdminToken)
	if b, _ := json.Marshal(out); code != 200 || !strings.Contains(string(b), `"obj":"room/1"`) || !strings.Contains(string(b), `"subscribers":1`) {
		t.Fatalf("objects: %d %s", code, b)
	}
	code, out = call("GET", "/admin/api/objects?sort=rate", "", testAdminToken)
	if b, _ := json.Marshal(out); code != 200 || !strings.Contains(string(b), `"changes_1m":1`) {
		t.Fatalf("objects by rate: %d %s", code, b)
	}
	if code, out = call("GET", "/admin/api/objects?sort=size", "", testAdminToken); code != http.StatusBadRequest {
		t.Errorf("objects?sort=size: %d %v", code, out)
	}
	// The page's numbers: the whole process's, /so's and /relay's (cmd/rso gives the node its gatherer).
	code, out = call("GET", "/admin/api/stats", "", testAdminToken)
	var stats struct {
		Nodes []struct{ Metrics map[string][]metrics.Series }
	}
	b, _ := json.Marshal(out)
	if json.Unmarshal(b, &stats); code != 200 || len(stats.Nodes) != 1 {
		t.Fatalf("stats: %d %s", code, b)
	}
	st := stats.Nodes[0].Metrics
	if c := st["rso_so_commit_duration_seconds"]; len(c) != 1 || c[0].Value != 1 || len(st["rso_so_deliveries_total"]) != 1 ||
		len(st["rso_connections"]) != 1 || st["rso_connections"][0].Labels["endpoint"] != "so" {
		t.Fatalf("stats: want one commit, /so deliveries and one /so connection: %s", b)
	}
	code, out = call("GET", "/admin/api/object?obj=room/1&persistent=true", "", testAdminToken)
	if slots, _ := out["slots"].(map[string]any); code != 200 || slots["x"] != "hi" {
		t.Fatalf("object: %d %v", code, out)
	}
	if code, out = call("GET", "/admin/api/object", "", testAdminToken); code != http.StatusBadRequest || out["error"] == nil {
		t.Errorf("object without ?obj=: %d %v", code, out)
	}
	code, out = call("POST", "/admin/api/clear?obj=room/1&persistent=true", "", testAdminToken)
	if code != 200 {
		t.Fatalf("clear: %d %v", code, out)
	}
	if _, out = call("GET", "/admin/api/object?obj=room/1&persistent=true", "", testAdminToken); out["slots"] == nil || len(out["slots"].(map[string]any)) != 0 {
		t.Errorf("after clear: %v", out)
	}
	code, out = call("POST", "/admin/api/disconnect", `{"user":"ann","reason":"maintenance"}`, testAdminToken)
	if closed, _ := out["closed"].(map[string]any); code != 200 || closed["total"] != 1.0 {
		t.Fatalf("disconnect: %d %v", code, out)
	}
	<-ann.Done()
	var ce *client.CloseError
	if !errors.As(ann.CloseErr(), &ce) || ce.Code != 4011 || !strings.Contains(ce.Text, "maintenance") {
		t.Fatalf("ann closed with %v, want 4011 maintenance", ann.CloseErr())
	}
}
