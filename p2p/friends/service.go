// Package friends is the friends service (the seed's friend subsystem): the lists, stored in the
// RSO_FRIENDS bucket (one key per user), and the rules of request, accept, remove, block and unblock. It
// answers on rso.friends.get and rso.friends.update (queue group rso-friends, so any instance serves) and
// announces every changed list on rso.friends.changed.<user>. It knows nothing of connections or
// messages; the messaging service (package messaging) caches its lists. The two meet on NATS only, through
// the messages of p2p/internal/friendlist.
package friends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/friendlist"
	"github.com/rso-server/rso/p2p/internal/proto"
	"github.com/rso-server/rso/p2p/internal/workers"
)

// bucket holds one friend list per user: key proto.UserToken(user), value the list's canonical JSON.
const bucket = "RSO_FRIENDS"

// Service is one instance of the friends service. Instances on one NATS share the work (queue group) and
// keep nothing: the lists live in JetStream.
type Service struct {
	nc  *nats.Conn
	kv  jetstream.KeyValue
	cfg Config
	log *slog.Logger
	m   *friendsMetrics

	gets, updates atomic.Uint64
	workers       *workers.Pool

	subs     []*nats.Subscription
	mu       sync.Mutex
	wg       sync.WaitGroup
	closing  bool
	stopOnce sync.Once
}

// Stats counts the requests that reached this instance.
type Stats struct {
	Gets    uint64 // list reads (the messaging service's cache misses)
	Updates uint64 // actions
	Refused uint64 // requests refused (unavailable) because every worker was busy for too long
}

// New creates (or checks) the RSO_FRIENDS bucket and starts serving.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Service, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.FileStorage, Replicas: cfg.Replicas})
	if err != nil {
		return nil, fmt.Errorf("friends: cannot create bucket %s: %w", bucket, err)
	}
	f := &Service{nc: nc, kv: kv, cfg: cfg, log: cfg.Logger, m: newFriendsMetrics(cfg.Registerer), workers: workers.New(cfg.Workers)}
	for subject, cb := range map[string]nats.MsgHandler{
		friendlist.SubjGet:    handler(f, func(r *friendlist.GetRequest) string { return r.User }, f.get),
		friendlist.SubjUpdate: handler(f, func(r *friendlist.UpdateRequest) string { return r.User }, f.update),
	} {
		sub, err := nc.QueueSubscribe(subject, friendlist.Queue, cb)
		if err != nil {
			f.Shutdown(context.Background())
			return nil, fmt.Errorf("friends: cannot subscribe %s: %w", subject, err)
		}
		f.subs = append(f.subs, sub)
	}
	return f, nc.Flush()
}

// handler checks a request of type Req at the boundary (valid JSON naming a user) and runs fn on a worker.
func handler[Req any](f *Service, user func(*Req) string, fn func(context.Context, Req) friendlist.Reply) nats.MsgHandler {
	return func(m *nats.Msg) {
		if werr := proto.CheckJSON(m.Data, "friends request"); werr != nil {
			proto.RespondJSON(m, friendlist.Reply{Error: werr})
			return
		}
		var req Req
		if err := json.Unmarshal(m.Data, &req); err != nil || user(&req) == "" {
			proto.RespondJSON(m, friendlist.Reply{Error: wire.Errorf(wire.CodeBadFrame, "a friends request is {\"user\",…}")})
			return
		}
		if !f.workers.Acquire() {
			f.m.refused.Inc()
			proto.RespondJSON(m, friendlist.Reply{Error: wire.Errorf(wire.CodeUnavailable, "the friends service is overloaded (all %d workers busy, friends.Config.Workers); retry (same id)", f.cfg.Workers)})
			return
		}
		if !f.track() {
			f.workers.Release()
			proto.RespondJSON(m, friendlist.Reply{Error: wire.Errorf(wire.CodeUnavailable, "the friends service is shutting down; retry")})
			return
		}
		go func() {
			defer func() { f.workers.Release(); f.wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), proto.RequestTimeout)
			defer cancel()
			proto.RespondJSON(m, fn(ctx, req))
		}()
	}
}

func (f *Service) track() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.wg.Add(1)
	return true
}

// Stats returns how many requests reached this instance.
func (f *Service) Stats() Stats {
	return Stats{Gets: f.gets.Load(), Updates: f.updates.Load(), Refused: f.workers.Refused()}
}

