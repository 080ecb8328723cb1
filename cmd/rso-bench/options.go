package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	targetRSO = "rso"
	targetHub = "barehub"

	// Bounds: the tool loads one machine for a bounded time with a bounded number of sockets.
	maxDuration = 10 * time.Minute
	maxConns    = 50000
	maxRounds   = 20
	maxNodes    = 5
	// A JetStream cluster elects its leaders by majority: with 2 members both must stay up (a setup with
	// no tolerance for a lost member, which nobody should run), and 1 member is no cluster at all.
	minClusterNodes = 3
	maxReplicas     = 5 // JetStream's own limit
)

// options are the flags every scenario shares.
type options struct {
	target     string
	compare    bool
	rounds     int
	nodes      int
	cluster    bool
	replicas   int
	url        string
	pid        string
	rsoBin     string
	serverArgs string
	serverFPS  float64
	duration   time.Duration
	warmup     time.Duration
	drain      time.Duration
	jsonOut    bool
	quiet      bool
	keep       bool
	pprofDir   string
	cpuprofile string

	// derived by check
	urls   []string
	pubURL string
	pids   []int
	args   []string // serverArgs split
}

func (o *options) register(fs *flag.FlagSet, hub bool) {
	targets := "rso"
	if hub {
		targets = "rso or barehub (the plain gorilla/websocket hub built into this tool)"
	}
	fs.StringVar(&o.target, "target", targetRSO, "server to load: "+targets)
	if hub {
		fs.BoolVar(&o.compare, "compare", false, "run rso and barehub alternately, -rounds each, and print medians and rso/barehub ratios")
		fs.IntVar(&o.rounds, "rounds", 3, "rounds per target with -compare (at least 3)")
	}
	fs.IntVar(&o.nodes, "nodes", 1, "rso processes on one NATS (the first embeds it; with -cluster, one NATS each); clients are spread over them round-robin")
	fs.BoolVar(&o.cluster, "cluster", false, fmt.Sprintf("each of the -nodes rso processes (at least %d) embeds one member of a NATS cluster with clustered JetStream, instead of all sharing the first's NATS", minClusterNodes))
	fs.IntVar(&o.replicas, "replicas", 0, "JetStream replicas of rso's streams and buckets (rso -replicas); 0: 3 with -cluster, else 1. -cluster -replicas 1 separates what replication costs from what the cluster's routes cost")
	fs.StringVar(&o.url, "url", "", "load a running server instead: ws://127.0.0.1:PORT[,ws://…] (rso: path /so; barehub: the barehub-serve address)")
	fs.StringVar(&o.pid, "pid", "", "with -url: process id(s) of the server(s), comma-separated, to read CPU and RSS from /proc")
	fs.StringVar(&o.rsoBin, "rso-bin", "", "rso binary to start (default: go build ./cmd/rso from this repository, once)")
	fs.StringVar(&o.serverArgs, "server-args", "", "extra flags for every rso started, e.g. \"-fsync\"")
	fs.Float64Var(&o.serverFPS, "fps", 1e6, "-frames-per-second given to the rso processes started (publishers and bidders exceed the default 200)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before the measured window starts")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "after the load stops, how long to wait for what is still in flight before counting it lost")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON on stdout instead of a table")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (binaries, server logs, data) and print where it is")
	fs.StringVar(&o.pprofDir, "pprof", "", "write server CPU (measured window) and heap profiles into this folder; rso is then built with net/http/pprof added (see -h)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write the generator's own CPU profile to this file")
}

