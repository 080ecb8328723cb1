package wsconn

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// served starts a server whose connections are upgraded by Upgrade and read by Serve, as the servers do,
// with handle called for every frame, and dials it.
func served(t *testing.T, opt Options, handle func(c *Conn, frame []byte)) *websocket.Conn {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := New(ws, opt)
		c.Serve(func(f []byte) { handle(c, f) }, func(error) {})
	}))
	t.Cleanup(srv.Close)
	peer, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return peer
}

// readClose reads until the connection ends and returns the close error, failing on anything else.
func readClose(t *testing.T, peer *websocket.Conn) *websocket.CloseError {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := peer.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("the connection ended with %v, not a close frame", err)
		}
		return ce
	}
}

// A client that floods the server and reads only afterwards still gets every answer and the close code:
// the server, having sent its close frame, reads on (and drops) what the client sent until the client's
// close frame, instead of closing a socket with unread data, which the kernel answers with a reset (the
// client's writes fail, and frames it has not read yet may be lost: 1006).
func TestFloodEndsWithTheCloseCodeNotAReset(t *testing.T) {
	const allowed = 450 // frames the server answers before it closes with 4009, as /so does
	var handled int
	peer := served(t, Options{MaxMessageBytes: 1 << 20, OutboundBytes: 1 << 20}, func(c *Conn, f []byte) {
		if handled++; handled <= allowed {
			c.Send([]byte(`{"op":"error","code":"rate_limited","message":"more than 200 frames per second"}`))
			return
		}
		if handled > allowed+1 {
			t.Error("a frame was handled after Close")
		}
		c.Close(CloseAbuse, "too many refused frames")
	})
	// 10 MB, far more than the socket buffers hold: the client is still writing when the server closes.
	frame := []byte(`{"op":"ping","id":"` + strings.Repeat("p", 1000) + `"}`)
	for i := range 10000 {
		if err := peer.WriteMessage(websocket.TextMessage, frame); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	answers := 0
	for {
		_, msg, err := peer.ReadMessage()
		if err == nil {
			answers += strings.Count(string(msg), "rate_limited")
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != CloseAbuse {
			t.Fatalf("after %d answers the connection ended with %v, want close %d", answers, err, CloseAbuse)
		}
		break
	}
	if answers != allowed {
		t.Fatalf("%d answers before the close, want %d", answers, allowed)
	}
}

// A message over the hard limit closes with 1009 also when the client is still sending it: gorilla reads
// no further, and the rest is dropped unread until the client closes.
func TestOversizedMessageStillBeingSentGets1009(t *testing.T) {
	peer := served(t, Options{MaxMessageBytes: 1 << 10, OutboundBytes: 1 << 20}, func(*Conn, []byte) {})
	if err := peer.WriteMessage(websocket.TextMessage, make([]byte, 8<<20)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if ce := readClose(t, peer); ce.Code != CloseTooBig {
		t.Fatalf("closed with %v, want %d", ce, CloseTooBig)
	}
}

// The wait for the peer's close is bounded: a peer that never reads (nor answers) is cut off after
// closeLinger; one that reads answers at once and the socket closes well before.
func TestCloseWaitsForThePeerBoundedly(t *testing.T) {
	for _, answers := range []bool{false, true} {
		c, peer := pair(t, Options{MaxMessageBytes: 1 << 10, OutboundBytes: 1 << 20}, nil)
		if answers {
			go peer.ReadMessage() // reads the close frame, and gorilla answers it
		}
		start := time.Now()
		c.Close(CloseRestart, "restarting")
		select {
		case <-c.Done():
		case <-time.After(closeLinger + 5*time.Second):
			t.Fatalf("answers=%v: socket not closed long after closeLinger", answers)
		}
		took := time.Since(start)
		if answers && took >= closeLinger {
			t.Errorf("socket closed after %v although the peer answered the close", took)
		}
		if !answers && took < closeLinger {
			t.Errorf("socket closed after %v although the peer did not answer (closeLinger %v)", took, closeLinger)
		}
	}
}

// Closed before Serve (a refused connection), the writer reads the peer's answer itself; a later Serve
// only reports the end.
func TestCloseBeforeServe(t *testing.T) {
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := New(ws, Options{MaxMessageBytes: 1 << 10, OutboundBytes: 1 << 20})
		c.Close(CloseUnauthorized, "go away")
		conns <- c
	}))
	t.Cleanup(srv.Close)
	peer, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.WriteMessage(websocket.TextMessage, []byte(`{"op":"sub"}`))
	if ce := readClose(t, peer); ce.Code != CloseUnauthorized {
		t.Fatalf("closed with %v, want %d", ce, CloseUnauthorized)
	}
	c := <-conns
	ended := make(chan error, 1)
	c.Serve(func([]byte) { t.Error("a frame was handled after Close") }, func(err error) { ended <- err })
	select {
	case <-c.Done():
	case <-time.After(closeLinger):
		t.Fatal("socket not closed although the peer answered the close")
	}
	if err := <-ended; err != ErrClosed {
		t.Fatalf("Serve after the close ended with %v, want ErrClosed", err)
	}
}