// Shutdown stops taking requests (those already delivered to this instance are still served) and waits
// for those in flight or for ctx. Safe to call more than once.
func (f *Service) Shutdown(ctx context.Context) error {
	f.stopOnce.Do(func() {
		for _, s := range f.subs {
			s.Drain()
		}
		for _, s := range f.subs {
			for s.IsValid() && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		f.mu.Lock()
		f.closing = true
		f.mu.Unlock()
		for _, s := range f.subs {
			s.Unsubscribe()
		}
	})
	idle := make(chan struct{})
	go func() { f.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Service) get(ctx context.Context, req friendlist.GetRequest) friendlist.Reply {
	f.gets.Add(1)
	l, rev, err := f.load(ctx, req.User)
	if err != nil {
		return friendlist.Reply{Error: proto.Unavailable("cannot read the friend list", err)}
	}
	return friendlist.Reply{User: req.User, Hash: l.Hash(), List: &l, Rev: rev}
}

// update applies an action to both lists. The two writes are separate compare-and-sets (the other side's
// list first); a lost race re-reads both and applies the action again, which is idempotent, so concurrent
// actions on the same users converge and a half-done action is completed by its retry.
func (f *Service) update(ctx context.Context, req friendlist.UpdateRequest) (r friendlist.Reply) {
	f.updates.Add(1)
	defer func() { f.m.update(req.Action, r) }()
	if req.Other == "" || len(req.Other) > proto.MaxUserBytes {
		return friendlist.Reply{Error: wire.Errorf(wire.CodeBadFrame, "an update needs \"other\": the user the action is about")}
	}
	for range proto.MaxRetries {
		mine, myRev, err := f.load(ctx, req.User)
		if err != nil {
			return friendlist.Reply{Error: proto.Unavailable("cannot read the friend list", err)}
		}
		theirs, theirRev, err := f.load(ctx, req.Other)
		if err != nil {
			return friendlist.Reply{Error: proto.Unavailable("cannot read the friend list", err)}
		}
		newMine, newTheirs, werr := friendlist.Apply(req.Action, req.User, req.Other, &mine, &theirs, f.cfg.MaxFriends)
		if werr != nil {
			return friendlist.Reply{Error: werr}
		}
		theirNewRev, err := f.store(ctx, req.Other, &theirs, &newTheirs, theirRev, "")
		if errors.Is(err, proto.ErrConflict) {
			continue
		} else if err != nil {
			return friendlist.Reply{Error: proto.Unavailable("cannot store the friend list", err)}
		}
		myNewRev, err := f.store(ctx, req.User, &mine, &newMine, myRev, req.Conn)
		if errors.Is(err, proto.ErrConflict) {
			continue
		} else if err != nil {
			return friendlist.Reply{Error: proto.Unavailable("cannot store the friend list", err)}
		}
		return friendlist.Reply{User: req.User, Hash: newMine.Hash(), List: &newMine, Rev: myNewRev, OtherList: &newTheirs, OtherRev: theirNewRev}
	}
	return friendlist.Reply{Error: wire.Errorf(wire.CodeBusy, "the friend lists changed too often at once; retry")}
}

func (f *Service) load(ctx context.Context, user string) (friendlist.List, uint64, error) {
	e, err := f.kv.Get(ctx, proto.UserToken(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return friendlist.List{}, 0, nil
	}
	if err != nil {
		return friendlist.List{}, 0, err
	}
	var l friendlist.List
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return friendlist.List{}, 0, fmt.Errorf("friend list of %q is corrupt: %w", user, err)
	}
	return l, e.Revision(), nil
}

// store writes a changed list (compare-and-set on rev) and announces it; an unchanged one is left alone.
// It returns the list's revision in RSO_FRIENDS: the new one, or rev if nothing changed.
func (f *Service) store(ctx context.Context, user string, old, l *friendlist.List, rev uint64, exceptConn string) (uint64, error) {
	v := l.Canonical()
	if string(v) == string(old.Canonical()) {
		return rev, nil
	}
	newRev, err := f.kv.Update(ctx, proto.UserToken(user), v, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, proto.ErrConflict
	} else if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(friendlist.Notice{User: user, Hash: l.Hash(), List: l, Rev: newRev, ExceptConn: exceptConn})
	if err := f.nc.Publish(friendlist.SubjChangedPrefix+proto.UserToken(user), b); err != nil {
		f.log.Warn("friend list change not announced", "user", user, "err", err)
	}
	return newRev, nil
}
