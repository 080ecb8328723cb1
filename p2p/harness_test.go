package p2p_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/natstest"
	"github.com/rso-server/rso/p2p/friends"
	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
)

// End-to-end tests: real embedded NATS with JetStream, real relay nodes (each with its own NATS connection,
// an HTTP server for /relay and a TCP listener), messaging and friends service instances, and clients on
// real sockets. (Only the tests import relay: the packages themselves meet on NATS subjects.)

const waitLimit = 10 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fast timings for tests: presence grace, heartbeats and sweeps in the 100 ms range.
const (
	testGrace     = 150 * time.Millisecond
	testHeartbeat = 100 * time.Millisecond
	testNodeTTL   = 400 * time.Millisecond
	testSweep     = 100 * time.Millisecond
)

type cluster struct {
	t        testing.TB
	dir      string
	srv      *server.Server
	nodes    []*node
	services []*messaging.Service
	friends  []*friends.Service
	conns    []*nats.Conn
	p2pCfg   messaging.Config
	relayCfg relay.Config
}

type node struct {
	relay   *relay.Server
	nc      *nats.Conn
	http    *httptest.Server
	tcp     net.Listener
	wsURL   string
	tcpAddr string
	served  chan struct{}
}

// newCluster starts NATS (in dir; a temporary one when empty), one friends and one messaging service
// instance per relay node, and the relay nodes. edit may change the configs before anything starts.
func newCluster(t testing.TB, nodes int, dir string, edit func(*messaging.Config, *relay.Config)) *cluster {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	c := &cluster{t: t, dir: dir}
	c.p2pCfg = messaging.Config{SweepInterval: testSweep, Logger: quiet}
	c.relayCfg = relay.Config{Auth: auth.NewVerifier(nil), PresenceGrace: testGrace, Heartbeat: testHeartbeat, NodeTTL: testNodeTTL, Logger: quiet}
	if edit != nil {
		edit(&c.p2pCfg, &c.relayCfg)
	}
	c.start(nodes)
	return c
}

func (c *cluster) start(nodes int) {
	t := c.t
	t.Helper()
	c.srv = natstest.Start(t, natstest.Dir(c.dir))
	// Registered after Start and every Connect of this start, so it runs before they are undone: relays
	// and services stop while NATS is still there. (Also after a restart: each start registers its own.)
	defer t.Cleanup(c.stop)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for i := range nodes {
		fnc := c.connect(fmt.Sprintf("friends-%d", i))
		// The friends service exports on the messaging service's registry (tests pass one for both).
		f, err := friends.New(ctx, fnc, friends.Config{Logger: quiet, Registerer: c.p2pCfg.Registerer})
		if err != nil {
			t.Fatalf("NewFriends: %v", err)
		}
		c.friends = append(c.friends, f)
		snc := c.connect(fmt.Sprintf("p2p-%d", i))
		s, err := messaging.New(ctx, snc, c.p2pCfg)
		if err != nil {
			t.Fatalf("NewService: %v", err)
		}
		c.services = append(c.services, s)
	}
	for i := range nodes {
		c.nodes = append(c.nodes, c.startNode(fmt.Sprintf("node%d", i+1)))
	}
}

func (c *cluster) connect(name string) *nats.Conn {
	c.t.Helper()
	nc := natstest.Connect(c.t, c.srv.ClientURL(), nats.Name(name))
	c.conns = append(c.conns, nc)
	return nc
}

