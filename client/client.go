// Package client is a Go client for the RSO shared-object WebSocket (/so), written from docs/PROTOCOL.md
// section 1. It serves the server's tests and load tools: one reader goroutine per connection, no goroutine
// per frame, frames parsed with gjson and values kept as json.RawMessage.
//
// Requests that expect an answer (Subscribe, Update, Ping) block until it arrives; everything else the
// server sends is delivered, in order, on Events.
//
// A Conn does not reconnect. With several nodes, DialAny takes the first that answers; a caller that
// wants failover dials again when Done is closed and resubscribes with the last version and epoch it
// applied (Replica), which every node of a cluster understands (docs/PROTOCOL.md 1.5).
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const (
	defaultFrameBuffer = 1024
	defaultDialTimeout = 10 * time.Second
	// writeWait bounds one write: a server that stops reading for this long is treated as gone, rather
	// than blocking every caller behind the write mutex forever.
	writeWait = 10 * time.Second
	// closeWait is how long Close waits for the server to echo the close frame before dropping the socket.
	closeWait = time.Second
)

// Close codes (docs/PROTOCOL.md 1.9).
const (
	CloseNormal       = 1000 // the client asked: stop
	CloseAbnormal     = 1006 // no close frame (connection lost, or a refused upgrade seen by a browser)
	CloseTooBig       = 1009 // reconnect with backoff
	CloseInternal     = 1011 // reconnect with backoff
	CloseRestart      = 1012 // reconnect (another node or after a moment)
	CloseUnauthorized = 4001 // stop: get a new token
	CloseTokenExpired = 4003 // stop, or reconnect with a fresh token
	CloseSlowConsumer = 4008 // reconnect and resync
	CloseAbuse        = 4009 // reconnect after ≥ 5 s
	ClosePongTimeout  = 4010 // reconnect
	CloseOperator     = 4011 // an operator closed the session (the text says why): stop
)

// ErrClosed is returned (wrapped with the reason from CloseErr) by calls on a connection that has ended.
var ErrClosed = errors.New("client: connection closed")

// CloseError is the close frame that ended a connection.
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("client: connection closed with code %d %q", e.Code, e.Text)
}

// Options configure Dial. The zero value is usable.
type Options struct {
	Token       string        // sent as ?token=; leave empty to use Header (Authorization) or no token
	Header      http.Header   // extra headers for the upgrade request
	FrameBuffer int           // capacity of the Events channel (default 1024)
	DialTimeout time.Duration // bounds the upgrade plus the wait for hello (default 10 s)
}

// Conn is one /so connection. Its methods are safe for concurrent use.
//
// Lock order: mu and wmu are never held together.
type Conn struct {
	ws       *websocket.Conn
	url      string        // as given to Dial
	hello    Hello         // written by the reader before helloCh is closed, then read-only
	helloCh  chan struct{} // closed when hello arrived
	events   chan Event
	idPrefix string
	nextID   atomic.Uint64

	wmu sync.Mutex // gorilla allows one writer at a time

	mu       sync.Mutex
	pending  map[string]chan reply // Update and Ping requests by id
	closeErr error

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: unblocks the reader when Events is full
	done      chan struct{} // closed when the reader has exited
}

// reply answers one request: a sync (nil for a pong) or the error frame that refused it.
type reply struct {
	sync *Sync
	err  error
}

