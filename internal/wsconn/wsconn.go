// Package wsconn wraps a WebSocket with the parts every RSO socket needs: one reader and one writer, a
// bounded outbound queue whose queued frames go out coalesced into one message (frames separated by '\n'),
// keep-alive pings, and a close code that says why the server hung up.
package wsconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes shared by the RSO sockets (docs/PROTOCOL.md §1.9).
const (
	CloseNormal       = websocket.CloseNormalClosure     // 1000
	CloseUnsupported  = websocket.CloseUnsupportedData   // 1003: a binary message
	CloseTooBig       = websocket.CloseMessageTooBig     // 1009
	CloseInternal     = websocket.CloseInternalServerErr // 1011
	CloseRestart      = websocket.CloseServiceRestart    // 1012
	CloseUnauthorized = 4001
	CloseTokenExpired = 4003
	CloseSlowConsumer = 4008
	CloseAbuse        = 4009
	CloseNoPong       = 4010
	CloseOperator     = 4011 // closed by an operator (rso.admin.so.disconnect), unless they chose another code
)

const (
	// pongWait is how long a silent peer is kept; pings go out often enough that a live one never hits it.
	pongWait     = 60 * time.Second
	pingInterval = 25 * time.Second
	writeWait    = 10 * time.Second
	// writerLinger is how long a writer goroutine with nothing to write waits for more before it exits:
	// long enough to span the gaps of a steady stream (a fan-out at 100 changes/s writes every 10 ms),
	// short enough that a burst of new connections (each writes hello and a first sync) does not keep a
	// writer, and its stack, per connection for long.
	writerLinger = 50 * time.Millisecond
	// maxCoalesce caps one outbound message so one busy connection does not delay its own frames unboundedly.
	maxCoalesce = 256 << 10
	// closeLinger bounds how long a closing connection waits, after its close frame, for the peer's
	// (awaitPeerClose). A peer that reads answers at once; one that does not is cut off after it.
	closeLinger = 2 * time.Second
)

// ErrClosed is returned by Send after the connection closed.
var ErrClosed = errors.New("wsconn: connection closed")

// Options bound one connection.
type Options struct {
	MaxMessageBytes int // a larger inbound message closes the socket with 1009
	OutboundBytes   int // queued bytes beyond this close the socket with 4008 (slow consumer)
	// OnClose, when set, is called once per connection, on its writer goroutine, when the socket closes,
	// with the code the server closed with: the code Stats counts (0 when a write failed before any close).
	// It is for an endpoint's metrics; it must be quick and must not call back into the Conn.
	OnClose func(code int)

	pongWait time.Duration // 0: pongWait (tests shorten it)
}

// Conn is a WebSocket with a bounded outbound queue. Send may be called from any goroutine.
//
// The writer goroutine runs only while there is something to write (and writerLinger after): an idle
// connection costs no goroutine but its reader's, which matters at tens of thousands of connections.
type Conn struct {
	ws  *websocket.Conn
	opt Options

	mu        sync.Mutex
	queue     []outFrame
	queued    int
	writing   bool // a writer goroutine is running
	pingDue   bool
	closing   bool
	dropping  atomic.Bool // closing, read without the lock: the reader drops what it reads, unhandled
	closeCode int
	closeText string
	finished  bool // the close frame went out (or could not) and the socket is closed
	serving   bool // Serve was called, or the closing writer reads the socket itself (awaitPeerClose)
	readDone  bool // the reader has ended
	ping      *time.Timer
	// set while the writer waits: lingers for more to write before it exits, or, closing, waits for the
	// reader to end (awaitPeerClose; nothing else wakes a closing writer)
	wake chan struct{}

	done chan struct{} // closed when the socket is closed; made by the first Done (most connections never ask)

	// the reader's: one reader goroutine at a time
	nc       *netConn  // the socket, when upgraded by Upgrade (nil: gorilla's own reads only)
	deadline time.Time // the read deadline: pongWait after the last sign of life
	// when await got data, the last time and the time before: a connection whose data come less than
	// idleLinger apart is busy, and its reader lingers
	lastData, prevData time.Time

	lastWriterEnd time.Time // when the last writer goroutine ended (under mu)
	fn            func(frame []byte)
	end           func(error)
}

