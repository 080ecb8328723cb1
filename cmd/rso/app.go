package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/demos"
	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/natsboot"
	"github.com/rso-server/rso/p2p/friends"
	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
	"github.com/rso-server/rso/sharedobject"
)

const (
	// progressEvery is how often startup repeats what it is waiting for while nothing changes.
	progressEvery = 5 * time.Second
	// firstWait bounds how long a cluster member waits for the first node to start (see awaitFirst);
	// firstPoll is how often it asks.
	firstWait = 15 * time.Second
	firstPoll = 200 * time.Millisecond
	// httpShutdownWait and nodeShutdownWait bound the two graceful steps of Close; drainWait bounds
	// flushing the NATS connection. A second SIGINT/SIGTERM ends the process sooner.
	httpShutdownWait = 10 * time.Second
	nodeShutdownWait = 10 * time.Second
	drainWait        = 5 * time.Second
	// readHeaderWait stops a client from holding a connection open by sending headers slowly.
	readHeaderWait = 10 * time.Second
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // could not start, or stopped uncleanly
	exitUsage   = 2 // a wrong flag or environment value
)

// run is the whole program: parse, start, wait for ctx (the signals), shut down. It returns the exit code
// and writes failures to stderr as one line "rso: …".
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr}
	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stderr)
		return exitOK
	}
	if err == nil {
		err = cfg.prepareDataDir()
	}
	if err != nil {
		fmt.Fprintf(stderr, "rso: %v\n", err)
		return exitUsage
	}

	m := NewMain(cfg, newLogger(&cfg, stderr))
	if err := m.Run(ctx); err != nil {
		m.Close()
		if ctx.Err() != nil {
			return exitOK // stopped while starting: what was asked for
		}
		fmt.Fprintf(stderr, "rso: %v\n", err)
		return exitFailure
	}
	select {
	case <-ctx.Done():
		m.log.Info("shutting down")
	case <-m.serveDone:
		m.Close()
		fmt.Fprintf(stderr, "rso: HTTP server stopped: %v\n", m.serveErr)
		return exitFailure
	}
	if err := m.Close(); err != nil {
		fmt.Fprintf(stderr, "rso: %v\n", err)
		return exitFailure
	}
	m.log.Info("stopped")
	return exitOK
}

