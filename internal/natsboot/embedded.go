// Package natsboot starts the NATS that rso runs on: an embedded nats-server with JetStream (state in a
// data folder, optionally open to other nodes) or a connection to an external NATS. It knows nothing about
// what runs on top; its errors say what was wrong, and typed errors let the caller add which flag to change.
package natsboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
)

// ErrDataDirLocked means another process (or another embedded server in this one) uses the data folder.
var ErrDataDirLocked = errors.New("in use by another process")

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// DataDir holds the JetStream files (in DataDir/jetstream) and a lock file. Required; created if missing.
	DataDir string
	// Listen is "" for an in-process-only server (DontListen), else HOST:PORT where other nodes and
	// clients can reach it over TCP.
	Listen string
	// ServerName names the server; it must be unique among servers that are joined. Empty: the server ID.
	ServerName string
	// SyncAlways makes JetStream fsync every write before it acknowledges it. Off, writes reach the OS
	// before the ack (they survive a crash of this process, not of the machine) and are synced every 2 minutes.
	SyncAlways bool
	// Logger receives the server's warnings and errors (and notices at debug level). Nil: nothing is logged.
	Logger *slog.Logger
}

// ListenError means the embedded server could not open its client port.
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
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
		host, port, err := splitHostPort(opts.Listen)
		if err != nil {
			return nil, &ListenError{Addr: opts.Listen, Err: err}
		}
		o.Host, o.Port = host, port
		// nats-server reports a busy port only through its logger and a 10-second readiness timeout;
		// trying the port first turns the common mistake into an immediate, precise error.
		ln, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			return nil, &ListenError{Addr: opts.Listen, Err: err}
		}
		ln.Close()
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
func (l *logAdapter) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *logAdapter) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *logAdapter) Debugf(format string, v ...any)  {}
func (l *logAdapter) Tracef(format string, v ...any)  {}

func (l *logAdapter) Fatalf(format string, v ...any) {
	l.emit(slog.LevelError, format, v)
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default: // one failure is enough to report
	}
}

var _ server.Logger = (*logAdapter)(nil)
