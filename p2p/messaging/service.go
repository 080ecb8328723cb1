// Package messaging is the messaging and presence service of private chat (the seed's msgd): validation,
// a gap-free sequence per conversation, storage before acknowledgement, delivery to every device,
// receipts, offline sync and history, presence, and peer-to-peer signalling. Clients reach it through the
// relay package, which holds their sockets; the two meet on NATS subjects only (names.go,
// docs/PROTOCOL.md §3). Friend lists come from the friends service (package friends), over NATS too, and
// are cached here (friendcache.go, friendsclient.go).
package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/keyed"
	"github.com/rso-server/rso/internal/natslink"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/friendlist"
	"github.com/rso-server/rso/p2p/internal/proto"
	"github.com/rso-server/rso/p2p/internal/workers"
)

// Service is one instance of the messaging service. Instances on one NATS share the work (queue groups)
// and keep nothing that another instance needs: every state lives in JetStream.
type Service struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger
	m   *chatMetrics

	index    jetstream.KeyValue // RSO_DM_INDEX
	users    jetstream.KeyValue // RSO_CHAT_USERS
	presence jetstream.KeyValue // RSO_PRESENCE
	nodes    jetstream.KeyValue // RSO_RELAY_NODES

	friends *friendCache
	heads   *headCache
	// convMu is per conversation: one instance never races itself for the next sequence (other instances
	// are kept out by the stream's compare-and-set).
	convMu  keyed.Mutex
	known   boundedSet // users known to have connected once
	indexed boundedSet // conversations whose index entries exist

	workers *workers.Pool
	subs    []*nats.Subscription
	ctx     context.Context // background work (the sweeper); ends at Shutdown
	cancel  context.CancelFunc
	closing atomic.Bool

	mu       sync.Mutex     // orders starting a request with Shutdown's wait
	wg       sync.WaitGroup // requests in flight and the sweeper
	stopOnce sync.Once
	unwatch  func() // stops watching the NATS connection's status
	done     chan struct{}
}

// New creates (or checks) the streams and buckets it needs and starts serving the relay subjects.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Service, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	// Async publishes (the conversation index) give up after proto.NATSTimeout, so acks that never come cannot
	// fill the pending window and stall every new conversation.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(proto.NATSTimeout))
	if err != nil {
		return nil, err
	}
	s := &Service{
		nc: nc, js: js, cfg: cfg, log: cfg.Logger, m: newChatMetrics(cfg.Registerer),
		friends: newFriendCache(cfg.FriendsCacheTTL, 100_000),
		heads:   newHeadCache(100_000),
		known:   newBoundedSet(100_000),
		indexed: newBoundedSet(100_000),
		workers: workers.New(cfg.Workers),
		done:    make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.setup(ctx); err != nil {
		s.cancel()
		return nil, err
	}
	if err := s.serve(); err != nil {
		s.stopServing()
		s.cancel()
		return nil, err
	}
	// Notices of changed friend lists sent while the connection was down are lost: forget every list.
	s.unwatch = natslink.Watch(nc, func() {}, func() {
		s.friends.clear()
		s.heads.clear()
	})
	if s.track() {
		go s.sweepLoop()
	}
	return s, nil
}

func (s *Service) setup(ctx context.Context) error {
	_, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        streamDM,
		Subjects:    []string{subjDMPrefix + "*.*"},
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.Replicas,
		AllowDirect: true,
		MaxMsgSize:  -1,
		Discard:     jetstream.DiscardNew, // never drop a stored message to make room; refuse the new one
		Duplicates:  s.cfg.DuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("messaging: cannot create stream %s: %w", streamDM, err)
	}
	for _, b := range []struct {
		kv  *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&s.index, jetstream.KeyValueConfig{Bucket: bucketIndex, Storage: jetstream.FileStorage}},
		{&s.users, jetstream.KeyValueConfig{Bucket: bucketUsers, Storage: jetstream.FileStorage}},
		// Memory: presence is about live connections, which a restart of NATS ends anyway. The marker TTL lets
		// removed node markers vanish (PurgeTTL) instead of piling up.
		{&s.presence, jetstream.KeyValueConfig{Bucket: bucketPres, Storage: jetstream.MemoryStorage, LimitMarkerTTL: markerTTL}},
	} {
		b.cfg.Replicas = s.cfg.Replicas
		if *b.kv, err = s.js.CreateOrUpdateKeyValue(ctx, b.cfg); err != nil {
			return fmt.Errorf("messaging: cannot create bucket %s: %w", b.cfg.Bucket, err)
		}
	}
	// The relays own the node bucket (they set its TTL); create it with their default if none runs yet.
	if s.nodes, err = s.js.KeyValue(ctx, chatbus.BucketNodes); errors.Is(err, jetstream.ErrBucketNotFound) {
		s.nodes, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: chatbus.BucketNodes, Storage: jetstream.MemoryStorage, TTL: defaultNodeTTL, Replicas: s.cfg.Replicas})
		if errors.Is(err, jetstream.ErrBucketExists) {
			s.nodes, err = s.js.KeyValue(ctx, chatbus.BucketNodes)
		}
	}
	if err != nil {
		return fmt.Errorf("messaging: cannot open bucket %s: %w", chatbus.BucketNodes, err)
	}
	return nil
}

