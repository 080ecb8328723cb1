package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tidwall/gjson"
)

const testHello = `{"op":"hello","session":"s1","user":"alice","limits":{"max_frame_bytes":262144,"max_value_bytes":65536,"max_slots":1000,"max_object_bytes":1048576,"max_changes":100,"max_subscriptions":100,"max_name_bytes":200,"frames_per_second":200,"resync_window":1000}}`

// peer is a scripted stand-in for the server, for this package's own tests: each accepted connection
// gets first (if not empty) and is then handed to the test, which plays the server side by hand.
type peer struct {
	url   string
	conns chan *websocket.Conn
	reqs  chan *http.Request
}

func newPeer(t *testing.T, first string) *peer {
	t.Helper()
	p := &peer{conns: make(chan *websocket.Conn, 1), reqs: make(chan *http.Request, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if first != "" {
			_ = ws.WriteMessage(websocket.TextMessage, []byte(first))
		}
		select {
		case p.reqs <- r:
		default: // only the first request is inspected
		}
		p.conns <- ws
	}))
	t.Cleanup(srv.Close)
	p.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/so"
	return p
}

// dial connects a client and returns it with the server side of the connection.
func (p *peer) dial(t *testing.T, opt Options) (*Conn, *websocket.Conn) {
	t.Helper()
	c, err := Dial(context.Background(), p.url, opt)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ws := <-p.conns
	t.Cleanup(func() { ws.Close() })
	return c, ws
}

// send writes frames as one WebSocket message, as the server coalesces them.
func send(t *testing.T, ws *websocket.Conn, frames ...string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(strings.Join(frames, "\n"))); err != nil {
		t.Fatalf("peer write: %v", err)
	}
}

// recv reads one frame the client sent.
func recv(t *testing.T, ws *websocket.Conn) gjson.Result {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if !gjson.ValidBytes(b) {
		t.Fatalf("client sent invalid JSON: %s", b)
	}
	return gjson.ParseBytes(b)
}

func event(t *testing.T, c *Conn) Event {
	t.Helper()
	select {
	case ev := <-c.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return Event{}
	}
}

