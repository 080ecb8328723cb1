// Package relay is the connection layer of private chat (the seed's connd): it authenticates sockets —
// the /relay WebSocket and a raw TCP listener with newline-delimited JSON frames — maps each user to their
// connections (one per device), forwards client frames to the p2p messaging service as NATS requests and
// writes back what the service sends to a user. It keeps no chat state: any node can serve any client.
// It meets the messaging service on NATS subjects only (names.go, docs/PROTOCOL.md §3).
package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/keyed"
	"github.com/rso-server/rso/internal/natslink"
	"github.com/rso-server/rso/internal/ratelog"
	"github.com/rso-server/rso/internal/utf8x"
)

// ErrServerClosed is returned by ServeTCP after Shutdown.
var ErrServerClosed = errors.New("relay: server closed")

const natsTimeout = 5 * time.Second

// Server is one relay node. Several nodes on one NATS serve the same users; a user's connections may be
// spread over them.
type Server struct {
	nc   *nats.Conn
	cfg  Config
	log  *slog.Logger
	m    *relayMetrics
	node string // this node's id: its key in RSO_RELAY_NODES and the "node" of its requests

	nodes    jetstream.KeyValue
	presence keyed.Mutex // per user id: this node's hello and bye requests go out one at a time, in order

	ctx     context.Context // background work; ends at Shutdown
	cancel  context.CancelFunc
	connSeq atomic.Uint64
	chores  sync.Mutex // held while the presence chores run (one run at a time)
	// reannounceDue asks the next chores run to send a hello for every user here (the node's key had
	// expired, or the NATS connection came back).
	reannounceDue atomic.Bool

	// gate orders frames with Shutdown: a frame is forwarded only while the server is open (read lock),
	// and Shutdown waits for the frames in flight so that their answers go out before the sockets close.
	gate     sync.RWMutex
	closed   bool // under gate
	inflight sync.WaitGroup

	mu         sync.Mutex // guards everything below; taken before user.mu
	closing    bool
	users      map[string]*user
	pendingBye map[string]struct{} // users whose bye failed (NATS down): retried at each heartbeat
	conns      map[*conn]struct{}
	listeners  map[net.Listener]struct{}
	wg         sync.WaitGroup // connections, listeners and the heartbeat
	stopOnce   sync.Once
	unwatch    func() // stops watching the NATS connection's status

	expireHook func(done bool) // tests: runs when a grace timer's expire starts and when it is done

	// alarms writes what clients can cause many times (refused tokens, abuse, slow consumers), rate-limited.
	alarms *ratelog.Logger
	done   chan struct{}
}

// user is the set of this node's connections of one user, and their delivery subscription.
type user struct {
	id    string
	ready chan struct{} // closed once the subscription is in place (or err is set)
	err   error         // written before ready is closed

	mu  sync.Mutex // guards sub, live, conns, grace and graceGen
	sub *nats.Subscription
	// live (rso.p2p.live.<user>) is subscribed only while the user has connections here, not in the grace
	// period: a signal that no node writes to a connection is answered offline, although the user's
	// presence still shows online for the grace period.
	live  *nats.Subscription
	conns map[*conn]struct{}
	grace *time.Timer
	// graceGen numbers the grace periods: each detach that starts one and each attach that cancels one
	// moves it on. A timer that already fired cannot be stopped, so its expire checks that its generation
	// is still the current one — otherwise a later grace period would be cut short by an earlier timer.
	graceGen uint64
}

func (u *user) unsubscribe() {
	u.mu.Lock()
	sub, live := u.sub, u.live
	u.sub, u.live = nil, nil
	u.mu.Unlock()
	for _, s := range []*nats.Subscription{sub, live} {
		if s != nil {
			s.Unsubscribe()
		}
	}
}