// defaultNodeTTL matches the relay's default (3 × its 5 s heartbeat); the relays set the real one.
const defaultNodeTTL = 15 * time.Second

// serve subscribes the relay and friends-notice subjects. Every request is checked at the boundary
// (proto.CheckJSON) before it reaches a handler, and handled on a bounded number of workers.
func (s *Service) serve() error {
	type handler struct {
		subject, queue string
		what           string // names the request in a refusal
		fn             func(ctx context.Context, m *nats.Msg)
		pooled         bool                             // handled on a worker
		refuse         func(m *nats.Msg, e *wire.Error) // answers a refused request
	}
	refuseFrame := func(m *nats.Msg, e *wire.Error) {
		m.RespondMsg(chatbus.FrameReply(errorFrame(e, envelopeID(m.Data)), clientsFault(e)))
	}
	refuseJSON := func(m *nats.Msg, e *wire.Error) { proto.RespondJSON(m, chatbus.Reply{Error: e}) }
	ignore := func(*nats.Msg, *wire.Error) {} // a notice: nobody waits for an answer
	restarting := wire.Errorf(wire.CodeUnavailable, "the chat service is restarting; retry (same id)")
	overloaded := wire.Errorf(wire.CodeUnavailable, "the chat service is overloaded (all %d workers busy, Workers); retry (same id)", s.cfg.Workers)
	for _, h := range []handler{
		{chatbus.SubjFrame, chatbus.QueueMessaging, "frame", s.onFrame, true, refuseFrame},
		{chatbus.SubjHello, chatbus.QueueMessaging, "hello", s.onHello, true, refuseJSON},
		{chatbus.SubjBye, chatbus.QueueMessaging, "bye", s.onBye, true, refuseJSON},
		{friendlist.SubjChangedPrefix + "*", "", "friends notice", s.onFriendsChanged, false, ignore},
		{friendlist.SubjChangedPrefix + "*", queuePush, "friends notice", s.onFriendsChangedPush, true, ignore},
	} {
		cb := func(m *nats.Msg) {
			if werr := proto.CheckJSON(m.Data, h.what); werr != nil {
				s.log.Warn("request refused", "subject", m.Subject, "err", werr)
				h.refuse(m, werr)
				return
			}
			if !h.pooled {
				h.fn(s.ctx, m)
				return
			}
			if !s.workers.Acquire() {
				s.m.busy.Inc()
				h.refuse(m, overloaded)
				return
			}
			if !s.track() {
				s.workers.Release()
				h.refuse(m, restarting)
				return
			}
			go func() {
				defer func() { s.workers.Release(); s.wg.Done() }()
				// Not derived from s.ctx: a request that started is finished even during Shutdown.
				ctx, cancel := context.WithTimeout(context.Background(), proto.RequestTimeout)
				defer cancel()
				h.fn(ctx, m)
			}()
		}
		var sub *nats.Subscription
		var err error
		if h.queue == "" {
			sub, err = s.nc.Subscribe(h.subject, cb)
		} else {
			sub, err = s.nc.QueueSubscribe(h.subject, h.queue, cb)
		}
		if err != nil {
			return fmt.Errorf("messaging: cannot subscribe %s: %w", h.subject, err)
		}
		s.subs = append(s.subs, sub)
	}
	return s.nc.Flush()
}

// envelopeID is the id of the client frame in a relay's envelope, for refusing it.
func envelopeID(env []byte) string {
	return wire.PeekID([]byte(gjson.GetBytes(env, "frame").Raw))
}

func (s *Service) stopServing() {
	for _, sub := range s.subs {
		sub.Unsubscribe()
	}
}