// DialAny dials urls in order, each with Dial and opt (DialTimeout bounds each attempt), and returns the
// first connection that got its hello: pass the nodes of one cluster, which all serve every object. When
// none answers, the error joins every attempt's (errors.As finds a *ServerError among them); it stops
// early when ctx ends. It does not retry or wait between attempts: a caller that loops over DialAny
// brings its own backoff.
func DialAny(ctx context.Context, urls []string, opt Options) (*Conn, error) {
	if len(urls) == 0 {
		return nil, errors.New("client: DialAny needs at least one URL")
	}
	errs := make([]error, 0, len(urls))
	for _, url := range urls {
		c, err := Dial(ctx, url, opt)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("client: no server answered (%d of %d tried): %w", len(errs), len(urls), errors.Join(errs...))
}

// Dial connects to url (like ws://127.0.0.1:8080/so) and waits for the server's hello.
// A refused upgrade returns an error wrapping a *ServerError when the server sent a JSON body (401:
// code "unauthorized").
func Dial(ctx context.Context, url string, opt Options) (*Conn, error) {
	if opt.FrameBuffer <= 0 {
		opt.FrameBuffer = defaultFrameBuffer
	}
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = defaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, opt.DialTimeout)
	defer cancel()

	u, err := neturl.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("client: bad url %q: %w", url, err)
	}
	if opt.Token != "" {
		q := u.Query()
		q.Set("token", opt.Token)
		u.RawQuery = q.Encode()
	}
	var d websocket.Dialer // no proxy: tests and load tools talk to the server directly
	ws, resp, err := d.DialContext(ctx, u.String(), opt.Header)
	if err != nil {
		return nil, dialError(url, resp, err)
	}
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix) // never fails (crypto/rand)
	c := &Conn{
		ws:       ws,
		url:      url,
		helloCh:  make(chan struct{}),
		events:   make(chan Event, opt.FrameBuffer),
		idPrefix: base64.RawURLEncoding.EncodeToString(prefix) + "-",
		pending:  make(map[string]chan reply),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	go c.read()
	select {
	case <-c.helloCh:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("client: %s ended before hello: %w", url, c.CloseErr())
	case <-ctx.Done():
		err := fmt.Errorf("client: no hello from %s within %v: %w", url, opt.DialTimeout, ctx.Err())
		c.fail(err) // no graceful close: the server is not talking
		<-c.done
		return nil, err
	}
}

func dialError(url string, resp *http.Response, err error) error {
	if resp == nil {
		return fmt.Errorf("client: dial %s: %w", url, err)
	}
	body, _ := io.ReadAll(resp.Body) // gorilla keeps up to 1 KiB of it
	var se ServerError               // field names match the body's keys (encoding/json ignores case)
	if json.Unmarshal(body, &se) == nil && se.Code != "" {
		return fmt.Errorf("client: dial %s: HTTP %d: %w", url, resp.StatusCode, &se)
	}
	return fmt.Errorf("client: dial %s: HTTP %d %q: %w", url, resp.StatusCode, body, err)
}

// URL returns the URL this connection was dialed with (as given, without the token).
func (c *Conn) URL() string { return c.url }

// Hello returns the server's hello frame.
func (c *Conn) Hello() Hello { return c.hello }

// Events delivers, in arrival order, every frame no call is waiting for: syncs that answer no pending
// Subscribe or Update (changes by others, and late answers to calls whose context ended), every message
// (including this connection's own sends), and error frames that match no pending request (for example
// the answer to a Send or to WriteRaw). When the buffer is full the reader waits, and so do answers to
// pending requests: keep reading Events. The channel is closed after the connection ends.
func (c *Conn) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended and the reader has stopped.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseErr says why the connection ended: a *CloseError when a close frame was exchanged (Code 1000 after
// Close, CloseAbnormal when the socket dropped), or the read/write/protocol error. It is nil while open.
func (c *Conn) CloseErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Close sends close code 1000, waits briefly for the server's answer and stops the reader. It is safe to
// call more than once and always returns nil; CloseErr holds the reason the connection ended.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.setCloseErr(&CloseError{Code: CloseNormal, Text: "closed by client"})
		close(c.closing)
		msg := websocket.FormatCloseMessage(CloseNormal, "")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)) // may already be gone
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
		}
		c.ws.Close()
	})
	<-c.done
	return nil
}