// Main is one running rso: NATS (embedded or external), the shared-object node and the HTTP server.
type Main struct {
	cfg Config
	log *slog.Logger

	ns   *server.Server // nil with -nats
	nc   *nats.Conn
	node *sharedobject.Node
	ln   net.Listener
	http *http.Server

	reg                    *prometheus.Registry // the runtime's and NATS's collectors
	gather                 gatherers            // reg and each started service's registry: served at /metrics
	metricsHTTP, debugHTTP *http.Server         // nil when off
	metricsMux             *http.ServeMux       // -metrics-addr's routes: /metrics, and /admin/api/ once NATS is up

	// Until ready, every HTTP request is answered 503 with what startup waits for (starting);
	// then mux serves.
	ready    atomic.Bool
	mux      *http.ServeMux
	starting atomic.Pointer[string]

	// Private chat: the friends and messaging services on the bus, and the relay holding the sockets.
	friends  *friends.Service
	messages *messaging.Service
	relay    *relay.Server
	tcpLn    net.Listener // nil without -relay-tcp

	stopDemos func()             // nil unless the demo hooks run
	started   *nats.Subscription // answers startedSubject once everything runs

	serveDone chan struct{} // closed when http.Serve returns
	serveErr  error         // why it returned; read after serveDone

	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main for cfg; nothing starts until Run.
func NewMain(cfg Config, log *slog.Logger) *Main {
	m := &Main{cfg: cfg, log: log, serveDone: make(chan struct{}), reg: newRegistry()}
	m.gather.add(m.reg)
	return m
}

// Run starts everything and returns once rso serves, or with the first failure (then call Close).
// ctx bounds startup only; stop the running server with Close.
func (m *Main) Run(ctx context.Context) error {
	c := &m.cfg
	// Take the HTTP port first: a busy port is the most common mistake and costs nothing to find.
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %s (is another rso running? change %s)", c.Addr, errnoText(err), c.label("addr"))
	}
	m.ln = ln
	if err := m.listenOperator(); err != nil {
		return err
	}
	// Serve at once: until everything runs, /healthz says what startup waits for (503) and the other
	// paths answer 503 too, instead of leaving connections unanswered in the listen queue.
	m.http = &http.Server{
		Handler:           http.HandlerFunc(m.serveHTTP),
		ReadHeaderTimeout: readHeaderWait,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	m.setStarting("connecting to NATS")
	go func() {
		defer close(m.serveDone)
		m.serveErr = m.http.Serve(ln)
	}()

	if err := m.startNATS(ctx); err != nil {
		return err
	}
	m.watchNATS()
	m.registerNATS()
	if m.metricsMux != nil && len(c.AdminToken) > 0 {
		// Only with a token: a browser page cannot add one to a cross-site request, so no page the operator
		// opens can clear an object or disconnect users through a loopback listener.
		m.adminRoutes(m.metricsMux)
	}

	// From here every step needs JetStream, which a cluster that is still forming (members starting in any
	// order, leaders being elected) cannot give yet: each step is retried until -startup-timeout.
	st := m.newStartup(ctx)
	defer st.cancel()
	m.setStarting("waiting for JetStream")
	if err := natsboot.WaitJetStream(st.ctx, m.nc, st.waiting("")); err != nil {
		return st.failed("", err)
	}
	m.checkPayload()
	if err := st.awaitFirst(); err != nil {
		return err
	}

	err = st.do("the shared-object service", func(ctx context.Context) (err error) {
		reg := prometheus.NewRegistry()
		m.node, err = sharedobject.NewNode(ctx, m.nc, sharedobject.Config{
			Registerer:   reg,
			Gatherer:     &m.gather, // the whole process's numbers, for the admin page
			NodeID:       c.NodeID,
			Limits:       c.Limits,
			ResyncWindow: c.ResyncWindow,
			TempGrace:    c.TempGrace,
			HookTimeout:  c.HookTimeout,
			Replicas:     c.Replicas,
			Auth:         auth.NewVerifier(c.TokenSecret),
			Logger:       m.log.With("component", "sharedobject"),
		})
		return m.gathered(reg, err)
	})
	if err != nil {
		return fmt.Errorf("cannot start the shared-object service: %w", err)
	}

	if err := m.startChat(st); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/so", m.node)
	mux.Handle("/relay", m.relay)
	mux.HandleFunc("GET /healthz", m.healthz)
	if c.Demos {
		err := st.do("the demos' validation hooks", func(ctx context.Context) (err error) {
			m.stopDemos, err = demos.Start(ctx, m.nc)
			return err
		})
		if err != nil {
			return fmt.Errorf("cannot start the demos' validation hooks: %w (or turn the demos off with %s=false)", err, c.label("demos"))
		}
		mux.Handle(demos.Prefix, demos.Handler(c.TokenSecret))
		mux.Handle("GET /{$}", http.RedirectHandler(demos.Prefix, http.StatusFound))
	}
	if m.started, err = m.nc.Subscribe(startedSubject, func(msg *nats.Msg) { _ = msg.Respond(nil) }); err != nil {
		return fmt.Errorf("cannot subscribe %s: %w", startedSubject, err)
	}
	m.mux = mux
	m.ready.Store(true) // after m.mux is set: serveHTTP reads it once it sees ready

	if m.tcpLn != nil {
		go func() {
			if err := m.relay.ServeTCP(m.tcpLn); err != nil && !errors.Is(err, relay.ErrServerClosed) {
				m.log.Error("TCP relay stopped", "err", err)
			}
		}()
	}

	m.warnings()
	m.log.Info("rso started", "addr", ln.Addr().String(), "nats", m.natsMode(), "data", m.dataDesc(),
		"node", c.NodeID, "auth", m.authDesc(), "relay-tcp", m.relayTCPDesc(), "demos", m.demosDesc(),
		"metrics", offIfEmpty(c.MetricsAddr), "debug", offIfEmpty(c.DebugAddr))
	return nil
}

// startChat starts the friends and messaging services (queue groups on NATS: every node runs them and any
// one answers) and the relay, and takes the TCP relay's port.
func (m *Main) startChat(st *startup) error {
	c := &m.cfg
	var err error
	if c.RelayTCP != "" {
		if m.tcpLn, err = net.Listen("tcp", c.RelayTCP); err != nil {
			return fmt.Errorf("cannot listen on %s for the TCP relay: %s (change %s)", c.RelayTCP, errnoText(err), c.label("relay-tcp"))
		}
	}
	err = st.do("the friends service", func(ctx context.Context) (err error) {
		reg := prometheus.NewRegistry()
		m.friends, err = friends.New(ctx, m.nc, friends.Config{Replicas: c.Replicas, Logger: m.log.With("component", "friends"), Registerer: reg})
		return m.gathered(reg, err)
	})
	if err != nil {
		return fmt.Errorf("cannot start the friends service: %w", err)
	}
	err = st.do("the messaging service", func(ctx context.Context) (err error) {
		reg := prometheus.NewRegistry()
		m.messages, err = messaging.New(ctx, m.nc, messaging.Config{
			FriendsOnly:     c.FriendsOnly,
			MaxMessageBytes: c.MaxMessageBytes,
			Replicas:        c.Replicas,
			Logger:          m.log.With("component", "p2p"),
			Registerer:      reg,
		})
		return m.gathered(reg, err)
	})
	if err != nil {
		return fmt.Errorf("cannot start the messaging service: %w", err)
	}
	err = st.do("the relay", func(ctx context.Context) (err error) {
		reg := prometheus.NewRegistry()
		m.relay, err = relay.New(ctx, m.nc, relay.Config{
			NodeID:        c.NodeID,
			Auth:          auth.NewVerifier(c.TokenSecret),
			Limits:        c.RelayLimits,
			PresenceGrace: c.PresenceGrace,
			Replicas:      c.Replicas,
			Logger:        m.log.With("component", "relay"),
			Registerer:    reg,
		})
		return m.gathered(reg, err)
	})
	if err != nil {
		return fmt.Errorf("cannot start the relay: %w", err)
	}
	return nil
}

// startup runs the steps of Run that need JetStream: it retries each while JetStream is not ready (see
// natsboot.NotReady), says on the log what it is waiting for, and once -startup-timeout has passed, what
// was missing.
type startup struct {
	m      *Main
	parent context.Context // Run's: ends with a signal
	ctx    context.Context // ends at -startup-timeout, or with parent
	cancel context.CancelFunc

	said   string // the last progress line, and when it was logged
	saidAt time.Time
}

func (m *Main) newStartup(ctx context.Context) *startup {
	st := &startup{m: m, parent: ctx}
	st.ctx, st.cancel = context.WithTimeout(ctx, m.cfg.StartupTimeout)
	return st
}

// do runs step until it succeeds or fails for good; a failure after -startup-timeout says what was missing.
func (st *startup) do(what string, step func(context.Context) error) error {
	st.m.setStarting("starting " + what)
	if err := natsboot.Retry(st.ctx, step, st.waiting(what)); err != nil {
		return st.failed(what, err)
	}
	return nil
}

// waiting returns the function that hears the errors retried while what starts, and logs what is missing:
// when that changes (at most once a second), and every progressEvery while it does not.
// An empty what means that err says it all.
func (st *startup) waiting(what string) func(error) {
	return func(err error) {
		line := st.missing(what, err)
		since := time.Since(st.saidAt)
		if line == st.said && since < progressEvery || line != st.said && since < time.Second {
			return
		}
		st.said, st.saidAt = line, time.Now()
		prefix := "waiting for JetStream: "
		if _, ok := st.cluster(); ok {
			prefix = "waiting for JetStream cluster: "
		}
		st.m.setStarting(prefix + line)
		left := time.Until(deadline(st.ctx)).Round(time.Second)
		st.m.log.Info(prefix+line, "gives_up_in", left.String())
	}
}

// missing says what starting what is waiting for: the cluster's members and meta leader, else err.
func (st *startup) missing(what string, err error) string {
	if cs, ok := st.cluster(); ok && (cs.Leader == "" || cs.Size > 0 && cs.Peers < cs.Size) {
		return cs.String()
	}
	why := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		why = "no answer in time" // an attempt's own time limit, not the startup's
	}
	if what == "" {
		return why
	}
	return what + ": " + why
}