// drain stops new requests from reaching this instance and lets the ones already delivered to it start
// (NATS sends new ones to the other instances of the queue group), or gives up at ctx.
func (s *Service) drain(ctx context.Context) {
	for _, sub := range s.subs {
		sub.Drain()
	}
	for _, sub := range s.subs {
		for sub.IsValid() && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// track counts a request in flight unless the service is shutting down.
func (s *Service) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.wg.Add(1)
	return true
}

// Shutdown stops taking requests (those already delivered to this instance are still served), stops the
// sweeper and waits for the requests in flight (their answers go out) or for ctx. Safe to call more than once.
func (s *Service) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		defer close(s.done)
		s.unwatch()
		s.drain(ctx)
		s.mu.Lock()
		s.closing.Store(true)
		s.mu.Unlock()
		s.stopServing()
		s.cancel()
		idle := make(chan struct{})
		go func() { s.wg.Wait(); close(idle) }()
		select {
		case <-idle:
		case <-ctx.Done():
		}
	})
	<-s.done
	return ctx.Err()
}

// Stats counts what this instance refused.
type Stats struct {
	Refused uint64 // requests refused (unavailable) because every worker was busy for too long
}

// Stats returns this instance's counters.
func (s *Service) Stats() Stats { return Stats{Refused: s.workers.Refused()} }

// caller is who sent a frame, as the relay authenticated it.
type caller struct {
	user   string
	device string
	conn   string
	node   string
}

// onFrame handles one client frame, in a relay's chatbus.Envelope. The reply is the frames for that
// connection, separated by '\n', flagged when they refuse the frame.
func (s *Service) onFrame(ctx context.Context, m *nats.Msg) {
	env, id, err := chatbus.ParseEnvelope(m.Data)
	if err != nil {
		m.RespondMsg(chatbus.FrameReply(errorFrame(wire.Errorf(wire.CodeInternal, "%v", err), id), false))
		return
	}
	c := caller{user: env.User, device: env.Device, conn: env.Conn, node: env.Node}
	out, refused := s.handle(ctx, c, env.Frame)
	if err := m.RespondMsg(chatbus.FrameReply(out, refused)); err != nil {
		// Too large for NATS, or the connection is gone: the relay must not wait for its timeout.
		s.log.Warn("cannot answer a frame", "user", c.user, "bytes", len(out), "err", err)
		m.RespondMsg(chatbus.FrameReply(errorFrame(wire.Errorf(wire.CodeInternal, "the answer could not be sent (%d bytes): %v", len(out), err), id), false))
	}
}

// handle answers one client frame; refused tells that the answer refuses what the client sent.
func (s *Service) handle(ctx context.Context, c caller, frame []byte) (out []byte, refused bool) {
	if s.closing.Load() {
		werr := wire.Errorf(wire.CodeUnavailable, "the chat service is restarting; retry (same id)")
		s.m.request("", werr)
		return errorFrame(werr, wire.PeekID(frame)), false
	}
	f, werr := parseRequest(frame, &s.cfg)
	if werr != nil {
		s.m.request(f.op, werr)
		id := f.id
		if id == "" {
			id = wire.PeekID(frame)
		}
		return errorFrame(werr, id), clientsFault(werr)
	}
	switch f.op {
	case "send":
		out, werr = s.send(ctx, c, &f)
	case "receipt":
		out, werr = s.receipt(ctx, c, &f)
	case "sync":
		out, werr = s.sync(ctx, c, &f)
	case "history":
		out, werr = s.history(ctx, c, &f)
	case "friends":
		out, werr = s.friendsAnswer(ctx, c, &f)
	case "friend":
		out, werr = s.friendAction(ctx, c, &f)
	case "presence":
		out, werr = s.setStatus(ctx, c, &f)
	case "signal":
		out, werr = s.signal(ctx, c, &f)
	}
	s.m.request(f.op, werr)
	if werr != nil {
		return errorFrame(werr, f.id), clientsFault(werr)
	}
	return out, false
}

// clientsFault tells whether a refusal is about what the client sent, which the relay counts toward the
// client's refused frames (4009), or about the service's own state (busy, unavailable, internal), which a
// client re-sending as told must never be closed for.
func clientsFault(e *wire.Error) bool {
	return e.Code != wire.CodeBusy && e.Code != wire.CodeUnavailable && e.Code != wire.CodeInternal
}

// publishTo sends frames to every connection of user, on every relay node. except skips the connection
// that caused them; device, when set, limits them to one device. Delivery is at most once: a client that
// misses a message sees a gap in the conversation's sequence and asks for it (history or sync).
func (s *Service) publishTo(user string, frame []byte, except, device string) {
	m := &nats.Msg{Subject: chatbus.SubjUserPrefix + proto.UserToken(user), Data: frame}
	if except != "" || device != "" {
		m.Header = nats.Header{}
		if except != "" {
			m.Header.Set(chatbus.HdrExceptConn, except)
		}
		if device != "" {
			m.Header.Set(chatbus.HdrDevice, device)
		}
	}
	if err := s.nc.PublishMsg(m); err != nil && !s.closing.Load() {
		s.log.Warn("cannot deliver to user", "user", user, "err", err)
	}
}