// New wraps ws (best upgraded by Upgrade). The caller then starts the reader with Serve or ReadLoop.
func New(ws *websocket.Conn, opt Options) *Conn {
	if opt.pongWait == 0 {
		opt.pongWait = pongWait
	}
	c := &Conn{ws: ws, opt: opt}
	if nc, ok := ws.NetConn().(*netConn); ok && nc.raw != nil {
		c.nc = nc
	}
	ws.SetReadLimit(int64(opt.MaxMessageBytes))
	c.ping = time.AfterFunc(pingInterval, c.pingNow)
	return c
}

// outFrame is a queued frame, and its prepared WebSocket frame when it is a broadcast.
type outFrame struct {
	b  []byte
	sh *Shared
}

// Shared is a frame sent to many connections (a broadcast). A connection that has only this frame to write
// writes the WebSocket frame prepared once for all of them, so the frame's bytes are neither copied nor
// framed again per connection.
type Shared struct {
	data []byte
	once sync.Once
	pm   *websocket.PreparedMessage
}

// NewShared wraps frame, which must not be changed afterwards.
func NewShared(frame []byte) *Shared { return &Shared{data: frame} }

func (s *Shared) prepared() *websocket.PreparedMessage {
	s.once.Do(func() { s.pm, _ = websocket.NewPreparedMessage(websocket.TextMessage, s.data) })
	return s.pm
}

// Send queues one frame. The bytes are not copied: a frame built once may be sent to many connections and
// must not be changed afterwards. When the queue is over its bound the connection is closed as slow.
func (c *Conn) Send(frame []byte) error { return c.send(outFrame{b: frame}) }

// SendShared queues a broadcast frame, as Send does.
func (c *Conn) SendShared(s *Shared) error { return c.send(outFrame{b: s.data, sh: s}) }

func (c *Conn) send(out outFrame) error {
	frame := out.b
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return ErrClosed
	}
	if c.queued+len(frame) > c.opt.OutboundBytes {
		c.closeLocked(CloseSlowConsumer, "slow consumer: outbound queue full; reconnect and resync")
		return ErrClosed
	}
	c.queue = append(c.queue, out)
	c.queued += len(frame)
	c.startWriterLocked()
	return nil
}

// Close closes with code and text after writing what is already queued (except for a slow consumer,
// whose queue is the problem). It returns at once; Done tells when the socket is gone. Frames read after
// Close are not handled.
func (c *Conn) Close(code int, text string) {
	c.mu.Lock()
	c.closeLocked(code, text)
	c.mu.Unlock()
}

func (c *Conn) closeLocked(code int, text string) {
	if c.closing {
		return
	}
	c.closing, c.closeCode, c.closeText = true, code, text
	c.dropping.Store(true)
	if code == CloseSlowConsumer {
		c.queue, c.queued = nil, 0
	}
	c.ping.Stop()
	c.startWriterLocked()
}

func (c *Conn) pingNow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.pingDue = true
		c.startWriterLocked()
	}
}

func (c *Conn) startWriterLocked() {
	switch {
	case c.finished:
	case !c.writing:
		c.writing = true
		go c.writeLoop()
	case c.wake != nil: // the writer is lingering: wake it
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// Done is closed when the connection has been closed.
func (c *Conn) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.finished {
			close(c.done)
		}
	}
	return c.done
}

// CloseCode is the code the server closed with (0 while open or when the peer went away first).
func (c *Conn) CloseCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

// ReadLoop reads messages until the socket ends, calling fn for each '\n'-separated frame (empty pieces
// skipped), and returns the error that ended it. The slice passed to fn is reused: fn must copy what it
// keeps. Frames are handled one at a time, in order; fn may run on other goroutines than the caller's
// (see Serve), never on two at once.
func (c *Conn) ReadLoop(fn func(frame []byte)) error {
	end := make(chan error, 1)
	c.Serve(fn, func(err error) { end <- err })
	return <-end
}

