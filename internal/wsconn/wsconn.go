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
	"time"

	"github.com/gorilla/websocket"
)

// Close codes shared by the RSO sockets (docs/PROTOCOL.md §1.9).
const (
	CloseNormal       = websocket.CloseNormalClosure     // 1000
	CloseTooBig       = websocket.CloseMessageTooBig     // 1009
	CloseInternal     = websocket.CloseInternalServerErr // 1011
	CloseRestart      = websocket.CloseServiceRestart    // 1012
	CloseUnauthorized = 4001
	CloseTokenExpired = 4003
	CloseSlowConsumer = 4008
	CloseAbuse        = 4009
	CloseNoPong       = 4010
)

const (
	// pongWait is how long a silent peer is kept; pings go out often enough that a live one never hits it.
	pongWait     = 60 * time.Second
	pingInterval = 25 * time.Second
	writeWait    = 10 * time.Second
	// maxCoalesce caps one outbound message so one busy connection does not delay its own frames unboundedly.
	maxCoalesce = 256 << 10
)

// ErrClosed is returned by Send after the connection closed.
var ErrClosed = errors.New("wsconn: connection closed")

// Options bound one connection.
type Options struct {
	MaxMessageBytes int // a larger inbound message closes the socket with 1009
	OutboundBytes   int // queued bytes beyond this close the socket with 4008 (slow consumer)
}

// Conn is a WebSocket with a bounded outbound queue. Send may be called from any goroutine.
type Conn struct {
	ws  *websocket.Conn
	opt Options

	mu        sync.Mutex
	queue     [][]byte
	queued    int
	closing   bool
	closeCode int
	closeText string
	flushLast bool // on close, write what is queued first

	wake chan struct{}
	done chan struct{} // closed when the writer has finished
}

// New starts the writer. The caller runs ReadLoop in its own goroutine (usually the HTTP handler's).
func New(ws *websocket.Conn, opt Options) *Conn {
	c := &Conn{ws: ws, opt: opt, wake: make(chan struct{}, 1), done: make(chan struct{})}
	ws.SetReadLimit(int64(opt.MaxMessageBytes))
	go c.writeLoop()
	return c
}

// Send queues one frame. The bytes are not copied: a frame built once may be sent to many connections and
// must not be changed afterwards. When the queue is over its bound the connection is closed as slow.
func (c *Conn) Send(frame []byte) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.queued+len(frame) > c.opt.OutboundBytes {
		c.closeLocked(CloseSlowConsumer, "slow consumer: outbound queue full; reconnect and resync", false)
		c.mu.Unlock()
		return ErrClosed
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close closes with code and text after writing what is already queued (except for a slow consumer,
// whose queue is the problem). It returns at once; Done tells when the socket is gone.
func (c *Conn) Close(code int, text string) {
	c.mu.Lock()
	c.closeLocked(code, text, code != CloseSlowConsumer)
	c.mu.Unlock()
}

func (c *Conn) closeLocked(code int, text string, flush bool) {
	if c.closing {
		return
	}
	c.closing, c.closeCode, c.closeText, c.flushLast = true, code, text, flush
	if !flush {
		c.queue, c.queued = nil, 0
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Done is closed when the connection has been closed and its writer has stopped.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseCode is the code the server closed with (0 while open or when the peer went away first).
func (c *Conn) CloseCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

// ReadLoop reads messages until the socket ends, calling fn for each '\n'-separated frame (empty pieces
// skipped). The slice passed to fn is reused: fn must copy what it keeps.
func (c *Conn) ReadLoop(fn func(frame []byte)) error {
	defer c.Close(CloseNormal, "")
	c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(pongWait)) })
	var buf bytes.Buffer
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.Close(CloseNoPong, "nothing received (not even a pong) for too long")
			}
			return err
		}
		c.ws.SetReadDeadline(time.Now().Add(pongWait))
		if typ != websocket.TextMessage {
			io.Copy(io.Discard, r)
			continue
		}
		buf.Reset()
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
			if len(bytes.TrimSpace(f)) > 0 {
				fn(f)
			}
		}
	}
}

func (c *Conn) writeLoop() {
	defer close(c.done)
	defer c.ws.Close()
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	var batch [][]byte
	for {
		select {
		case <-c.wake:
		case <-ping.C:
			c.ws.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.ws.WriteMessage(websocket.PingMessage, nil); err != nil {
				c.abandon()
				return
			}
			continue
		}
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		c.queued = 0
		closing, code, text := c.closing, c.closeCode, c.closeText
		c.mu.Unlock()
		if err := c.writeFrames(batch); err != nil {
			c.abandon()
			return
		}
		clear(batch)
		if closing {
			c.ws.SetWriteDeadline(time.Now().Add(time.Second))
			c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code, text))
			return
		}
	}
}

// writeFrames writes queued frames as few messages as possible: frames joined by '\n'.
func (c *Conn) writeFrames(frames [][]byte) error {
	for len(frames) > 0 {
		c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		w, err := c.ws.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		size := 0
		n := 0
		for n < len(frames) && (n == 0 || size+len(frames[n]) <= maxCoalesce) {
			if n > 0 {
				w.Write([]byte{'\n'})
			}
			w.Write(frames[n])
			size += len(frames[n]) + 1
			n++
		}
		if err := w.Close(); err != nil {
			return err
		}
		frames = frames[n:]
	}
	return nil
}

// abandon marks the connection closed after a write failure (the peer is gone).
func (c *Conn) abandon() {
	c.mu.Lock()
	c.closing = true
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
}
