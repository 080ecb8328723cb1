package sharedobject

import (
	"context"
	"errors"
	"time"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/internal/model"
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
	changes  []model.Change
	force    bool // server-side: no base-version check
	clear    bool
	msg      *model.Message
	lock     *model.LockState // acquire a lock (server-side)
	holds    string           // server-side write made under this lock: may pass it
	unlockID string           // release this lock once the write is committed
	retries  int
	queued   time.Time // when it joined the queue (rso_so_commit_duration_seconds)
	// what its draft's commit does to slots, counted once the commit is stored (rso_so_slot_changes_total)
	accepted int
	rejects  []rejectNote
	version  uint64 // the version its commit reached (or the object's, when it committed nothing)
	done     chan writeResult
}

type writeResult struct {
	version uint64
	err     error
}

func (o *object) enqueue(r *writeReq) {
	o.mu.Lock()
	if max := o.node.cfg.Limits.MaxQueuedWrites; len(o.wq) >= max {
		o.answerErrLocked(r, wire.Errorf(wire.CodeBusy, "object %q has %d writes waiting on this node (max_queued_writes); retry the request with the same id shortly", o.key.name, max))
		o.mu.Unlock()
		return
	}
	r.queued = time.Now()
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
				o.failQueue(wire.Errorf(wire.CodeUnavailable, "server is shutting down; retry on another node"))
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
		o.node.met.retries.Add(float64(len(reqs)))
		return false
	}
	if o.aheadLocked(reqs) {
		// A base newer than this replica: it may only be behind the log. Read it, then judge.
		o.mu.Unlock()
		if err := o.catchUp(o.node.ctx); err != nil {
			o.mu.Lock()
			o.failLocked(reqs, o.storageErr("cannot read the object's log", err))
			o.mu.Unlock()
			return false
		}
		o.mu.Lock()
	}
	ts := max(time.Now().UnixMilli(), o.state.Clock())
	ops, pending := o.draftLocked(reqs, verdicts, ts)
	base := o.seq
	o.mu.Unlock()
	if len(ops) == 0 {
		return false
	}
	data := model.EncodeEntry(ts, ops)
	seq, err := o.node.publish(o.node.ctx, o.subject, data, base, false)
	if err != nil && !errors.Is(err, errConflict) && !o.node.errLinkLost(err) {
		o.node.alarms.Warn("storage", "cannot store a write; answered unavailable", "obj", o.key.name, "err", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		o.node.met.commits.Inc()
		for _, r := range pending {
			o.node.met.slotOutcomes(r.accepted, r.rejects)
			o.node.met.commit.Observe(time.Since(r.queued).Seconds())
		}
		o.logBytes += len(data)
		if o.seq == base {
			o.applyLocked(seq, &model.Entry{TS: ts, Ops: ops})
		}
		for _, r := range pending {
			if r.done != nil {
				r.done <- writeResult{version: r.version}
			}
		}
		return o.snapshotAt >= snapshotEvery && o.logBytes >= o.snapBytes/2
	case errors.Is(err, errConflict):
		o.forgetLocked(pending)
		o.mu.Unlock()
		cerr := o.catchUp(o.node.ctx)
		o.mu.Lock()
		if cerr != nil {
			o.failLocked(pending, o.storageErr("cannot read the object's log", cerr))
			return false
		}
		var again []*writeReq
		for _, r := range pending {
			if r.retries++; r.retries > maxRetries {
				o.answerErrLocked(r, wire.Errorf(wire.CodeBusy, "object %q is under heavy contention; retry the request with the same id", o.key.name))
				continue
			}
			again = append(again, r)
		}
		o.wq = append(again, o.wq...)
		o.node.met.retries.Add(float64(len(again)))
	default:
		o.forgetLocked(pending)
		o.failLocked(pending, o.storageErr("could not store the change", err))
	}
	return false
}

// storageErr answers a write that could not be judged or stored. A write cut off by a lost NATS connection
// may have been stored: the client re-sends it with the same id, and it is applied at most once.
func (o *object) storageErr(what string, err error) *wire.Error {
	if o.node.errLinkLost(err) {
		return wire.Errorf(wire.CodeUnavailable, "%s: the server lost its NATS connection; re-send with the same id (it is applied at most once)", what)
	}
	return wire.Errorf(wire.CodeUnavailable, "%s: %v; re-send with the same id (it is applied at most once)", what, err)
}

