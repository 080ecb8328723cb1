package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/natstest"
	"github.com/rso-server/rso/internal/wire"
)

// The relay on its own: real embedded NATS, real sockets, and a stand-in for the messaging service that
// answers hello and echoes frames, so that what the relay sends on the bus can be checked exactly.

const waitLimit = 10 * time.Second

var (
	quiet      = slog.New(slog.NewTextHandler(io.Discard, nil))
	testSecret = []byte("relay-test-secret")
)

type fixture struct {
	t     *testing.T
	srv   *server.Server
	nc    *nats.Conn
	relay *Server
	http  *httptest.Server
	tcp   string

	mu        sync.Mutex
	envelopes []gjson.Result // frames the relay forwarded
	hellos    []gjson.Result
	byes      []gjson.Result
}

// newFixture runs a relay; serve decides whether the stand-in service answers.
func newFixture(t *testing.T, secret []byte, serve bool, edit func(*Config)) *fixture {
	t.Helper()
	// Cleanups run last first: the relay (registered below) stops before the connection and NATS.
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.ClientURL(), nats.Name("relay-test"))
	var err error
	f := &fixture{t: t, srv: srv, nc: nc}
	if serve {
		f.serveStandIn()
	}
	cfg := Config{NodeID: "n1", Auth: auth.NewVerifier(secret), PresenceGrace: 50 * time.Millisecond, AuthTimeout: 300 * time.Millisecond, Logger: quiet}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if f.relay, err = New(ctx, nc, cfg); err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.relay)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.tcp = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- f.relay.ServeTCP(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		f.relay.Shutdown(ctx)
		f.http.Close()
		if err := <-served; err != ErrServerClosed {
			t.Errorf("ServeTCP returned %v, want ErrServerClosed", err)
		}
	})
	return f
}

// count is how many requests list holds (f.hellos, f.byes, f.envelopes) so far.
func (f *fixture) count(list *[]gjson.Result) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(*list)
}

// serveStandIn answers hello with limits, bye with {}, and every frame with an echo of its envelope plus
// a second frame, so that replies with several frames are covered.
func (f *fixture) serveStandIn() {
	record := func(list *[]gjson.Result, m *nats.Msg) {
		f.mu.Lock()
		*list = append(*list, gjson.ParseBytes(append([]byte(nil), m.Data...)))
		f.mu.Unlock()
	}
	f.nc.Subscribe(chatbus.SubjHello, func(m *nats.Msg) {
		record(&f.hellos, m)
		m.Respond([]byte(`{"limits":{"max_message_bytes":123}}`))
	})
	f.nc.Subscribe(chatbus.SubjBye, func(m *nats.Msg) {
		record(&f.byes, m)
		m.Respond([]byte(`{}`))
	})
	f.nc.Subscribe(chatbus.SubjFrame, func(m *nats.Msg) {
		record(&f.envelopes, m)
		env := gjson.ParseBytes(m.Data)
		id := env.Get("frame.id").Str
		switch env.Get("frame.op").Str {
		case "quiet":
			m.Respond(nil)
			return
		case "refuse": // the service refusing the frame, flagged as such
			m.RespondMsg(chatbus.FrameReply(errorFrame(wire.CodeNotFound, "refused by the stand-in", id), true))
			return
		case "errorlike": // an answer that merely begins like an error frame is no refusal
			m.Respond([]byte(`{"op":"error-like","id":"` + id + `"}`))
			return
		case "invalid": // a service (or anyone on NATS) answering with bytes that are not UTF-8
			m.Respond([]byte("{\"op\":\"invalid\",\"id\":\"" + id + "\",\"text\":\"caf\xe9\xff\"}"))
			return
		}
		echo, _ := json.Marshal(map[string]any{"op": "echo", "id": id, "env": json.RawMessage(m.Data)})
		m.Respond(append(append(echo, '\n'), `{"op":"second"}`...))
	})
	f.nc.Flush()
}

func (f *fixture) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(f.http.URL, "http") + "/relay?" + query
}

// peer is a raw test client; frames are read in order.
type peer struct {
	t      *testing.T
	frames chan gjson.Result
	closed chan int // the close code
	write  func(string)
	close  func()
}

