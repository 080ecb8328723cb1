package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// max searches the highest fanout rate each target sustains with -subs subscribers: the rate doubles from
// -start-rate until a probe fails, then -steps bisections narrow it down. The targets take turns, so that
// background load on the machine hits both alike. A probe passes when nothing is lost, duplicated,
// reordered or disconnected, the publisher achieves at least 97 % of the rate, and p99 ≤ -slo-p99 (a
// server that falls behind queues, and its latency grows without bound).

type probe struct {
	rate   float64
	rep    *report
	pass   bool
	reason string
}

type search struct {
	target string
	lo, hi float64 // highest pass, lowest fail (0: none yet)
	next   float64
	steps  int
	probes []probe
}

func runMax(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rso-bench max", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.register(fs, true)
	setDefault(fs, "duration", "5s")
	setDefault(fs, "warmup", "2s")
	setDefault(fs, "drain", "5s")
	subs := fs.Int("subs", 1000, "subscribers")
	start := fs.Float64("start-rate", 50, "first rate tried (changes/s)")
	limit := fs.Float64("max-rate", 5000, "highest rate tried (changes/s)")
	steps := fs.Int("steps", 4, "bisection steps after the first failure")
	slo := fs.Duration("slo-p99", 50*time.Millisecond, "highest p99 latency that still counts as sustained")
	targets := fs.String("targets", "rso,barehub", "targets, comma-separated")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.url != "" || o.nodes != 1 || o.compare || o.target != targetRSO {
		fmt.Fprintln(stderr, "rso-bench max: starts the targets itself; use -targets (not -url, -nodes, -target or -compare)")
		return exitUsage
	}
	if err := o.check(true); err != nil {
		fmt.Fprintf(stderr, "rso-bench max: %v\n", err)
		return exitUsage
	}
	fan := &fanout{subs: *subs, rate: *start}
	if err := fan.check(); err != nil || !(*limit >= *start) || *steps < 0 || *steps > 10 {
		fmt.Fprintf(stderr, "rso-bench max: want 1 ≤ -subs ≤ %d, 0 < -start-rate ≤ -max-rate ≤ %g, 0 ≤ -steps ≤ 10\n", maxConns, maxRate)
		return exitUsage
	}
	var ss []*search
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		if t != targetRSO && t != targetHub {
			fmt.Fprintf(stderr, "rso-bench max: -targets %q: want rso and/or barehub\n", *targets)
			return exitUsage
		}
		ss = append(ss, &search{target: t, next: *start, steps: *steps})
	}
	sess, err := newSession(ctx, &o, *subs+1, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "rso-bench max: %v\n", err)
		return exitFailed
	}
	defer sess.close()

	sc := fanoutScenario()
	for {
		active := false
		for _, s := range ss {
			if s.next == 0 {
				continue
			}
			active = true
			rate := s.next
			fmt.Fprintf(stderr, "rso-bench max: %s at %.0f changes/s × %d subscribers\n", s.target, rate, *subs)
			rep, err := sess.round(ctx, sc, &fanout{subs: *subs, rate: rate}, s.target)
			if ctx.Err() != nil {
				return exitFailed
			}
			p := judgeProbe(rate, rep, err, *slo)
			fmt.Fprintf(stderr, "rso-bench max: %s at %.0f/s: %s\n", s.target, rate, p.verdict())
			s.probes = append(s.probes, p)
			s.advance(p, *limit)
		}
		if !active {
			break
		}
	}

	if o.jsonOut {
		var o2 orderedJSON
		o2.put("subs", *subs)
		o2.put("slo_p99_ms", slo.Milliseconds())
		for _, s := range ss {
			var t orderedJSON
			t.put("max_rate", jsonNumber(s.lo, 0))
			t.put("max_deliveries_per_sec", jsonNumber(s.lo*float64(*subs), 0))
			var ps []json.RawMessage
			for _, p := range s.probes {
				var pj orderedJSON
				pj.put("rate", p.rate)
				pj.put("pass", p.pass)
				pj.put("reason", p.reason)
				if p.rep != nil {
					pj.put("report", p.rep.json())
				}
				ps = append(ps, pj.bytes())
			}
			t.put("probes", ps)
			o2.put(s.target, t.bytes())
		}
		fmt.Fprintf(stdout, "%s\n", o2.bytes())
		return exitOK
	}
	fmt.Fprintf(stdout, "highest sustained fanout rate, %d subscribers (p99 ≤ %s, nothing lost, ≥ 97 %% of the rate achieved)\n", *subs, *slo)
	for _, s := range ss {
		fmt.Fprintf(stdout, "  %s: %s changes/s = %s deliveries/s", s.target, formatNumber(s.lo, 0), formatNumber(s.lo*float64(*subs), 0))
		if s.hi > 0 {
			fmt.Fprintf(stdout, " (failed at %s/s)", formatNumber(s.hi, 0))
		} else {
			fmt.Fprintf(stdout, " (no failure up to -max-rate)")
		}
		fmt.Fprintln(stdout)
		for _, p := range s.probes {
			fmt.Fprintf(stdout, "    %8s/s  %s\n", formatNumber(p.rate, 0), p.verdict())
		}
	}
	return exitOK
}

func judgeProbe(rate float64, rep *report, err error, slo time.Duration) probe {
	p := probe{rate: rate, rep: rep}
	switch {
	case err != nil:
		p.reason = err.Error()
	case !rep.ok():
		p.reason = rep.failures[0]
	default:
		achieved, _ := rep.get("publish_rate")
		p99, _ := rep.get("p99_ms")
		switch {
		case achieved < 0.97*rate:
			p.reason = fmt.Sprintf("publisher achieved only %.0f/s", achieved)
		case math.IsNaN(p99) || p99 > float64(slo)/1e6:
			p.reason = fmt.Sprintf("p99 %.1f ms > %s", p99, slo)
		default:
			p.pass = true
		}
	}
	return p
}

func (p probe) verdict() string {
	var figs string
	if p.rep != nil {
		dps, _ := p.rep.get("deliveries_per_sec")
		p99, _ := p.rep.get("p99_ms")
		cpu, _ := p.rep.get("server_cpu_us_per_delivery")
		busy, _ := p.rep.get("machine_busy_pct")
		other, _ := p.rep.get("other_cpu_pct")
		figs = fmt.Sprintf("deliveries %s/s, p99 %s ms, cpu %s µs/delivery, machine %s %% busy (others %s %% of a core); ",
			formatNumber(dps, 0), formatNumber(p99, 2), formatNumber(cpu, 2), formatNumber(busy, 0), formatNumber(other, 0))
	}
	if p.pass {
		return figs + "sustained"
	}
	return figs + "NOT sustained: " + p.reason
}

// advance picks the next rate: double until the first failure, then bisect.
func (s *search) advance(p probe, limit float64) {
	if p.pass {
		s.lo = max(s.lo, p.rate)
	} else if s.hi == 0 || p.rate < s.hi {
		s.hi = p.rate
	}
	switch {
	case s.hi == 0 && s.lo*2 <= limit:
		s.next = s.lo * 2
	case s.hi == 0:
		s.next = 0 // no failure up to the limit
	case s.steps == 0 || s.lo == 0 && p.rate <= 1:
		s.next = 0
	default:
		s.steps--
		s.next = math.Round((s.lo + s.hi) / 2)
		if s.lo == 0 {
			s.next = math.Round(s.hi / 2)
		}
		if s.next <= s.lo || s.next >= s.hi {
			s.next = 0
		}
	}
}
