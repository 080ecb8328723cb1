package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The servers under test run as separate processes, so that their CPU and memory can be read from /proc
// apart from the generator's: rso (built once from the repository, or -rso-bin) and the hub (this binary's
// hidden barehub-serve command).

const (
	healthWait = 30 * time.Second // a node that is not healthy by then has failed to start
	// clusterHealthWait is longer than rso's own -startup-timeout (60 s), so that a member that cannot
	// form the cluster exits with its line saying what was missing, which the error then shows.
	clusterHealthWait = 75 * time.Second
	stopWait          = 15 * time.Second // SIGTERM, then SIGKILL after this
	// pprofEnv names the address the -pprof build of rso serves net/http/pprof on.
	pprofEnv = "RSO_BENCH_PPROF_ADDR"
)

// pprofShim is added to cmd/rso at build time (go build -overlay) when -pprof asks for server profiles:
// rso itself does not serve pprof. It is not written into the repository.
const pprofShim = `package main

// Added by rso-bench -pprof through go build -overlay; not part of the repository.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("` + pprofEnv + `"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
`

// binaries builds rso once per invocation of the tool.
type binaries struct {
	dir    string // the invocation's temporary folder
	given  string // -rso-bin
	pprof  bool   // build with the pprof shim
	stderr io.Writer

	once  sync.Once
	built string
	err   error
}

func (b *binaries) rso(ctx context.Context) (string, error) {
	if b.given != "" {
		return b.given, nil
	}
	b.once.Do(func() { b.built, b.err = buildRSO(ctx, b.dir, b.pprof, b.stderr) })
	return b.built, b.err
}

// buildRSO runs go build -o DIR/rso ./cmd/rso in the repository that holds the working directory.
func buildRSO(ctx context.Context, dir string, withPprof bool, stderr io.Writer) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "rso")
	args := []string{"build", "-o", out}
	if withPprof {
		shim := filepath.Join(dir, "pprof_shim.go")
		overlay := filepath.Join(dir, "overlay.json")
		target := filepath.Join(root, "cmd", "rso", "zz_rso_bench_pprof.go")
		if err := os.WriteFile(shim, []byte(pprofShim), 0o644); err != nil {
			return "", err
		}
		js := fmt.Sprintf(`{"Replace":{%q:%q}}`, target, shim)
		if err := os.WriteFile(overlay, []byte(js), 0o644); err != nil {
			return "", err
		}
		args = append(args, "-overlay", overlay)
	}
	args = append(args, "./cmd/rso")
	start := time.Now()
	fmt.Fprintf(stderr, "rso-bench: building rso (go %s) in %s\n", strings.Join(args, " "), root)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/rso failed (the tree may be mid-edit; or pass -rso-bin): %v\n%s", err, b)
	}
	fmt.Fprintf(stderr, "rso-bench: built %s in %.1fs\n", out, time.Since(start).Seconds())
	return out, nil
}

// repoRoot finds the folder of RSO's go.mod, from the working directory upwards.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			for line := range strings.SplitSeq(string(b), "\n") {
				if strings.TrimSpace(line) == "module github.com/rso-server/rso" {
					return dir, nil
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the RSO repository (no go.mod of github.com/rso-server/rso above the working directory): run from the repository or pass -rso-bin")
		}
		dir = parent
	}
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// proc is one server process.
type proc struct {
	name      string
	addr      string // HTTP HOST:PORT
	pprofAddr string // where it serves net/http/pprof, if it does
	cmd       *exec.Cmd
	logPath   string
	done      chan struct{}
}

// startProc starts bin with args; its output goes to logPath. Variables in env are added to this process's
// environment minus every RSO_ variable, so that the machine's settings do not leak into a measurement.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RSO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer logf.Close()
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitHealthy polls /healthz until it answers 200; it gives up when the process exits or limit passes.
func (p *proc) waitHealthy(ctx context.Context, limit time.Duration) error {
	client := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		resp, err := client.Get("http://" + p.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%s) before it was healthy; its output:\n%s", p.name, p.cmd.ProcessState, p.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %s (last: %s); its output:\n%s", p.name, limit, last, p.logTail(20))
		}
	}
}

// stop ends the process with SIGTERM (SIGKILL after stopWait) and reports an unclean exit.
func (p *proc) stop() error {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopWait):
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, stopWait)
		}
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with %s; its output:\n%s", p.name, p.cmd.ProcessState, p.logTail(20))
	}
	return nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the last n lines the process wrote.
func (p *proc) logTail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return "  " + strings.Join(lines, "\n  ")
}

// cluster is what a round runs against: the processes it started (none with -url), the WebSocket URL of
// each node, and the process ids whose CPU and memory are measured.
type cluster struct {
	procs  []*proc
	urls   []string // subscribers' URLs, one per node
	pubURL string   // where publishers connect (the first node)
	pids   []int
	peers  bool // NATS cluster members: started and stopped together
}

