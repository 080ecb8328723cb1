package wsconn

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"
)

// Memory per idle connection. A goroutine blocked in gorilla's NextReader sits below a dozen frames
// (gorilla's advanceFrame alone takes 272 bytes), which is more than the smallest goroutine stack holds, so
// every idle connection would pay for a 4 KB stack (and the garbage collector lets the heap grow by as
// much again). Instead, an idle connection waits for readability on the socket itself, in a shallow call,
// with the read buffer it shares with gorilla empty; gorilla reads once the next message has begun to
// arrive. For that the connection needs a read buffer of its own that gorilla reads through (Upgrade) and
// the socket's raw descriptor (syscall.RawConn: plain TCP; other connections keep gorilla's own wait).

// readBufferSize is the connection's read buffer (gorilla reuses a hijacked reader bigger than 256 bytes).
// Large messages bypass it (the message reader asks for 512 bytes or more at a time).
const readBufferSize = 320

// upgrader is the one upgrader of every endpoint. No ReadBufferSize: Upgrade gives each connection a small
// read buffer of its own.
var upgrader = websocket.Upgrader{
	WriteBufferSize: 4096,
	// Write buffers go back to the pool between writes, so idle connections do not hold one.
	WriteBufferPool: &sync.Pool{},
	// Access is decided by the token, not by the page's origin (tokens are not ambient credentials).
	CheckOrigin: func(*http.Request) bool { return true },
}

// Upgrade completes a WebSocket handshake, with the connection wrapped so that Serve can wait for data on a
// small stack. A request that is no WebSocket handshake at all is answered by CheckUpgrade; on any other
// failure the upgrader has answered.
func Upgrade(w http.ResponseWriter, r *http.Request, h http.Header) (*websocket.Conn, error) {
	if !CheckUpgrade(w, r) {
		return nil, errNotWebSocket
	}
	return upgrader.Upgrade(hijacker{w}, r, h)
}

var errNotWebSocket = errors.New("wsconn: not a WebSocket request")

// CheckUpgrade reports whether r asks for a WebSocket. If not, it has answered in words, for whoever opened
// the endpoint by hand (a browser, curl): 405 for a method other than GET, 426 for a GET without the
// upgrade headers. A handler that checks other things first (a token) calls it before them.
func CheckUpgrade(w http.ResponseWriter, r *http.Request) bool {
	var status int
	var why string
	switch {
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		status, why = http.StatusMethodNotAllowed, r.Method+" is not allowed"
	case !websocket.IsWebSocketUpgrade(r):
		w.Header().Set("Upgrade", "websocket")
		status, why = http.StatusUpgradeRequired, "this request has no WebSocket upgrade headers"
	default:
		return true
	}
	http.Error(w, "WebSocket endpoint; see docs/PROTOCOL.md. "+why+
		": connect with a WebSocket client (GET with Connection: Upgrade, Upgrade: websocket).", status)
	return false
}

// hijacker hands gorilla the socket wrapped in a netConn and a read buffer on it that gorilla adopts.
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return conn, brw, err // (gorilla refuses a client that sent data before the handshake finished)
	}
	nc := &netConn{Conn: conn}
	if sc, ok := conn.(syscall.Conn); ok && rawReads {
		if raw, err := sc.SyscallConn(); err == nil {
			nc.raw = raw
			nc.readFn = nc.rawRead
		}
	}
	nc.br = bufio.NewReaderSize(nc, readBufferSize)
	return nc, bufio.NewReadWriter(nc.br, brw.Writer), nil
}

// netConn is the socket as gorilla sees it. Its reads are the socket's, except while the reader waits for
// a message (await).
type netConn struct {
	net.Conn
	br  *bufio.Reader // the read buffer gorilla reads through
	raw syscall.RawConn

	// used only by the reader goroutine, during await
	waiting bool // await: read raw, waiting for readability when there is nothing to read
	p       []byte
	n       int
	errno   error
	readFn  func(fd uintptr) bool
}

func (c *netConn) Read(p []byte) (int, error) {
	if !c.waiting {
		return c.Conn.Read(p)
	}
	c.p, c.n, c.errno = p, 0, nil
	err := c.raw.Read(c.readFn)
	c.p = nil
	switch {
	case err != nil: // deadline, closed
		return 0, err
	case c.errno != nil:
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: c.errno}
	case c.n == 0:
		return 0, io.EOF
	}
	return c.n, nil
}

// await fills the empty read buffer with what the socket has, waiting for it on this goroutine's stack,
// which stays shallow: the read buffer, this connection's Read and the runtime's wait.
func (c *netConn) await() error {
	c.waiting = true
	_, err := c.br.Peek(1)
	c.waiting = false
	return err
}

// skipPongs consumes the complete pong frames at the start of the read buffer (the answers to the
// server's keep-alive pings: every idle connection gets one every pingInterval) as gorilla would: they
// move the read deadline. Anything else is left to gorilla. Called between messages only.
func (c *netConn) skipPongs(conn *Conn) {
	for c.br.Buffered() >= 2 {
		b, _ := c.br.Peek(2)
		// FIN, no RSV bits, opcode 10 (pong); masked (clients mask every frame); payload ≤ 125 bytes
		if b[0] != 0x8A || b[1]&0x80 == 0 || b[1]&0x7f > 125 {
			break
		}
		n := 2 + 4 + int(b[1]&0x7f)
		if c.br.Buffered() < n {
			break
		}
		c.br.Discard(n)
		conn.onPong("")
	}
}
