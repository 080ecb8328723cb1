package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// env is what one round of a scenario runs against: the servers' addresses and process ids, the shared
// options, and the helpers every scenario uses to measure a window and print progress.
type env struct {
	opt    *options
	target string
	cl     *cluster
	runID  string // makes this round's object names unique
	label  string // "fanout/rso", for progress lines
	stderr io.Writer
	tick   uint64 // CLK_TCK
}

func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *env) hub() bool { return e.target == targetHub }

// url is where client i connects: the nodes in turn.
func (e *env) url(i int) string { return e.cl.urls[i%len(e.cl.urls)] }

func (e *env) logf(format string, args ...any) {
	if !e.opt.quiet {
		fmt.Fprintf(e.stderr, "%s: "+format+"\n", append([]any{e.label}, args...)...)
	}
}

// sample is a reading of the CPU clocks at one moment.
type sample struct {
	at          time.Time
	server      time.Duration // summed over the measured server processes
	serverOK    bool
	self        time.Duration
	busy, total uint64 // machine ticks
}

func (e *env) sample() sample {
	s := sample{at: time.Now(), serverOK: len(e.cl.pids) > 0}
	for _, pid := range e.cl.pids {
		d, err := procCPU(pid, e.tick)
		if err != nil {
			s.serverOK = false
			break
		}
		s.server += d
	}
	s.self, _ = procCPU(os.Getpid(), e.tick)
	s.busy, s.total = machineCPU()
	return s
}

// rss sums the servers' resident memory.
func (e *env) rss() (uint64, bool) {
	if len(e.cl.pids) == 0 {
		return 0, false
	}
	var sum uint64
	for _, pid := range e.cl.pids {
		v, err := procRSS(pid)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

// usage is what the servers, the generator and the machine did over a window.
type usage struct {
	elapsed     time.Duration
	serverCPU   time.Duration
	serverKnown bool
	selfCPU     time.Duration
	rss         uint64 // at the end of the window
	machineBusy float64
	load        float64
}

func (e *env) usageBetween(a, b sample, load float64) usage {
	u := usage{elapsed: b.at.Sub(a.at), serverCPU: b.server - a.server, serverKnown: a.serverOK && b.serverOK,
		selfCPU: b.self - a.self, load: load}
	if b.total > a.total {
		u.machineBusy = 100 * float64(b.busy-a.busy) / float64(b.total-a.total)
	}
	rss, ok := e.rss()
	u.rss = rss
	u.serverKnown = u.serverKnown && ok
	return u
}

// sleep waits d or until ctx ends or a server process dies.
func (e *env) sleep(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(left, 250*time.Millisecond)):
		}
		if msg := e.cl.died(); msg != "" {
			return errors.New(msg)
		}
	}
}

// measure runs the warm-up, then the measured window with the recorders' latency windows open. Each
// counter is read at both edges of the window and its increase returned, in order.
func (e *env) measure(ctx context.Context, prog *progress, recs []*recorder, counters ...func() int64) (usage, []int64, error) {
	prog.setPhase("warm-up")
	if err := e.sleep(ctx, e.opt.warmup); err != nil {
		return usage{}, nil, err
	}
	load := loadAverage()
	prog.setPhase("measure")
	before := make([]int64, len(counters))
	for i, c := range counters {
		before[i] = c()
	}
	s0 := e.sample()
	for _, r := range recs {
		r.open(s0.at.UnixNano())
	}
	profiles := e.startProfiles(ctx)
	err := e.sleep(ctx, e.opt.duration)
	s1 := e.sample()
	for _, r := range recs {
		r.close(s1.at.UnixNano())
	}
	deltas := make([]int64, len(counters))
	for i, c := range counters {
		deltas[i] = c() - before[i]
	}
	u := e.usageBetween(s0, s1, load)
	profiles()
	return u, deltas, err
}

