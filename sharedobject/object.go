package sharedobject

import (
	"context"
	"encoding/base64"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/internal/wsconn"
	"github.com/rso-server/rso/sharedobject/internal/model"
)

// object is this node's replica of one shared object: the state rebuilt from the object's log, the local
// subscribers, and the queue of writes waiting to be committed.
//
// Lock order: object.catching before object.mu; Node.mu is never held while taking object.mu (the users
// count and grace timer, which decide the object's place in the node's map, are guarded by Node.mu), and
// session.mu is never held while taking object.mu. No network I/O happens under Node.mu or object.mu.
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
	logBytes   int // bytes of those entries
	snapBytes  int // size of the last snapshot: the log is rolled up once it has grown by half of it

	// catching is held while the log is read to catch up (one read at a time). o.mu is not held across
	// the read: subscribes, leaves and the node's map never wait on a slow or stalled log.
	catching sync.Mutex

	// Guarded by Node.mu:
	users int // subscribed sessions plus API calls in progress; 0 starts the grace timer
	grace *time.Timer

	mu       sync.Mutex
	state    *model.State
	seq      uint64 // stream sequence of the last applied entry
	subs     map[*session]struct{}
	awaiting map[string]*pendingReply // origin+"\x00"+id → what the changer is told besides its successes
	wq       []*writeReq
	writing  bool
	lockWake chan struct{} // closed and replaced whenever the lock state changes
	// resets counts resetLocked calls: a catch-up that started before one reads the new log from its start.
	resets uint64
	// versionGap is set when an applied commit was not the next version: the replica no longer matches the
	// log (entries of a stream created again, applied onto the old state), and a catch-up starts it over.
	versionGap bool
	rate       changeRate // slot changes and messages of the last minute
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

// rejectNote is a refused change. The value it is answered with is read when the answer is written, from
// the committed state: never from a draft that may still lose to another node.
type rejectNote struct {
	name   string
	reason string
	hook   bool // refused by a validation hook (reason is its text), not for a conflict
}

// rejectsLocked adds the rejects to an answer, with each slot's committed value.
func (o *object) rejectsLocked(f *syncFrame, rejects []rejectNote) {
	for _, r := range rejects {
		v, _, ok := o.state.Get(r.name)
		f.reject(r.name, v, ok, r.reason)
	}
}