func dialWS(t *testing.T, url string, header http.Header) (*peer, *http.Response, error) {
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		return nil, resp, err
	}
	p := &peer{t: t, frames: make(chan gjson.Result, 1000), closed: make(chan int, 1)}
	p.write = func(s string) { ws.WriteMessage(websocket.TextMessage, []byte(s)) }
	p.close = func() { ws.Close() }
	go func() {
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				code := 0
				if ce, ok := err.(*websocket.CloseError); ok {
					code = ce.Code
				}
				p.closed <- code
				return
			}
			for _, s := range strings.Split(string(msg), "\n") {
				p.frames <- gjson.Parse(s)
			}
		}
	}()
	t.Cleanup(p.close)
	return p, resp, nil
}

func dialTCP(t *testing.T, addr string) *peer {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, frames: make(chan gjson.Result, 1000), closed: make(chan int, 1)}
	p.write = func(s string) { conn.Write([]byte(s + "\n")) }
	p.close = func() { conn.Close() }
	go func() {
		r := bufio.NewReader(conn)
		code := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				conn.Close()
				p.closed <- code
				return
			}
			f := gjson.Parse(line)
			if f.Get("op").Str == "close" {
				code = int(f.Get("code").Int())
			}
			p.frames <- f
		}
	}()
	t.Cleanup(p.close)
	return p
}

// next returns the next frame; every frame the server writes must be valid UTF-8.
func (p *peer) next() gjson.Result {
	p.t.Helper()
	select {
	case f := <-p.frames:
		if !utf8.ValidString(f.Raw) {
			p.t.Fatalf("frame is not valid UTF-8: %q", f.Raw)
		}
		return f
	case <-time.After(waitLimit):
		p.t.Fatal("no frame in time")
	}
	return gjson.Result{}
}

func (p *peer) nextOp(op string) gjson.Result {
	p.t.Helper()
	f := p.next()
	if f.Get("op").Str != op {
		p.t.Fatalf("want %s, got %s", op, f.Raw)
	}
	return f
}

func (p *peer) closeCode() int {
	p.t.Helper()
	select {
	case c := <-p.closed:
		return c
	case <-time.After(waitLimit):
		p.t.Fatal("not closed in time")
	}
	return 0
}

func sign(t *testing.T, claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWebSocketAuth(t *testing.T) {
	f := newFixture(t, testSecret, true, nil)
	token := sign(t, jwt.MapClaims{"sub": "alice"})

	_, resp, err := dialWS(t, f.wsURL(""), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %v %v", resp, err)
	}
	var body map[string]string
	json.NewDecoder(resp.Body).Decode(&body)
	if body["code"] != "unauthorized" || body["message"] == "" {
		t.Fatalf("401 body %v", body)
	}
	if _, resp, _ := dialWS(t, f.wsURL("token="+token+"&device=bad%20device"), nil); resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad device: %v", resp)
	}

	p, _, err := dialWS(t, f.wsURL("token="+token+"&device=phone"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := p.nextOp("hello")
	if h.Get("user").Str != "alice" || h.Get("device").Str != "phone" || h.Get("limits.max_message_bytes").Int() != 123 ||
		h.Get("limits.max_frame_bytes").Int() != int64(DefaultLimits().MaxFrameBytes) || !strings.HasPrefix(h.Get("session").Str, f.relay.NodeID()+"-") {
		t.Fatalf("hello %s", h.Raw)
	}
	p2, _, err := dialWS(t, f.wsURL(""), http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	if h := p2.nextOp("hello"); !strings.HasPrefix(h.Get("device").Str, "d-") {
		t.Fatalf("a connection without a device id gets its own: %s", h.Raw)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.hellos) != 2 || f.hellos[0].Get("user").Str != "alice" || f.hellos[0].Get("node").Str != f.relay.NodeID() || f.hellos[0].Get("conn").Str != h.Get("session").Str {
		t.Fatalf("hello requests %v", f.hellos)
	}
}

func TestTCPAuth(t *testing.T) {
	f := newFixture(t, testSecret, true, nil)
	cases := []struct {
		name, first, code string
		close             int
	}{
		{"not auth", `{"op":"ping"}`, "unauthorized", 4001},
		{"not json", `hello`, "bad_json", 4001},
		{"not utf-8", "{\"op\":\"auth\",\"token\":\"caf\xe9\"}", "bad_json", 4001},
		{"no token", `{"op":"auth"}`, "unauthorized", 4001},
		{"bad token", `{"op":"auth","token":"x.y.z"}`, "unauthorized", 4001},
		{"expired", `{"op":"auth","token":"` + sign(t, jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Minute).Unix()}) + `"}`, "token_expired", 4003},
		{"bad device", `{"op":"auth","token":"` + sign(t, jwt.MapClaims{"sub": "a"}) + `","device":"a b"}`, "bad_frame", 4001},
	}
	for _, tc := range cases {
		p := dialTCP(t, f.tcp)
		p.write(tc.first)
		if e := p.nextOp("error"); e.Get("code").Str != tc.code || strings.HasPrefix(e.Get("message").Str, tc.code) {
			t.Errorf("%s: %s (want code %s and a message that says what to fix)", tc.name, e.Raw, tc.code)
		}
		if c := p.nextOp("close"); c.Get("code").Int() != int64(tc.close) {
			t.Errorf("%s: %s", tc.name, c.Raw)
		}
		if code := p.closeCode(); code != tc.close {
			t.Errorf("%s: closed with %d", tc.name, code)
		}
	}
	// Silence: closed after AuthTimeout.
	p := dialTCP(t, f.tcp)
	if code := p.closeCode(); code != 4001 {
		t.Fatalf("silent client closed with %d", code)
	}
	// Data without a newline does not keep an unauthenticated connection open past AuthTimeout.
	raw, err := net.Dial("tcp", f.tcp)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, raw); close(closed) }()
	chunk := bytes.Repeat([]byte("x"), 8<<10) // fills the 16 KiB read buffer well within AuthTimeout