// async runs f in a goroutine; the test plays the server meanwhile.
func async[T any](f func() (T, error)) func() (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() { v, err := f(); ch <- result{v, err} }()
	return func() (T, error) { r := <-ch; return r.v, r.err }
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialHello(t *testing.T) {
	// hello and a message in the same WebSocket message: both must be seen.
	msg := `{"op":"message","obj":"room","persistent":false,"handler":"chat","args":["hi"],"from":"bob"}`
	p := newPeer(t, testHello+"\n"+msg)
	c, _ := p.dial(t, Options{Token: "tok en", Header: http.Header{"X-Test": {"1"}}})
	h := c.Hello()
	if h.Session != "s1" || h.User != "alice" || h.Limits.MaxValueBytes != 65536 || h.Limits.ResyncWindow != 1000 || h.Limits.FramesPerSecond != 200 {
		t.Errorf("Hello() = %+v", h)
	}
	r := <-p.reqs
	if got := r.URL.Query().Get("token"); got != "tok en" {
		t.Errorf("token = %q, want %q", got, "tok en")
	}
	if r.Header.Get("X-Test") != "1" {
		t.Error("Options.Header not sent")
	}
	ev := event(t, c)
	if ev.Message == nil || ev.Message.From != "bob" || string(ev.Message.Args) != `["hi"]` || ev.Recv.IsZero() {
		t.Errorf("event = %+v", ev)
	}
}

func TestDialFails(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"code":"unauthorized","message":"token expired"}`))
	}))
	defer refuse.Close()
	_, err := Dial(context.Background(), "ws"+strings.TrimPrefix(refuse.URL, "http"), Options{})
	var se *ServerError
	if !errors.As(err, &se) || se.Code != ErrCodeUnauthorized || !strings.Contains(err.Error(), "401") {
		t.Errorf("refused upgrade: err = %v, want a *ServerError unauthorized mentioning 401", err)
	}

	for name, first := range map[string]string{
		"sync before hello": `{"op":"sync","obj":"a","epoch":"e","version":1,"changes":[]}`,
		"malformed hello":   `{"op":"hello","session":1}`,
	} {
		p := newPeer(t, first)
		if _, err := Dial(context.Background(), p.url, Options{}); err == nil {
			t.Errorf("%s: Dial succeeded", name)
		}
	}

	silent := newPeer(t, "")
	_, err = Dial(context.Background(), silent.url, Options{DialTimeout: 50 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no hello: err = %v, want DeadlineExceeded", err)
	}
}

// closedURL is a WebSocket URL on a loopback port nothing listens on: dialing it is refused at once.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ws://" + addr + "/so"
}

func TestDialAny(t *testing.T) {
	closed := closedURL(t)
	p := newPeer(t, testHello)
	c, err := DialAny(testCtx(t), []string{closed, p.url}, Options{})
	if err != nil {
		t.Fatalf("DialAny: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ws := <-p.conns
	t.Cleanup(func() { ws.Close() })
	if c.URL() != p.url || c.Hello().Session != "s1" {
		t.Errorf("connected to %s (hello %+v), want %s", c.URL(), c.Hello(), p.url)
	}
	// The connection works: it is the server's.
	res := async(func() (struct{}, error) { return struct{}{}, c.Ping(testCtx(t)) })
	send(t, ws, `{"op":"pong","id":"`+recv(t, ws).Get("id").Str+`"}`)
	if _, err := res(); err != nil {
		t.Errorf("Ping: %v", err)
	}

	// The first URL that answers wins: the second one is not dialed.
	second := newPeer(t, testHello)
	c2, err := DialAny(testCtx(t), []string{p.url, second.url}, Options{})
	if err != nil {
		t.Fatalf("DialAny: %v", err)
	}
	t.Cleanup(func() { c2.Close() })
	ws2 := <-p.conns
	t.Cleanup(func() { ws2.Close() })
	select {
	case <-second.conns:
		t.Error("the second URL was dialed although the first answered")
	default:
	}
}

func TestDialAnyFails(t *testing.T) {
	if _, err := DialAny(testCtx(t), nil, Options{}); err == nil {
		t.Error("DialAny with no URLs succeeded")
	}

	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"code":"unauthorized","message":"bad token"}`))
	}))
	defer refuse.Close()
	closed, unauthorized := closedURL(t), "ws"+strings.TrimPrefix(refuse.URL, "http")
	_, err := DialAny(testCtx(t), []string{closed, unauthorized}, Options{})
	var se *ServerError
	if !errors.As(err, &se) || se.Code != ErrCodeUnauthorized {
		t.Errorf("err = %v, want it to wrap the 401's *ServerError", err)
	}
	if err == nil || !strings.Contains(err.Error(), closed) || !strings.Contains(err.Error(), "2 of 2 tried") {
		t.Errorf("err = %v, want every attempt named", err)
	}

	// An ended context stops the attempts: the server after the silent one is not dialed.
	silent, after := newPeer(t, ""), newPeer(t, testHello)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = DialAny(ctx, []string{silent.url, after.url}, Options{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 of 2 tried") {
		t.Errorf("err = %v, want DeadlineExceeded after one attempt", err)
	}
	select {
	case <-after.conns:
		t.Error("dialed on after the context ended")
	default:
	}
	(<-silent.conns).Close()
}