func (o *options) check(hub bool) error {
	switch o.target {
	case targetRSO:
	case targetHub:
		if !hub {
			return fmt.Errorf("-target %s: this scenario runs only against rso", o.target)
		}
	default:
		return fmt.Errorf("-target %q: want rso or barehub", o.target)
	}
	if o.compare && o.rounds < 3 || o.rounds > maxRounds {
		return fmt.Errorf("-rounds %d: want 3 to %d", o.rounds, maxRounds)
	}
	if o.nodes < 1 || o.nodes > maxNodes {
		return fmt.Errorf("-nodes %d: want 1 to %d", o.nodes, maxNodes)
	}
	if o.nodes > 1 && (o.target == targetHub || o.compare) {
		return errors.New("-nodes applies to rso only (the hub is one process): drop -compare or -target barehub")
	}
	if err := o.checkCluster(); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{"-duration": o.duration, "-warmup": o.warmup, "-drain": o.drain} {
		if d < 0 || d > maxDuration || name == "-duration" && d < 100*time.Millisecond {
			return fmt.Errorf("%s %s: want 100ms to %s (0 allowed for -warmup and -drain)", name, d, maxDuration)
		}
	}
	if !(o.serverFPS > 0) {
		return fmt.Errorf("-fps %g: want a positive number", o.serverFPS)
	}
	o.args = strings.Fields(o.serverArgs)
	for _, name := range []string{"replicas", "nats-cluster", "nats-routes"} {
		if hasFlag(o.args, name) {
			return fmt.Errorf("-server-args %q: use rso-bench's -cluster and -replicas instead of -%s (the tool gives every node its ports and routes, and the report says which replicas it measured)", o.serverArgs, name)
		}
	}
	if o.url != "" {
		if o.compare {
			return errors.New("-compare starts both servers itself: drop -url")
		}
		if o.rsoBin != "" || o.serverArgs != "" {
			return errors.New("-rso-bin and -server-args apply to servers the tool starts: drop them with -url")
		}
		for _, u := range strings.Split(o.url, ",") {
			sub, pub, err := targetURLs(strings.TrimSpace(u), o.target)
			if err != nil {
				return err
			}
			o.urls = append(o.urls, sub)
			if o.pubURL == "" {
				o.pubURL = pub
			}
		}
		o.nodes = len(o.urls)
	} else if o.pid != "" {
		return errors.New("-pid goes with -url (the servers the tool starts are measured anyway)")
	}
	if o.pid != "" {
		for _, s := range strings.Split(o.pid, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || p <= 0 {
				return fmt.Errorf("-pid %q: want process ids separated by commas", o.pid)
			}
			o.pids = append(o.pids, p)
		}
	}
	return nil
}

// checkCluster checks -cluster and -replicas against the other options and settles the replicas the
// started servers get.
func (o *options) checkCluster() error {
	if o.replicas < 0 || o.replicas > maxReplicas {
		return fmt.Errorf("-replicas %d: want 1 to %d, or 0 for the default", o.replicas, maxReplicas)
	}
	if o.url != "" && (o.cluster || o.replicas != 0) {
		return errors.New("-cluster and -replicas apply to servers the tool starts: drop them with -url")
	}
	if !o.cluster {
		if o.replicas > 1 {
			return fmt.Errorf("-replicas %d needs -cluster: without it the nodes share one NATS server, which keeps one copy of each stream", o.replicas)
		}
		o.replicas = 1
		return nil
	}
	if o.target == targetHub || o.compare {
		return errors.New("-cluster applies to rso only (the hub is one process): drop -compare or -target barehub")
	}
	if o.nodes < minClusterNodes {
		return fmt.Errorf("-cluster needs -nodes %d or more (got %d): JetStream elects its leaders by majority, so a 2-member cluster stops when either member does, and 1 member is no cluster", minClusterNodes, o.nodes)
	}
	if o.replicas == 0 {
		o.replicas = 3
	}
	if o.replicas > o.nodes {
		return fmt.Errorf("-replicas %d: a cluster of -nodes %d holds at most %d copies", o.replicas, o.nodes, o.nodes)
	}
	return nil
}

// hasFlag reports whether args set the flag name (-name, --name, -name=…).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue // a value
		}
		a, _, _ = strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		if a == name {
			return true
		}
	}
	return false
}

// targetURLs checks a -url and returns where subscribers and publishers connect. Only loopback targets
// are allowed: this is a load generator.
func targetURLs(raw, target string) (sub, pub string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return "", "", fmt.Errorf("-url %q: want ws://127.0.0.1:PORT", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", "", fmt.Errorf("-url %q: only loopback servers (127.0.0.1, ::1, localhost) may be loaded", raw)
	}
	base := "ws://" + u.Host
	if target == targetHub {
		return base + hubSubPath, base + hubPubPath, nil
	}
	path := u.Path
	if path == "" || path == "/" {
		path = "/so"
	}
	return base + path, base + path, nil
}

// raiseOpenFiles lifts the soft RLIMIT_NOFILE to the hard limit (the servers the tool starts inherit it)
// and checks that need descriptors fit.
func raiseOpenFiles(need int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil // cannot tell; dialing will say so if it runs out
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		// Setting it explicitly also makes child processes inherit it (Go otherwise restores the
		// original soft limit for them).
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return fmt.Errorf("cannot raise the open-files limit to %d: %v; run `ulimit -n %d` first", rl.Max, err, rl.Max)
		}
	} else {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if uint64(need) > rl.Cur {
		return fmt.Errorf("this run needs about %d open files but the limit is %d: raise the hard limit as root "+
			"(`ulimit -Hn %d && ulimit -n %d` in the shell that runs rso-bench, or LimitNOFILE / limits.conf) or use fewer connections",
			need, rl.Cur, need, need)
	}
	return nil
}