// A binary message closes the connection with 1003 and a reason that says what to send instead; what
// comes after it is not handled.
func TestBinaryMessageClosesWith1003(t *testing.T) {
	before := Stats()
	var log frameLog
	opt := Options{MaxMessageBytes: 1 << 10, OutboundBytes: 1 << 20}
	peer := served(t, opt, func(_ *Conn, f []byte) { log.add(f) })
	peer.WriteMessage(websocket.TextMessage, []byte("a"))
	peer.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	peer.WriteMessage(websocket.TextMessage, []byte("b"))
	ce := readClose(t, peer)
	if ce.Code != CloseUnsupported || !strings.Contains(ce.Text, "send JSON text frames") {
		t.Fatalf("closed with %v, want %d saying what to send", ce, CloseUnsupported)
	}
	log.waitFor(t, "a")
	after := Stats()
	if n := after.Closes[CloseUnsupported] - before.Closes[CloseUnsupported]; n != 1 {
		t.Errorf("Stats counted %d closes with %d, want 1", n, CloseUnsupported)
	}
}

// A slow consumer is closed with 4008, but its socket is usually full, so the close frame cannot be
// written: the peer sees the connection end without a code (1006), and Stats counts the close as lost.
// Whichever happens here (a write that was under way may still complete), Stats says what the peer sees.
func TestSlowConsumerCloseIsCounted(t *testing.T) {
	before := Stats()
	c, peer := pair(t, Options{MaxMessageBytes: 1 << 10, OutboundBytes: 256 << 10}, nil)
	frame := []byte(strings.Repeat("z", 32<<10))
	// Fill the socket: a frame at a time, until the writer no longer takes them (it is stuck in a write),
	// then overflow the queue.
	for taken := true; taken; {
		c.Send(frame)
		taken = false
		for end := time.Now().Add(200 * time.Millisecond); !taken && time.Now().Before(end); time.Sleep(time.Millisecond) {
			c.mu.Lock()
			taken = len(c.queue) == 0
			c.mu.Unlock()
		}
	}
	for c.Send(frame) == nil {
	}
	select {
	case <-c.Done():
	case <-time.After(writeWait + closeLinger + 5*time.Second):
		t.Fatal("writer did not stop")
	}
	after := Stats()
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	var err error
	for err == nil {
		_, _, err = peer.ReadMessage()
	}
	t.Logf("the peer, reading at last, got %v", err)
	want := uint64(1) // the peer saw no close code
	if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) && ce.Code == CloseSlowConsumer {
		want = 0
	}
	if n := after.Closes[CloseSlowConsumer] - before.Closes[CloseSlowConsumer]; n != 1 {
		t.Errorf("Stats counted %d closes with %d, want 1", n, CloseSlowConsumer)
	}
	if n := after.Lost[CloseSlowConsumer] - before.Lost[CloseSlowConsumer]; n != want {
		t.Errorf("Stats counted %d lost close frames with %d, want %d (the peer got %v)", n, CloseSlowConsumer, want, err)
	}
}

// Requests that cannot become a WebSocket get an answer in words, not a bare 400.
func TestHTTPRequestsThatAreNoWebSocketAreAnsweredInWords(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(w, r, nil)
		if err == nil {
			ws.Close()
		}
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		method string
		status int
		header string // a header the answer must have, "Name: value"
		says   string
	}{
		{http.MethodPost, http.StatusMethodNotAllowed, "Allow: GET", "POST is not allowed"},
		{http.MethodGet, http.StatusUpgradeRequired, "Upgrade: websocket", "no WebSocket upgrade headers"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+"/so", strings.NewReader(`{"op":"sub"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		name, value, _ := strings.Cut(tc.header, ": ")
		says := string(body)
		if resp.StatusCode != tc.status || resp.Header.Get(name) != value ||
			!strings.Contains(says, "WebSocket endpoint; see docs/PROTOCOL.md") || !strings.Contains(says, tc.says) {
			t.Errorf("%s: %d %q %q, want %d with %q saying %q",
				tc.method, resp.StatusCode, resp.Header, says, tc.status, tc.header, tc.says)
		}
	}
	// A WebSocket client still connects.
	peer, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	peer.Close()
}

// OnClose hears each connection's close once, with the code the peer was sent.
func TestOnCloseHearsTheCode(t *testing.T) {
	codes := make(chan int, 2)
	opt := Options{MaxMessageBytes: 1 << 10, OutboundBytes: 1 << 20, OnClose: func(code int) { codes <- code }}
	peer := served(t, opt, func(c *Conn, _ []byte) { c.Close(CloseAbuse, "bye") })
	peer.WriteMessage(websocket.TextMessage, []byte("a"))
	if ce := readClose(t, peer); ce.Code != CloseAbuse {
		t.Fatalf("closed with %v, want %d", ce, CloseAbuse)
	}
	select {
	case code := <-codes:
		if code != CloseAbuse {
			t.Fatalf("OnClose heard %d, want %d", code, CloseAbuse)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose was not called")
	}
	peer.Close()
	select {
	case code := <-codes:
		t.Fatalf("OnClose called again with %d", code)
	case <-time.After(100 * time.Millisecond):
	}
}