func TestUpdate(t *testing.T) {
	p := newPeer(t, testHello)
	c, ws := p.dial(t, Options{})
	res := async(func() (*Sync, error) {
		return c.Update(testCtx(t), "room/42", true, []Change{
			{Name: "topic", Base: 17, Value: json.RawMessage("{\n\"a\": 1}")},
			{Name: "draft", Base: 17, Delete: true},
			{Name: "n", Base: 17},
		})
	})
	f := recv(t, ws)
	id := f.Get("id").Str
	if f.Get("op").Str != "update" || f.Get("obj").Str != "room/42" || !f.Get("persistent").Bool() || id == "" {
		t.Fatalf("update frame = %s", f.Raw)
	}
	if got := f.Get("changes").Raw; got != `[{"name":"topic","base":17,"value":{"a":1}},{"name":"draft","base":17,"delete":true},{"name":"n","base":17,"value":null}]` {
		t.Errorf("changes = %s", got)
	}
	// The answer comes after an unrelated broadcast and a message, all in one WebSocket message.
	send(t, ws,
		`{"op":"sync","obj":"room/42","persistent":true,"epoch":"e","version":18,"changes":[{"code":"change","name":"x","value":1}]}`,
		`{"op":"message","obj":"room/42","persistent":true,"handler":"h","args":[],"from":"bob"}`,
		``,
		`{"op":"sync","obj":"room/42","persistent":true,"epoch":"e","version":19,"id":"`+id+`","changes":[{"code":"success","name":"topic"},{"code":"reject","name":"draft","value":2,"reason":"conflict"}]}`,
	)
	s, err := res()
	if err != nil || s.Version != 19 || len(s.Changes) != 2 || s.Changes[1].Reason != "conflict" {
		t.Fatalf("Update = %+v, %v", s, err)
	}
	if ev := event(t, c); ev.Sync == nil || ev.Sync.Version != 18 {
		t.Errorf("first event = %+v, want the broadcast sync", ev)
	}
	if ev := event(t, c); ev.Message == nil {
		t.Errorf("second event = %+v, want the message", ev)
	}

	// An error frame with the request's id is the request's error.
	res = async(func() (*Sync, error) {
		return c.UpdateWithID(testCtx(t), "r-1", "room/42", true, []Change{{Name: "a", Value: json.RawMessage(`1`)}})
	})
	recv(t, ws)
	send(t, ws, `{"op":"error","code":"not_subscribed","message":"subscribe first","id":"r-1","obj":"room/42","persistent":true}`)
	var se *ServerError
	if _, err := res(); !errors.As(err, &se) || se.Code != ErrCodeNotSubscribed || se.Obj != "room/42" {
		t.Errorf("Update error = %v, want not_subscribed", err)
	}

	if _, err := c.Update(testCtx(t), "o", false, []Change{{Name: "a", Value: json.RawMessage(`{`)}}); err == nil {
		t.Error("Update with an invalid value succeeded")
	}
	if _, err := c.UpdateWithID(testCtx(t), "", "o", false, []Change{{Name: "a"}}); err == nil {
		t.Error("UpdateWithID with an empty id succeeded")
	}
}

