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
//
// The writer goroutine runs only while there is something to write: an idle connection costs no goroutine
// but its reader's, which matters at tens of thousands of connections.
type Conn struct {
	ws  *websocket.Conn
	opt Options

	mu        sync.Mutex
	queue     [][]byte
	queued    int
	writing   bool // a writer goroutine is running
	pingDue   bool
	closing   bool
	closeCode int
	closeText string
	finished  bool // the close frame went out (or could not) and the socket is closed
	ping      *time.Timer

	done chan struct{} // closed when the socket is closed
}

// New wraps ws. The caller runs ReadLoop in its own goroutine (usually the HTTP handler's).
func New(ws *websocket.Conn, opt Options) *Conn {
	c := &Conn{ws: ws, opt: opt, done: make(chan struct{})}
	ws.SetReadLimit(int64(opt.MaxMessageBytes))
	c.ping = time.AfterFunc(pingInterval, c.pingNow)
	return c
}

// Send queues one frame. The bytes are not copied: a frame built once may be sent to many connections and
// must not be changed afterwards. When the queue is over its bound the connection is closed as slow.
func (c *Conn) Send(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return ErrClosed
	}
	if c.queued+len(frame) > c.opt.OutboundBytes {
		c.closeLocked(CloseSlowConsumer, "slow consumer: outbound queue full; reconnect and resync")
		return ErrClosed
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.startWriterLocked()
	return nil
}

// Close closes with code and text after writing what is already queued (except for a slow consumer,
// whose queue is the problem). It returns at once; Done tells when the socket is gone.
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
	if !c.writing && !c.finished {
		c.writing = true
		go c.writeLoop()
	}
}

// Done is closed when the connection has been closed.
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
		if buf.Cap() > 64<<10 {
			buf = bytes.Buffer{} // one large message should not pin a large buffer for the connection's life
		}
	}
}

// writeLoop writes until nothing is left to write, then exits; Send, a due ping or Close start it again.
func (c *Conn) writeLoop() {
	var batch [][]byte
	for {
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		c.queued = 0
		ping, closing, code, text := c.pingDue, c.closing, c.closeCode, c.closeText
		c.pingDue = false
		if len(batch) == 0 && !ping && !closing {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		err := c.writeFrames(batch)
		clear(batch)
		if err == nil && ping {
			c.ws.SetWriteDeadline(time.Now().Add(writeWait))
			err = c.ws.WriteMessage(websocket.PingMessage, nil)
			c.ping.Reset(pingInterval)
		}
		if err != nil || closing {
			if err == nil {
				c.ws.SetWriteDeadline(time.Now().Add(time.Second))
				c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code, text))
			}
			c.finish()
			return
		}
	}
}

// finish closes the socket once; the reader then returns.
func (c *Conn) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing, c.finished, c.writing = true, true, false
	c.queue, c.queued = nil, 0
	c.ping.Stop()
	c.ws.Close()
	close(c.done)
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