func newObject(n *Node, key objKey) *object {
	tok := key.token()
	o := &object{
		node: n, key: key,
		subject:   "rso.so." + key.ns() + "." + tok,
		evSubject: "rso.ev." + key.ns() + "." + tok,
		stream:    n.streamFor(key.persistent),
		ready:     make(chan struct{}),
		state:     n.newState(),
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
	if err := o.catchUp(ctx); err != nil {
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
	if seq <= o.seq {
		o.mu.Unlock()
		return // applied already (by the writer that committed it, or by a catch-up)
	}
	if last != o.seq || o.versionGap {
		// A gap: entries were missed (slow subscription, reconnect). Refill from the stream.
		o.mu.Unlock()
		if err := o.catchUp(o.node.ctx); err != nil {
			o.node.log.Error("shared object catch-up failed", "obj", o.key.name, "err", err)
		}
		return
	}
	o.applyDataLocked(seq, m.Data)
	gap := o.versionGap
	o.mu.Unlock()
	if gap {
		if err := o.catchUp(o.node.ctx); err != nil {
			o.node.log.Error("shared object catch-up failed", "obj", o.key.name, "err", err)
		}
	}
}

// catchUp reads every stored entry after the replica's sequence and applies it. The log is read without
// o.mu; each entry is applied under it, in order, unless a live delivery applied it first. A reset during
// the read (the stream was created again) makes it read the new log from its start; a replica found out of
// step with the log (versionGap) is started over once.
func (o *object) catchUp(ctx context.Context) error {
	o.catching.Lock()
	defer o.catching.Unlock()
	start := time.Now()
	defer func() { o.node.met.catchUp.Observe(time.Since(start).Seconds()) }()
	restarted, wiped := false, false
	for {
		o.mu.Lock()
		if o.versionGap && !restarted {
			o.node.log.Warn("replica out of step with the log; reading it again", "obj", o.key.name)
			restarted = true
			o.resetLocked(0)
		}
		o.versionGap = false
		before, gen := o.seq, o.resets
		o.mu.Unlock()
		err := o.node.fetch(ctx, o.stream, o.subject, before+1, func(seq uint64, data []byte) {
			o.mu.Lock()
			if seq > o.seq && o.resets == gen {
				o.applyDataLocked(seq, data)
			}
			o.mu.Unlock()
		})
		if err != nil {
			return err
		}
		o.mu.Lock()
		again := o.resets != gen || o.versionGap && !restarted
		seq := o.seq
		o.mu.Unlock()
		switch {
		case again:
			continue
		case seq != before || seq == 0 || wiped:
			return nil
		}
		// Nothing after our sequence. If the stream no longer has it either, the log was wiped (a
		// temporary object's reset marker expired, its in-memory stream was lost with a NATS restart, or an
		// operator purged it): start over, and read what was written since from the beginning.
		last, err := o.node.lastSeq(ctx, o.stream, o.subject)
		if err != nil {
			return err
		}
		o.mu.Lock()
		stale := last < o.seq && o.seq == seq
		if stale {
			o.resetLocked(0)
		}
		o.mu.Unlock()
		if !stale {
			return nil
		}
		wiped = true
	}
}

func (o *object) applyDataLocked(seq uint64, data []byte) {
	e, err := model.DecodeEntry(data)
	if err != nil {
		o.node.log.Error("skipping malformed log entry", "obj", o.key.name, "seq", seq, "err", err)
		o.seq = seq
		return
	}
	o.applyLocked(seq, e)
	if e.Snap != nil {
		o.logBytes, o.snapBytes = 0, len(data)
	} else {
		o.logBytes += len(data)
	}
}

// applyLocked applies one entry and tells the local subscribers.
func (o *object) applyLocked(seq uint64, e *model.Entry) {
	o.seq = seq
	o.snapshotAt++
	o.state.Advance(e.TS)
	switch {
	case e.Reset:
		o.resetLocked(seq)
		return
	case e.Snap != nil:
		o.snapshotAt = 0
		if e.Snap.Epoch == o.state.Epoch && e.Snap.Version == o.state.Version {
			return // the snapshot is our own state rolled up
		}
		old := o.state
		o.state = e.Snap
		o.state.SetMemoryBounds(o.node.cfg.DuplicateWindow, o.node.cfg.Limits.MaxRememberedBytes)
		o.resyncSubsLocked(old.Epoch, old.Version)
		o.wakeWritersLocked()
		return
	}
	for _, op := range e.Ops {
		switch {
		case op.Commit != nil:
			o.rate.add(e.TS, len(op.Commit.Sets)+len(op.Commit.Deletes))
			o.applyCommitLocked(op.Commit)
		case op.Msg != nil:
			if op.Msg.ID != "" {
				if o.state.Delivered(op.Msg) {
					continue // a copy in the log of a message delivered already: every replica skips it alike
				}
				o.state.RememberMessage(op.Msg)
			}
			o.rate.add(e.TS, 1)
			frame := messageFrame(o.key.name, o.key.persistent, op.Msg)
			f, sent := wsconn.NewShared(frame), 0
			for s := range o.subs {
				if s.sendShared(f) {
					sent++
				}
			}
			o.node.met.delivered(sent, len(frame))
		case op.Lock != nil:
			o.state.Lock = *op.Lock
			o.wakeWritersLocked()
		default:
			if o.state.Lock.ID == op.Unlock {
				o.state.Lock = model.LockState{}
			}
			o.wakeWritersLocked()
		}
	}
}

func (o *object) applyCommitLocked(c *model.Commit) {
	if c.Version != o.state.Version+1 {
		o.node.log.Warn("log entry out of version order", "obj", o.key.name, "have", o.state.Version, "got", c.Version)
		o.versionGap = true
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
		f, sent := wsconn.NewShared(others), 0
		for s := range o.subs {
			if s.origin != c.Origin && s.sendShared(f) {
				sent++
			}
		}
		o.node.met.delivered(sent, len(others))
	}
	if reply != nil {
		f := beginSync(o.key.name, o.key.persistent, o.state.Epoch, o.state.Version, c.ID)
		for _, sv := range c.Sets {
			f.success(sv.Name)
		}
		for _, d := range c.Deletes {
			f.success(d)
		}
		o.rejectsLocked(&f, reply.rejects)
		reply.sess.send(f.end())
	}
}

// resetLocked ends the object's epoch: it is empty again, and subscribers start over.
func (o *object) resetLocked(seq uint64) {
	o.resets++
	o.state = o.node.newState()
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
	var events []model.Event
	full := true
	if known {
		events, full = st.Delta(epoch, version, o.node.cfg.ResyncWindow)
	}
	if full {
		f.clear()
		st.Slots(func(name string, value []byte, _ uint64) {
			f.event(model.Event{Code: "change", Name: name, Value: value})
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
	if _, ok := o.subs[s]; !ok {
		o.node.met.subscriptions.Inc()
	}
	o.subs[s] = struct{}{}
	s.send(o.syncFrameLocked(epoch, version, known, id))
}

func (o *object) unsubscribe(s *session) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.subs[s]
	if ok {
		o.node.met.subscriptions.Dec()
	}
	delete(o.subs, s)
	for k, r := range o.awaiting {
		if r.sess == s {
			delete(o.awaiting, k)
		}
	}
	return ok
}