// New creates the node's key in RSO_RELAY_NODES (and the bucket) and starts the heartbeat. Serve clients
// with ServeHTTP (mount it at /relay) and ServeTCP.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Server, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "relay"
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s := &Server{
		// A fresh suffix per start: a node restarted after a crash must not look like the dead one (whose
		// users the sweep still has to take offline).
		nc: nc, cfg: cfg, log: cfg.Logger, m: newRelayMetrics(cfg.Registerer), node: safeID(cfg.NodeID, 48) + "-" + randomText(8),
		users: map[string]*user{}, conns: map[*conn]struct{}{}, listeners: map[net.Listener]struct{}{},
		pendingBye: map[string]struct{}{},
		done:       make(chan struct{}),
	}
	s.alarms = ratelog.New(s.log, alarmBurst, alarmEvery)
	s.nodes, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: chatbus.BucketNodes, Storage: jetstream.MemoryStorage, TTL: cfg.NodeTTL, Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: cannot create bucket %s: %w", chatbus.BucketNodes, err)
	}
	rev, err := s.nodes.Put(ctx, s.node, s.nodeValue())
	if err != nil {
		return nil, fmt.Errorf("relay: cannot register node %s: %w", s.node, err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// Deliveries published while the connection was down are lost, and presence may have been swept:
	// announce the users again and tell every client to sync.
	s.unwatch = natslink.Watch(nc, func() {}, s.afterReconnect)
	s.wg.Add(1)
	go s.heartbeatLoop(rev)
	return s, nil
}

// NodeID is the id this node registered under: Config.NodeID (made key-safe) and a random suffix of this start.
func (s *Server) NodeID() string { return s.node }

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func randomText(n int) string { return rand.Text()[:n] }

func (s *Server) nodeValue() []byte {
	return []byte(time.Now().UTC().Format(time.RFC3339))
}

// Shutdown stops taking frames and connections, waits for the answers to frames in flight, closes every
// client with 1012 (restart: reconnect) after the frames already queued for it, and removes the node's
// key so that the messaging service takes its users offline at its next sweep — unless they reconnected
// to another node by then. Frames that arrive meanwhile are dropped unanswered; clients re-send them after
// reconnecting. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		defer close(s.done)
		s.unwatch()
		defer s.alarms.Stop()
		s.gate.Lock()
		s.closed = true
		s.gate.Unlock()
		inflight := make(chan struct{})
		go func() { s.inflight.Wait(); close(inflight) }()
		select {
		case <-inflight:
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.closing = true
		for ln := range s.listeners {
			ln.Close()
		}
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.t.Close(closeRestart, "server restarting; reconnect")
		}
		for _, c := range conns {
			select {
			case <-c.t.Done():
			case <-ctx.Done():
			}
		}
		s.cancel()
		idle := make(chan struct{})
		go func() { s.wg.Wait(); close(idle) }()
		select {
		case <-idle:
		case <-ctx.Done():
		}
		s.mu.Lock()
		users := s.users
		s.users = map[string]*user{}
		s.mu.Unlock()
		for _, u := range users {
			u.mu.Lock()
			if u.grace != nil {
				u.grace.Stop()
			}
			u.mu.Unlock()
			u.unsubscribe()
		}
		dctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
		defer cancel()
		s.nodes.Delete(dctx, s.node)
	})
	<-s.done
	return ctx.Err()
}

// track counts a goroutine unless the server is shutting down.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// attach adds c to its user's connections, subscribing the user's delivery subject if c is the first.
// It returns once the subscription is in place, so nothing sent to the user after that is missed.
func (s *Server) attach(c *conn) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	u := s.users[c.ident.User]
	first := u == nil
	if first {
		u = &user{id: c.ident.User, ready: make(chan struct{}), conns: map[*conn]struct{}{}}
		s.users[u.id] = u
	}
	u.mu.Lock()
	u.conns[c] = struct{}{}
	if len(u.conns) == 1 {
		s.m.users.Inc()
	}
	if u.grace != nil {
		u.grace.Stop() // may have fired already: the generation makes its expire a no-op then
		u.grace = nil
		u.graceGen++
	}
	u.mu.Unlock()
	s.conns[c] = struct{}{}
	c.user = u
	s.mu.Unlock()
	if first {
		sub, err := s.nc.Subscribe(chatbus.SubjUserPrefix+chatbus.UserToken(u.id), func(m *nats.Msg) { s.deliver(u, m) })
		if err == nil {
			u.mu.Lock()
			u.sub = sub
			u.mu.Unlock()
			err = s.nc.FlushTimeout(natsTimeout) // the server has the subscription when this returns
		}
		u.err = err
		if u.err != nil {
			s.mu.Lock()
			if s.users[u.id] == u {
				delete(s.users, u.id) // the next connection tries again
			}
			s.mu.Unlock()
		}
		close(u.ready)
	}
	<-u.ready
	if u.err != nil {
		return u.err
	}
	return s.goLive(u)
}

// goLive subscribes the user's live subject unless it is already. It returns once the server has the
// subscription (also when another connection made it), so that a signal sent after hello finds c.
func (s *Server) goLive(u *user) error {
	u.mu.Lock()
	if u.live == nil && len(u.conns) > 0 {
		sub, err := s.nc.Subscribe(chatbus.SubjLivePrefix+chatbus.UserToken(u.id), func(m *nats.Msg) { s.deliverLive(u, m) })
		if err != nil {
			u.mu.Unlock()
			return err
		}
		u.live = sub
	}
	u.mu.Unlock()
	return s.nc.FlushTimeout(natsTimeout)
}

// detach removes c. When its user has no connection left here, the live subscription goes at once and the
// grace period starts; at its end the node tells the messaging service and drops the delivery subscription.
func (s *Server) detach(c *conn) {
	if live := s.remove(c); live != nil {
		live.Unsubscribe()
	}
}

// remove takes c out of the maps and starts the grace period if it was its user's last connection here;
// it returns the user's live subscription then, for the caller to drop.
func (s *Server) remove(c *conn) *nats.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	u := c.user
	if u == nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.conns[c]; !ok {
		return nil
	}
	delete(u.conns, c)
	if len(u.conns) > 0 {
		return nil
	}
	s.m.users.Dec()
	if !s.closing && u.grace == nil {
		u.graceGen++
		gen := u.graceGen
		u.grace = time.AfterFunc(s.cfg.PresenceGrace, func() { s.expire(u, gen) })
	}
	live := u.live
	u.live = nil
	return live
}