// startRSO starts o.nodes rso processes. Without -cluster they share one NATS: the first embeds it
// (listening for the others when there are several) and is started first. With -cluster each embeds one
// member of a NATS cluster; they are started together, as a deployment would, since none is healthy
// before a majority of the members has met.
func startRSO(ctx context.Context, o *options, bins *binaries, dir string) (*cluster, error) {
	bin, err := bins.rso(ctx)
	if err != nil {
		return nil, err
	}
	nats, err := natsArgs(o)
	if err != nil {
		return nil, err
	}
	c := &cluster{peers: o.cluster}
	for i := range o.nodes {
		p, err := startNode(o, bins, bin, dir, i, nats[i])
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.pids = append(c.pids, p.pid())
		c.urls = append(c.urls, "ws://"+p.addr+"/so")
		c.pubURL = c.urls[0]
		if !o.cluster {
			if err := p.waitHealthy(ctx, healthWait); err != nil {
				c.stop()
				return nil, err
			}
		}
	}
	if o.cluster {
		if err := c.waitHealthy(ctx, clusterHealthWait); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// natsArgs returns each node's NATS flags: none for one node; -nats-listen on the first and -nats on the
// others for a shared NATS; -nats-cluster and the same -nats-routes on every member with -cluster.
func natsArgs(o *options) ([][]string, error) {
	args := make([][]string, o.nodes)
	if o.nodes == 1 && !o.cluster {
		return args, nil
	}
	addrs := make([]string, o.nodes)
	routes := make([]string, o.nodes)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i], routes[i] = a, "nats://"+a
	}
	for i := range args {
		switch {
		case o.cluster:
			args[i] = []string{"-nats-cluster", addrs[i], "-nats-routes", strings.Join(routes, ",")}
		case i == 0:
			args[i] = []string{"-nats-listen", addrs[0]}
		default:
			args[i] = []string{"-nats", routes[0]}
		}
	}
	return args, nil
}

// startNode starts node i (counting from 0) with its own HTTP port, data folder and node id.
func startNode(o *options, bins *binaries, bin, dir string, i int, natsFlags []string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	name := "rso-" + strconv.Itoa(i+1)
	args := []string{"-addr", addr, "-data", filepath.Join(dir, name+"-data"), "-node-id", "bench-" + strconv.Itoa(i+1),
		"-frames-per-second", strconv.FormatFloat(o.serverFPS, 'f', -1, 64)}
	args = append(args, natsFlags...)
	if o.replicas > 1 { // rso's default is 1
		args = append(args, "-replicas", strconv.Itoa(o.replicas))
	}
	args = append(args, o.args...)
	env := []string{"RSO_DEMOS=false"} // the demos' validation hooks are not part of what is measured
	pprofAddr := ""
	if bins.pprof && bins.given == "" {
		if pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		env = append(env, pprofEnv+"="+pprofAddr)
	}
	p, err := startProc(name, bin, args, env, filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	p.addr, p.pprofAddr = addr, pprofAddr
	return p, nil
}

// waitHealthy waits for every process at once (cluster members become healthy together or not at all)
// and reports each that did not.
func (c *cluster) waitHealthy(ctx context.Context, limit time.Duration) error {
	errs := make([]error, len(c.procs))
	var wg sync.WaitGroup
	for i, p := range c.procs {
		wg.Go(func() { errs[i] = p.waitHealthy(ctx, limit) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startHub starts this binary's barehub-serve as a separate process.
func startHub(ctx context.Context, o *options, dir string) (*cluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{hubCommand, "-addr", addr}
	pprofAddr := ""
	if o.pprofDir != "" {
		if pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "-pprof-addr", pprofAddr)
	}
	p, err := startProc("barehub", self, args, nil, filepath.Join(dir, "barehub.log"))
	if err != nil {
		return nil, err
	}
	p.addr, p.pprofAddr = addr, pprofAddr
	c := &cluster{procs: []*proc{p}, pids: []int{p.pid()}, urls: []string{"ws://" + addr + hubSubPath}, pubURL: "ws://" + addr + hubPubPath}
	if err := p.waitHealthy(ctx, healthWait); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// stop stops every process: on a shared NATS the first node last (the others use its NATS); cluster
// members all at once, so that none is left waiting for a quorum the others have taken away.
func (c *cluster) stop() error {
	errs := make([]error, len(c.procs))
	if c.peers {
		var wg sync.WaitGroup
		for i, p := range c.procs {
			wg.Go(func() { errs[i] = p.stop() })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		errs[i] = c.procs[i].stop()
	}
	return errors.Join(errs...)
}

// died names a server process that has exited during the round, if any.
func (c *cluster) died() string {
	for _, p := range c.procs {
		if p.exited() {
			return fmt.Sprintf("%s exited (%s) during the run; its output:\n%s", p.name, p.cmd.ProcessState, p.logTail(20))
		}
	}
	return ""
}