func (c *cluster) startNode(id string) *node {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	nc := c.connect("relay-" + id)
	cfg := c.relayCfg
	cfg.NodeID = id
	r, err := relay.New(ctx, nc, cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{relay: r, nc: nc, http: httptest.NewServer(r), tcp: ln, tcpAddr: ln.Addr().String(), served: make(chan struct{})}
	n.wsURL = "ws" + strings.TrimPrefix(n.http.URL, "http")
	go func() {
		defer close(n.served)
		r.ServeTCP(ln)
	}()
	return n
}

// stop shuts everything down cleanly, in the order cmd/rso does: relays, services, NATS.
func (c *cluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for _, n := range c.nodes {
		n.relay.Shutdown(ctx)
		n.http.Close()
		<-n.served
	}
	for _, s := range c.services {
		s.Shutdown(ctx)
	}
	for _, f := range c.friends {
		f.Shutdown(ctx)
	}
	for _, nc := range c.conns {
		nc.Close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
	c.nodes, c.services, c.friends, c.conns, c.srv = nil, nil, nil, nil, nil
}

// friendsStats sums the friends service instances' counters.
func (c *cluster) friendsStats() friends.Stats {
	var s friends.Stats
	for _, f := range c.friends {
		st := f.Stats()
		s.Gets += st.Gets
		s.Updates += st.Updates
	}
	return s
}

// client is a test client on a WebSocket or a TCP socket. Every frame it receives is kept until a test
// takes it, so waiting for one frame never loses another.
type client struct {
	t      testing.TB
	user   string
	write  func([]byte) error
	closer io.Closer

	mu     sync.Mutex
	frames []gjson.Result
	notify chan struct{}
	done   chan struct{}
	err    error
	closeC int // close code, when the server closed
	nextID int
	idBase string // ids must be unique across the user's sessions (a resend is recognised by its id)
	hello  gjson.Result
}

func newClient(t testing.TB, user string) *client {
	return &client{t: t, user: user, idBase: rand.Text()[:6], notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// dialWS connects user (anonymous mode) to a node's /relay WebSocket and waits for hello.
func dialWS(t testing.TB, n *node, user, device string) *client {
	t.Helper()
	q := url.Values{"user": {user}}
	if device != "" {
		q.Set("device", device)
	}
	ws, _, err := websocket.DefaultDialer.Dial(n.wsURL+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", n.wsURL, user, err)
	}
	c := newClient(t, user)
	var wmu sync.Mutex
	c.write = func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return ws.WriteMessage(websocket.TextMessage, b)
	}
	c.closer = ws
	go func() {
		defer close(c.done)
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				c.mu.Lock()
				if errorsAs(err, &ce) {
					c.closeC = ce.Code
				}
				c.err = err
				c.mu.Unlock()
				c.wake()
				return
			}
			for _, f := range strings.Split(string(msg), "\n") {
				c.add(f)
			}
		}
	}()
	t.Cleanup(func() { ws.Close() })
	c.hello = c.expect(isOp("hello"))
	return c
}

// dialTCP connects user to a node's TCP listener, signs in with the auth frame and waits for hello.
func dialTCP(t testing.TB, n *node, user, device string) *client {
	t.Helper()
	c := rawTCP(t, n)
	c.user = user
	auth := map[string]any{"op": "auth", "user": user}
	if device != "" {
		auth["device"] = device
	}
	c.sendJSON(auth)
	c.hello = c.expect(isOp("hello"))
	return c
}

// rawTCP connects to a node's TCP listener without signing in.
func rawTCP(t testing.TB, n *node) *client {
	t.Helper()
	conn, err := net.Dial("tcp", n.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, "")
	var wmu sync.Mutex
	c.write = func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := conn.Write(append(b, '\n'))
		return err
	}
	c.closer = conn
	go func() {
		defer close(c.done)
		r := bufio.NewReaderSize(conn, 1<<20)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				conn.Close() // as a real client does at EOF
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				c.wake()
				return
			}
			f := gjson.Parse(line)
			if f.Get("op").Str == "close" {
				c.mu.Lock()
				c.closeC = int(f.Get("code").Int())
				c.mu.Unlock()
			}
			c.add(line)
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *client) add(f string) {
	f = strings.TrimSpace(f)
	if f == "" {
		return
	}
	if !gjson.Valid(f) || !utf8.ValidString(f) { // a browser fails its socket on a frame that is not UTF-8
		c.t.Errorf("%s got invalid JSON or UTF-8: %q", c.user, f)
		return
	}
	c.mu.Lock()
	c.frames = append(c.frames, gjson.Parse(f))
	c.mu.Unlock()
	c.wake()
}

func (c *client) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *client) sendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.write([]byte(s)); err != nil {
		c.t.Fatalf("%s write: %v", c.user, err)
	}
}

// call sends a frame with a fresh id and returns the answer carrying that id (an error frame included).
func (c *client) call(frame map[string]any) gjson.Result {
	c.t.Helper()
	c.mu.Lock()
	c.nextID++
	id := fmt.Sprintf("%s-%s-%d", c.user, c.idBase, c.nextID)
	c.mu.Unlock()
	if _, ok := frame["id"]; !ok {
		frame["id"] = id
	} else {
		id = frame["id"].(string)
	}
	c.sendJSON(frame)
	return c.expect(func(f gjson.Result) bool { return f.Get("id").Str == id && f.Get("op").Str != "message" })
}