// expire ends a user's presence on this node if no connection came back during the grace period. The
// decision and the bye are made under the user's presence lock, so a hello for a new connection cannot
// overtake the bye. gen is the grace period the timer belongs to: if a connection came and went since, a
// newer grace period runs and this one ends without a bye.
func (s *Server) expire(u *user, gen uint64) {
	if !s.track() {
		return
	}
	defer s.wg.Done()
	if s.expireHook != nil {
		s.expireHook(false)
		defer s.expireHook(true)
	}
	unlock := s.presence.Lock(u.id)
	defer unlock()
	s.mu.Lock()
	u.mu.Lock()
	gone := len(u.conns) == 0 && s.users[u.id] == u && u.graceGen == gen
	if gone {
		delete(s.users, u.id)
		u.grace = nil
	}
	u.mu.Unlock()
	s.mu.Unlock()
	if !gone {
		return
	}
	u.unsubscribe()
	s.bye(u.id)
}

// retryByes sends the byes that failed, for users that have not come back meanwhile.
func (s *Server) retryByes() {
	s.mu.Lock()
	ids := make([]string, 0, len(s.pendingBye))
	for id := range s.pendingBye {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		unlock := s.presence.Lock(id)
		s.mu.Lock()
		_, back := s.users[id]
		delete(s.pendingBye, id)
		s.mu.Unlock()
		if !back {
			s.bye(id)
		}
		unlock()
	}
}

// deliver writes a frame sent to a user to each of its connections here (headers may narrow that) and
// returns how many it was written to. The payload is shared: every connection queues the same bytes,
// repaired once if they are not valid UTF-8 (whoever published them, a socket must never fail on them).
func (s *Server) deliver(u *user, m *nats.Msg) int {
	except, device := "", ""
	if m.Header != nil {
		except, device = m.Header.Get(chatbus.HdrExceptConn), m.Header.Get(chatbus.HdrDevice)
	}
	u.mu.Lock()
	conns := make([]*conn, 0, len(u.conns))
	for c := range u.conns {
		if c.id != except && (device == "" || c.device == device) {
			conns = append(conns, c)
		}
	}
	u.mu.Unlock()
	data := utf8x.Repair(m.Data)
	for _, c := range conns {
		c.send(data)
	}
	s.m.deliveries.Add(float64(len(conns)))
	return len(conns)
}

// deliverLive delivers a request on the user's live subject (a signal) and answers it only if a
// connection got it: the sender waits for one answer, and a node whose connections do not match (another
// device) must not answer for the node that has them.
func (s *Server) deliverLive(u *user, m *nats.Msg) {
	if n := s.deliver(u, m); n > 0 {
		s.m.signals.Add(float64(n))
		m.Respond([]byte("{}"))
	}
}

// heartbeatLoop refreshes the node's key. When the key is gone (it expired while the node was cut off, and
// the node's users were swept offline), it writes it again and announces its users again.
func (s *Server) heartbeatLoop(rev uint64) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, natsTimeout)
		newRev, err := s.nodes.Update(ctx, s.node, s.nodeValue(), rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			if newRev, err = s.nodes.Put(ctx, s.node, s.nodeValue()); err == nil {
				s.log.Warn("relay node key had expired; announcing this node's users again", "node", s.node)
				s.reannounceDue.Store(true)
			}
		}
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("relay heartbeat failed", "node", s.node, "err", err)
			}
			continue
		}
		rev = newRev
		s.startChores()
	}
}

// startChores runs the presence chores on their own goroutine — hellos again when due, then the byes that
// failed — unless they are running already (what is due then waits for the next heartbeat) or the server
// is shutting down. The heartbeat never waits for them, so a slow service cannot make the node look dead.
func (s *Server) startChores() {
	if !s.chores.TryLock() {
		return
	}
	if !s.track() {
		s.chores.Unlock()
		return
	}
	go func() {
		defer s.wg.Done()
		defer s.chores.Unlock()
		if s.reannounceDue.Swap(false) {
			s.reannounce()
		}
		s.retryByes()
	}()
}

func (s *Server) afterReconnect() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.send(resyncFrame)
	}
	s.reannounceDue.Store(true)
	s.startChores()
}

// reannounce sends a hello for every user with connections here.
func (s *Server) reannounce() {
	s.mu.Lock()
	ids := make([]string, 0, len(s.users))
	for id := range s.users {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	failed := false
	for _, id := range ids {
		unlock := s.presence.Lock(id)
		s.mu.Lock()
		u := s.users[id]
		live := false
		if u != nil {
			u.mu.Lock()
			live = len(u.conns) > 0
			u.mu.Unlock()
		}
		s.mu.Unlock()
		if live {
			if _, err := s.hello(id, "", ""); err != nil {
				s.log.Warn("cannot announce user again", "user", id, "err", err)
				failed = true
			}
		}
		unlock()
	}
	if failed {
		// The sweep may have taken these users offline: until a hello gets through they would look
		// offline while connected. Announce again at the next heartbeat (hellos are idempotent).
		s.reannounceDue.Store(true)
	}
}
