package p2p

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
)

// Friends is the friends service (the seed's friend subsystem): the lists, stored in the RSO_FRIENDS bucket
// (one key per user), and the rules of request, accept, remove, block and unblock. It answers on
// rso.friends.get and rso.friends.update (queue group rso-friends, so any instance serves) and announces
// every changed list on rso.friends.changed.<user>. It knows nothing of connections or messages.
type Friends struct {
	nc  *nats.Conn
	kv  jetstream.KeyValue
	cfg FriendsConfig
	log *slog.Logger

	gets, updates atomic.Uint64
	workers       *workers

	subs     []*nats.Subscription
	mu       sync.Mutex
	wg       sync.WaitGroup
	closing  bool
	stopOnce sync.Once
}

// FriendsStats counts the requests that reached this instance.
type FriendsStats struct {
	Gets    uint64 // list reads (the messaging service's cache misses)
	Updates uint64 // actions
	Refused uint64 // requests refused (unavailable) because every worker was busy for too long
}

// NewFriends creates (or checks) the RSO_FRIENDS bucket and starts serving.
func NewFriends(ctx context.Context, nc *nats.Conn, cfg FriendsConfig) (*Friends, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketFriend, Storage: jetstream.FileStorage, Replicas: cfg.Replicas})
	if err != nil {
		return nil, fmt.Errorf("p2p: cannot create bucket %s: %w", bucketFriend, err)
	}
	f := &Friends{nc: nc, kv: kv, cfg: cfg, log: cfg.Logger, workers: newWorkers(cfg.Workers)}
	for subject, fn := range map[string]func(context.Context, friendsMsg) friendsMsg{
		subjFriendsGet:    f.get,
		subjFriendsUpdate: f.update,
	} {
		sub, err := nc.QueueSubscribe(subject, queueFriends, func(m *nats.Msg) { f.serve(m, fn) })
		if err != nil {
			f.Shutdown(context.Background())
			return nil, fmt.Errorf("p2p: cannot subscribe %s: %w", subject, err)
		}
		f.subs = append(f.subs, sub)
	}
	return f, nc.Flush()
}

// serve checks a request at the boundary and runs fn on a worker.
func (f *Friends) serve(m *nats.Msg, fn func(context.Context, friendsMsg) friendsMsg) {
	if werr := checkJSON(m.Data, "friends request"); werr != nil {
		respondJSON(m, friendsMsg{Error: werr})
		return
	}
	var req friendsMsg
	if err := json.Unmarshal(m.Data, &req); err != nil || req.User == "" {
		respondJSON(m, friendsMsg{Error: wireErr(CodeBadFrame, "a friends request is {\"user\",…}")})
		return
	}
	if !f.workers.acquire() {
		respondJSON(m, friendsMsg{Error: wireErr(CodeUnavailable, "the friends service is overloaded (all %d workers busy, FriendsConfig.Workers); retry (same id)", f.cfg.Workers)})
		return
	}
	if !f.track() {
		f.workers.release()
		respondJSON(m, friendsMsg{Error: wireErr(CodeUnavailable, "the friends service is shutting down; retry")})
		return
	}
	go func() {
		defer func() { f.workers.release(); f.wg.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		respondJSON(m, fn(ctx, req))
	}()
}

func (f *Friends) track() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.wg.Add(1)
	return true
}

// Stats returns how many requests reached this instance.
func (f *Friends) Stats() FriendsStats {
	return FriendsStats{Gets: f.gets.Load(), Updates: f.updates.Load(), Refused: f.workers.refused.Load()}
}

// Shutdown stops taking requests (those already delivered to this instance are still served) and waits
// for those in flight or for ctx. Safe to call more than once.
func (f *Friends) Shutdown(ctx context.Context) error {
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

func (f *Friends) get(ctx context.Context, req friendsMsg) friendsMsg {
	f.gets.Add(1)
	l, rev, err := f.load(ctx, req.User)
	if err != nil {
		return friendsMsg{Error: unavailable("cannot read the friend list", err)}
	}
	return friendsMsg{User: req.User, Hash: l.Hash(), List: &l, Rev: rev}
}

// update applies an action to both lists. The two writes are separate compare-and-sets (the other side's
// list first); a lost race re-reads both and applies the action again, which is idempotent, so concurrent
// actions on the same users converge and a half-done action is completed by its retry.
func (f *Friends) update(ctx context.Context, req friendsMsg) friendsMsg {
	f.updates.Add(1)
	if req.Other == "" || len(req.Other) > maxUserBytes {
		return friendsMsg{Error: wireErr(CodeBadFrame, "an update needs \"other\": the user the action is about")}
	}
	for range maxRetries {
		mine, myRev, err := f.load(ctx, req.User)
		if err != nil {
			return friendsMsg{Error: unavailable("cannot read the friend list", err)}
		}
		theirs, theirRev, err := f.load(ctx, req.Other)
		if err != nil {
			return friendsMsg{Error: unavailable("cannot read the friend list", err)}
		}
		newMine, newTheirs, werr := applyFriendAction(req.Action, req.User, req.Other, &mine, &theirs, f.cfg.MaxFriends)
		if werr != nil {
			return friendsMsg{Error: werr}
		}
		theirNewRev, err := f.store(ctx, req.Other, &theirs, &newTheirs, theirRev, "")
		if errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return friendsMsg{Error: unavailable("cannot store the friend list", err)}
		}
		myNewRev, err := f.store(ctx, req.User, &mine, &newMine, myRev, req.Conn)
		if errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return friendsMsg{Error: unavailable("cannot store the friend list", err)}
		}
		return friendsMsg{User: req.User, Hash: newMine.Hash(), List: &newMine, Rev: myNewRev, OtherList: &newTheirs, OtherRev: theirNewRev}
	}
	return friendsMsg{Error: wireErr(CodeBusy, "the friend lists changed too often at once; retry")}
}

func (f *Friends) load(ctx context.Context, user string) (FriendList, uint64, error) {
	e, err := f.kv.Get(ctx, userToken(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return FriendList{}, 0, nil
	}
	if err != nil {
		return FriendList{}, 0, err
	}
	var l FriendList
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return FriendList{}, 0, fmt.Errorf("friend list of %q is corrupt: %w", user, err)
	}
	return l, e.Revision(), nil
}

// store writes a changed list (compare-and-set on rev) and announces it; an unchanged one is left alone.
// It returns the list's revision in RSO_FRIENDS: the new one, or rev if nothing changed.
func (f *Friends) store(ctx context.Context, user string, old, l *FriendList, rev uint64, exceptConn string) (uint64, error) {
	v := l.canonical()
	if string(v) == string(old.canonical()) {
		return rev, nil
	}
	newRev, err := f.kv.Update(ctx, userToken(user), v, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errConflict
	} else if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(friendsMsg{User: user, Hash: l.Hash(), List: l, Rev: newRev, ExceptConn: exceptConn})
	if err := f.nc.Publish(subjFriendsChangedPrefix+userToken(user), b); err != nil {
		f.log.Warn("friend list change not announced", "user", user, "err", err)
	}
	return newRev, nil
}