func (st *startup) cluster() (natsboot.ClusterState, bool) {
	if st.m.ns == nil {
		return natsboot.ClusterState{}, false
	}
	return natsboot.Cluster(st.m.ns)
}

// failed is the error of a step that did not start: after -startup-timeout, one that says what was
// missing. An empty what means that err says it all.
func (st *startup) failed(what string, err error) error {
	c := &st.m.cfg
	if st.parent.Err() != nil || !errors.Is(st.ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	if what != "" {
		err = fmt.Errorf("%s: %w", what, err)
	}
	cs, ok := st.cluster()
	switch {
	case !ok:
		return fmt.Errorf("JetStream not ready after %s: %v (raise %s if it only needs longer)",
			c.StartupTimeout, err, c.label("startup-timeout"))
	case cs.Leader == "" || cs.Size > 0 && cs.Peers < cs.Size:
		return fmt.Errorf("JetStream cluster not ready after %s: %s (start the other members; check %s and that their %s ports are reachable; or raise %s)",
			c.StartupTimeout, cs, c.label("nats-routes"), c.label("nats-cluster"), c.label("startup-timeout"))
	default:
		return fmt.Errorf("JetStream cluster not ready after %s: %v (%s; raise %s if it only needs longer)",
			c.StartupTimeout, err, cs, c.label("startup-timeout"))
	}
}

// startedSubject is answered by every node that has started: its streams and buckets exist.
const startedSubject = "rso.node.started"

// awaitFirst makes the members of a cluster that start together create the streams and buckets one
// after the other: when several clients create the same replicated stream at once, nats-server creates
// it but answers none of them (nats-io/nats-server#3677), so every creation would wait out its attempt,
// on every node and for every stream. So the node of the JetStream meta leader goes first, and the
// others wait until some node answers on startedSubject: then the streams exist, and creating them
// again is answered at once, however many nodes do it together. A node that becomes the meta leader
// goes at once; after firstWait every node goes (and Retry sorts out the collisions).
func (st *startup) awaitFirst() error {
	ns := st.m.ns
	if ns == nil || !ns.JetStreamIsClustered() {
		return nil
	}
	ctx, cancel := context.WithTimeout(st.ctx, firstWait)
	defer cancel()
	tick := time.NewTicker(firstPoll)
	defer tick.Stop()
	report := st.waiting("")
	for !ns.JetStreamIsLeader() {
		rctx, rcancel := context.WithTimeout(ctx, firstPoll)
		_, err := st.m.nc.RequestWithContext(rctx, startedSubject, nil)
		rcancel()
		if err == nil {
			return nil
		}
		cs, _ := st.cluster()
		report(fmt.Errorf("the node of the JetStream meta leader (%s) creates the streams and buckets first", cs.Leader))
		select {
		case <-ctx.Done():
			if st.ctx.Err() != nil {
				return st.failed("waiting for the first node to start", ctx.Err())
			}
			st.m.log.Warn("no node started within "+firstWait.String()+"; creating the streams and buckets anyway", "meta_leader", cs.Leader)
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// deadline is ctx's deadline, or now if it has none.
func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now()
}

func (m *Main) relayTCPDesc() string {
	if m.tcpLn == nil {
		return "off"
	}
	return m.tcpLn.Addr().String()
}

func (m *Main) startNATS(ctx context.Context) error {
	c := &m.cfg
	name := "rso " + c.NodeID
	if c.NATS != "" {
		nc, err := natsboot.Connect(ctx, c.NATS, name, c.NATSAuth)
		var ce *natsboot.ConnectError
		switch {
		case errors.As(err, &ce) && ce.Unreachable:
			return fmt.Errorf("%v (is nats-server running? check %s)", err, c.label("nats"))
		case errors.Is(err, nats.ErrAuthorization):
			return fmt.Errorf("%v (the server refused the credentials: give what it expects with %s, %s or %s, or as nats://USER:PASSWORD@HOST in %s)",
				err, c.label("nats-token"), c.label("nats-creds"), c.label("nats-nkey"), c.label("nats"))
		case errors.As(err, new(x509.HostnameError)):
			return fmt.Errorf("%v (the server's certificate must name the host in %s, as a DNS name or IP address)", err, c.label("nats"))
		case errors.As(err, new(*tls.CertificateVerificationError)):
			return fmt.Errorf("%v (give the CA that signed the server's certificate with %s)", err, c.label("nats-tls-ca"))
		case err != nil:
			return fmt.Errorf("%v (check %s and the server's credentials and TLS settings)", err, c.label("nats"))
		}
		m.nc = nc
		return nil
	}

	opts := natsboot.EmbeddedOptions{
		DataDir:    c.DataDir,
		Listen:     c.NATSListen,
		ServerName: c.NodeID,
		SyncAlways: c.Fsync,
		Auth:       c.NATSAuth,
		Logger:     m.log.With("component", "nats"),
	}
	if c.NATSCluster != "" {
		opts.Cluster = &natsboot.ClusterOptions{Name: c.NATSClusterName, Listen: c.NATSCluster, Routes: c.NATSRoutes}
	}
	ns, err := natsboot.StartEmbedded(opts)
	var le *natsboot.ListenError
	port := c.label("nats-listen") // the setting to change
	if errors.As(err, &le) && le.Route {
		port = c.label("nats-cluster")
	}
	switch {
	case le != nil && errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%v (is another rso or nats-server using it? change %s)", err, port)
	case le != nil:
		return fmt.Errorf("%v (change %s)", err, port)
	case errors.Is(err, natsboot.ErrDataDirLocked):
		return fmt.Errorf("%v; give each rso its own %s", err, c.label("data"))
	case err != nil:
		return err
	}
	m.ns = ns
	m.nc, err = natsboot.ConnectInProcess(ns, name, c.NATSAuth.Token)
	return err
}

// watchNATS logs when the connection to NATS is lost and comes back.
func (m *Main) watchNATS() {
	m.nc.SetDisconnectErrHandler(func(nc *nats.Conn, err error) {
		if err != nil && !nc.IsClosed() && !nc.IsDraining() {
			m.log.Warn("lost the NATS connection; reconnecting", "err", err)
		}
	})
	m.nc.SetReconnectHandler(func(nc *nats.Conn) {
		m.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
	})
	m.nc.SetErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		m.log.Error("NATS error", "subject", subject, "err", err)
	})
}

// checkPayload warns when the NATS server's message size limit is below what the limits allow,
// because such a change or snapshot would then fail at publish time.
func (m *Main) checkPayload() {
	maxPayload := m.nc.MaxPayload()
	for _, l := range []struct {
		name string
		n    int
	}{{"max-frame-bytes", m.cfg.Limits.MaxFrameBytes}, {"max-object-bytes", m.cfg.Limits.MaxObjectBytes}} {
		if int64(l.n) > maxPayload {
			m.log.Warn("NATS max_payload is smaller than a limit; raise max_payload on the server or lower the limit",
				"max_payload", maxPayload, l.name, l.n)
		}
	}
}

func (m *Main) warnings() {
	c := &m.cfg
	if c.Anonymous() && c.Insecure && !isLoopback(c.Addr) {
		m.log.Warn("INSECURE: anonymous clients are allowed on a non-loopback address; anyone who can reach it can read and change every object. Set -token-secret to require tokens.",
			"addr", c.Addr)
	}
	if c.NATSListen != "" && !isLoopback(c.NATSListen) && c.NATSAuth.Token == "" {
		m.log.Warn("INSECURE: the embedded NATS accepts unauthenticated connections; anyone who can reach it can read and change all data. Set -nats-token.",
			"nats_listen", c.NATSListen)
	}
	if c.NATSCluster != "" && !isLoopback(c.NATSCluster) && c.NATSAuth.Token == "" {
		m.log.Warn("INSECURE: the embedded NATS accepts unauthenticated cluster routes; anyone who can reach the port can join the cluster and read and change all data. Set -nats-token.",
			"nats_cluster", c.NATSCluster)
	}
	offLoopback := c.NATSListen != "" && !isLoopback(c.NATSListen) || c.NATSCluster != "" && !isLoopback(c.NATSCluster)
	if c.NATS == "" && offLoopback && c.NATSAuth.Token != "" && c.NATSAuth.TLS.Cert == "" {
		m.log.Warn("the NATS token crosses the network in clear text: anyone who can watch the network can take it. Add -nats-tls-cert, -nats-tls-key and -nats-tls-ca.",
			"nats_listen", c.NATSListen, "nats_cluster", c.NATSCluster)
	}
}

func (m *Main) natsMode() string {
	c := &m.cfg
	if c.NATS != "" {
		return "external " + m.nc.ConnectedUrlRedacted()
	}
	mode := "embedded"
	if c.NATSListen != "" {
		scheme := "nats://"
		if c.NATSAuth.TLS.Cert != "" {
			scheme = "tls://"
		}
		mode += ", listening on " + scheme + c.NATSListen
	}
	if c.NATSCluster != "" {
		mode += fmt.Sprintf(", member of cluster %s (routes on %s)", c.NATSClusterName, c.NATSCluster)
	}
	if c.NATSAuth.Token != "" {
		mode += ", token required"
	}
	if c.NATSAuth.TLS.Cert != "" && c.NATSCluster != "" {
		mode += ", TLS routes"
	}
	return mode
}

func (m *Main) dataDesc() string {
	if m.cfg.NATS != "" {
		return "unused (external NATS)"
	}
	if abs, err := filepath.Abs(m.cfg.DataDir); err == nil {
		return abs
	}
	return m.cfg.DataDir
}

func (m *Main) demosDesc() string {
	if !m.cfg.Demos {
		return "off"
	}
	return "http://" + m.ln.Addr().String() + demos.Prefix
}

func (m *Main) authDesc() string {
	switch {
	case !m.cfg.Anonymous():
		return "token"
	case isLoopback(m.cfg.Addr):
		return "anonymous (loopback)"
	default:
		return "anonymous (INSECURE)"
	}
}

// serveHTTP answers 503 until Run has started everything, then hands requests to the mux.
func (m *Main) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if m.ready.Load() {
		m.mux.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.URL.Path != "/healthz" {
		fmt.Fprintln(w, "starting") // what it waits for is for operators: /healthz says it
		return
	}
	fmt.Fprintf(w, "starting: %s\n", *m.starting.Load())
}

// setStarting records what startup waits for, for the 503 answers until it is done.
func (m *Main) setStarting(what string) { m.starting.Store(&what) }

// healthz answers 200 "ok" when NATS is connected and the node is ready, else 503 with the reason.
func (m *Main) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if st := m.nc.Status(); st != nats.CONNECTED {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "nats %s\n", strings.ToLower(st.String()))
		return
	}
	if !m.node.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "shared objects not ready")
		return
	}
	fmt.Fprintln(w, "ok")
}

