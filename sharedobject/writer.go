package sharedobject

import (
	"context"
	"errors"
	"time"
)

// The write path. Every change to an object, from a client or from a backend, goes through its node's
// write queue for that object: judged against the replica, committed to the log with
// Nats-Expected-Last-Subject-Sequence (one total order per object across all nodes), then applied. When
// another node committed first the publish fails, the replica catches up and the writes are judged again.
// While one entry is in flight the queue fills, and the next entry carries all of it (group commit).

const (
	maxGroup      = 128 // writes committed in one log entry
	maxRetries    = 50  // lost races before a write is answered busy
	snapshotEvery = 256 // entries between snapshots (log roll-ups)
)

// writeReq is one queued write. Exactly one of changes/clear/msg/lock is the payload; sess is set for
// client writes, done for server-side ones.
type writeReq struct {
	sess     *session
	id       string
	epoch    string // the epoch the client's bases belong to ("" = unknown: bases alone decide)
	user     string
	changes  []Change
	force    bool // server-side: no base-version check
	clear    bool
	msg      *Message
	lock     *LockState // acquire a lock (server-side)
	holds    string     // server-side write made under this lock: may pass it
	unlockID string     // release this lock once the write is committed
	retries  int
	version  uint64 // the version its commit reached (or the object's, when it committed nothing)
	done     chan writeResult
}

type writeResult struct {
	version uint64
	err     error
}

func (o *object) enqueue(r *writeReq) {
	o.mu.Lock()
	o.wq = append(o.wq, r)
	o.wakeWritersLocked() // a writer waiting on a lock may be able to take this one (an unlock)
	start := !o.writing
	o.writing = true
	o.mu.Unlock()
	if start {
		o.node.wg.Add(1)
		go o.writeLoop()
	}
}

func (o *object) writeLoop() {
	defer o.node.wg.Done()
	for {
		o.mu.Lock()
		reqs, wake, wait := o.takeLocked()
		if len(reqs) == 0 {
			if wake == nil {
				o.writing = false
				o.mu.Unlock()
				return
			}
			o.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-wake:
			case <-t.C:
			case <-o.node.ctx.Done():
				t.Stop()
				o.failQueue(wireErr(CodeUnavailable, "server is shutting down; retry on another node"))
				return
			}
			t.Stop()
			continue
		}
		o.mu.Unlock()
		if o.commit(reqs) {
			o.snapshot()
		}
	}
}

// takeLocked picks the next writes. While a lock is held only writes made under it may pass; the rest
// wait (wake and wait say for what).
func (o *object) takeLocked() (reqs []*writeReq, wake <-chan struct{}, wait time.Duration) {
	if len(o.wq) == 0 {
		return nil, nil, 0
	}
	lock := o.state.Lock
	now := time.Now().UnixMilli()
	if lock.ID != "" && lock.Until > now {
		for i, r := range o.wq {
			if r.holds == lock.ID {
				o.wq = append(o.wq[:i], o.wq[i+1:]...)
				return []*writeReq{r}, nil, 0
			}
		}
		return nil, o.lockWake, time.Duration(lock.Until-now) * time.Millisecond
	}
	n := min(len(o.wq), maxGroup)
	if o.node.hooks.find(o.key) != nil {
		n = 1 // each hooked write sees the state its hook approved
	}
	reqs = append([]*writeReq(nil), o.wq[:n]...)
	o.wq = append(o.wq[:0], o.wq[n:]...)
	return reqs, nil, 0
}

