package sharedobject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/gorilla/websocket"
	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/internal/wsconn"
	"github.com/rso-server/rso/sharedobject/internal/model"
)

const (
	closeRestart = wsconn.CloseRestart
	// errorBudget is how many refused frames a client may send in a burst (refilled at one per second)
	// before it counts as abuse and is disconnected with 4009.
	errorBudget = 50
	// loadTimeout bounds how long a sub may wait for an object's log to be read.
	loadTimeout = 10 * time.Second
)

// session is one client connection to /so.
type session struct {
	node   *Node
	conn   *wsconn.Conn
	ident  *auth.Identity
	origin string // node id + session id: routes a commit's answer back to this connection
	rate   *rate.Limiter
	errs   *rate.Limiter // created at the first refused frame (most connections never have one)

	mu   sync.Mutex
	subs subList
}

// subList is a session's subscriptions. Most connections have one or a few, and a slice of them costs a
// fraction of a map's memory per connection; lookups are a short scan (max_subscriptions bounds it).
type subList []subEntry

type subEntry struct {
	key objKey
	o   *object
}

func (l subList) get(key objKey) *object {
	for i := range l {
		if l[i].key == key {
			return l[i].o
		}
	}
	return nil
}

func (l *subList) del(key objKey) *object {
	for i, e := range *l {
		if e.key == key {
			last := len(*l) - 1
			(*l)[i] = (*l)[last]
			(*l)[last] = subEntry{}
			*l = (*l)[:last]
			return e.o
		}
	}
	return nil
}

// ServeHTTP upgrades a request to the shared-object WebSocket (mounted at /so).
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !wsconn.CheckUpgrade(w, r) { // before the token: a browser opening the URL learns what it is
		return
	}
	if n.closing.Load() {
		http.Error(w, "server is shutting down; reconnect to another node", http.StatusServiceUnavailable)
		return
	}
	ident, err := n.cfg.Auth.FromRequest(r)
	if err != nil {
		code, msg := wire.CodeUnauthorized, err.Error()
		var ae *auth.Error
		if errors.As(err, &ae) {
			code, msg = ae.Code, ae.Message
		}
		n.alarms.Warn("token", "connection refused: bad token", "endpoint", "so", "remote", r.RemoteAddr, "code", code, "why", msg)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
		return
	}
	ws, err := wsconn.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	lim := &n.cfg.Limits
	sid := randomID(9)
	onClose := func(code int) {
		n.met.ep.Closed(code)
		if why := alarmingClose(code); why != "" {
			n.alarms.Warn(why, "connection closed: "+why, "endpoint", "so", "session", sid, "user", ident.User, "remote", r.RemoteAddr, "code", code)
		}
	}
	s := &session{
		node:   n,
		conn:   wsconn.New(ws, wsconn.Options{MaxMessageBytes: 16 * lim.MaxFrameBytes, OutboundBytes: lim.OutboundBytes, OnClose: onClose}),
		ident:  ident,
		origin: n.id + "/" + sid,
		rate:   rate.NewLimiter(rate.Limit(lim.FramesPerSecond), int(2*lim.FramesPerSecond)+1),
	}
	n.met.ep.Opened.Inc()
	n.met.ep.Connections.Inc()
	if n.beforeRegister != nil {
		n.beforeRegister()
	}
	n.mu.Lock()
	closing := n.closing.Load() // Shutdown sets it under n.mu: either it sees this session or we see closing
	if !closing {
		n.sessions[s] = struct{}{}
	}
	n.mu.Unlock()
	if closing {
		s.close(closeRestart, "server restarting; reconnect")
		s.conn.Serve(func([]byte) {}, func(error) { n.met.ep.Connections.Dec() })
		return
	}
	s.send(n.helloFrame(sid, ident.User))
	var expiry *time.Timer
	if exp := ident.Expires; !exp.IsZero() {
		expiry = time.AfterFunc(time.Until(exp), func() { s.close(wsconn.CloseTokenExpired, "token expired; reconnect with a new token") })
	}
	// The handler returns and the connection is read on goroutines of wsconn's: net/http then lets go of
	// the request and its 4 KB read and write buffers (kept alive while a hijacking handler runs), and an
	// idle connection waits on a small stack (docs/BENCHMARKS.md, idle).
	s.conn.Serve(s.handle, func(error) {
		if expiry != nil {
			expiry.Stop()
		}
		s.cleanup()
		n.met.ep.Connections.Dec()
	})
}

func (n *Node) helloFrame(sid, user string) []byte {
	n.helloOnce.Do(func() {
		l := n.cfg.Limits
		n.helloLimits, _ = json.Marshal(map[string]any{
			"max_frame_bytes": l.MaxFrameBytes, "max_value_bytes": l.MaxValueBytes, "max_slots": l.MaxSlots,
			"max_object_bytes": l.MaxObjectBytes, "max_changes": l.MaxChanges, "max_subscriptions": l.MaxSubscriptions,
			"max_name_bytes": l.MaxNameBytes, "frames_per_second": l.FramesPerSecond, "resync_window": n.cfg.ResyncWindow,
			"duplicate_window_ms": n.cfg.DuplicateWindow.Milliseconds(), "max_remembered_bytes": l.MaxRememberedBytes,
			"max_queued_writes": l.MaxQueuedWrites,
		})
	})
	b := make([]byte, 0, 64+len(sid)+len(user)+len(n.helloLimits))
	b = append(b, `{"op":"hello","session":`...)
	b = jsonx.AppendString(b, sid)
	b = append(b, `,"user":`...)
	b = jsonx.AppendString(b, user)
	b = append(b, `,"limits":`...)
	b = append(b, n.helloLimits...)
	return append(b, '}')
}

