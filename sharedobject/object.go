package sharedobject

import (
	"context"
	"encoding/base64"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/internal/wsconn"
)

// object is this node's replica of one shared object: the state rebuilt from the object's log, the local
// subscribers, and the queue of writes waiting to be committed.
//
// Lock order: Node.mu before object.mu; session.mu is never held while taking object.mu.
type object struct {
	node       *Node
	key        objKey
	subject    string // where the log is written: rso.so.<ns>.<token>
	evSubject  string // where JetStream republishes committed entries: rso.ev.<ns>.<token>
	stream     string
	ready      chan struct{} // closed once loaded (or failed: loadErr)
	loadErr    error
	liveSub    *nats.Subscription
	snapshotAt int // entries since the last snapshot, to roll the log up

	mu       sync.Mutex
	state    *State
	seq      uint64 // stream sequence of the last applied entry
	subs     map[*session]struct{}
	users    int // subscribed sessions plus API calls in progress; 0 starts the grace timer
	grace    *time.Timer
	awaiting map[string]*pendingReply // origin+"\x00"+id → what the changer is told besides its successes
	wq       []*writeReq
	writing  bool
	lockWake chan struct{} // closed and replaced whenever the lock state changes
}

type objKey struct {
	persistent bool
	name       string
}

func (k objKey) ns() string {
	if k.persistent {
		return "p"
	}
	return "t"
}

// token encodes an object name into one subject token: names may hold '.', '*', '>' or any other byte.
func (k objKey) token() string { return base64.RawURLEncoding.EncodeToString([]byte(k.name)) }

// pendingReply is kept between judging an update and applying its commit, so that the changer gets its
// successes and rejects in one frame.
type pendingReply struct {
	sess    *session
	rejects []rejectNote
}

type rejectNote struct {
	name   string
	value  []byte
	exists bool
	reason string
}

func newObject(n *Node, key objKey) *object {
	tok := key.token()
	o := &object{
		node: n, key: key,
		subject:   "rso.so." + key.ns() + "." + tok,
		evSubject: "rso.ev." + key.ns() + "." + tok,
		stream:    n.streamFor(key.persistent),
		ready:     make(chan struct{}),
		state:     NewState(),
		subs:      map[*session]struct{}{},
		awaiting:  map[string]*pendingReply{},
		lockWake:  make(chan struct{}),
	}
	return o
}

// load subscribes to the republished log first, then reads the stored log, so that nothing committed in
// between is missed (live entries at or below the loaded sequence are skipped).
func (o *object) load(ctx context.Context) {
	defer close(o.ready)
	sub, err := o.node.nc.Subscribe(o.evSubject, o.onLive)
	if err == nil {
		sub.SetPendingLimits(1<<20, 512<<20)
		err = o.node.nc.FlushWithContext(ctx)
	}
	if err != nil {
		o.loadErr = err
		if sub != nil {
			sub.Unsubscribe()
		}
		return
	}
	o.liveSub = sub
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.catchUpLocked(ctx); err != nil {
		o.loadErr = err
		sub.Unsubscribe()
	}
}

// onLive applies an entry JetStream republished after storing it.
func (o *object) onLive(m *nats.Msg) {
	<-o.ready
	if o.loadErr != nil {
		return
	}
	seq, _ := parseUint(m.Header.Get("Nats-Sequence"))
	last, _ := parseUint(m.Header.Get("Nats-Last-Sequence"))
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq <= o.seq {
		return // applied already (by the writer that committed it, or by a catch-up)
	}
	if last != o.seq {
		// A gap: entries were missed (slow subscription, reconnect). Refill from the stream.
		if err := o.catchUpLocked(context.Background()); err != nil {
			o.node.log.Error("shared object catch-up failed", "obj", o.key.name, "err", err)
		}
		return
	}
	o.applyDataLocked(seq, m.Data)
}

// catchUpLocked reads every stored entry after o.seq and applies it.
func (o *object) catchUpLocked(ctx context.Context) error {
	before := o.seq
	err := o.node.fetch(ctx, o.stream, o.subject, o.seq+1, func(seq uint64, data []byte) {
		if seq > o.seq {
			o.applyDataLocked(seq, data)
		}
	})
	if err != nil || o.seq != before || o.seq == 0 {
		return err
	}
	// Nothing after our sequence. If the stream no longer has it either, the log was wiped
	// (a temporary object's reset marker expired, or an operator purged it): start over.
	last, err := o.node.lastSeq(ctx, o.stream, o.subject)
	if err != nil {
		return err
	}
	if last < o.seq {
		o.resetLocked(last)
	}
	return nil
}

func (o *object) applyDataLocked(seq uint64, data []byte) {
	e, err := decodeEntry(data)
	if err != nil {
		o.node.log.Error("skipping malformed log entry", "obj", o.key.name, "seq", seq, "err", err)
		o.seq = seq
		return
	}
	o.applyLocked(seq, e)
}

