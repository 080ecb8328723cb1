package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// report is the outcome of one round: numeric figures in the order they were added (the same order in the
// table and in -json), and the reasons the round failed, if any.
type report struct {
	scenario string
	target   string
	fields   []field
	failures []string
}

type field struct {
	key   string  // the -json name, e.g. p99_ms
	value float64 // NaN: not measured (printed as "-" and as null)
	prec  int     // decimals shown; 0 prints a whole number
	label string  // what the table calls it
}

func newReport(scenario, target string) *report {
	return &report{scenario: scenario, target: target}
}

// add appends a figure; prec is how many decimals it deserves.
func (r *report) add(key string, v float64, prec int, label string) {
	r.fields = append(r.fields, field{key: key, value: v, prec: prec, label: label})
}

func (r *report) addInt(key string, v int64, label string) { r.add(key, float64(v), 0, label) }

// fail records why the round does not pass; the process then exits non-zero.
func (r *report) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// get returns a figure by its key.
func (r *report) get(key string) (float64, bool) {
	for _, f := range r.fields {
		if f.key == key {
			return f.value, true
		}
	}
	return 0, false
}

// failOnCounts fails the round for every non-zero count among keys.
func (r *report) failOnCounts(keys ...string) {
	for _, k := range keys {
		if v, ok := r.get(k); ok && v != 0 && !math.IsNaN(v) {
			r.fail("%s = %s (must be 0)", k, formatNumber(v, 0))
		}
	}
}

func (r *report) ok() bool { return len(r.failures) == 0 }

// addLatency adds the percentile fields for the latencies l.
func (r *report) addLatency(l *latencies, what string) {
	ms := func(d time.Duration) float64 {
		if l.n == 0 {
			return math.NaN()
		}
		return float64(d) / 1e6
	}
	r.add("p50_ms", ms(l.quantile(0.50)), 2, what+" p50 (ms)")
	r.add("p95_ms", ms(l.quantile(0.95)), 2, what+" p95 (ms)")
	r.add("p99_ms", ms(l.quantile(0.99)), 2, what+" p99 (ms)")
	r.add("max_ms", ms(time.Duration(l.max)), 2, what+" max (ms)")
	r.addInt("latency_samples", int64(l.n), "latency samples")
}

// addUsage adds the server and machine figures of a measured window; perUnit is what the server's CPU is
// divided by (deliveries, writes), named unit ("" for none).
func (r *report) addUsage(u usage, perUnit int64, unit string) {
	cpuPct, per, rss := math.NaN(), math.NaN(), math.NaN()
	if u.serverKnown {
		cpuPct, rss = 100*u.serverCPU.Seconds()/u.elapsed.Seconds(), float64(u.rss)
		if perUnit > 0 {
			per = float64(u.serverCPU.Nanoseconds()) / 1e3 / float64(perUnit)
		}
	}
	r.add("server_cpu_pct", cpuPct, 1, "server CPU (% of one core)")
	if unit != "" {
		r.add("server_cpu_us_per_"+unit, per, 2, "server CPU per "+unit+" (µs)")
	}
	r.add("server_rss_bytes", rss, 0, "server RSS (bytes)")
	genPct := 100 * u.selfCPU.Seconds() / u.elapsed.Seconds()
	r.add("gen_cpu_pct", genPct, 1, "generator CPU (% of one core)")
	r.add("machine_busy_pct", u.machineBusy, 1, "machine busy (% of all cores)")
	// What else ran meanwhile (other people's tests, the kernel's own threads): the machine's busy time
	// minus the servers' and the generator's. High values make a round's figures suspect.
	other := math.NaN()
	if !math.IsNaN(cpuPct) {
		other = max(0, u.machineBusy*float64(runtime.NumCPU())-cpuPct-genPct)
	}
	r.add("other_cpu_pct", other, 1, "other processes' CPU (% of one core)")
	r.add("loadavg_1m", u.load, 2, "load average (1 min, at start)")
	r.add("window_s", u.elapsed.Seconds(), 2, "measured window (s)")
}

func formatNumber(v float64, prec int) string {
	if math.IsNaN(v) {
		return "-"
	}
	if prec == 0 {
		return groupThousands(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	}
	return groupThousands(strconv.FormatFloat(v, 'f', prec, 64))
}

// groupThousands puts commas in the integer part: 1234567.5 → 1,234,567.5.
func groupThousands(s string) string {
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}

// jsonNumber writes v for -json: a whole number when prec is 0, null when not measured.
func jsonNumber(v float64, prec int) json.RawMessage {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return json.RawMessage("null")
	case prec == 0:
		return json.RawMessage(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	default:
		return json.RawMessage(strconv.FormatFloat(v, 'f', prec+1, 64))
	}
}

// orderedJSON builds a JSON object whose keys keep the order given.
type orderedJSON struct{ b bytes.Buffer }

func (o *orderedJSON) put(key string, v any) {
	if o.b.Len() == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	k, _ := json.Marshal(key)
	o.b.Write(k)
	o.b.WriteByte(':')
	if raw, ok := v.(json.RawMessage); ok {
		o.b.Write(raw)
		return
	}
	val, err := json.Marshal(v)
	if err != nil {
		val = []byte("null")
	}
	o.b.Write(val)
}

func (o *orderedJSON) bytes() json.RawMessage {
	if o.b.Len() == 0 {
		return json.RawMessage("{}")
	}
	return json.RawMessage(append(o.b.Bytes(), '}'))
}

func (r *report) json() json.RawMessage {
	var o orderedJSON
	o.put("scenario", r.scenario)
	o.put("target", r.target)
	o.put("ok", r.ok())
	o.put("failures", append([]string{}, r.failures...))
	for _, f := range r.fields {
		o.put(f.key, jsonNumber(f.value, f.prec))
	}
	return o.bytes()
}

// printTable writes one round's figures for people.
func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "%s on %s\n", r.scenario, r.target)
	var rows [][]string
	for _, f := range r.fields {
		rows = append(rows, []string{f.label, formatNumber(f.value, f.prec), f.key})
	}
	if len(rows) > 0 {
		printRows(w, rows)
	}
	printVerdict(w, r.failures)
}