// Close stops rso in order: stop taking HTTP requests, shut the node down (clients get 1012),
// drain the NATS connection, stop the embedded server. It is safe to call more than once and
// after a failed Run.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	var problems []string
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownWait)
		if err := m.http.Shutdown(ctx); err != nil {
			problems = append(problems, fmt.Sprintf("HTTP requests still running after %s", httpShutdownWait))
			m.http.Close()
		}
		cancel()
		<-m.serveDone
	} else if m.ln != nil {
		m.ln.Close()
	}
	if m.started != nil {
		_ = m.started.Unsubscribe()
	}
	opCtx, opCancel := context.WithTimeout(context.Background(), httpShutdownWait)
	m.closeOperator(opCtx)
	opCancel()
	// Sockets first (clients get 1012 and reconnect elsewhere), then the services they were using.
	shutdown := func(what string, stop func(context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), nodeShutdownWait)
		defer cancel()
		if err := stop(ctx); err != nil {
			problems = append(problems, what+": "+err.Error())
		}
	}
	if m.relay != nil {
		shutdown("relay", m.relay.Shutdown)
	}
	if m.tcpLn != nil {
		m.tcpLn.Close() // the relay closed it already, unless Run failed before serving it
	}
	if m.node != nil {
		shutdown("shared objects", m.node.Shutdown)
	}
	if m.messages != nil {
		shutdown("messaging", m.messages.Shutdown)
	}
	if m.friends != nil {
		shutdown("friends", m.friends.Shutdown)
	}
	if m.stopDemos != nil {
		m.stopDemos() // after the node: writes it let finish may still ask the hooks
	}
	if m.nc != nil {
		if err := drain(m.nc, drainWait); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if m.ns != nil {
		m.ns.Shutdown()
		m.ns.WaitForShutdown()
	}
	if len(problems) > 0 {
		return fmt.Errorf("unclean shutdown: %s", strings.Join(problems, "; "))
	}
	return nil
}

// drain flushes what nc still has to send and receive, then closes it, waiting at most wait.
func drain(nc *nats.Conn, wait time.Duration) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if nc.IsClosed() {
		return nil
	}
	if err := nc.Drain(); err != nil {
		nc.Close() // reconnecting (NATS is down): nothing can be flushed
		if errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("NATS drain: %w", err)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-closed:
		return nil
	case <-t.C:
		nc.Close()
		return fmt.Errorf("NATS connection not drained after %s", wait)
	}
}

// errnoText is the short cause of a system error ("address already in use").
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// lockedWriter lets the logger and run's own error line share one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