// commit judges reqs, publishes what was accepted as one entry, and answers everyone. It reports
// whether the log has grown enough to be rolled up.
func (o *object) commit(reqs []*writeReq) (needSnapshot bool) {
	verdicts, ok := o.askHooks(reqs)
	if !ok {
		return false // answered already
	}
	o.mu.Lock()
	if verdicts != nil && verdicts.seq != o.seq {
		// The object changed while the hook was deciding: ask again with the new state.
		o.wq = append(reqs, o.wq...)
		o.mu.Unlock()
		return false
	}
	ops, pending := o.draftLocked(reqs, verdicts)
	base := o.seq
	o.mu.Unlock()
	if len(ops) == 0 {
		return false
	}
	seq, err := o.node.publish(o.node.ctx, o.subject, encodeEntry(ops), base, false)
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		if o.seq == base {
			o.applyLocked(seq, &entry{ops: ops})
		}
		for _, r := range pending {
			if r.done != nil {
				r.done <- writeResult{version: r.version}
			}
		}
		return o.snapshotAt >= snapshotEvery
	case errors.Is(err, errConflict):
		o.forgetLocked(pending)
		if cerr := o.catchUpLocked(o.node.ctx); cerr != nil {
			o.failLocked(pending, wireErr(CodeUnavailable, "cannot read the object's log: %v", cerr))
			return false
		}
		var again []*writeReq
		for _, r := range pending {
			if r.retries++; r.retries > maxRetries {
				o.answerErrLocked(r, wireErr(CodeBusy, "object %q is under heavy contention; retry the request with the same id", o.key.name))
				continue
			}
			again = append(again, r)
		}
		o.wq = append(again, o.wq...)
	default:
		o.forgetLocked(pending)
		o.failLocked(pending, wireErr(CodeUnavailable, "could not store the change: %v", err))
	}
	return false
}

// draftLocked judges each write against the replica plus the writes before it in this group. Writes that
// need no commit (all rejected, no-ops, duplicates, errors) are answered at once; the others become ops.
func (o *object) draftLocked(reqs []*writeReq, verdicts *hookVerdicts) (ops []op, pending []*writeReq) {
	st := o.state
	d := st.NewDraft()
	lim := &o.node.cfg.Limits
	epoch := st.Epoch
	inGroup := map[string]bool{} // requestKeys in this entry: a retry queued behind its original
	var deferred []*writeReq
	defer func() { o.wq = append(deferred, o.wq...) }()
	for i, r := range reqs {
		switch {
		case r.msg != nil && r.msg.ID != "" && (st.Knows(r.msg.User, r.msg.ID) || inGroup[requestKey(r.msg.User, r.msg.ID)]):
			// A re-sent message that was delivered before: only the sender is told (again).
			r.sess.send(messageFrame(o.key.name, o.key.persistent, r.msg))
			continue
		case r.msg != nil:
			if r.msg.ID != "" {
				inGroup[requestKey(r.msg.User, r.msg.ID)] = true
			}
			ops = append(ops, op{msg: r.msg})
			r.version = d.Version()
			pending = append(pending, r)
			continue
		case r.lock != nil:
			ops = append(ops, op{lock: r.lock})
			r.version = d.Version()
			pending = append(pending, r)
			continue
		}
		if r.unlockID != "" && (st.Lock.ID != r.unlockID || st.Lock.Until <= time.Now().UnixMilli()) {
			o.answerErrLocked(r, wireErr(CodeLockExpired, "lock %q on %q is no longer held (it expired); nothing was applied", r.unlockID, o.key.name))
			continue
		}
		if r.id != "" {
			if _, names, ok := st.Recent(r.user, r.id); ok {
				o.answerDuplicateLocked(r, names)
				continue
			}
			if inGroup[requestKey(r.user, r.id)] {
				deferred = append(deferred, r) // its original is in this entry: answer it after the commit
				continue
			}
			inGroup[requestKey(r.user, r.id)] = true
		}
		var c *Commit
		var rejects []rejectNote
		if r.clear {
			c = d.AddClear()
		} else {
			outcomes := d.Judge(r.changes, r.force)
			if r.epoch != "" && r.epoch != st.Epoch {
				// The bases were versions of an earlier life of the object: none of them can be trusted.
				for j := range outcomes {
					outcomes[j] = Rejected
				}
			}
			for j, ch := range r.changes {
				reason := ""
				if outcomes[j] == Rejected {
					reason = "conflict"
				} else if verdicts != nil && i == 0 {
					if why, ok := verdicts.reject[ch.Name]; ok {
						outcomes[j], reason = Rejected, why
					}
				}
				if reason != "" {
					v, ok := d.Current(ch.Name)
					rejects = append(rejects, rejectNote{name: ch.Name, value: v, exists: ok, reason: reason})
				}
			}
			slots, size := d.Fits(r.changes, outcomes)
			switch {
			case slots > lim.MaxSlots && slots > st.Len():
				o.answerErrLocked(r, wireErr(CodeTooManySlots, "object %q would have %d slots; the limit is %d (max_slots)", o.key.name, slots, lim.MaxSlots))
				continue
			case size > lim.MaxObjectBytes && size > st.Bytes():
				o.answerErrLocked(r, wireErr(CodeObjectTooLarge, "object %q would hold %d bytes; the limit is %d (max_object_bytes)", o.key.name, size, lim.MaxObjectBytes))
				continue
			}
			c = d.Add(r.changes, outcomes)
		}
		if c == nil {
			r.version = d.Version()
			o.answerNothingLocked(r, rejects)
			if r.unlockID != "" {
				ops = append(ops, op{unlock: r.unlockID})
				pending = append(pending, r)
			}
			continue
		}
		if epoch == "" {
			epoch = newEpoch()
			c.Epoch = epoch
		}
		c.ID, c.User = r.id, r.user
		if r.sess != nil {
			c.Origin = r.sess.origin
			o.awaiting[c.Origin+"\x00"+r.id] = &pendingReply{sess: r.sess, rejects: rejects}
		}
		r.version = c.Version
		ops = append(ops, op{commit: c})
		if r.unlockID != "" {
			ops = append(ops, op{unlock: r.unlockID})
		}
		pending = append(pending, r)
	}
	return ops, pending
}