// expect returns (and removes) the first frame, received or still to come, for which match holds.
func (c *client) expect(match func(gjson.Result) bool) gjson.Result {
	c.t.Helper()
	if f, ok := c.waitFrame(match, waitLimit); ok {
		return f
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Fatalf("%s: no matching frame in time; have %v (err %v)", c.user, c.frames, c.err)
	return gjson.Result{}
}

// expectNext returns (and removes) the next frame, received or still to come, and fails unless match holds
// for it: for tests that claim an order, which expect (the first match anywhere) does not check.
func (c *client) expectNext(what string, match func(gjson.Result) bool) gjson.Result {
	c.t.Helper()
	f, ok := c.waitFrame(func(gjson.Result) bool { return true }, waitLimit)
	if !ok {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.t.Fatalf("%s: no frame in time, want %s (err %v)", c.user, what, c.err)
	}
	if !match(f) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.t.Fatalf("%s: next frame is %s, want %s; after it: %v", c.user, f.Raw, what, c.frames)
	}
	return f
}

func (c *client) waitFrame(match func(gjson.Result) bool, limit time.Duration) (gjson.Result, bool) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i, f := range c.frames {
			if match(f) {
				c.frames = append(c.frames[:i], c.frames[i+1:]...)
				c.mu.Unlock()
				return f, true
			}
		}
		closed := c.err != nil
		c.mu.Unlock()
		if closed {
			return gjson.Result{}, false
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			return gjson.Result{}, false
		}
	}
}

// none asserts that no frame matching match has arrived by the time a ping round trip completes
// (frames for a connection are written in order, so everything sent earlier is in by then).
func (c *client) none(what string, match func(gjson.Result) bool) {
	c.t.Helper()
	c.ping()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		if match(f) {
			c.t.Fatalf("%s: unexpected %s: %s", c.user, what, f.Raw)
		}
	}
}

func (c *client) ping() {
	c.t.Helper()
	if p := c.call(map[string]any{"op": "ping"}); p.Get("op").Str != "pong" {
		c.t.Fatalf("ping: %s", p.Raw)
	}
}

// closeCode waits for the server to close the connection and returns its close code.
func (c *client) closeCode() int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitLimit):
		c.t.Fatalf("%s: connection not closed in time", c.user)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeC
}

func (c *client) close() { c.closer.Close() }

func (c *client) send(to, text string) gjson.Result {
	c.t.Helper()
	return c.call(map[string]any{"op": "send", "to": to, "body": map[string]string{"text": text}})
}

func (c *client) mustSend(to, text string) uint64 {
	c.t.Helper()
	a := c.send(to, text)
	if a.Get("op").Str != "sent" {
		c.t.Fatalf("%s → %s %q: %s", c.user, to, text, a.Raw)
	}
	return a.Get("seq").Uint()
}

// befriend makes a and b friends (a asks, b accepts).
func befriend(t testing.TB, a, b *client) {
	t.Helper()
	if r := a.call(map[string]any{"op": "friend", "action": "request", "user": b.user}); r.Get("op").Str != "friends" {
		t.Fatalf("request: %s", r.Raw)
	}
	if r := b.call(map[string]any{"op": "friend", "action": "accept", "user": a.user}); r.Get("op").Str != "friends" || !contains(r.Get("friends"), a.user) {
		t.Fatalf("accept: %s", r.Raw)
	}
}

func contains(list gjson.Result, s string) bool {
	for _, v := range list.Array() {
		if v.Str == s {
			return true
		}
	}
	return false
}

func isOp(op string) func(gjson.Result) bool {
	return func(f gjson.Result) bool { return f.Get("op").Str == op }
}

func isMessage(from string, seq uint64) func(gjson.Result) bool {
	return func(f gjson.Result) bool {
		return f.Get("op").Str == "message" && f.Get("from").Str == from && f.Get("seq").Uint() == seq
	}
}

func isPresence(user, status string) func(gjson.Result) bool {
	return func(f gjson.Result) bool {
		return f.Get("op").Str == "presence" && f.Get("user").Str == user && f.Get("status").Str == status
	}
}

func isError(code string) func(gjson.Result) bool {
	return func(f gjson.Result) bool { return f.Get("op").Str == "error" && f.Get("code").Str == code }
}

func wantError(t testing.TB, got gjson.Result, code string) {
	t.Helper()
	if got.Get("op").Str != "error" || got.Get("code").Str != code {
		t.Fatalf("want error %s, got %s", code, got.Raw)
	}
	if got.Get("message").Str == "" {
		t.Fatalf("error %s without a message", code)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func jetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
