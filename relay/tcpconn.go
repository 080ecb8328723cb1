package relay

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// tcpConn is the raw-TCP twin of wsconn.Conn: newline-delimited JSON frames, one reader and one writer, a
// bounded outbound queue whose frames are written in bursts (one write per burst, not per frame), and a
// last frame {"op":"close","code":…,"message":…} standing in for a WebSocket close message.

const (
	// tcpIdle is how long a TCP client may stay silent; clients send a ping frame at least every 25 s
	// (TCP has no protocol-level ping that a client library answers by itself).
	tcpIdle      = 60 * time.Second
	tcpWriteWait = 10 * time.Second
	// tcpLinger is how long the reader keeps draining after the close frame went out, so that the peer
	// reads the close frame before the socket is reset.
	tcpLinger = 2 * time.Second
)

type tcpConn struct {
	nc       net.Conn
	maxQueue int
	onClose  func(code int) // runs once the writer has finished, with the close code (0: a write failed first)

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

func newTCPConn(nc net.Conn, outboundBytes int, onClose func(code int)) *tcpConn {
	if onClose == nil {
		onClose = func(int) {}
	}
	t := &tcpConn{nc: nc, maxQueue: outboundBytes, onClose: onClose, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go t.writeLoop()
	return t
}

// Send queues one frame (not copied: it may be shared by many connections). Over the bound the connection
// is closed as a slow consumer.
func (t *tcpConn) Send(frame []byte) error {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return errClosed
	}
	if t.queued+len(frame) > t.maxQueue {
		t.closeLocked(closeSlowConsumer, "slow consumer: outbound queue full; reconnect and sync", false)
		t.mu.Unlock()
		return errClosed
	}
	t.queue = append(t.queue, frame)
	t.queued += len(frame) + 1
	t.mu.Unlock()
	t.signal()
	return nil
}

var errClosed = errors.New("relay: connection closed")

const closeSlowConsumer = 4008

// Close sends the close frame after what is already queued (except for a slow consumer) and ends the
// connection. It returns at once; Done tells when the writer is finished.
func (t *tcpConn) Close(code int, text string) {
	t.mu.Lock()
	t.closeLocked(code, text, code != closeSlowConsumer)
	t.mu.Unlock()
}

func (t *tcpConn) closeLocked(code int, text string, flush bool) {
	if t.closing {
		return
	}
	t.closing, t.closeCode, t.closeText, t.flushLast = true, code, text, flush
	if !flush {
		t.queue, t.queued = nil, 0
	}
	t.signal()
}

func (t *tcpConn) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *tcpConn) Done() <-chan struct{} { return t.done }

func (t *tcpConn) writeLoop() {
	defer close(t.done)
	w := bufio.NewWriterSize(t.nc, 32<<10)
	var batch [][]byte
	for range t.wake {
		t.mu.Lock()
		batch, t.queue = t.queue, batch[:0]
		t.queued = 0
		closing, code, text := t.closing, t.closeCode, t.closeText
		t.mu.Unlock()
		t.nc.SetWriteDeadline(time.Now().Add(tcpWriteWait))
		for _, f := range batch {
			w.Write(f)
			w.WriteByte('\n')
		}
		clear(batch)
		if closing {
			w.Write(closeFrame(code, text))
			w.WriteByte('\n')
		}
		if err := w.Flush(); err != nil {
			t.abandon()
			t.nc.Close()
			if !closing {
				code = 0
			}
			t.onClose(code)
			return
		}
		if closing {
			t.onClose(code)
			// Half-close: the peer reads everything, then EOF. The reader drains for a moment and closes.
			if tc, ok := t.nc.(interface{ CloseWrite() error }); ok {
				tc.CloseWrite()
			}
			t.nc.SetReadDeadline(time.Now().Add(tcpLinger))
			return
		}
	}
}

// abandon marks the connection closed after a write failure (the peer is gone).
func (t *tcpConn) abandon() {
	t.mu.Lock()
	t.closing = true
	t.queue, t.queued = nil, 0
	t.mu.Unlock()
}

// readLoop reads '\n'-terminated frames until the socket ends, calling fn(frame, 0) for each non-empty one
// (the slice is reused: fn copies what it keeps). A frame longer than max is skipped up to its newline and
// reported once as fn(nil, its size in bytes), so one oversized frame does not cost the connection.
// deadline gives the read deadline for the next read. The caller closes the socket after the writer is done.
func (t *tcpConn) readLoop(max int, deadline func() time.Time, fn func(frame []byte, tooLarge int)) error {
	r := bufio.NewReaderSize(t.nc, 16<<10)
	line := make([]byte, 0, 4<<10)
	tooLarge, size := false, 0 // size: the bytes of the line so far, kept or not
	for {
		t.mu.Lock()
		closing := t.closing
		t.mu.Unlock()
		if closing {
			// Only drain until the writer's linger deadline; frames are ignored.
			fn = func([]byte, int) {}
		} else {
			t.nc.SetReadDeadline(deadline())
		}
		chunk, err := r.ReadSlice('\n')
		size += len(chunk)
		if !tooLarge {
			if len(line)+len(chunk) > max+2 { // + "\r\n"
				tooLarge, line = true, line[:0]
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return err
		}
		switch f := bytes.TrimSpace(line); {
		case tooLarge:
			fn(nil, size-len(lineEnd(chunk)))
		case len(f) > max:
			fn(nil, len(f))
		case len(f) > 0:
			fn(f, 0)
		}
		line, tooLarge, size = line[:0], false, 0
	}
}

// lineEnd is the "\n" or "\r\n" that ends chunk.
func lineEnd(chunk []byte) []byte {
	if n := len(chunk); n >= 2 && chunk[n-2] == '\r' {
		return chunk[n-2:]
	}
	return chunk[len(chunk)-1:]
}
