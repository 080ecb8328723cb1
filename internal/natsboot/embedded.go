// Package natsboot starts the NATS that rso runs on: an embedded nats-server with JetStream (state in a
// data folder, optionally open to other nodes, optionally one member of a NATS cluster with clustered
// JetStream) or a connection to an external NATS. It knows nothing about what runs on top; its errors say
// what was wrong, and typed errors let the caller add which flag to change.
package natsboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

const (
	// MaxPayload is the largest message the embedded server accepts (nats-server's own upper
	// recommendation; the default of 1 MiB is too small for a full object snapshot).
	MaxPayload = 8 << 20

	// readyTimeout bounds how long StartEmbedded waits for the server to accept clients.
	readyTimeout = 10 * time.Second
	// readyPoll is how often StartEmbedded looks for a startup failure while it waits.
	readyPoll = 50 * time.Millisecond
	// reconnectReports: a cluster member logs every that many failed attempts to reach a member it lost.
	reconnectReports = 60
)

// ErrDataDirLocked means another process (or another embedded server in this one) uses the data folder.
var ErrDataDirLocked = errors.New("in use by another process")

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// DataDir holds the JetStream files (in DataDir/jetstream) and a lock file. Required; created if missing.
	DataDir string
	// Listen is "" for an in-process-only server (DontListen; a cluster member opens a loopback port at
	// random instead, see ClusterOptions), else HOST:PORT where other nodes and clients can reach it over TCP.
	Listen string
	// ServerName names the server; it must be unique among servers that are joined. Empty: the server ID.
	ServerName string
	// SyncAlways makes JetStream fsync every write before it acknowledges it. Off, writes reach the OS
	// before the ack (they survive a crash of this process, not of the machine) and are synced every 2 minutes.
	SyncAlways bool
	// Cluster makes the server one member of a NATS cluster with clustered JetStream. Nil: a single server.
	Cluster *ClusterOptions
	// Auth is what the server's ports require (see Credentials): with a token, every port it opens asks
	// for it, the in-process connection included (pass it to ConnectInProcess).
	Auth Credentials
	// Logger receives the server's warnings and errors (and notices at debug level). Nil: nothing is logged.
	Logger *slog.Logger
}

// ClusterOptions makes an embedded server a member of a NATS cluster: the members connect to each other
// (routes) and run JetStream as one, so streams can have replicas on several members. Every member needs
// its own ServerName, which must stay the same across restarts (JetStream knows its peers by it), and its
// own DataDir. A member without EmbeddedOptions.Listen still opens a client port, on 127.0.0.1 at a
// random port, because nats-server connects its routes only after its client listener is open; it asks
// for the same token as every other port.
type ClusterOptions struct {
	// Name is the cluster's name, the same on every member. Required.
	Name string
	// Listen is HOST:PORT where the other members connect. Required.
	Listen string
	// Routes are the members' Listen addresses as nats://HOST:PORT. This member may be listed too (the
	// server notices and skips it), so every member can be given the same list. Required.
	Routes []string
}

// ListenError means the embedded server could not open its client port (or, with Route, its route port).
type ListenError struct {
	Addr  string
	Route bool // the cluster's route port, not the client port
	Err   error
}

func (e *ListenError) Error() string {
	if e.Route {
		return fmt.Sprintf("embedded NATS cannot listen on %s for the other cluster members: %s", e.Addr, reason(e.Err))
	}
	return fmt.Sprintf("embedded NATS cannot listen on %s: %s", e.Addr, reason(e.Err))
}

func (e *ListenError) Unwrap() error { return e.Err }

