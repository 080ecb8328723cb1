// Command rso-bench loads an RSO server, or the plain WebSocket hub built into it, and reports throughput,
// latency percentiles, losses and the server's CPU and memory. rso-bench -h lists the scenarios.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a check failed (lost, duplicated, reordered, violations) or the run could not finish
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the tool at once
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// scenario is one kind of load; each lives in its own file and is listed in scenarios.
type scenario struct {
	name    string
	summary string
	hub     bool // barehub can serve it too (-target barehub, -compare)
	// newRunner registers the scenario's flags on fs; the runner is used after fs.Parse.
	newRunner func(fs *flag.FlagSet) runner
}

type runner interface {
	// conns is how many sockets one round opens (for the open-files limit).
	conns() int
	// run runs one round against e and reports it. An error means the round could not be measured.
	run(ctx context.Context, e *env) (*report, error)
}

// serverArgser is a runner that needs flags of its own on the rso processes the tool starts (before
// -server-args, which can override them).
type serverArgser interface {
	serverArgs() []string
}

func scenarios() []scenario {
	return []scenario{fanoutScenario(), roomsScenario(), auctionScenario(), dmScenario(), idleScenario()}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: rso-bench SCENARIO [flags]      (rso-bench SCENARIO -h lists its flags)
       rso-bench chart [flags]         fanout at 250…4,000 subscribers on rso and barehub → SVG
       rso-bench max [flags]           the highest fanout rate each target sustains

By default the tool builds rso from this repository (once per invocation); each round starts it as a separate
process with a temporary -data folder on a free 127.0.0.1 port and reads its CPU (utime+stime) and RSS from
/proc; -url loads a running server instead (-pid to measure it). Loss, duplicates, reordering or invariant violations make the
exit code 1.

Scenarios:
`)
	for _, s := range scenarios() {
		fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
	}
	fmt.Fprint(w, `
Examples:
  go run ./cmd/rso-bench fanout -subs 1000 -rate 100 -duration 20s
  go run ./cmd/rso-bench fanout -subs 1000 -rate 100 -compare -json
  go run ./cmd/rso-bench fanout -subs 2000 -rate 50 -nodes 3
  go run ./cmd/rso-bench auction -bidders 1 -nodes 3 -cluster     (three NATS cluster members, R3)
  go run ./cmd/rso-bench rooms -rooms 500 -members 10
  go run ./cmd/rso-bench auction -bidders 50
  go run ./cmd/rso-bench dm -users 2000 -rate 30000
  go run ./cmd/rso-bench idle -conns 5000 -compare
  go run ./cmd/rso-bench fanout -subs 1000 -pprof /tmp/prof    (server CPU + heap profiles of the window)

Server profiles: rso does not serve pprof. With -pprof DIR the tool builds rso with net/http/pprof added
through go build -overlay (nothing in the repository changes), fetches /debug/pprof/profile over the
measured window and /debug/pprof/heap after it, and prints the go tool pprof command. Without it:
perf record -F 999 -g -p PID -- sleep 10 (each round prints its server PID on stderr).
`)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return exitOK
	case hubCommand:
		return serveHub(ctx, args[1:], stderr)
	case "chart":
		return runChart(ctx, args[1:], stdout, stderr)
	case "max":
		return runMax(ctx, args[1:], stdout, stderr)
	}
	for _, sc := range scenarios() {
		if sc.name == args[0] {
			return runScenario(ctx, sc, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "rso-bench: unknown scenario %q (rso-bench -h lists them)\n", args[0])
	return exitUsage
}

func runScenario(ctx context.Context, sc scenario, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rso-bench "+sc.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.register(fs, sc.hub)
	r := sc.newRunner(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rso-bench %s: unexpected argument %q\n", sc.name, fs.Arg(0))
		return exitUsage
	}
	if err := o.check(sc.hub); err != nil {
		fmt.Fprintf(stderr, "rso-bench %s: %v\n", sc.name, err)
		return exitUsage
	}
	if v, ok := r.(interface{ check() error }); ok {
		if err := v.check(); err != nil {
			fmt.Fprintf(stderr, "rso-bench %s: %v\n", sc.name, err)
			return exitUsage
		}
	}
	if v, ok := r.(serverArgser); ok && o.url == "" {
		o.args = append(v.serverArgs(), o.args...)
	}
	sess, err := newSession(ctx, &o, r.conns(), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "rso-bench %s: %v\n", sc.name, err)
		return exitFailed
	}
	defer sess.close()

	if o.compare {
		c, err := sess.compare(ctx, sc, r, targetRSO, targetHub)
		if err != nil {
			fmt.Fprintf(stderr, "rso-bench %s: %v\n", sc.name, err)
			return exitFailed
		}
		if o.jsonOut {
			fmt.Fprintf(stdout, "%s\n", c.json())
		} else {
			c.printTable(stdout)
		}
		if len(c.failures()) > 0 {
			return exitFailed
		}
		return exitOK
	}
	rep, err := sess.round(ctx, sc, r, o.target)
	if err != nil {
		fmt.Fprintf(stderr, "rso-bench %s: %v\n", sc.name, err)
		return exitFailed
	}
	if o.jsonOut {
		fmt.Fprintf(stdout, "%s\n", rep.json())
	} else {
		rep.printTable(stdout)
	}
	if !rep.ok() {
		return exitFailed
	}
	return exitOK
}

// session is one invocation of the tool: its temporary folder, the rso build, the profiling.
type session struct {
	opt            *options
	dir            string
	bins           *binaries
	stderr         io.Writer
	tick           uint64
	stopCPUProfile func()
}

func newSession(ctx context.Context, o *options, conns int, stderr io.Writer) (*session, error) {
	// Both ends of every socket may live on this machine; the tool's share is conns plus some slack.
	if err := raiseOpenFiles(conns + 256); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rso-bench-")
	if err != nil {
		return nil, err
	}
	s := &session{opt: o, dir: dir, stderr: stderr, tick: clockTicks(), stopCPUProfile: func() {}}
	s.bins = &binaries{dir: dir, given: o.rsoBin, pprof: o.pprofDir != "", stderr: stderr}
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			s.close()
			return nil, err
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			s.close()
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			s.close()
			return nil, err
		}
		s.stopCPUProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	return s, nil
}

func (s *session) close() {
	s.stopCPUProfile()
	if s.opt.keep {
		fmt.Fprintf(s.stderr, "rso-bench: kept %s (binaries, server logs, data)\n", s.dir)
		return
	}
	os.RemoveAll(s.dir)
}

// round starts the target (unless -url), runs one round of the scenario and stops the target.
func (s *session) round(ctx context.Context, sc scenario, r runner, target string) (*report, error) {
	e := &env{opt: s.opt, target: target, runID: newRunID(), label: sc.name + "/" + target, stderr: s.stderr, tick: s.tick}
	var startup time.Duration // until every node answered /healthz
	if s.opt.url != "" {
		e.cl = &cluster{urls: s.opt.urls, pubURL: s.opt.pubURL, pids: s.opt.pids}
		if len(s.opt.pids) == 0 {
			e.logf("no -pid: server CPU and memory are not measured")
		}
	} else {
		dir, err := os.MkdirTemp(s.dir, target+"-")
		if err != nil {
			return nil, err
		}
		started := time.Now()
		if target == targetHub {
			e.cl, err = startHub(ctx, s.opt, dir)
		} else {
			e.cl, err = startRSO(ctx, s.opt, s.bins, dir)
		}
		if err != nil {
			return nil, err
		}
		startup = time.Since(started)
		e.logf("server pid %v healthy after %.1fs, logs in %s", e.cl.pids, startup.Seconds(), dir)
	}
	rep, err := r.run(ctx, e)
	died := e.cl.died()
	var stopErr error
	if len(e.cl.procs) > 0 {
		stopErr = e.cl.stop()
	}
	if err != nil {
		if died != "" {
			return nil, fmt.Errorf("%w; %s", err, died)
		}
		return nil, err
	}
	if died != "" {
		rep.fail("%s", died)
	} else if stopErr != nil {
		rep.fail("stopping the server: %v", stopErr)
	}
	rep.addInt("nodes", int64(max(1, len(e.cl.urls))), "server nodes")
	if s.opt.url == "" && target == targetRSO {
		natsServers := 1
		if s.opt.cluster {
			natsServers = s.opt.nodes
		}
		rep.addInt("nats_servers", int64(natsServers), "NATS servers (-cluster: one per node)")
		rep.addInt("replicas", int64(max(1, s.opt.replicas)), "JetStream replicas")
		rep.add("startup_s", startup.Seconds(), 1, "servers started until healthy (s)")
	}
	return rep, nil
}

// compare runs the targets alternately, -rounds each.
func (s *session) compare(ctx context.Context, sc scenario, r runner, targets ...string) (*comparison, error) {
	c := &comparison{scenario: sc.name, targets: targets, rounds: map[string][]*report{}}
	for i := range s.opt.rounds {
		for _, t := range targets {
			if !s.opt.quiet {
				fmt.Fprintf(s.stderr, "rso-bench: %s round %d of %d on %s\n", sc.name, i+1, s.opt.rounds, t)
			}
			rep, err := s.round(ctx, sc, r, t)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", t, i+1, err)
			}
			c.rounds[t] = append(c.rounds[t], rep)
		}
	}
	return c, nil
}
