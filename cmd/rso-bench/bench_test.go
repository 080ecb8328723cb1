//go:build linux

package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The hub runs as a separate process: the test binary itself, started with the hidden command.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == hubCommand {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := serveHub(ctx, os.Args[2:], os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// logWriter sends the tool's stderr (build lines, server pids) to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Every scenario, briefly, with a handful of clients against real server processes: only correctness is
// checked (nothing lost, counts add up, auction invariants), never timing.
func TestScenariosAgainstRealServers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts rso processes")
	}
	// RSO_BENCH_RSO_BIN runs the rounds against a prebuilt rso instead of building one.
	o := &options{target: targetRSO, nodes: 1, rounds: 1, serverFPS: 1e6, quiet: true, rsoBin: os.Getenv("RSO_BENCH_RSO_BIN"),
		duration: time.Second, warmup: 200 * time.Millisecond, drain: 15 * time.Second}
	sess, err := newSession(t.Context(), o, 200, logWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.close)

	fanoutAddsUp := func(t *testing.T, r *report) {
		subs, sent, got, want := must(t, r, "subs"), must(t, r, "changes_sent"), must(t, r, "deliveries_total"), must(t, r, "expected_deliveries")
		if sent == 0 || got != subs*sent || want != got {
			t.Errorf("%v changes to %v subscribers: %v deliveries, %v expected", sent, subs, got, want)
		}
	}
	auctionHolds := func(t *testing.T, r *report) {
		bids, acc, rej, noop, errs := must(t, r, "bids"), must(t, r, "accepted"), must(t, r, "rejected"), must(t, r, "noop"), must(t, r, "errors")
		if acc == 0 || acc+rej+noop+errs != bids {
			t.Errorf("%v bids: %v accepted + %v rejected + %v no-op + %v errors", bids, acc, rej, noop, errs)
		}
		if v := must(t, r, "violations"); v != 0 {
			t.Errorf("%v violations", v)
		}
		if p := must(t, r, "final_price"); p < acc {
			t.Errorf("final price %v below the %v accepted bids (each raises it by at least 1)", p, acc)
		}
	}
	cases := []struct {
		name    string
		sc      scenario
		r       runner
		target  string
		nodes   int
		cluster bool // with R3
		check   func(*testing.T, *report)
	}{
		{"fanout/rso", fanoutScenario(), &fanout{subs: 6, rate: 100}, targetRSO, 1, false, fanoutAddsUp},
		{"fanout/barehub", fanoutScenario(), &fanout{subs: 6, rate: 100}, targetHub, 1, false, fanoutAddsUp},
		{"fanout/rso-3-nodes", fanoutScenario(), &fanout{subs: 6, rate: 100}, targetRSO, 3, false, func(t *testing.T, r *report) {
			fanoutAddsUp(t, r)
			if n := must(t, r, "nodes"); n != 3 {
				t.Errorf("nodes = %v, want 3", n)
			}
		}},
		{"rooms/rso", roomsScenario(), &rooms{rooms: 3, members: 4, interval: 100 * time.Millisecond}, targetRSO, 1, false, func(t *testing.T, r *report) {
			sent, got, want := must(t, r, "messages_sent"), must(t, r, "deliveries_total"), must(t, r, "expected_deliveries")
			if sent == 0 || got != 4*sent || want != got {
				t.Errorf("%v messages in rooms of 4: %v deliveries, %v expected", sent, got, want)
			}
		}},
		{"auction/rso", auctionScenario(), &auction{bidders: 5, persistent: true}, targetRSO, 1, false, auctionHolds},
		{"auction/rso-3-member-cluster-r3", auctionScenario(), &auction{bidders: 6, persistent: true}, targetRSO, 3, true, func(t *testing.T, r *report) {
			auctionHolds(t, r)
			if n, rs := must(t, r, "nats_servers"), must(t, r, "replicas"); n != 3 || rs != 3 {
				t.Errorf("%v NATS servers, %v replicas; want 3 and 3", n, rs)
			}
		}},
		{"dm/rso", dmScenario(), &dm{users: 6, rate: 30}, targetRSO, 1, false, func(t *testing.T, r *report) {
			sent, got, refused := must(t, r, "messages_sent"), must(t, r, "deliveries_total"), must(t, r, "refused")
			if sent == 0 || got != sent-refused {
				t.Errorf("%v messages sent, %v refused, %v delivered", sent, refused, got)
			}
		}},
		{"idle/rso", idleScenario(), &idle{n: 20, base: 2}, targetRSO, 1, false, idleMeasured},
		{"idle/barehub", idleScenario(), &idle{n: 20, base: 2}, targetHub, 1, false, idleMeasured},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o.nodes, o.cluster, o.replicas = c.nodes, c.cluster, 1
			if c.cluster {
				o.replicas = 3
			}
			rep, err := sess.round(t.Context(), c.sc, c.r, c.target)
			if err != nil && strings.Contains(err.Error(), "does not serve /relay") {
				t.Skip("rso does not serve /relay yet: ", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !rep.ok() {
				var b bytes.Buffer
				rep.printTable(&b)
				t.Fatalf("the round failed:\n%s", &b)
			}
			c.check(t, rep)
		})
	}
}