func printVerdict(w io.Writer, failures []string) {
	if len(failures) == 0 {
		fmt.Fprintln(w, "  PASS: every check held (nothing lost, duplicated, out of order or inconsistent)")
		return
	}
	for _, f := range failures {
		fmt.Fprintln(w, "  FAIL:", f)
	}
}

// comparison holds the rounds of -compare, per target, and their medians.
type comparison struct {
	scenario string
	targets  []string // rso first; ratios are targets[0] / targets[1]
	rounds   map[string][]*report
}

// medians returns, per target, every field's median over its rounds (in the first round's field order).
func (c *comparison) medians(target string) []field {
	rs := c.rounds[target]
	if len(rs) == 0 {
		return nil
	}
	out := make([]field, 0, len(rs[0].fields))
	for _, f := range rs[0].fields {
		var xs []float64
		for _, r := range rs {
			if v, ok := r.get(f.key); ok && !math.IsNaN(v) {
				xs = append(xs, v)
			}
		}
		m := math.NaN()
		if len(xs) > 0 {
			m = median(xs)
		}
		out = append(out, field{key: f.key, value: m, prec: f.prec, label: f.label})
	}
	return out
}

func (c *comparison) failures() []string {
	var out []string
	for _, t := range c.targets {
		for i, r := range c.rounds[t] {
			for _, f := range r.failures {
				out = append(out, fmt.Sprintf("%s round %d: %s", t, i+1, f))
			}
		}
	}
	return out
}

// lookup finds a field by key; a missing one reads as not measured.
func lookup(fs []field, key string) (field, bool) {
	for _, f := range fs {
		if f.key == key {
			return f, true
		}
	}
	return field{key: key, value: math.NaN()}, false
}

// printRows prints a table whose first column is left-aligned text, the middle ones right-aligned
// numbers, and the last one the -json key.
func printRows(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		b.WriteString("  ")
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			switch {
			case i == 0:
				b.WriteString(c + pad)
			case i == len(r)-1:
				b.WriteString("  " + c)
			default:
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}

// printTable writes the medians side by side and rso's figures as ratios of the hub's.
func (c *comparison) printTable(w io.Writer) {
	a, b := c.targets[0], c.targets[1]
	ma, mb := c.medians(a), c.medians(b)
	fmt.Fprintf(w, "%s: median of %d rounds each, alternating %s and %s\n", c.scenario, len(c.rounds[a]), a, b)
	rows := [][]string{{"", a, b, a + "/" + b, ""}}
	for _, fa := range ma {
		fb, _ := lookup(mb, fa.key)
		rows = append(rows, []string{fa.label, formatNumber(fa.value, fa.prec), formatNumber(fb.value, fb.prec),
			formatNumber(ratio(fa.value, fb.value), 2), fa.key})
	}
	printRows(w, rows)
	for _, t := range c.targets {
		fmt.Fprintf(w, "  rounds on %s:", t)
		for _, r := range c.rounds[t] {
			var parts []string
			for _, k := range []string{"p99_ms", "server_cpu_us_per_delivery", "bytes_per_conn"} {
				if v, ok := r.get(k); ok {
					parts = append(parts, k+" "+formatNumber(v, 2))
				}
			}
			fmt.Fprintf(w, "  [%s]", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
	}
	printVerdict(w, c.failures())
}

func (c *comparison) json() json.RawMessage {
	a, b := c.targets[0], c.targets[1]
	ma, mb := c.medians(a), c.medians(b)
	fieldsJSON := func(fs []field) json.RawMessage {
		var o orderedJSON
		for _, f := range fs {
			o.put(f.key, jsonNumber(f.value, f.prec))
		}
		return o.bytes()
	}
	var ratios orderedJSON
	for _, fa := range ma {
		fb, _ := lookup(mb, fa.key)
		ratios.put(fa.key, jsonNumber(ratio(fa.value, fb.value), 3))
	}
	var o orderedJSON
	o.put("scenario", c.scenario)
	o.put("compare", c.targets)
	o.put("rounds", len(c.rounds[a]))
	o.put("ok", len(c.failures()) == 0)
	o.put("failures", append([]string{}, c.failures()...))
	o.put(a, fieldsJSON(ma))
	o.put(b, fieldsJSON(mb))
	o.put("ratio", ratios.bytes())
	var runs []json.RawMessage
	for i := range c.rounds[a] {
		for _, t := range c.targets {
			if i < len(c.rounds[t]) {
				runs = append(runs, c.rounds[t][i].json())
			}
		}
	}
	o.put("runs", runs)
	return o.bytes()
}
