package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// idle: -conns connections that subscribe (rso: to one shared temporary object; hub: the hub's hello) and
// then stay silent. Server memory per connection is the growth of the servers' RSS from a warm baseline
// (-base-conns connections already open, so one-time costs such as the object and the listener are not
// counted) to after the connections have sat idle for the warm-up and the measured window, divided by
// -conns. The window also gives the CPU the idle connections cost.

func idleScenario() scenario {
	return scenario{
		name:    "idle",
		summary: "-conns idle subscribed connections: server memory per connection (rso, barehub)",
		hub:     true,
		newRunner: func(fs *flag.FlagSet) runner {
			i := &idle{}
			fs.IntVar(&i.n, "conns", 5000, "idle connections")
			fs.IntVar(&i.base, "base-conns", 50, "connections opened before the baseline RSS is read")
			return i
		},
	}
}

type idle struct {
	n    int // idle connections measured
	base int
}

func (i *idle) conns() int { return i.n + i.base }

func (i *idle) check() error {
	if i.n < 1 || i.n+i.base > maxConns || i.base < 0 {
		return fmt.Errorf("-conns %d, -base-conns %d: want at least 1 connection and at most %d in all", i.n, i.base, maxConns)
	}
	return nil
}

// rssSettled reads the servers' RSS a few times, 200 ms apart, and returns the median.
func rssSettled(ctx context.Context, e *env, n int) (float64, bool) {
	var xs []float64
	for range n {
		v, ok := e.rss()
		if !ok {
			return math.NaN(), false
		}
		xs = append(xs, float64(v))
		if e.sleep(ctx, 200*time.Millisecond) != nil {
			break
		}
	}
	return median(xs), true
}

func (i *idle) run(ctx context.Context, e *env) (*report, error) {
	obj := "bench/idle-" + e.runID
	rec := newRecorder()
	var connected atomic.Int64
	prog := e.startProgress(meter{name: "connected", value: connected.Load, total: true})
	defer prog.end()

	base, err := connectSubscribers(ctx, e, i.base, obj, false, rec, &connected)
	if err != nil {
		return nil, fmt.Errorf("connecting %d baseline connections: %w", i.base, err)
	}
	defer shutAll(base)
	if err := e.sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	before, known := rssSettled(ctx, e, 3)

	start := time.Now()
	subs, err := connectSubscribers(ctx, e, i.n, obj, false, rec, &connected)
	if err != nil {
		return nil, fmt.Errorf("connecting %d idle connections: %w", i.n, err)
	}
	defer shutAll(subs)
	connectTime := time.Since(start)

	u, _, err := e.measure(ctx, prog, nil)
	if err != nil {
		return nil, err
	}
	after, _ := rssSettled(ctx, e, 5)
	prog.end()

	var dropped, errFrames int64
	for _, s := range append(slices.Clip(base), subs...) {
		if s.dropped.Load() {
			dropped++
		}
		errFrames += s.errs.Load()
	}
	r := newReport("idle", e.target)
	r.addInt("conns", int64(i.n), "idle connections")
	r.add("connect_per_sec", float64(i.n)/connectTime.Seconds(), 0, "connections opened/s (dial + subscribe)")
	perConn, rssBefore, rssAfter := math.NaN(), math.NaN(), math.NaN()
	if known {
		perConn, rssBefore, rssAfter = (after-before)/float64(i.n), before, after
	}
	r.add("bytes_per_conn", perConn, 0, "server memory per connection (bytes)")
	r.add("rss_before_bytes", rssBefore, 0, "server RSS with the baseline connections")
	r.add("rss_after_bytes", rssAfter, 0, "server RSS with every connection")
	r.addInt("disconnected", dropped, "connections closed by the server")
	r.addInt("error_frames", errFrames, "error frames")
	r.addUsage(u, 0, "")
	r.failOnCounts("disconnected", "error_frames")
	return r, nil
}