trickle:
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); {
		select {
		case <-closed:
			break trickle
		case <-time.After(50 * time.Millisecond):
			raw.Write(chunk)
		}
	}
	select {
	case <-closed:
	default:
		t.Fatal("a client trickling bytes without a newline was never closed before auth")
	}
	raw.Close()
	// A valid token signs in; the protocol is then the WebSocket's.
	p = dialTCP(t, f.tcp)
	p.write(`{"op":"auth","token":"` + sign(t, jwt.MapClaims{"sub": "bob"}) + `","device":"cli"}`)
	if h := p.nextOp("hello"); h.Get("user").Str != "bob" || h.Get("device").Str != "cli" {
		t.Fatalf("hello %s", h.Raw)
	}
	p.write(`{"op":"ping","id":"p"}`)
	if pong := p.nextOp("pong"); pong.Get("id").Str != "p" {
		t.Fatalf("pong %s", pong.Raw)
	}
	p.write(`{"op":"auth","token":"x"}`)
	p.nextOp("error")
}

// The envelope carries who sent the frame; the answer's frames reach the client in order.
func TestForwarding(t *testing.T) {
	f := newFixture(t, nil, true, func(c *Config) { c.Limits.MaxFrameBytes = 1000 })
	for _, dial := range []func() *peer{
		func() *peer { p, _, _ := dialWS(t, f.wsURL("user=alice&device=web"), nil); return p },
		func() *peer { p := dialTCP(t, f.tcp); p.write(`{"op":"auth","user":"alice","device":"web"}`); return p },
	} {
		p := dial()
		h := p.nextOp("hello")
		p.write(`{"op":"send","id":"m1","to":"bob","body":{"text":"hi"}}`)
		echo := p.nextOp("echo")
		env := echo.Get("env")
		if echo.Get("id").Str != "m1" || env.Get("user").Str != "alice" || env.Get("device").Str != "web" ||
			env.Get("conn").Str != h.Get("session").Str || env.Get("node").Str != f.relay.NodeID() ||
			env.Get("frame").Raw != `{"op":"send","id":"m1","to":"bob","body":{"text":"hi"}}` {
			t.Fatalf("envelope %s", echo.Raw)
		}
		p.nextOp("second")
		// An answer with nothing in it writes nothing; an oversized frame is refused and costs nothing else.
		p.write(`{"op":"quiet"}`)
		p.write(`{"op":"send","id":"big","body":"` + strings.Repeat("x", 1000) + `"}`)
		if e := p.nextOp("error"); e.Get("code").Str != "frame_too_large" {
			t.Fatalf("oversized: %s", e.Raw)
		}
		p.write(`{"op":"ping","id":"after"}`)
		if pong := p.nextOp("pong"); pong.Get("id").Str != "after" {
			t.Fatalf("after: %s", pong.Raw)
		}
	}
}

