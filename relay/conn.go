package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/utf8x"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/internal/wsconn"
)

// Close codes (docs/PROTOCOL.md §1.9, shared with /so).
const (
	closeNormal       = wsconn.CloseNormal
	closeInternal     = wsconn.CloseInternal
	closeRestart      = wsconn.CloseRestart
	closeUnauthorized = wsconn.CloseUnauthorized
	closeTokenExpired = wsconn.CloseTokenExpired
	closeAbuse        = wsconn.CloseAbuse
	closeNoPong       = wsconn.CloseNoPong
)

// errorBudget is how many refused frames a client may send in a burst (refilled at one per second) before
// it counts as abuse and is disconnected with 4009.
const errorBudget = 50

// transport is a client socket with a bounded outbound queue: *wsconn.Conn for WebSockets, *tcpConn for raw
// TCP. Send never blocks; a client that cannot keep up is closed with 4008.
type transport interface {
	Send(frame []byte) error
	Close(code int, text string)
	Done() <-chan struct{}
}

var (
	_ transport = (*wsconn.Conn)(nil)
	_ transport = (*tcpConn)(nil)
)

// conn is one authenticated client connection.
type conn struct {
	srv    *Server
	t      transport
	ep     endpoint
	id     string // node + "-" + counter: unique in the cluster, used to skip the sender's own connection
	ident  *auth.Identity
	device string
	user   *user

	frames *rate.Limiter
	sends  *rate.Limiter
	errs   *rate.Limiter
	expiry *time.Timer
}

func (s *Server) newConn(t transport, ident *auth.Identity, device string) *conn {
	l := s.cfg.Limits
	if device == "" {
		device = "d-" + randomText(10)
	}
	ep := epWebSocket
	if _, tcp := t.(*tcpConn); tcp {
		ep = epTCP
	}
	return &conn{
		srv: s, t: t, ep: ep, ident: ident, device: device,
		id:     s.node + "-" + itoa(s.connSeq.Add(1)),
		frames: rate.NewLimiter(rate.Limit(l.FramesPerSecond), int(2*l.FramesPerSecond)+1),
		sends:  rate.NewLimiter(rate.Limit(l.MessagesPerSecond), int(2*l.MessagesPerSecond)+1),
		errs:   rate.NewLimiter(1, errorBudget),
	}
}

// open registers c, announces it to the messaging service and sends hello. On failure the caller closes
// the transport with the code returned.
func (c *conn) open() (int, string, error) {
	s := c.srv
	if err := s.attach(c); err != nil {
		if errors.Is(err, ErrServerClosed) {
			return closeRestart, "server restarting; reconnect", err
		}
		return closeInternal, "cannot subscribe to deliveries; reconnect", err
	}
	unlock := s.presence.Lock(c.ident.User)
	limits, err := s.hello(c.ident.User, c.device, c.id)
	unlock()
	if err != nil {
		var se *serviceError
		if errors.As(err, &se) && se.code != wire.CodeUnavailable {
			c.sendError(se.code, se.message, "")
			return closeInternal, "the chat service refused the connection", err
		}
		c.sendError(wire.CodeUnavailable, err.Error(), "")
		return closeRestart, "chat service unavailable; reconnect", err
	}
	if !c.ident.Expires.IsZero() {
		c.expiry = time.AfterFunc(time.Until(c.ident.Expires), func() {
			c.t.Close(closeTokenExpired, "token expired; reconnect with a new token")
		})
	}
	c.send(s.helloFrame(c, limits))
	return 0, "", nil
}

// close unregisters c once its socket is done.
func (c *conn) close() {
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.srv.detach(c)
}

// handle runs one client frame. Frames of one connection are handled in order, one at a time, on its
// reader: the answer to a send comes before the next frame is read, so one connection's messages are
// stored in the order it sent them.
func (c *conn) handle(raw []byte) {
	s := c.srv
	if !s.enter() {
		return // not acknowledged: the client re-sends after it reconnects
	}
	defer s.inflight.Done()
	l := s.cfg.Limits
	if !c.frames.Allow() {
		c.refuse(wire.CodeRateLimited, fmt.Sprintf("more than %g frames per second (frames_per_second); slow down and re-send (same id)", l.FramesPerSecond), wire.PeekID(raw))
		return
	}
	op, id, r := checkFrame(raw, l.MaxFrameBytes)
	if r != nil {
		c.refuse(r.code, r.message, id)
		return
	}
	switch op {
	case "ping":
		c.send(wire.PongFrame(id))
		return
	case "auth":
		c.refuse(wire.CodeBadFrame, "already signed in; auth is only the first frame of a TCP connection", id)
		return
	case "send":
		if !c.sends.Allow() {
			c.refuse(wire.CodeRateLimited, fmt.Sprintf("more than %g messages per second (messages_per_second); slow down and re-send (same id)", l.MessagesPerSecond), id)
			return
		}
	}
	c.forward(raw, id)
}

// envelope wraps a checked client frame for the messaging service: who sent it, and the frame.
func (c *conn) envelope(raw []byte) []byte {
	return chatbus.AppendEnvelope(make([]byte, 0, len(raw)+128), &chatbus.Envelope{
		User: c.ident.User, Device: c.device, Conn: c.id, Node: c.srv.node, Frame: raw,
	})
}

// forward sends the frame to the messaging service and writes its answer.
func (c *conn) forward(raw []byte, id string) {
	s := c.srv
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	s.m.forwarded.Inc()
	start := time.Now()
	m, err := s.nc.RequestWithContext(ctx, chatbus.SubjFrame, c.envelope(raw))
	s.m.serviceTime(start)
	if err != nil {
		c.sendError(wire.CodeUnavailable, serviceUnavailable(err), id)
		return
	}
	if len(m.Data) == 0 {
		return
	}
	s.m.refusedReply(c.ep, m.Data)
	if chatbus.Refused(m) && !c.errs.Allow() {
		c.send(utf8x.Repair(m.Data))
		c.t.Close(closeAbuse, "too many refused frames")
		return
	}
	c.send(utf8x.Repair(m.Data)) // one or more frames separated by '\n', as a client reads them
}

// send queues frame on the socket, counting its bytes.
func (c *conn) send(frame []byte) {
	c.srv.m.outBytes.Add(float64(len(frame)))
	c.t.Send(frame)
}

// sendError writes an error frame refusing id, counting the refusal.
func (c *conn) sendError(code, message, id string) {
	c.srv.m.refused(c.ep, code)
	c.send(errorFrame(code, message, id))
}

// refuse answers a bad frame; a client that keeps sending bad frames is disconnected.
func (c *conn) refuse(code, message, id string) {
	c.sendError(code, message, id)
	if !c.errs.Allow() {
		c.t.Close(closeAbuse, "too many refused frames")
	}
}

// enter counts a frame in flight unless the server is shutting down.
func (s *Server) enter() bool {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) isClosing() bool {
	s.gate.RLock()
	defer s.gate.RUnlock()
	return s.closed
}