// Subscribe sends sub and returns the answering sync (it carries the sub's request id).
// Pass version 0 and epoch "" for the full state; pass the last applied version and epoch for a delta (1.5).
// An error frame for the sub is returned as a *ServerError.
func (c *Conn) Subscribe(ctx context.Context, obj string, persistent bool, version uint64, epoch string) (*Sync, error) {
	id := c.newID()
	return c.request(ctx, id, appendSub(nil, id, obj, persistent, version, epoch))
}

// Unsubscribe sends unsub. The server does not answer it.
func (c *Conn) Unsubscribe(obj string, persistent bool) error {
	return c.write(append(appendHead(nil, "unsub", obj, persistent), '}'))
}

// Update sends an update with a fresh request id and returns the sync carrying that id, with a success or
// reject entry per non-no-op change. An error frame for the id is returned as a *ServerError.
func (c *Conn) Update(ctx context.Context, obj string, persistent bool, changes []Change) (*Sync, error) {
	return c.UpdateWithID(ctx, c.newID(), obj, persistent, changes)
}

// UpdateWithID is Update with the caller's id, to retry a request with the same id after a reconnect (1.6).
func (c *Conn) UpdateWithID(ctx context.Context, id, obj string, persistent bool, changes []Change) (*Sync, error) {
	if id == "" || len(id) > 64 {
		// The server could not echo such an id, so the call would wait for nothing.
		return nil, fmt.Errorf("client: request id %q must be 1–64 bytes; use WriteRaw to test bad ids", id)
	}
	frame, err := appendUpdate(nil, id, obj, persistent, changes)
	if err != nil {
		return nil, err
	}
	return c.request(ctx, id, frame)
}

// Send sends a message to every subscriber of obj and returns its request id without waiting. The message
// comes back on Events (Message.ID == id), or an error frame with that id does.
func (c *Conn) Send(obj string, persistent bool, handler string, args ...any) (id string, err error) {
	a := []byte("[]")
	if len(args) > 0 {
		if a, err = json.Marshal(args); err != nil {
			return "", fmt.Errorf("client: send %s: args must be JSON-encodable: %w", handler, err)
		}
	}
	id = c.newID()
	return id, c.write(appendSend(nil, id, obj, persistent, handler, a))
}

// Ping sends an application-level ping and waits for its pong.
func (c *Conn) Ping(ctx context.Context) error {
	id := c.newID()
	_, err := c.request(ctx, id, appendPing(nil, id))
	return err
}

// WriteRaw sends b as one text message, unchecked: for tests of malformed input.
func (c *Conn) WriteRaw(b []byte) error { return c.write(b) }

func (c *Conn) newID() string {
	return c.idPrefix + strconv.FormatUint(c.nextID.Add(1), 36)
}

// request registers id, sends frame and waits for the answer carrying id.
func (c *Conn) request(ctx context.Context, id string, frame []byte) (*Sync, error) {
	w := make(chan reply, 1)
	c.mu.Lock()
	if err := c.closeErr; err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	if _, dup := c.pending[id]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("client: request id %q is already pending on this connection; use a fresh id", id)
	}
	c.pending[id] = w
	c.mu.Unlock()
	forget := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.pending[id]
		delete(c.pending, id)
		return ok
	}
	if err := c.write(frame); err != nil {
		forget()
		return nil, err
	}
	return c.wait(ctx, w, forget)
}

// wait returns the reply on w. When ctx ends or the connection does, forget unregisters w; if the reader
// already took w (forget reports false), its reply is in flight and is returned instead of being lost.
func (c *Conn) wait(ctx context.Context, w chan reply, forget func() bool) (*Sync, error) {
	var err error
	select {
	case r := <-w:
		return r.sync, r.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-c.done:
		err = fmt.Errorf("%w: %w", ErrClosed, c.CloseErr())
	}
	if !forget() {
		r := <-w
		return r.sync, r.err
	}
	return nil, err
}

