package natsboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const (
	// dialTimeout bounds one TCP dial and the NATS handshake after it, so an unreachable server is
	// reported within seconds instead of hanging startup.
	dialTimeout = 3 * time.Second
	// pingInterval with maxPingsOut detects a silently dead server in about a minute (nats.go's
	// default takes four), so health checks stop claiming a connection that is gone.
	pingInterval = 20 * time.Second
	maxPingsOut  = 3
	// reconnectWait is the pause between rounds of reconnect attempts (nats.go adds jitter).
	reconnectWait = time.Second
)

// ConnectError means Connect could not establish the first connection.
type ConnectError struct {
	URL         string // the servers, comma-separated, with passwords redacted
	Unreachable bool   // no server could be dialled at all (as opposed to a refused handshake)
	Err         error
}

func (e *ConnectError) Error() string {
	if e.Unreachable {
		return fmt.Sprintf("cannot reach NATS at %s: %s", e.URL, reason(e.Err))
	}
	return fmt.Sprintf("cannot connect to NATS at %s: %s", e.URL, reason(e.Err))
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Connect connects to an external NATS (urls is comma-separated: nats://, tls://, ws:// or wss://).
// The first connection must succeed within a few seconds, or ctx ends it; after that the connection
// reconnects forever, cycling through the servers it knows. cred is what it presents to the server.
func Connect(ctx context.Context, urls, name string, cred Credentials) (*nats.Conn, error) {
	auth, err := cred.clientOptions()
	if err != nil {
		return nil, err
	}
	d := &dialer{ctx: ctx}
	nc, err := nats.Connect(urls, append(auth,
		nats.Name(name),
		nats.SetCustomDialer(d),
		nats.Timeout(dialTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
	)...)
	dialErr, dialed := d.connected()
	if err != nil {
		if dialErr != nil && !dialed {
			return nil, &ConnectError{URL: redactURLs(urls), Unreachable: true, Err: dialErr}
		}
		return nil, &ConnectError{URL: redactURLs(urls), Err: err}
	}
	return nc, nil
}

// ConnectInProcess connects to an embedded server without a socket, with the token its ports require
// (EmbeddedOptions.Auth.Token; empty when it has none).
func ConnectInProcess(s *server.Server, name, token string) (*nats.Conn, error) {
	var opts []nats.Option
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	// No TLS inside the process: ClientURL says tls:// when the server's port has TLS, which would make
	// nats.go ask for it even though no byte leaves the process.
	url := strings.Replace(s.ClientURL(), "tls://", "nats://", 1)
	nc, err := nats.Connect(url, append(opts,
		nats.InProcessServer(s),
		nats.Name(name),
		// The server may still drop a client (as a slow consumer, say); come back for as long as it runs.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to the embedded NATS: %w", err)
	}
	return nc, nil
}

// dialer dials with ctx until the first connection is up, and remembers why dials failed so Connect
// can say "connection refused" instead of nats.go's "no servers available for connection".
type dialer struct {
	mu      sync.Mutex
	ctx     context.Context // nil once connected: later reconnects must not die with the startup context
	lastErr error
	dialed  bool
}

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	ctx := d.ctx
	d.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	nd := net.Dialer{Timeout: dialTimeout}
	c, err := nd.DialContext(ctx, network, address)
	d.mu.Lock()
	if d.ctx != nil {
		if err != nil {
			d.lastErr = err
		} else {
			d.dialed = true
		}
	}
	d.mu.Unlock()
	return c, err
}

// connected ends the startup phase and reports its last dial error and whether any dial succeeded.
func (d *dialer) connected() (lastErr error, dialed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ctx = nil
	return d.lastErr, d.dialed
}

// redactURLs hides passwords and tokens in a comma-separated URL list.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = url.User("xxxxx") // a user, a user:password or a token: none belongs in a log
			p = u.String()
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}

// reason is the part of err a person needs: "connection refused", not
// "dial tcp 127.0.0.1:1: connect: connection refused".
func reason(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Sprintf("cannot resolve host %q (%s)", dnsErr.Name, dnsErr.Err)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}