// Serve reads the connection on goroutines of its own, as ReadLoop does, and calls end once with the
// error that ended the reading (the socket is then closing). It returns at once.
//
// A quiet connection upgraded by Upgrade costs no more than a 2 KB goroutine stack: the wait is shallow
// (poll.go), and a goroutine that has handled messages (whose stack may have grown) hands the wait to a
// fresh one as soon as the connection is not busy (readLoop, idleLinger).
func (c *Conn) Serve(fn func(frame []byte), end func(error)) {
	c.fn, c.end = fn, end
	c.mu.Lock()
	late := c.serving // closed before Serve: the writer reads the socket while it closes
	c.serving = true
	c.mu.Unlock()
	if late {
		go func() {
			<-c.Done()
			end(ErrClosed)
		}()
		return
	}
	c.startReading()
	go c.readLoop(true)
}

// readLoop reads until the socket ends. A goroutine that has handled a message (its stack may have grown
// with the handler) waits for the next one itself for idleLinger at most; a connection quiet for longer
// waits on a fresh goroutine, whose stack is small. readLoop's own frame is small: it is on the stack
// while the goroutine waits.
func (c *Conn) readLoop(fresh bool) {
	for {
		if nc := c.nc; nc != nil {
			// Pongs alone are not handed to gorilla, whose NextReader would then wait for the next frame
			// on a deep stack.
			nc.skipPongs(c)
			if nc.br.Buffered() == 0 {
				if err := c.await(fresh); err != nil {
					if err == errLinger {
						go c.readLoop(true)
						return
					}
					c.readEnded(err)
					return
				}
				continue
			}
		}
		if err := c.readNext(); err != nil {
			c.readEnded(err)
			return
		}
		fresh = false
	}
}

// idleLinger is how long a reader goroutine that has handled messages waits for the next before it hands
// the wait to a fresh goroutine: a busy connection keeps its goroutine (and its grown stack), an idle one
// costs a small stack. Only busy connections (data less than idleLinger apart) linger at all, and not for
// long, so that a burst of new connections (each sends a sub) does not hold a grown stack per connection
// at once: the process would keep that memory after the burst.
const idleLinger = 100 * time.Millisecond

var errLinger = errors.New("wsconn: quiet for idleLinger")

// await waits for the next bytes of the socket (the read buffer is empty). Without fresh it gives up
// after idleLinger with errLinger. Data moves the read deadline, as a message or a pong does.
//
//go:noinline
func (c *Conn) await(fresh bool) error {
	now := time.Now()
	if !fresh && c.lastData.Sub(c.prevData) >= idleLinger {
		return errLinger // not a busy connection (its last data came long after the data before): no lingering
	}
	deadline := c.deadline
	if d := now.Add(idleLinger); !fresh && d.Before(deadline) {
		deadline = d
	}
	c.ws.SetReadDeadline(deadline)
	err := c.nc.await()
	if err == nil {
		c.prevData, c.lastData = c.lastData, time.Now()
		c.onPong("")
		return nil
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() && !fresh && time.Now().Before(c.deadline) {
		return errLinger
	}
	return err
}

// readNext reads one message with gorilla and hands its frames to fn.
//
//go:noinline
func (c *Conn) readNext() error {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return err
	}
	return c.readMessage(typ, r, c.fn)
}

//go:noinline
func (c *Conn) readEnded(err error) {
	c.readFailed(err)
	c.end(err)
	if _, peerClosed := err.(*websocket.CloseError); !peerClosed {
		// gorilla reads no further after its errors (a message over the limit, a protocol error), but the
		// peer may still be sending: drop it raw until the peer closes or the writer gives up waiting
		// (awaitPeerClose). On a socket that failed or timed out this returns at once.
		io.Copy(io.Discard, c.ws.NetConn())
	}
	c.mu.Lock()
	c.readDone = true
	if c.wake != nil { // a closing writer waits for this (awaitPeerClose)
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
}

//go:noinline
func (c *Conn) startReading() {
	c.ws.SetPongHandler(c.onPong)
	c.onPong("")
}

func (c *Conn) onPong(string) error {
	c.deadline = time.Now().Add(c.opt.pongWait)
	return c.ws.SetReadDeadline(c.deadline)
}

// readFailed closes the connection after the reader's error (1000, 1009 when gorilla refused a message
// over the limit as it began — it wrote the 1009 itself — or 4010 when the peer fell silent; a close
// already under way keeps its own code).
//
//go:noinline
func (c *Conn) readFailed(err error) {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.Close(CloseNoPong, "nothing received (not even a pong) for too long")
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		c.Close(CloseTooBig, "message exceeds the hard size limit")
	}
	c.Close(CloseNormal, "")
}

