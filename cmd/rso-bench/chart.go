package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// chart runs fanout on rso and on barehub at several subscriber counts (alternating the targets at each
// count) and draws p99 latency and server CPU per delivery against subscribers as a hand-written SVG.

type chartPoint struct {
	target string
	subs   int
	p99    float64 // ms
	cpu    float64 // µs per delivery
	dps    float64 // deliveries/s
	other  float64 // other processes' CPU, % of a core
	ok     bool
	note   string
}

func runChart(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rso-bench chart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.register(fs, true)
	setDefault(fs, "duration", "5s")
	setDefault(fs, "warmup", "2s")
	setDefault(fs, "drain", "5s")
	setDefault(fs, "rounds", "1")
	subsList := fs.String("subs", "250,500,1000,2000,4000", "subscriber counts, comma-separated")
	rate := fs.Float64("rate", 20, "changes per second (20 keeps 4,000 subscribers = 80,000 deliveries/s within what 2 shared cores can do)")
	out := fs.String("out", "docs/bench/fanout-subs.svg", "SVG to write (relative paths: from the repository root); a .json of the points is written beside it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.url != "" || o.nodes != 1 || o.target != targetRSO || o.compare {
		fmt.Fprintln(stderr, "rso-bench chart: runs rso and barehub itself at each count; -url, -nodes, -target and -compare do not apply")
		return exitUsage
	}
	if err := o.check(true); err != nil {
		fmt.Fprintf(stderr, "rso-bench chart: %v\n", err)
		return exitUsage
	}
	var counts []int
	for _, s := range strings.Split(*subsList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > maxConns {
			fmt.Fprintf(stderr, "rso-bench chart: -subs %q: want counts from 1 to %d\n", *subsList, maxConns)
			return exitUsage
		}
		counts = append(counts, n)
	}
	path := *out
	if !filepath.IsAbs(path) {
		root, err := repoRoot()
		if err != nil {
			fmt.Fprintf(stderr, "rso-bench chart: %v\n", err)
			return exitFailed
		}
		path = filepath.Join(root, path)
	}
	sess, err := newSession(ctx, &o, maxOf(counts)+1, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "rso-bench chart: %v\n", err)
		return exitFailed
	}
	defer sess.close()

	sc := fanoutScenario()
	var points []chartPoint
	for _, n := range counts {
		for _, t := range []string{targetRSO, targetHub} {
			var reps []*report
			var note string
			for i := range o.rounds {
				fmt.Fprintf(stderr, "rso-bench chart: %d subscribers on %s, round %d of %d\n", n, t, i+1, o.rounds)
				rep, err := sess.round(ctx, sc, &fanout{subs: n, rate: *rate}, t)
				if ctx.Err() != nil {
					return exitFailed
				}
				if err != nil {
					note = err.Error()
					fmt.Fprintf(stderr, "rso-bench chart: %d subscribers on %s: %v\n", n, t, err)
					continue
				}
				reps = append(reps, rep)
			}
			points = append(points, chartPointOf(t, n, reps, note))
		}
	}
	var others []float64
	for _, p := range points {
		if !math.IsNaN(p.other) {
			others = append(others, p.other)
		}
	}
	meta := fmt.Sprintf("%s changes/s, %s window, median of %d round(s); %s, %d CPUs; other processes %.0f %% of a core (median); %s",
		strconv.FormatFloat(*rate, 'f', -1, 64), o.duration, o.rounds, cpuModel(), runtime.NumCPU(), median(others), time.Now().Format("2006-01-02"))
	svg := chartSVG(points, counts, meta)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fmt.Fprintf(stderr, "rso-bench chart: %v\n", err)
		return exitFailed
	}
	if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
		fmt.Fprintf(stderr, "rso-bench chart: %v\n", err)
		return exitFailed
	}
	if err := os.WriteFile(strings.TrimSuffix(path, ".svg")+".json", chartJSON(points, meta), 0o644); err != nil {
		fmt.Fprintf(stderr, "rso-bench chart: %v\n", err)
		return exitFailed
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "subs\ttarget\tdeliveries/s\tp99 ms\tcpu µs/delivery\tok\t\n")
	for _, p := range points {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%v\t  %s\n", p.subs, p.target, formatNumber(p.dps, 0), formatNumber(p.p99, 2), formatNumber(p.cpu, 2), p.ok, p.note)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "wrote %s\n", path)
	return exitOK
}