func TestUpdateAbandoned(t *testing.T) {
	// A reply that arrives after its caller gave up is not lost: it goes to Events.
	p := newPeer(t, testHello)
	c, ws := p.dial(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	res := async(func() (*Sync, error) {
		return c.Update(ctx, "o", false, []Change{{Name: "a", Value: json.RawMessage(`1`)}})
	})
	id := recv(t, ws).Get("id").Str
	cancel()
	if _, err := res(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Update after cancel: %v", err)
	}
	send(t, ws, `{"op":"sync","obj":"o","epoch":"e","version":1,"id":"`+id+`","changes":[{"code":"success","name":"a"}]}`)
	if ev := event(t, c); ev.Sync == nil || ev.Sync.ID != id {
		t.Errorf("event = %+v, want the late answer", ev)
	}
}

func TestSubscribe(t *testing.T) {
	p := newPeer(t, testHello)
	c, ws := p.dial(t, Options{})

	res := async(func() (*Sync, error) { return c.Subscribe(testCtx(t), "room", false, 0, "") })
	f := recv(t, ws)
	id := f.Get("id").Str
	if id == "" || f.Get("op").Str != "sub" || f.Get("obj").Str != "room" || f.Get("version").Exists() {
		t.Errorf("sub frame = %s", f.Raw)
	}
	send(t, ws,
		`{"op":"sync","obj":"room","persistent":true,"epoch":"p","version":3,"changes":[]}`, // not the answer
		`{"op":"sync","obj":"room","epoch":"e","version":7,"id":"`+id+`","changes":[{"code":"clear"},{"code":"change","name":"a","value":"x"}]}`,
		`{"op":"sync","obj":"room","epoch":"e","version":8,"changes":[{"code":"delete","name":"a","oldValue":"x"}]}`,
	)
	s, err := res()
	if err != nil || s.Version != 7 || len(s.Changes) != 2 || string(s.Changes[1].Value) != `"x"` {
		t.Fatalf("Subscribe = %+v, %v", s, err)
	}
	for _, want := range []uint64{3, 8} {
		if ev := event(t, c); ev.Sync == nil || ev.Sync.Version != want {
			t.Errorf("event = %+v, want sync version %d", ev, want)
		}
	}

	res = async(func() (*Sync, error) { return c.Subscribe(testCtx(t), "secret", true, 7, "e") })
	f = recv(t, ws)
	if f.Get("version").Int() != 7 || f.Get("epoch").Str != "e" || !f.Get("persistent").Bool() {
		t.Errorf("sub frame = %s", f.Raw)
	}
	send(t, ws, `{"op":"error","code":"forbidden","message":"no read access","id":"`+f.Get("id").Str+`","obj":"secret","persistent":true}`)
	var se *ServerError
	if _, err := res(); !errors.As(err, &se) || se.Code != ErrCodeForbidden {
		t.Errorf("Subscribe error = %v, want forbidden", err)
	}

	if err := c.Unsubscribe("room", false); err != nil {
		t.Fatal(err)
	}
	if f := recv(t, ws); f.Raw != `{"op":"unsub","obj":"room","persistent":false}` {
		t.Errorf("unsub frame = %s", f.Raw)
	}
}

func TestSendAndPing(t *testing.T) {
	p := newPeer(t, testHello)
	c, ws := p.dial(t, Options{})
	id, err := c.Send("room", true, "chat", "alice", 1, json.RawMessage("{\"b\":\n true}"))
	if err != nil {
		t.Fatal(err)
	}
	f := recv(t, ws)
	if f.Get("id").Str != id || f.Get("handler").Str != "chat" || f.Get("args").Raw != `["alice",1,{"b":true}]` {
		t.Errorf("send frame = %s", f.Raw)
	}
	if _, err := c.Send("room", true, "chat"); err != nil {
		t.Fatal(err)
	}
	if f := recv(t, ws); f.Get("args").Raw != `[]` {
		t.Errorf("send without args = %s", f.Raw)
	}
	// A refused send has no waiter: its error is an event.
	send(t, ws, `{"op":"error","code":"rate_limited","message":"slow down","id":"`+id+`"}`)
	if ev := event(t, c); ev.Error == nil || ev.Error.ID != id {
		t.Errorf("event = %+v, want the send's error", ev)
	}

	done := async(func() (struct{}, error) { return struct{}{}, c.Ping(testCtx(t)) })
	f = recv(t, ws)
	send(t, ws, `{"op":"pong"}`, `{"op":"pong","id":"`+f.Get("id").Str+`"}`)
	if _, err := done(); err != nil {
		t.Errorf("Ping: %v", err)
	}

	if err := c.WriteRaw([]byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.ReadMessage(); err != nil || string(b) != "not json" {
		t.Errorf("WriteRaw sent %q, %v", b, err)
	}
}

func TestServerClose(t *testing.T) {
	p := newPeer(t, testHello)
	c, ws := p.dial(t, Options{})
	res := async(func() (*Sync, error) { return c.Update(testCtx(t), "o", false, []Change{{Name: "a"}}) })
	recv(t, ws)
	msg := websocket.FormatCloseMessage(CloseSlowConsumer, "slow consumer")
	if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	var ce *CloseError
	if !errors.As(c.CloseErr(), &ce) || ce.Code != CloseSlowConsumer || ce.Text != "slow consumer" {
		t.Errorf("CloseErr = %v, want code 4008", c.CloseErr())
	}
	if _, err := res(); !errors.Is(err, ErrClosed) || !errors.As(err, &ce) {
		t.Errorf("pending Update = %v, want ErrClosed with the close code", err)
	}
	if _, ok := <-c.Events(); ok {
		t.Error("Events still open after the connection ended")
	}
	if err := c.Ping(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after close = %v, want ErrClosed", err)
	}
}

func TestMalformedFrame(t *testing.T) {
	p := newPeer(t, testHello)
	c, ws := p.dial(t, Options{})
	send(t, ws, `{"op":"sync","obj":"o","epoch":"e","version":-1,"changes":[]}`)
	<-c.Done()
	if err := c.CloseErr(); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("CloseErr = %v, want it to name the bad field", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseProtocolError) {
		t.Errorf("peer saw %v, want close 1002", err)
	}
}

func TestClose(t *testing.T) {
	p := newPeer(t, testHello)
	// A full Events buffer must not keep Close from stopping the reader.
	c, ws := p.dial(t, Options{FrameBuffer: 1})
	for range 3 {
		send(t, ws, `{"op":"message","obj":"o","handler":"h","args":[],"from":"u"}`)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var ce *CloseError
	if !errors.As(c.CloseErr(), &ce) || ce.Code != CloseNormal {
		t.Errorf("CloseErr = %v, want code 1000", c.CloseErr())
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("peer saw %v, want close 1000", err)
	}
	if _, err := c.Send("o", false, "h"); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestRequestIDs(t *testing.T) {
	p := newPeer(t, testHello)
	a, _ := p.dial(t, Options{})
	b, _ := p.dial(t, Options{})
	seen := map[string]bool{}
	for _, c := range []*Conn{a, b, a, b} {
		id := c.newID()
		if seen[id] || len(id) > 64 {
			t.Errorf("id %q repeated or too long", id)
		}
		seen[id] = true
	}
}