func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	select {
	case <-c.closing:
		c.wmu.Unlock()
		return fmt.Errorf("%w: %w", ErrClosed, c.CloseErr())
	default:
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	err := c.ws.WriteMessage(websocket.TextMessage, b)
	c.wmu.Unlock()
	if err != nil {
		// After a failed write gorilla's connection is unusable: end it so every caller learns.
		c.fail(fmt.Errorf("client: write failed: %w", err))
		return fmt.Errorf("%w: %w", ErrClosed, c.CloseErr())
	}
	return nil
}

// setCloseErr records why the connection ended; the first reason wins.
func (c *Conn) setCloseErr(err error) {
	c.mu.Lock()
	// The first reason wins, except that the server's close frame explains more than the write error
	// that a closing socket may have caused first.
	var ce *CloseError
	if c.closeErr == nil || errors.As(err, &ce) && !errors.As(c.closeErr, &ce) {
		c.closeErr = err
	}
	c.mu.Unlock()
}

// fail ends the connection for err; the reader then exits on its read error.
func (c *Conn) fail(err error) {
	c.setCloseErr(err)
	c.ws.Close()
}

// read is the connection's only reader. It splits messages into frames and routes each one.
func (c *Conn) read() {
	err := c.readLoop()
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		err = &CloseError{Code: ce.Code, Text: ce.Text}
	} else {
		err = fmt.Errorf("client: connection lost: %w", err)
	}
	c.setCloseErr(err) // a no-op when Close, a failed write or a protocol error came first
	c.ws.Close()
	close(c.events)
	close(c.done)
}

// readLoop returns when the connection can no longer be read or must stop.
func (c *Conn) readLoop() error {
	var buf bytes.Buffer // reused: buf.String copies each message out before it is parsed
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		if typ != websocket.TextMessage {
			return c.protocolError(errors.New("server sent a binary message; /so uses text messages only"))
		}
		msg, recv := buf.String(), time.Now()
		for msg != "" {
			var piece string
			piece, msg, _ = strings.Cut(msg, "\n")
			if piece == "" {
				continue // empty pieces are ignored (1.1)
			}
			f, err := parseFrame(piece)
			if err != nil {
				return c.protocolError(fmt.Errorf("server sent a malformed frame: %w: %.200q", err, piece))
			}
			if err := c.route(f, recv); err != nil {
				return err
			}
		}
	}
}

// protocolError ends the connection with 1002: a server that breaks the protocol should fail tests loudly.
func (c *Conn) protocolError(err error) error {
	err = fmt.Errorf("client: %w", err)
	c.setCloseErr(err)
	msg := websocket.FormatCloseMessage(websocket.CloseProtocolError, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait))
	return err
}

// route hands one frame to the call waiting for it, or to Events. An error means the reader must stop.
func (c *Conn) route(f frame, recv time.Time) error {
	select {
	case <-c.helloCh:
		if f.op == "hello" {
			return nil // the protocol sends one; a repeat carries nothing new
		}
	default:
		if f.op != "hello" {
			return c.protocolError(fmt.Errorf("server sent %q before hello; hello must be the first frame", f.op))
		}
		c.hello = f.hello
		close(c.helloCh)
		return nil
	}
	switch {
	case f.op == "pong":
		c.answer(f.id, reply{})
		return nil
	case f.ev.Sync != nil:
		s := f.ev.Sync
		if s.ID != "" && c.answer(s.ID, reply{sync: s}) {
			return nil
		}
	case f.ev.Error != nil:
		e := f.ev.Error
		if e.ID != "" && c.answer(e.ID, reply{err: e}) {
			return nil
		}
	case f.ev.Message == nil:
		return nil // an op this client does not know (forward compatibility)
	}
	f.ev.Recv = recv
	select {
	case c.events <- f.ev:
	case <-c.closing:
		// Dropped, but the reader goes on until the server answers the close: a socket closed with unread
		// data is reset, and the reset can destroy the close frame before the server reads it.
	}
	return nil
}

// answer delivers r to the request waiting for id, if any.
func (c *Conn) answer(id string, r reply) bool {
	c.mu.Lock()
	w, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		w <- r // buffered, and only one answer per registration
	}
	return ok
}