func setDefault(fs *flag.FlagSet, name, v string) {
	f := fs.Lookup(name)
	f.Value.Set(v)
	f.DefValue = v
}

func maxOf(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func chartPointOf(target string, subs int, reps []*report, note string) chartPoint {
	p := chartPoint{target: target, subs: subs, p99: math.NaN(), cpu: math.NaN(), dps: math.NaN(), other: math.NaN(), note: note}
	if len(reps) == 0 {
		return p
	}
	get := func(key string) float64 {
		var xs []float64
		for _, r := range reps {
			if v, ok := r.get(key); ok && !math.IsNaN(v) {
				xs = append(xs, v)
			}
		}
		if len(xs) == 0 {
			return math.NaN()
		}
		return median(xs)
	}
	p.p99, p.cpu, p.dps, p.other = get("p99_ms"), get("server_cpu_us_per_delivery"), get("deliveries_per_sec"), get("other_cpu_pct")
	p.ok = true
	for _, r := range reps {
		if !r.ok() {
			p.ok = false
			p.note = r.failures[0]
		}
	}
	return p
}

func chartJSON(points []chartPoint, meta string) []byte {
	var rows []byte
	rows = append(rows, '[')
	for i, p := range points {
		if i > 0 {
			rows = append(rows, ',', '\n')
		}
		var o orderedJSON
		o.put("target", p.target)
		o.put("subs", p.subs)
		o.put("deliveries_per_sec", jsonNumber(p.dps, 0))
		o.put("p99_ms", jsonNumber(p.p99, 2))
		o.put("server_cpu_us_per_delivery", jsonNumber(p.cpu, 2))
		o.put("other_cpu_pct", jsonNumber(p.other, 1))
		o.put("ok", p.ok)
		o.put("note", p.note)
		rows = append(rows, o.bytes()...)
	}
	rows = append(rows, ']')
	var o orderedJSON
	o.put("about", meta)
	o.put("points", json.RawMessage(rows))
	return append(o.bytes(), '\n')
}

// The SVG: two panels side by side, x = subscribers on a log scale, one line per target.

const (
	svgW, svgH   = 960, 420
	panelW       = 400
	panelH       = 280
	panelTop     = 70
	panelLeft1   = 70
	panelLeft2   = 550
	colorRSO     = "#1f6fb4"
	colorHub     = "#e07b10"
	svgFontStyle = `font-family="DejaVu Sans, Helvetica, Arial, sans-serif"`
)

func chartSVG(points []chartPoint, counts []int, meta string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="12">`+"\n",
		svgW, svgH, svgW, svgH, svgFontStyle)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgW, svgH)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">fanout: rso vs. plain gorilla/websocket hub (barehub)</text>`+"\n", panelLeft1)
	fmt.Fprintf(&b, `<text x="%d" y="44" fill="#555">%s</text>`+"\n", panelLeft1, xmlEscape(meta))
	panel(&b, panelLeft1, "p99 latency (ms, log scale)", points, counts, func(p chartPoint) float64 { return p.p99 }, true)
	panel(&b, panelLeft2, "server CPU per delivery (µs)", points, counts, func(p chartPoint) float64 { return p.cpu }, false)
	// legend
	y := svgH - 22
	for i, t := range []string{targetRSO, targetHub} {
		x := panelLeft1 + i*160
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.5"/>`, x, y-4, x+24, y-4, seriesColor(t))
		fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="3.5" fill="%s"/>`, x+12, y-4, seriesColor(t))
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+30, y, t)
	}
	fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="4" fill="white" stroke="#333" stroke-width="1.5"/>`, panelLeft1+332, y-4)
	fmt.Fprintf(&b, `<text x="%d" y="%d">hollow: the run lost, duplicated or reordered messages (overloaded)</text>`+"\n", panelLeft1+342, y)
	b.WriteString("</svg>\n")
	return b.String()
}