// applyLocked applies one entry and tells the local subscribers.
func (o *object) applyLocked(seq uint64, e *entry) {
	o.seq = seq
	o.snapshotAt++
	switch {
	case e.reset:
		o.resetLocked(seq)
		return
	case e.snap != nil:
		o.snapshotAt = 0
		if e.snap.Epoch == o.state.Epoch && e.snap.Version == o.state.Version {
			return // the snapshot is our own state rolled up
		}
		old := o.state
		o.state = e.snap
		o.resyncSubsLocked(old.Epoch, old.Version)
		o.wakeWritersLocked()
		return
	}
	for _, op := range e.ops {
		switch {
		case op.commit != nil:
			o.applyCommitLocked(op.commit)
		case op.msg != nil:
			if op.msg.ID != "" {
				o.state.RememberMessage(op.msg.User, op.msg.ID)
			}
			f := wsconn.NewShared(messageFrame(o.key.name, o.key.persistent, op.msg))
			for s := range o.subs {
				s.sendShared(f)
			}
		case op.lock != nil:
			o.state.Lock = *op.lock
			o.wakeWritersLocked()
		default:
			if o.state.Lock.ID == op.unlock {
				o.state.Lock = LockState{}
			}
			o.wakeWritersLocked()
		}
	}
}

func (o *object) applyCommitLocked(c *Commit) {
	if c.Version != o.state.Version+1 {
		o.node.log.Warn("log entry out of version order", "obj", o.key.name, "have", o.state.Version, "got", c.Version)
	}
	events := o.state.Apply(c, o.node.cfg.ResyncWindow)
	var reply *pendingReply
	if c.Origin != "" && c.ID != "" {
		k := c.Origin + "\x00" + c.ID
		if reply = o.awaiting[k]; reply != nil {
			delete(o.awaiting, k)
		}
	}
	var others []byte
	if len(events) > 0 {
		f := beginSync(o.key.name, o.key.persistent, o.state.Epoch, o.state.Version, "")
		for _, ev := range events {
			f.event(ev)
		}
		others = f.end()
	}
	if others != nil {
		f := wsconn.NewShared(others)
		for s := range o.subs {
			if s.origin != c.Origin {
				s.sendShared(f)
			}
		}
	}
	if reply != nil {
		f := beginSync(o.key.name, o.key.persistent, o.state.Epoch, o.state.Version, c.ID)
		for _, sv := range c.Sets {
			f.success(sv.Name)
		}
		for _, d := range c.Deletes {
			f.success(d)
		}
		for _, r := range reply.rejects {
			f.reject(r.name, r.value, r.exists, r.reason)
		}
		reply.sess.send(f.end())
	}
}

// resetLocked ends the object's epoch: it is empty again, and subscribers start over.
func (o *object) resetLocked(seq uint64) {
	o.state = NewState()
	o.seq = seq
	o.snapshotAt = 0
	f := beginSync(o.key.name, o.key.persistent, "", 0, "")
	f.clear()
	frame := f.end()
	for s := range o.subs {
		s.send(frame)
	}
	o.wakeWritersLocked()
}

// resyncSubsLocked brings subscribers that saw (epoch, version) to the current state.
func (o *object) resyncSubsLocked(epoch string, version uint64) {
	if len(o.subs) == 0 {
		return
	}
	frame := o.syncFrameLocked(epoch, version, true, "")
	for s := range o.subs {
		s.send(frame)
	}
}

// syncFrameLocked answers a subscriber at (epoch, version): the delta when possible, else clear + all.
func (o *object) syncFrameLocked(epoch string, version uint64, known bool, id string) []byte {
	st := o.state
	f := beginSync(o.key.name, o.key.persistent, st.Epoch, st.Version, id)
	var events []Event
	full := true
	if known {
		events, full = st.Delta(epoch, version, o.node.cfg.ResyncWindow)
	}
	if full {
		f.clear()
		st.Slots(func(name string, value []byte, _ uint64) {
			f.event(Event{Code: "change", Name: name, Value: value})
		})
	} else {
		for _, ev := range events {
			f.event(ev)
		}
	}
	return f.end()
}

func (o *object) wakeWritersLocked() {
	close(o.lockWake)
	o.lockWake = make(chan struct{})
}

// subscribe adds a session and sends it its first sync, in order with every later frame.
func (o *object) subscribe(s *session, epoch string, version uint64, known bool, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.subs[s] = struct{}{}
	s.send(o.syncFrameLocked(epoch, version, known, id))
}

func (o *object) unsubscribe(s *session) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.subs[s]
	delete(o.subs, s)
	for k, r := range o.awaiting {
		if r.sess == s {
			delete(o.awaiting, k)
		}
	}
	return ok
}