func idleMeasured(t *testing.T, r *report) {
	if v, ok := r.get("bytes_per_conn"); !ok || v != v { // NaN: RSS could not be read
		t.Errorf("bytes_per_conn not measured")
	}
	if d := must(t, r, "disconnected"); d != 0 {
		t.Errorf("%v idle connections dropped", d)
	}
}

func must(t *testing.T, r *report, key string) float64 {
	t.Helper()
	v, ok := r.get(key)
	if !ok {
		t.Fatalf("report has no %s", key)
	}
	return v
}

// A scenario with a failing check exits non-zero; the round's report says why.
func TestFailedCountsFailTheRound(t *testing.T) {
	r := newReport("fanout", targetRSO)
	r.addInt("lost", 0, "lost")
	r.addInt("duplicated", 2, "duplicated")
	r.failOnCounts("lost", "duplicated")
	if r.ok() || len(r.failures) != 1 {
		t.Fatalf("failures = %q, want one for duplicated", r.failures)
	}
}

// The shared options are checked before anything starts; each refusal names the flag at fault, and a
// valid -cluster settles the replicas the nodes get.
func TestOptionChecks(t *testing.T) {
	cases := []struct {
		args     string
		hub      bool
		err      string // "" for valid
		replicas int
	}{
		{args: "", replicas: 1},
		{args: "-nodes 3", replicas: 1},
		{args: "-nodes 3 -cluster", replicas: 3},
		{args: "-nodes 3 -cluster -replicas 1", replicas: 1},
		{args: "-nodes 5 -cluster -replicas 5", replicas: 5},
		{args: "-nodes 3 -cluster -server-args -fsync", replicas: 3},
		{args: "-cluster", err: "-cluster needs -nodes 3 or more"},
		{args: "-nodes 2 -cluster", err: "-cluster needs -nodes 3 or more"},
		{args: "-nodes 3 -cluster -url ws://127.0.0.1:1", err: "drop them with -url"},
		{args: "-url ws://127.0.0.1:1 -replicas 1", err: "drop them with -url"},
		{args: "-nodes 3 -cluster -target barehub", hub: true, err: "rso only"},
		{args: "-cluster -compare", hub: true, err: "rso only"},
		{args: "-nodes 3 -replicas 3", err: "-replicas 3 needs -cluster"},
		{args: "-nodes 3 -cluster -replicas 4", err: "holds at most 3 copies"},
		{args: "-nodes 5 -cluster -replicas 6", err: "-replicas 6: want 1 to 5"},
		{args: "-replicas -1", err: "-replicas -1: want 1 to 5"},
		{args: "-nodes 3 -cluster -server-args -replicas=2", err: "instead of -replicas"},
		{args: "-nodes 3 -cluster -server-args --nats-routes=nats://127.0.0.1:1", err: "instead of -nats-routes"},
	}
	for _, c := range cases {
		t.Run(c.args, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var o options
			o.register(fs, c.hub)
			if err := fs.Parse(strings.Fields(c.args)); err != nil {
				t.Fatal(err)
			}
			err := o.check(c.hub)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one containing %q", err, c.err)
			case c.err == "" && o.replicas != c.replicas:
				t.Fatalf("replicas = %d, want %d", o.replicas, c.replicas)
			}
		})
	}
}