func seriesColor(t string) string {
	if t == targetRSO {
		return colorRSO
	}
	return colorHub
}

func panel(b *strings.Builder, left int, title string, points []chartPoint, counts []int, val func(chartPoint) float64, logY bool) {
	top, w, h := panelTop, panelW, panelH
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left, top-10, xmlEscape(title))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", left, top, w, h)
	// x: log2 of subscribers, padded by half a step either side
	lo, hi := math.Log2(float64(minOf(counts))), math.Log2(float64(maxOf(counts)))
	if hi == lo {
		lo, hi = lo-1, hi+1
	}
	pad := (hi - lo) * 0.06
	lo, hi = lo-pad, hi+pad
	xOf := func(n int) float64 { return float64(left) + (math.Log2(float64(n))-lo)/(hi-lo)*float64(w) }
	for _, n := range counts {
		x := xOf(n)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`, x, top, x, top+h)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, top+h+16, shortCount(n))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">subscribers</text>`+"\n", left+w/2, top+h+34)
	// y
	var vals []float64
	for _, p := range points {
		if v := val(p); !math.IsNaN(v) && v > 0 {
			vals = append(vals, v)
		}
	}
	ymin, ymax := 0.0, 1.0
	if len(vals) > 0 {
		ymin, ymax = vals[0], vals[0]
		for _, v := range vals {
			ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
		}
	}
	var yOf func(float64) float64
	var ticks []float64
	if logY {
		a, z := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
		if z == a {
			z = a + 1
		}
		yOf = func(v float64) float64 { return float64(top+h) - (math.Log10(v)-a)/(z-a)*float64(h) }
		for e := a; e <= z; e++ {
			for _, m := range []float64{1, 2, 5} {
				if t := m * math.Pow(10, e); math.Log10(t) <= z+1e-9 {
					ticks = append(ticks, t)
				}
			}
		}
	} else {
		step := niceStep(ymax / 5)
		z := math.Ceil(ymax/step) * step
		yOf = func(v float64) float64 { return float64(top+h) - v/z*float64(h) }
		for t := 0.0; t <= z+step/2; t += step {
			ticks = append(ticks, t)
		}
	}
	for _, t := range ticks {
		y := yOf(t)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`, left, y, left+w, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, strconv.FormatFloat(t, 'g', 4, 64))
	}
	for _, t := range []string{targetHub, targetRSO} {
		var pts []string
		for _, p := range points {
			if v := val(p); p.target == t && !math.IsNaN(v) && v > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(p.subs), yOf(v)))
			}
		}
		if len(pts) > 1 {
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5"/>`+"\n", strings.Join(pts, " "), seriesColor(t))
		}
		for _, p := range points {
			v := val(p)
			if p.target != t || math.IsNaN(v) || v <= 0 {
				continue
			}
			fill := seriesColor(t)
			if !p.ok {
				fill = "white"
			}
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="1.5"><title>%s %d subs: %s</title></circle>`+"\n",
				xOf(p.subs), yOf(v), fill, seriesColor(t), t, p.subs, strconv.FormatFloat(v, 'f', 2, 64))
		}
	}
}

func minOf(xs []int) int {
	m := math.MaxInt
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func shortCount(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	if n >= 1000 && n%100 == 0 {
		return strconv.FormatFloat(float64(n)/1000, 'f', 1, 64) + "k"
	}
	return strconv.Itoa(n)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