// StartEmbedded starts a nats-server with JetStream inside this process and returns once it accepts
// clients. Connect to it with ConnectInProcess. The caller owns the server: Shutdown then WaitForShutdown.
func StartEmbedded(opts EmbeddedOptions) (*server.Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("embedded NATS needs a data folder")
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data folder %s: %w", opts.DataDir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create data folder %s: %s", dir, reason(err))
	}

	o := &server.Options{
		ServerName: opts.ServerName,
		JetStream:  true,
		StoreDir:   dir, // nats-server adds the "jetstream" folder itself
		SyncAlways: opts.SyncAlways,
		MaxPayload: MaxPayload,
		NoSigs:     true, // signals belong to the program, not to a library inside it
		NoLog:      true, // logging goes through logAdapter, never the server's own stderr logger
		DontListen: opts.Listen == "",
	}
	if opts.Listen != "" {
		if o.Host, o.Port, err = tryPort(opts.Listen); err != nil {
			return nil, &ListenError{Addr: opts.Listen, Err: err}
		}
	}
	if c := opts.Cluster; c != nil {
		if err := clusterOptions(o, c); err != nil {
			return nil, err
		}
	}
	if err := opts.Auth.secure(o); err != nil {
		return nil, err
	}

	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(o)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	fatal := make(chan string, 1)
	s.SetLoggerV2(&logAdapter{log: opts.Logger, fatal: fatal}, false, false, false)

	go s.Start()
	deadline := time.Now().Add(readyTimeout)
	for !s.ReadyForConnections(readyPoll) {
		var failure string
		select {
		case msg := <-fatal:
			failure = msg
		default:
			if time.Now().Before(deadline) {
				continue
			}
			failure = fmt.Sprintf("not ready after %s", readyTimeout)
		}
		s.Shutdown()
		s.WaitForShutdown()
		unlock()
		return nil, fmt.Errorf("embedded NATS did not start: %s", failure)
	}
	// The lock lives exactly as long as the server. This goroutine ends when the owner shuts it down.
	go func() {
		s.WaitForShutdown()
		unlock()
	}()
	return s, nil
}

// clusterOptions sets o up as a member of the cluster c.
func clusterOptions(o *server.Options, c *ClusterOptions) error {
	switch {
	case o.ServerName == "":
		return errors.New("a cluster member needs a server name that stays the same across restarts")
	case c.Name == "":
		return errors.New("a cluster member needs the cluster's name")
	case len(c.Routes) == 0:
		return errors.New("a cluster member needs the routes to the other members")
	}
	host, port, err := tryPort(c.Listen)
	if err != nil {
		return &ListenError{Addr: c.Listen, Route: true, Err: err}
	}
	o.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
	// A member that is down is retried every second; say so once every reconnectReports attempts, not at each.
	o.ReconnectErrorReports = reconnectReports
	if o.DontListen {
		// nats-server starts its routes only once its client listener is open (StartRouting waits for it),
		// so a member needs one: on loopback at a random port, and not advertised to the cluster's clients,
		// since it is there for no client.
		o.DontListen = false
		o.Host, o.Port = "127.0.0.1", server.RANDOM_PORT
		o.Cluster.NoAdvertise = true
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Port() == "" {
			return fmt.Errorf("route %q: want nats://HOST:PORT", r)
		}
		o.Routes = append(o.Routes, u)
	}
	return nil
}

// tryPort splits HOST:PORT and checks that the port is free. nats-server reports a busy port only through
// its logger and a 10-second readiness timeout; trying the port first turns the common mistake into an
// immediate, precise error.
func tryPort(hostport string) (string, int, error) {
	host, port, err := splitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	ln, err := net.Listen("tcp", hostport)
	if err != nil {
		return "", 0, err
	}
	ln.Close()
	return host, port, nil
}

func splitHostPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want a number from 1 to 65535", p)
	}
	return host, port, nil
}

// logAdapter sends nats-server's log to slog and turns its Fatalf (which would otherwise exit the
// process, or vanish with no logger) into a startup failure StartEmbedded can return.
type logAdapter struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l *logAdapter) emit(level slog.Level, format string, v []any) {
	if l.log != nil && l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}

func (l *logAdapter) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l *logAdapter) Warnf(format string, v ...any) {
	level := slog.LevelWarn
	if format == routingWait {
		level = slog.LevelDebug // said every 2 s while a cluster forms; the caller reports that better
	}
	l.emit(level, format, v)
}
func (l *logAdapter) Errorf(format string, v ...any) { l.emit(slog.LevelError, format, v) }
func (l *logAdapter) Debugf(format string, v ...any) {}
func (l *logAdapter) Tracef(format string, v ...any) {}

func (l *logAdapter) Fatalf(format string, v ...any) {
	l.emit(slog.LevelError, format, v)
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default: // one failure is enough to report
	}
}

// routingWait is what a cluster member's RAFT groups log while no other member is connected yet.
const routingWait = "Waiting for routing to be established..."

var _ server.Logger = (*logAdapter)(nil)
