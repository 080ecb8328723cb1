package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // served on -pprof-addr only (http.DefaultServeMux)
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// barehub is the baseline: the plainest broadcast hub one would write with gorilla/websocket, as in its
// chat example. Every subscriber socket has a reader (which only notices the close) and a writer goroutine
// fed by a buffered channel; a message posted on /pub is written, as the same []byte, to every subscriber
// with one WriteMessage each: no coalescing, no prepared frames. A subscriber whose channel is full is
// dropped (slow consumer). It runs as its own process (rso-bench barehub-serve) so that its CPU and memory
// are measured exactly like rso's.

const (
	hubCommand = "barehub-serve"
	hubSubPath = "/sub"
	hubPubPath = "/pub"
	// hubQueue messages may wait for one subscriber before it is dropped.
	hubQueue     = 256
	hubWriteWait = 10 * time.Second
)

var hubHello = []byte(`{"op":"hello"}`)

var hubUpgrader = websocket.Upgrader{
	ReadBufferSize:  1024, // gorilla's chat example
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

type hub struct {
	mu      sync.Mutex
	subs    map[*hubConn]struct{}
	dropped int
}

type hubConn struct {
	ws  *websocket.Conn
	out chan []byte
}

// serveHub is the hidden barehub-serve command.
func serveHub(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(hubCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "HOST:PORT to listen on (loopback)")
	pprofAddr := fs.String("pprof-addr", "", "serve net/http/pprof on this HOST:PORT")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if host, _, err := net.SplitHostPort(*addr); err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintf(stderr, "%s: -addr %q: want a loopback HOST:PORT\n", hubCommand, *addr)
		return exitUsage
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", hubCommand, err)
		return exitFailed
	}
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil)
	}
	h := &hub{subs: map[*hubConn]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc(hubSubPath, h.serveSub)
	mux.HandleFunc(hubPubPath, h.servePub)
	srv := &http.Server{Handler: mux}
	fmt.Fprintf(stderr, "%s listening on %s\n", hubCommand, ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		fmt.Fprintf(stderr, "%s: %v\n", hubCommand, err)
		return exitFailed
	case <-ctx.Done():
	}
	srv.Close() // hijacked sockets are not closed by this; the process exits right after
	h.mu.Lock()
	fmt.Fprintf(stderr, "%s stopped; %d subscribers dropped as slow\n", hubCommand, h.dropped)
	h.mu.Unlock()
	return exitOK
}

func (h *hub) serveSub(w http.ResponseWriter, r *http.Request) {
	ws, err := hubUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &hubConn{ws: ws, out: make(chan []byte, hubQueue)}
	c.out <- hubHello
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	go c.writeLoop()
	for {
		if _, _, err := ws.NextReader(); err != nil {
			break
		}
	}
	h.remove(c)
}

// remove takes c out of the hub and ends its writer, once.
func (h *hub) remove(c *hubConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[c]; ok {
		delete(h.subs, c)
		close(c.out)
	}
}

func (c *hubConn) writeLoop() {
	defer c.ws.Close()
	for msg := range c.out {
		c.ws.SetWriteDeadline(time.Now().Add(hubWriteWait))
		if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			c.ws.Close() // ends the reader, which removes c and closes out
			for range c.out {
			}
			return
		}
	}
}

// servePub relays every message the publisher sends to every subscriber.
func (h *hub) servePub(w http.ResponseWriter, r *http.Request) {
	ws, err := hubUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	for {
		_, msg, err := ws.ReadMessage() // a new slice per message: it is shared by every subscriber
		if err != nil {
			return
		}
		h.broadcast(msg)
	}
}

func (h *hub) broadcast(msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c.out <- msg:
		default: // slow consumer: drop it
			delete(h.subs, c)
			close(c.out)
			c.ws.Close()
			h.dropped++
		}
	}
}