// answerNothingLocked answers a write that needs no commit: every change was a no-op or rejected.
func (o *object) answerNothingLocked(r *writeReq, rejects []rejectNote) {
	if r.done != nil {
		if r.unlockID == "" {
			r.done <- writeResult{version: r.version}
		}
		return
	}
	if r.sess == nil {
		return
	}
	f := beginSync(o.key.name, o.key.persistent, o.state.Epoch, o.state.Version, r.id)
	for _, n := range rejects {
		f.reject(n.name, n.value, n.exists, n.reason)
	}
	r.sess.send(f.end())
}

// answerDuplicateLocked answers a retried request that was committed before: success for what it committed.
func (o *object) answerDuplicateLocked(r *writeReq, names []string) {
	if r.done != nil {
		r.done <- writeResult{version: o.state.Version}
		return
	}
	f := beginSync(o.key.name, o.key.persistent, o.state.Epoch, o.state.Version, r.id)
	for _, n := range names {
		f.success(n)
	}
	r.sess.send(f.end())
}

func (o *object) answerErrLocked(r *writeReq, e *WireError) {
	if r.done != nil {
		r.done <- writeResult{err: e}
		return
	}
	if r.sess != nil {
		r.sess.send(errorFrame(e, r.id, o.key.name, o.key.persistent))
	}
}

func (o *object) failLocked(reqs []*writeReq, e *WireError) {
	for _, r := range reqs {
		o.answerErrLocked(r, e)
	}
}

func (o *object) failQueue(e *WireError) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failLocked(o.wq, e)
	o.wq = nil
	o.writing = false
}

// forgetLocked drops the replies kept for writes that were not committed after all.
func (o *object) forgetLocked(reqs []*writeReq) {
	for _, r := range reqs {
		if r.sess != nil && r.id != "" {
			delete(o.awaiting, r.sess.origin+"\x00"+r.id)
		}
	}
}

// snapshot rolls the object's log up into one entry so that loading it stays cheap. Losing the race to
// another writer is harmless: a later commit tries again.
func (o *object) snapshot() {
	o.mu.Lock()
	data, base := encodeSnapshot(o.state), o.seq
	o.snapshotAt = 0
	o.mu.Unlock()
	seq, err := o.node.publish(o.node.ctx, o.subject, data, base, true)
	if err != nil {
		return
	}
	o.mu.Lock()
	if o.seq == base {
		o.seq = seq
	}
	o.mu.Unlock()
}

// submit queues a server-side write and waits for its outcome.
func (o *object) submit(ctx context.Context, r *writeReq) (uint64, error) {
	r.done = make(chan writeResult, 1)
	o.enqueue(r)
	select {
	case res := <-r.done:
		return res.version, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