// readMessage reads one message and hands its frames to fn.
//
//go:noinline
func (c *Conn) readMessage(typ int, r io.Reader, fn func(frame []byte)) error {
	if c.nc == nil || time.Until(c.deadline) < c.opt.pongWait-5*time.Second {
		// (await moved it when the buffer was empty; a client whose messages never leave it empty
		// still proves itself alive with each one)
		c.onPong("")
	}
	if typ != websocket.TextMessage || c.dropping.Load() {
		if _, err := io.Copy(io.Discard, r); err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.Close(CloseTooBig, "message exceeds the hard size limit")
			}
			return err
		}
		if typ != websocket.TextMessage {
			c.Close(CloseUnsupported, "binary frames are not supported; send JSON text frames (docs/PROTOCOL.md)")
		}
		return nil
	}
	// The message buffer comes from a pool and goes back once the message's frames are handled: an
	// idle connection holds none.
	buf := readBufs.Get().(*bytes.Buffer)
	defer putReadBuf(buf)
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			c.Close(CloseTooBig, "message exceeds the hard size limit")
		}
		return err
	}
	msg := buf.Bytes()
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		var f []byte
		if i < 0 {
			f, msg = msg, nil
		} else {
			f, msg = msg[:i], msg[i+1:]
		}
		if len(bytes.TrimSpace(f)) > 0 && !c.dropping.Load() {
			fn(f)
		}
	}
	return nil
}

var readBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putReadBuf(b *bytes.Buffer) {
	if b.Cap() > 64<<10 {
		return // one large message should not pin a large buffer
	}
	b.Reset()
	readBufs.Put(b)
}

// writeLoop writes until nothing is left to write, then exits; Send, a due ping or Close start it again.
//
// Before it exits, it waits writerLinger for more: a connection written to often keeps one writer (whose
// stack has grown to what writing takes) instead of starting one, and growing its stack, per frame.
func (c *Conn) writeLoop() {
	var batch []outFrame
	var linger *time.Timer
	var fired atomic.Bool
	var period time.Duration
	var lastWrite time.Time
	c.mu.Lock()
	// Only a connection written to often lingers (its last writer ended a moment ago): one that gets a
	// frame now and then, or just its first frames, lets its writer go at once.
	mayLinger := time.Since(c.lastWriterEnd) < writerLinger
	c.mu.Unlock()
	lingered := false
	for {
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		c.queued = 0
		ping, closing, code, text := c.pingDue, c.closing, c.closeCode, c.closeText
		c.pingDue = false
		if len(batch) == 0 && !ping && !closing {
			if lingered || !mayLinger {
				c.writing, c.wake = false, nil
				c.lastWriterEnd = time.Now()
				c.mu.Unlock()
				if linger != nil {
					linger.Stop()
				}
				return
			}
			if c.wake == nil {
				c.wake = make(chan struct{}, 1)
			}
			wake := c.wake
			c.mu.Unlock()
			if linger == nil {
				// Armed once, not at every wait (a busy socket waits often), and it wakes the writer
				// through the same channel as Send: a select on a timer's channel costs the runtime a
				// timer update at every wait. While the writer keeps finding work, the timer wakes it
				// less and less often (up to once a second).
				period = writerLinger
				linger = time.AfterFunc(period, func() {
					fired.Store(true)
					select {
					case wake <- struct{}{}:
					default:
					}
				})
			}
			<-wake
			if fired.Swap(false) {
				if time.Since(lastWrite) >= writerLinger {
					lingered = true
				} else {
					period = min(2*period, time.Second)
					linger.Reset(period)
				}
			}
			continue
		}
		c.mu.Unlock()
		if lingered {
			linger.Reset(period) // it fired and was not re-armed: without it the writer would wait forever
		}
		lingered, lastWrite = false, time.Now()
		err := c.writeFrames(batch)
		clear(batch)
		if err == nil && ping {
			c.ws.SetWriteDeadline(time.Now().Add(writeWait))
			err = c.ws.WriteMessage(websocket.PingMessage, nil)
			c.ping.Reset(pingInterval)
		}
		if err != nil || closing {
			if linger != nil {
				linger.Stop()
			}
			c.closeSocket(code, text, err)
			return
		}
	}
}

