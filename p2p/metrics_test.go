package p2p_test

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
)

// TestMetrics: relay, messaging and friends export on one registry, and real actions on real sockets move
// their series, read from /metrics with the Prometheus text parser.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCluster(t, 1, "", func(m *messaging.Config, r *relay.Config) {
		m.Registerer, r.Registerer = reg, reg
	})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	scrape := func() []metrics.Sample {
		t.Helper()
		got, err := metrics.Scrape(srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialTCP(t, c.nodes[0], "bob", "")
	befriend(t, alice, bob)
	seq := alice.mustSend("bob", "hi")
	bob.expect(isMessage("alice", seq))
	if r := bob.call(map[string]any{"op": "receipt", "peer": "alice", "kind": "read", "seq": seq}); r.Get("op").Str != "ok" {
		t.Fatalf("receipt: %s", r.Raw)
	}
	alice.sendRaw(`{"op":`)
	wantError(t, alice.expect(isError("bad_json")), "bad_json")
	alice.call(map[string]any{"op": "nonsense"}) // refused by the service: unknown_op

	got := scrape()
	for _, w := range []struct {
		name   string
		labels []string
		want   float64 // at least
	}{
		{"rso_connections", []string{"endpoint=relay"}, 1},
		{"rso_connections", []string{"endpoint=relay_tcp"}, 1},
		{"rso_connections_opened_total", []string{"endpoint=relay"}, 1},
		{"rso_connections_opened_total", []string{"endpoint=relay_tcp"}, 1},
		{"rso_relay_users", nil, 2},
		{"rso_relay_frames_forwarded_total", nil, 5},
		{"rso_relay_service_request_duration_seconds", nil, 5},
		{"rso_relay_deliveries_total", nil, 1},
		{"rso_relay_outbound_bytes_total", nil, 100},
		{"rso_refusals_total", []string{"endpoint=relay", "code=bad_json"}, 1},
		{"rso_refusals_total", []string{"endpoint=relay", "code=unknown_op"}, 1},
		{"rso_chat_messages_stored_total", nil, 1},
		{"rso_chat_store_duration_seconds", nil, 1},
		{"rso_chat_receipts_total", []string{"kind=read"}, 1},
		{"rso_chat_requests_total", []string{"op=send", "result=ok"}, 1},
		{"rso_chat_requests_total", []string{"op=receipt", "result=ok"}, 1},
		{"rso_chat_requests_total", []string{"op=other", "result=refused"}, 1},
		{"rso_chat_presence_changes_total", []string{"status=online"}, 2},
		{"rso_friends_updates_total", []string{"action=request", "result=ok"}, 1},
		{"rso_friends_updates_total", []string{"action=accept", "result=ok"}, 1},
	} {
		if n := metrics.Sum(got, w.name, w.labels...); n < w.want {
			t.Errorf("%s%v = %v, want at least %v", w.name, w.labels, n, w.want)
		}
	}
	for _, name := range []string{"rso_chat_messages_duplicate_total", "rso_chat_workers_busy_total", "rso_chat_sweeps_total",
		"rso_friends_requests_refused_total", "rso_relay_signals_total"} {
		if n := metrics.Sum(got, name); n != 0 {
			t.Errorf("%s = %v, want 0", name, n)
		}
	}
	if n := metrics.Sum(got, "rso_connection_closes_total"); n != 0 {
		t.Errorf("closes before any close: %v", n)
	}

	// A resend (same id) is a duplicate, not stored again.
	resend := map[string]any{"op": "send", "id": "again-1", "to": "bob", "body": map[string]string{"text": "once"}}
	alice.call(resend)
	alice.call(map[string]any{"op": "send", "id": "again-1", "to": "bob", "body": map[string]string{"text": "once"}})
	// An abuse close (4009), borrowed from TestAbuseCloses, and a normal close of a TCP client.
	mallory := dialWS(t, c.nodes[0], "mallory", "")
	for range 60 {
		if mallory.write([]byte(`nonsense`)) != nil {
			break
		}
	}
	if code := mallory.closeCode(); code != 4009 {
		t.Fatalf("mallory closed with %d, want 4009", code)
	}
	bob.close()
	waitFor(t, "the closes to be counted", func() bool {
		got = scrape()
		return metrics.Sum(got, "rso_connection_closes_total", "endpoint=relay", "code=4009") == 1 &&
			metrics.Sum(got, "rso_connection_closes_total", "endpoint=relay_tcp") == 1
	})
	got = scrape()
	if n := metrics.Sum(got, "rso_connections", "endpoint=relay"); n != 1 {
		t.Errorf("open WebSockets after mallory's close: %v, want 1 (alice)", n)
	}
	if n := metrics.Sum(got, "rso_connections", "endpoint=relay_tcp"); n != 0 {
		t.Errorf("open TCP sockets after bob's close: %v, want 0", n)
	}
	if n := metrics.Sum(got, "rso_refusals_total", "endpoint=relay", "code=bad_json"); n < 51 {
		t.Errorf("bad_json refusals after mallory's flood: %v, want at least 51", n)
	}
	if n := metrics.Sum(got, "rso_chat_messages_duplicate_total"); n != 1 {
		t.Errorf("duplicates: %v, want 1", n)
	}
	if n := metrics.Sum(got, "rso_chat_messages_stored_total"); n != 2 {
		t.Errorf("stored: %v, want 2", n)
	}
}