func (s *session) send(frame []byte) {
	if s.conn.Send(frame) == nil {
		s.node.met.delivered(1, len(frame))
	}
}

// sendShared queues a frame that many sessions get (a broadcast); it reports whether it was queued. The
// caller counts the deliveries, once per broadcast (nodeMetrics.delivered).
func (s *session) sendShared(f *wsconn.Shared) bool { return s.conn.SendShared(f) == nil }

// sendError answers with an error frame, and counts it.
func (s *session) sendError(e *wire.Error, id, obj string, persistent bool) {
	s.node.met.ep.Refused(e.Code)
	s.send(errorFrame(e, id, obj, persistent))
}

func (s *session) close(code int, text string) { s.conn.Close(code, text) }

// alarmingClose names the closes an operator wants to hear of (rate-limited in the log); "" for the rest.
func alarmingClose(code int) string {
	switch code {
	case wsconn.CloseAbuse:
		return "abuse"
	case wsconn.CloseSlowConsumer:
		return "slow consumer"
	case websocket.CloseMessageTooBig:
		return "message too big"
	}
	return ""
}

// handle runs one frame; frames of one connection are handled in order, on its reader goroutine.
func (s *session) handle(raw []byte) {
	if s.node.closing.Load() {
		return // not acknowledged: the client re-sends after it reconnects
	}
	if !s.rate.Allow() {
		s.refuse(wire.Errorf(wire.CodeRateLimited, "more than %g frames per second (frames_per_second); slow down", s.node.cfg.Limits.FramesPerSecond), clientFrame{id: wire.PeekID(raw)})
		return
	}
	// The reader reuses its buffer, and values are kept in the object's state: own the bytes.
	data := bytes.Clone(raw)
	f, werr := parseClientFrame(data, &s.node.cfg.Limits)
	if werr != nil {
		if f.id == "" {
			f.id = wire.PeekID(data)
		}
		s.refuse(werr, f)
		return
	}
	key := objKey{persistent: f.persistent, name: f.obj}
	switch f.op {
	case "ping":
		s.send(wire.PongFrame(f.id))
	case "sub":
		s.subscribe(key, f)
	case "unsub":
		s.unsubscribe(key)
	case "update", "send":
		if !s.ident.CanWrite(key.persistent, key.name) {
			s.refuse(wire.Errorf(wire.CodeForbidden, "your token does not allow writing to %q", key.name), f)
			return
		}
		s.mu.Lock()
		o := s.subs.get(key)
		s.mu.Unlock()
		if o == nil {
			s.refuse(wire.Errorf(wire.CodeNotSubscribed, "subscribe to %q (op sub) before you %s to it", key.name, f.op), f)
			return
		}
		r := &writeReq{sess: s, id: f.id, epoch: f.epoch, user: s.ident.User, changes: f.changes}
		if f.op == "send" {
			r = &writeReq{sess: s, msg: &model.Message{ID: f.id, Origin: s.origin, User: s.ident.User, Handler: f.handler, Args: f.args}}
		}
		o.enqueue(r)
	}
}

// refuse answers a bad frame with an error frame; a client that keeps sending bad frames is disconnected.
func (s *session) refuse(e *wire.Error, f clientFrame) {
	s.sendError(e, f.id, f.obj, f.persistent)
	if s.errs == nil {
		s.errs = rate.NewLimiter(1, errorBudget) // refuse runs on the reader goroutine only
	}
	if !s.errs.Allow() {
		s.close(wsconn.CloseAbuse, "too many refused frames")
	}
}

func (s *session) subscribe(key objKey, f clientFrame) {
	if !s.ident.CanRead(key.persistent, key.name) {
		s.refuse(wire.Errorf(wire.CodeForbidden, "your token does not allow reading %q", key.name), f)
		return
	}
	s.mu.Lock()
	o := s.subs.get(key)
	full := o == nil && len(s.subs) >= s.node.cfg.Limits.MaxSubscriptions
	s.mu.Unlock()
	if full {
		s.refuse(wire.Errorf(wire.CodeTooManySubscriptions, "this connection already has %d objects (max_subscriptions); unsub from one first", s.node.cfg.Limits.MaxSubscriptions), f)
		return
	}
	if o == nil {
		ctx, cancel := context.WithTimeout(s.node.ctx, loadTimeout)
		var err error
		o, err = s.node.acquire(ctx, key)
		cancel()
		if err != nil {
			s.sendError(wire.Errorf(wire.CodeUnavailable, "%v", err), f.id, f.obj, f.persistent)
			return
		}
		s.mu.Lock()
		s.subs = append(s.subs, subEntry{o.key, o}) // the object's copy of the name, not the frame's
		s.mu.Unlock()
	}
	known := f.version > 0 || f.epoch != ""
	o.subscribe(s, f.epoch, f.version, known, f.id)
}

func (s *session) unsubscribe(key objKey) {
	s.mu.Lock()
	o := s.subs.del(key)
	s.mu.Unlock()
	if o != nil && o.unsubscribe(s) {
		s.node.release(o)
	}
}

func (s *session) cleanup() {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, e := range subs {
		if o := e.o; o.unsubscribe(s) {
			s.node.release(o)
		}
	}
	s.node.mu.Lock()
	delete(s.node.sessions, s)
	s.node.mu.Unlock()
}
