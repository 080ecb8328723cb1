package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn is the generator's side of one socket, the same for RSO and the hub: one goroutine reads (readLoop),
// one writes at a time. It does not use the client package, which parses every frame fully: a subscriber
// here only splits messages on '\n' and scans the frames it needs.
type wsConn struct {
	ws  *websocket.Conn
	buf []byte // the last message read; reused
}

const (
	dialTimeout = 10 * time.Second
	// dialParallel connections are opened at a time: more only queue up in the server's accept backlog.
	dialParallel = 64
	// readLimit refuses absurd messages; RSO coalesces up to 256 KiB of frames into one message.
	readLimit = 64 << 20
)

var dialer = websocket.Dialer{
	HandshakeTimeout: dialTimeout,
	ReadBufferSize:   4096,
	WriteBufferSize:  1024,
	// Most generator sockets write one frame in their life: do not keep a write buffer per socket.
	WriteBufferPool: &sync.Pool{},
}

func dialWS(ctx context.Context, url string) (*wsConn, error) {
	ws, resp, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, fmt.Errorf("dial %s: %v (HTTP %d %s)", url, err, resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(readLimit)
	return &wsConn{ws: ws, buf: make([]byte, 0, 512)}, nil
}

// readLoop reads messages until the socket fails or is closed, calling fn for each '\n'-separated frame
// with the time its message arrived (Unix ns). The frame is only valid during the call.
func (c *wsConn) readLoop(fn func(frame []byte, now int64)) error {
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		if err := c.readAll(r); err != nil {
			return err
		}
		if typ != websocket.TextMessage {
			continue
		}
		msg := c.buf
		for len(msg) > 0 {
			i := bytes.IndexByte(msg, '\n')
			f := msg
			if i >= 0 {
				f, msg = msg[:i], msg[i+1:]
			} else {
				msg = nil
			}
			if len(f) > 0 {
				fn(f, now)
			}
		}
	}
}

func (c *wsConn) readAll(r io.Reader) error {
	c.buf = c.buf[:0]
	for {
		if len(c.buf) == cap(c.buf) {
			c.buf = append(c.buf, 0)[:len(c.buf)]
		}
		n, err := r.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// write sends one message; callers make sure only one goroutine writes to a socket at a time.
func (c *wsConn) write(b []byte) error {
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// close drops the socket at once, which ends readLoop. (A close handshake would only add load to a server
// being measured.)
func (c *wsConn) close() { c.ws.Close() }

// dialAll opens n sockets, dialParallel at a time; open(i) dials and prepares socket i. The first error
// stops the rest.
func dialAll(ctx context.Context, n int, open func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, dialParallel)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := open(ctx, i); err != nil {
				select {
				case errs <- fmt.Errorf("connection %d of %d: %w", i+1, n, err):
				default:
				}
				cancel()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}