// aheadLocked reports whether a client write names a base version above the replica's.
func (o *object) aheadLocked(reqs []*writeReq) bool {
	for _, r := range reqs {
		if r.force || r.epoch != "" && r.epoch != o.state.Epoch {
			continue
		}
		for _, c := range r.changes {
			if c.Base > o.state.Version {
				return true
			}
		}
	}
	return false
}

// draftLocked judges each write against the replica plus the writes before it in this group. Writes that
// need no commit (all rejected, no-ops, duplicates, errors) are answered at once; the others become ops
// of the entry stamped ts.
func (o *object) draftLocked(reqs []*writeReq, verdicts *hookVerdicts, ts int64) (ops []model.Op, pending []*writeReq) {
	st := o.state
	d := st.NewDraft()
	lim := &o.node.cfg.Limits
	epoch := st.Epoch
	inGroup := map[uint64]uint64{} // requestKey → fingerprint of the requests in this entry
	memBytes := 0                  // records this entry adds to the object's memory
	var deferred []*writeReq
	defer func() { o.wq = append(deferred, o.wq...) }()
	// remember checks that a request with an id can be remembered for the whole duplicate window.
	remember := func(r *writeReq, key uint64, size int) bool {
		if !st.HasRoom(memBytes+size, ts) {
			o.answerErrLocked(r, wire.Errorf(wire.CodeBusy, "object %q remembers %d bytes of request ids from the last %s (max_remembered_bytes); retry the request with the same id shortly",
				o.key.name, lim.MaxRememberedBytes, o.node.cfg.DuplicateWindow))
			return false
		}
		memBytes += size
		return true
	}
	for i, r := range reqs {
		if r.msg != nil {
			m := r.msg
			if m.ID != "" {
				key, fp := model.RequestKey(m.User, m.ID), model.MessageFingerprint(m.Handler, m.Args)
				prev, inThis := inGroup[key]
				if rec := st.Recall(key); rec != nil {
					prev, inThis = rec.FP(), true
				}
				committed := st.Recall(key) != nil
				switch {
				case inThis && prev != 0 && prev != fp:
					o.answerErrLocked(r, idReused(m.ID, o.key.name))
					continue
				case committed:
					// A re-sent message that was delivered before: only the sender is told (again).
					r.sess.send(messageFrame(o.key.name, o.key.persistent, m))
					continue
				case inThis:
					deferred = append(deferred, r) // its original is in this entry, not stored yet
					continue
				}
				if !remember(r, key, model.RecordBytes) {
					continue
				}
				inGroup[key] = fp
			}
			ops = append(ops, model.Op{Msg: m})
			r.version = d.Version()
			pending = append(pending, r)
			continue
		}
		if r.lock != nil {
			ops = append(ops, model.Op{Lock: r.lock})
			r.version = d.Version()
			pending = append(pending, r)
			continue
		}
		r.accepted, r.rejects = 0, nil
		if r.unlockID != "" && (st.Lock.ID != r.unlockID || st.Lock.Until <= time.Now().UnixMilli()) {
			o.answerErrLocked(r, wire.Errorf(wire.CodeLockExpired, "lock %q on %q is no longer held (it expired); nothing was applied", r.unlockID, o.key.name))
			continue
		}
		var key, fp uint64
		if r.id != "" {
			key, fp = model.RequestKey(r.user, r.id), model.UpdateFingerprint(r.changes)
			if rec := st.Recall(key); rec != nil {
				if rec.FP() != 0 && rec.FP() != fp {
					o.answerErrLocked(r, idReused(r.id, o.key.name))
				} else {
					o.answerDuplicateLocked(r, rec.CommittedNames(r.changes))
				}
				continue
			}
			if prev, ok := inGroup[key]; ok {
				if prev != fp {
					o.answerErrLocked(r, idReused(r.id, o.key.name))
				} else {
					deferred = append(deferred, r) // its original is in this entry: answer it after the commit
				}
				continue
			}
		}
		if werr := o.checkBasesLocked(r); werr != nil {
			o.answerErrLocked(r, werr)
			continue
		}
		var outcomes []model.Outcome
		if !r.clear {
			outcomes = d.Judge(r.changes, r.force)
			if r.epoch != "" && r.epoch != st.Epoch {
				// The bases were versions of an earlier life of the object: none of them can be trusted.
				for j := range outcomes {
					outcomes[j] = model.Rejected
				}
			} else if !r.force && rejectedByDraft(st, r.changes, outcomes) {
				// Refused only because of a write before it in this entry, which may still lose to another
				// node: judge it again once that entry is settled.
				deferred = append(deferred, r)
				continue
			}
		}
		if r.id != "" {
			if !remember(r, key, model.RecordBytes+(len(r.changes)+7)/8) {
				continue
			}
			inGroup[key] = fp
		}
		var c *model.Commit
		var rejects []rejectNote
		if r.clear {
			c = d.AddClear()
		} else {
			for j, ch := range r.changes {
				reason, byHook := "", false
				if outcomes[j] == model.Rejected {
					reason = reasonConflict
				} else if verdicts != nil && i == 0 {
					if why, ok := verdicts.reject[ch.Name]; ok {
						outcomes[j], reason, byHook = model.Rejected, why, true
					}
				}
				if reason != "" {
					rejects = append(rejects, rejectNote{name: ch.Name, reason: reason, hook: byHook})
				}
			}
			slots, size := d.Fits(r.changes, outcomes)
			switch {
			case slots > lim.MaxSlots && slots > st.Len():
				o.answerErrLocked(r, wire.Errorf(wire.CodeTooManySlots, "object %q would have %d slots; the limit is %d (max_slots)", o.key.name, slots, lim.MaxSlots))
				continue
			case size > lim.MaxObjectBytes && size > st.Bytes():
				o.answerErrLocked(r, wire.Errorf(wire.CodeObjectTooLarge, "object %q would hold %d bytes; the limit is %d (max_object_bytes)", o.key.name, size, lim.MaxObjectBytes))
				continue
			}
			c = d.Add(r.changes, outcomes)
			if c != nil && r.id != "" {
				c.FP, c.Mask = fp, model.CommitMask(outcomes)
			}
		}
		if c == nil {
			r.version = d.Version()
			o.node.met.slotOutcomes(0, rejects)
			o.answerNothingLocked(r, rejects)
			if r.unlockID != "" {
				ops = append(ops, model.Op{Unlock: r.unlockID})
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
		if !r.clear {
			r.accepted, r.rejects = len(c.Sets)+len(c.Deletes), rejects
		}
		ops = append(ops, model.Op{Commit: c})
		if r.unlockID != "" {
			ops = append(ops, model.Op{Unlock: r.unlockID})
		}
		pending = append(pending, r)
	}
	return ops, pending
}

// rejectedByDraft reports whether a change was rejected although the committed state would take it: the
// slot was changed by an earlier write of the same entry.
func rejectedByDraft(st *model.State, changes []model.Change, outcomes []model.Outcome) bool {
	for i, c := range changes {
		if outcomes[i] != model.Rejected {
			continue
		}
		if _, v, _ := st.Get(c.Name); v <= c.Base {
			return true
		}
	}
	return false
}

// checkBasesLocked refuses a client update whose base is above the object's version (after a catch-up):
// no client can have seen that version.
func (o *object) checkBasesLocked(r *writeReq) *wire.Error {
	if r.force || r.epoch != "" && r.epoch != o.state.Epoch {
		return nil
	}
	for _, c := range r.changes {
		if c.Base > o.state.Version {
			return wire.Errorf(wire.CodeBadFrame, "slot %q has base %d but object %q is at version %d; send the version you last saw (0 if none)", c.Name, c.Base, o.key.name, o.state.Version)
		}
	}
	return nil
}

func idReused(id, obj string) *wire.Error {
	return wire.Errorf(wire.CodeIDReused, "request id %q was already used for a different request on %q; use a new id for a new request (nothing was applied)", id, obj)
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
	o.rejectsLocked(&f, rejects)
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

func (o *object) answerErrLocked(r *writeReq, e *wire.Error) {
	if r.done != nil {
		r.done <- writeResult{err: e}
		return
	}
	if r.sess != nil {
		id := r.id
		if r.msg != nil {
			id = r.msg.ID
		}
		r.sess.sendError(e, id, o.key.name, o.key.persistent)
	}
}

func (o *object) failLocked(reqs []*writeReq, e *wire.Error) {
	for _, r := range reqs {
		o.answerErrLocked(r, e)
	}
}

func (o *object) failQueue(e *wire.Error) {
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
	data, base := model.EncodeSnapshot(o.state), o.seq
	o.snapshotAt, o.logBytes, o.snapBytes = 0, 0, len(data)
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