// Frames sent to a user reach each of its connections, except the one named, or only the device named.
func TestDelivery(t *testing.T) {
	f := newFixture(t, nil, true, nil)
	phone, _, _ := dialWS(t, f.wsURL("user=alice&device=phone"), nil)
	laptop := dialTCP(t, f.tcp)
	laptop.write(`{"op":"auth","user":"alice","device":"laptop"}`)
	ph := phone.nextOp("hello")
	laptop.nextOp("hello")
	publish := func(data string, hdr map[string]string) {
		m := &nats.Msg{Subject: chatbus.SubjUserPrefix + chatbus.UserToken("alice"), Data: []byte(data), Header: nats.Header{}}
		for k, v := range hdr {
			m.Header.Set(k, v)
		}
		if err := f.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	publish(`{"op":"x","n":1}`, nil)
	publish(`{"op":"x","n":2}`, map[string]string{chatbus.HdrExceptConn: ph.Get("session").Str})
	publish(`{"op":"x","n":3}`, map[string]string{chatbus.HdrDevice: "phone"})
	publish(`{"op":"x","n":4}`+"\n"+`{"op":"x","n":5}`, nil)
	for _, want := range []struct {
		p *peer
		n []int64
	}{{phone, []int64{1, 3, 4, 5}}, {laptop, []int64{1, 2, 4, 5}}} {
		for _, n := range want.n {
			if fr := want.p.nextOp("x"); fr.Get("n").Int() != n {
				t.Fatalf("got %s, want n=%d", fr.Raw, n)
			}
		}
	}
}

// Without a messaging service a connection is refused with unavailable and 1012 (reconnect later).
func TestNoService(t *testing.T) {
	f := newFixture(t, nil, false, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	p, _, err := dialWS(t, f.wsURL("user=alice"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := p.nextOp("error"); e.Get("code").Str != "unavailable" {
		t.Fatalf("error %s", e.Raw)
	}
	if code := p.closeCode(); code != 1012 {
		t.Fatalf("closed with %d", code)
	}
}

// The last connection's end is reported after the grace period, once; a new connection in between
// cancels it.
func TestByeAfterGrace(t *testing.T) {
	f := newFixture(t, nil, true, func(c *Config) { c.PresenceGrace = 100 * time.Millisecond })
	p, _, _ := dialWS(t, f.wsURL("user=alice"), nil)
	p.nextOp("hello")
	p.close()
	waitFor(t, "the bye", func() bool { return f.count(&f.byes) == 1 })
	f.mu.Lock()
	bye := f.byes[0]
	f.mu.Unlock()
	if bye.Get("user").Str != "alice" || bye.Get("node").Str != f.relay.NodeID() {
		t.Fatalf("bye %s", bye.Raw)
	}
}

// Shutdown closes clients with 1012 and removes the node's key.
func TestShutdown(t *testing.T) {
	f := newFixture(t, nil, true, nil)
	ws, _, _ := dialWS(t, f.wsURL("user=a"), nil)
	ws.nextOp("hello")
	tcp := dialTCP(t, f.tcp)
	tcp.write(`{"op":"auth","user":"b"}`)
	tcp.nextOp("hello")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := f.relay.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := ws.closeCode(); code != 1012 {
		t.Fatalf("ws closed with %d", code)
	}
	if code := tcp.closeCode(); code != 1012 {
		t.Fatalf("tcp closed with %d", code)
	}
	if _, err := f.relay.nodes.Get(ctx, f.relay.NodeID()); err == nil {
		t.Fatal("node key still there after shutdown")
	}
	f.relay.Shutdown(ctx) // idempotent
}

// After a NATS reconnect every client is told to sync, and the node's users are announced again.
func TestAfterReconnect(t *testing.T) {
	f := newFixture(t, nil, true, nil)
	p, _, _ := dialWS(t, f.wsURL("user=alice"), nil)
	p.nextOp("hello")
	id, err := f.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.DisconnectClientByID(id); err != nil { // the connection drops; nats.go reconnects
		t.Fatal(err)
	}
	p.nextOp("resync")
	waitFor(t, "2 hellos", func() bool { return f.count(&f.hellos) == 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.hellos[1]; h.Get("user").Str != "alice" || h.Get("conn").Exists() {
		t.Fatalf("re-announcement %s", h.Raw)
	}
}

// A grace timer that fired while a new connection was attaching must not end the grace period that the
// new connection's own end starts: the bye comes a full grace period after the last connection is gone.
// Without the generation check the first timer's expire (held back here by the user's presence lock)
// finds no connection and sends the bye at once.
func TestGraceTimerFiredDuringAttach(t *testing.T) {
	const grace = 150 * time.Millisecond
	f := newFixture(t, nil, true, func(c *Config) { c.PresenceGrace = grace })
	s := f.relay
	var started, done atomic.Int32
	s.expireHook = func(end bool) {
		if end {
			done.Add(1)
		} else {
			started.Add(1)
		}
	}
	ident := &auth.Identity{User: "alice"}
	c1 := s.newConn(nil, ident, "d1")
	if err := s.attach(c1); err != nil {
		t.Fatal(err)
	}
	unlock := s.presence.Lock("alice") // holds back the first expire once its timer fires
	s.detach(c1)
	waitFor(t, "the first timer to fire", func() bool { return started.Load() == 1 }) // its expire waits for the lock
	c2 := s.newConn(nil, ident, "d2")
	if err := s.attach(c2); err != nil { // too late to stop the first timer
		unlock()
		t.Fatal(err)
	}
	start := time.Now()
	s.detach(c2) // a second grace period starts
	unlock()
	waitFor(t, "the bye", func() bool { return f.count(&f.byes) > 0 })
	if d := time.Since(start); d < grace {
		t.Fatalf("bye %v after the last connection ended, before the grace period (%v) was over", d, grace)
	}
	waitFor(t, "both expires to end", func() bool { return done.Load() == 2 }) // a second bye would come from one
	f.mu.Lock()
	n := len(f.byes)
	f.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d byes, want 1", n)
	}
}

// The service's refusals count toward the client's budget of refused frames, as the relay's own do: past
// it the client is closed with 4009. Only replies the service flags as refusals count.
func TestServiceRefusalsCountTowardAbuse(t *testing.T) {
	f := newFixture(t, nil, true, func(c *Config) { c.Limits.FramesPerSecond = 1000 })
	p, _, _ := dialWS(t, f.wsURL("user=alice"), nil)
	p.nextOp("hello")
	for i := range 2 * errorBudget {
		p.write(fmt.Sprintf(`{"op":"errorlike","id":"e%d"}`, i))
		if got := p.nextOp("error-like").Get("id").Str; got != fmt.Sprintf("e%d", i) {
			t.Fatalf("answer to e%d has id %q", i, got)
		}
	}
	for i := range errorBudget + 1 { // the last one is over the budget
		p.write(fmt.Sprintf(`{"op":"refuse","id":"r%d"}`, i))
		if f := p.nextOp("error"); f.Get("code").Str != wire.CodeNotFound {
			t.Fatalf("refusal r%d answered %s", i, f.Raw)
		}
	}
	if code := p.closeCode(); code != closeAbuse {
		t.Fatalf("closed with %d, want %d", code, closeAbuse)
	}
}

// Refused tokens and abuse closes are logged for the operator, with the remote address (rate-limited by
// internal/ratelog, tested there and in sharedobject).
func TestAlarmsAreLogged(t *testing.T) {
	var mu sync.Mutex
	var logs strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	f := newFixture(t, testSecret, true, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(w, nil)) })
	if _, resp, err := dialWS(t, f.wsURL("token=not-a-token"), nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a bad token: %v", err)
	}
	p, _, err := dialWS(t, f.wsURL("token="+sign(t, jwt.MapClaims{"sub": "mallory"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.nextOp("hello")
	for range 2 * errorBudget {
		p.write(`nonsense`)
	}
	if code := p.closeCode(); code != closeAbuse {
		t.Fatalf("closed with %d", code)
	}
	waitFor(t, "both lines", func() bool {
		mu.Lock()
		defer mu.Unlock()
		s := logs.String()
		return strings.Contains(s, `msg="connection refused: bad token" endpoint=relay remote=127.0.0.1:`) &&
			strings.Contains(s, `msg="connection closed: abuse" endpoint=relay code=4009 user=mallory remote=127.0.0.1:`)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