// startProfiles fetches every server's CPU profile over the measured window (with -pprof); the returned
// function waits for them and then takes heap profiles.
func (e *env) startProfiles(ctx context.Context) func() {
	if e.opt.pprofDir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	secs := max(1, int(e.opt.duration.Round(time.Second)/time.Second))
	for i, p := range e.cl.procs {
		wg.Go(func() { e.fetchProfile(ctx, p, i, "profile?seconds="+strconv.Itoa(secs), "cpu") })
	}
	if len(e.cl.procs) == 0 { // -url: try the servers' own addresses
		for i, u := range e.cl.urls {
			p := &proc{name: "server-" + strconv.Itoa(i+1), pprofAddr: hostPort(u)}
			wg.Go(func() { e.fetchProfile(ctx, p, i, "profile?seconds="+strconv.Itoa(secs), "cpu") })
		}
	}
	return func() {
		wg.Wait()
		for i, p := range e.cl.procs {
			e.fetchProfile(ctx, p, i, "heap", "heap")
		}
	}
}

func hostPort(wsURL string) string {
	s := strings.TrimPrefix(wsURL, "ws://")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (e *env) fetchProfile(ctx context.Context, p *proc, i int, what, kind string) {
	if p.pprofAddr == "" {
		fmt.Fprintf(e.stderr, "%s: %s serves no pprof (a -rso-bin binary cannot get the shim); profile it with: perf record -F 999 -g -p %d -- sleep %d\n",
			e.label, p.name, p.pid(), int(e.opt.duration.Seconds()))
		return
	}
	url := "http://" + p.pprofAddr + "/debug/pprof/" + what
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", e.label, url, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(e.stderr, "%s: %s answered %s: the server does not serve /debug/pprof/ (let rso-bench start it with -pprof, or use perf record -g -p PID)\n", e.label, url, resp.Status)
		return
	}
	name := fmt.Sprintf("%s-%s-%s.pprof", strings.ReplaceAll(e.label, "/", "-"), p.name, kind)
	if i == 0 && len(e.cl.procs) <= 1 {
		name = fmt.Sprintf("%s-%s.pprof", strings.ReplaceAll(e.label, "/", "-"), kind)
	}
	path := filepath.Join(e.opt.pprofDir, name)
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: writing %s: %v\n", e.label, path, err)
		return
	}
	fmt.Fprintf(e.stderr, "%s: wrote %s   (go tool pprof -top %s)\n", e.label, path, path)
}

// progress prints a line on stderr every second while a round runs.
type progress struct {
	e      *env
	phase  atomic.Pointer[string]
	meters []meter
	start  time.Time
	stop   chan struct{}
	done   chan struct{}
}

// meter is one figure of the progress line: a counter shown as a rate per second, or as a total.
type meter struct {
	name  string
	value func() int64
	total bool
}

func (e *env) startProgress(meters ...meter) *progress {
	p := &progress{e: e, meters: meters, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	p.setPhase("connect")
	if e.opt.quiet {
		close(p.done)
		return p
	}
	go p.loop()
	return p
}

func (p *progress) setPhase(s string) { p.phase.Store(&s) }

func (p *progress) loop() {
	defer close(p.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := make([]int64, len(p.meters))
	for i, m := range p.meters {
		last[i] = m.value()
	}
	prev := p.e.sample()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		now := p.e.sample()
		dt := now.at.Sub(prev.at).Seconds()
		var b strings.Builder
		fmt.Fprintf(&b, "%s %-7s %3.0fs", p.e.label, *p.phase.Load(), time.Since(p.start).Seconds())
		for i, m := range p.meters {
			v := m.value()
			if m.total {
				fmt.Fprintf(&b, "  %s %s", m.name, formatNumber(float64(v), 0))
			} else {
				fmt.Fprintf(&b, "  %s %s/s", m.name, formatNumber(float64(v-last[i])/dt, 0))
			}
			last[i] = v
		}
		if now.serverOK && prev.serverOK {
			fmt.Fprintf(&b, "  | server cpu %.0f%%", 100*(now.server-prev.server).Seconds()/dt)
			if rss, ok := p.e.rss(); ok {
				fmt.Fprintf(&b, " rss %.0f MB", float64(rss)/(1<<20))
			}
		}
		fmt.Fprintf(&b, "  gen cpu %.0f%%", 100*(now.self-prev.self).Seconds()/dt)
		prev = now
		fmt.Fprintln(p.e.stderr, b.String())
	}
}

func (p *progress) end() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.stop)
	<-p.done
}