// closeSocket ends the writer: it writes the close frame (unless a write failed: err), counts the close,
// and closes the socket once the peer has answered (awaitPeerClose).
func (c *Conn) closeSocket(code int, text string, err error) {
	sent := false
	if err == nil {
		c.ws.SetWriteDeadline(time.Now().Add(time.Second))
		err = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code, text))
		// (ErrCloseSent: gorilla wrote one itself, answering the peer's close or refusing a message over
		// the limit)
		sent = err == nil || err == websocket.ErrCloseSent
	} else {
		c.mu.Lock()
		code = c.closeCode // a close that came during the failed write (mostly a slow consumer's), or 0
		c.mu.Unlock()
	}
	closes.count(code, sent)
	if c.opt.OnClose != nil {
		c.opt.OnClose(code)
	}
	if sent {
		c.awaitPeerClose()
	}
	c.finish()
}

// awaitPeerClose waits, after the close frame went out, until the peer answers with its own close frame
// (or goes away), for closeLinger at most, while the socket is read and what comes is dropped. Closing a
// socket with unread data in it makes the kernel reset the connection: a peer still sending (a flood)
// gets an error, and the frames it had not read yet, the close frame among them, may be lost (1006).
func (c *Conn) awaitPeerClose() {
	c.mu.Lock()
	if c.readDone {
		c.mu.Unlock()
		return
	}
	if !c.serving { // no reader (Close before Serve): the writer reads
		c.serving = true
		c.mu.Unlock()
		c.ws.SetReadDeadline(time.Now().Add(closeLinger))
		for {
			if _, _, err := c.ws.NextReader(); err != nil {
				return
			}
		}
	}
	ended := make(chan struct{}, 1)
	c.wake = ended
	c.mu.Unlock()
	t := time.NewTimer(closeLinger)
	defer t.Stop()
	select {
	case <-ended: // the reader, which drops what it reads while the connection closes, saw the peer's close
	case <-t.C:
	}
}

// finish closes the socket once; the reader then returns.
func (c *Conn) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing, c.finished, c.writing, c.wake = true, true, false, nil
	c.queue, c.queued = nil, 0
	c.ping.Stop()
	c.ws.Close()
	if c.done != nil {
		close(c.done)
	}
}

// writeFrames writes queued frames as few messages as possible: frames joined by '\n'. A broadcast frame
// alone (the usual case when frames come slower than the socket takes them) goes out prepared.
func (c *Conn) writeFrames(frames []outFrame) error {
	if len(frames) == 1 && frames[0].sh != nil {
		if pm := frames[0].sh.prepared(); pm != nil {
			c.ws.SetWriteDeadline(time.Now().Add(writeWait))
			return c.ws.WritePreparedMessage(pm)
		}
	}
	for len(frames) > 0 {
		c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		w, err := c.ws.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		size := 0
		n := 0
		for n < len(frames) && (n == 0 || size+len(frames[n].b) <= maxCoalesce) {
			if n > 0 {
				w.Write([]byte{'\n'})
			}
			w.Write(frames[n].b)
			size += len(frames[n].b) + 1
			n++
		}
		if err := w.Close(); err != nil {
			return err
		}
		frames = frames[n:]
	}
	return nil
}
