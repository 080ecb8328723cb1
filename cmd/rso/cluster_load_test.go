//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rso-server/rso/client"
)

// The load of the cluster fault tests (cluster_fault_test.go). Every client is named (?user=), so that a
// request re-sent after a reconnect, to whichever node answers, is recognised (PROTOCOL 1.6, 3.3), and each
// has the list of all nodes: when it loses its node it dials the next ones (client.DialAny), subscribes again
// from the last version it saw and re-sends its unanswered request with the same id. A request is re-sent
// until it gets a definite answer (success or reject; sent; the message's echo), so at a checkpoint every
// request has one and the ledgers must add up exactly:
//
//   - compare-and-set writers: each reads the counter (slot "n") at version V and writes n+1 based on V. The
//     counter only ever grows by one per commit, so on every node and every subscriber it equals the
//     object's version, and at a checkpoint it equals the number of writes answered success: one more is a
//     write applied twice (or committed without being acknowledged), one fewer is an acknowledged one lost;
//   - senders: `send` on an object; acknowledged when the sender gets its own message back. Every subscriber
//     whose connection was up since before a message was sent must get it, and no connection gets it twice;
//   - private messages over /relay, each user writing to the next; acknowledged by `sent`. At a checkpoint
//     the recipient's history on every node holds each acknowledged message exactly once, at the sequence it
//     was acknowledged with, the conversation gap-free, and nothing that was never acknowledged.

const (
	busyObj     = "fault/cas/busy"  // the busiest object: two writers per node
	quietObj    = "fault/cas/quiet" // one writer per node
	chatObj     = "fault/chat"      // sends only
	counterSlot = "n"

	casEvery   = 25 * time.Millisecond  // each writer's pace
	sendEvery  = 100 * time.Millisecond // each sender's pace (well below frames_per_second)
	relayEvery = 100 * time.Millisecond // each relay user's pace (below messages_per_second, 20)
	retryEvery = 100 * time.Millisecond // pause before re-sending a refused request: pacing, not a wait for a condition

	answerTimeout = 30 * time.Second  // a request unanswered for this long is re-sent
	resolveWait   = 150 * time.Second // how long one request may take to get a definite answer before the client gives up (a test failure)
	convergeWait  = 60 * time.Second
)

// ackRec is a request answered with success (sent, echoed).
type ackRec struct {
	id        string
	obj       string // the object (CAS), or the peer (private message)
	version   uint64 // CAS: the answer's version; private message: the sequence
	resent    bool   // answered after a re-send: for CAS the version is the object's current one (1.6)
	attempts  int
	firstSent time.Time
	answered  time.Time
}

// refusal is one answer that was not a definite one, or a failed (re)connection: unavailable, busy,
// timeout, closed, dial …
type refusal struct {
	code      string
	message   string
	at        time.Time
	firstSent time.Time // of the request it refused; zero for a failed connection
}

// actorStats is what one client was told: the ledger, its refusals, its moves between nodes, its problems.
type actorStats struct {
	who  string
	quit *atomic.Bool // the load is closing: stop trying

	smu      sync.Mutex
	acks     []ackRec
	answers  []ackRec // every definite answer: the acks, and (CAS) rejects and no-ops
	refused  []refusal
	moves    []string
	problems []string
	home     string // the node it is connected to; "" while none
}

func (a *actorStats) ack(r ackRec) {
	a.smu.Lock()
	defer a.smu.Unlock()
	a.acks = append(a.acks, r)
	a.answers = append(a.answers, r)
}

// answer records a definite answer that is not a success (a reject or a no-op).
func (a *actorStats) answer(r ackRec) {
	a.smu.Lock()
	defer a.smu.Unlock()
	a.answers = append(a.answers, r)
}

func (a *actorStats) refuse(code string, firstSent time.Time) { a.refuseSaying(code, "", firstSent) }

// refuseSaying records a refusal and the message it came with.
func (a *actorStats) refuseSaying(code, message string, firstSent time.Time) {
	a.smu.Lock()
	defer a.smu.Unlock()
	a.refused = append(a.refused, refusal{code: code, message: message, at: time.Now(), firstSent: firstSent})
}

func (a *actorStats) problem(format string, args ...any) {
	a.smu.Lock()
	defer a.smu.Unlock()
	a.problems = append(a.problems, a.who+": "+fmt.Sprintf(format, args...))
}

func (a *actorStats) setHome(addr string, names map[string]string) {
	a.smu.Lock()
	defer a.smu.Unlock()
	if a.home != "" && a.home != addr {
		a.moves = append(a.moves, fmt.Sprintf("%s %s→%s", a.who, names[a.home], names[addr]))
	}
	a.home = addr
}

func (a *actorStats) snapshot() (acks []ackRec, refused []refusal, home string) {
	a.smu.Lock()
	defer a.smu.Unlock()
	return slices.Clone(a.acks), slices.Clone(a.refused), a.home
}

func (a *actorStats) answered() []ackRec {
	a.smu.Lock()
	defer a.smu.Unlock()
	return slices.Clone(a.answers)
}

// actor is one client of the load.
type actor interface {
	stats() *actorStats
	run(stop <-chan struct{}) // until stop, then returns once its request in flight has a definite answer
	close()
}

func (a *actorStats) stats() *actorStats { return a }

// rotate returns addrs starting after the one equal to from (or at index start when from is not in it).
func rotate(addrs []string, from string, start int) []string {
	if i := slices.Index(addrs, from); i >= 0 {
		start = i + 1
	}
	out := make([]string, 0, len(addrs))
	for k := range addrs {
		out = append(out, addrs[(start+k)%len(addrs)])
	}
	return out
}

// dialSOAny dials the nodes in order with client.DialAny as user, for up to d; it returns the connection and
// the address it reached. Each failed round is recorded as a refusal.
func dialSOAny(a *actorStats, addrs []string, user string, d time.Duration) (*client.Conn, string, error) {
	urls := make([]string, len(addrs))
	for i, addr := range addrs {
		urls[i] = "ws://" + addr + "/so?user=" + user
	}
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.DialAny(ctx, urls, client.Options{DialTimeout: 5 * time.Second})
		cancel()
		if err == nil {
			return c, strings.TrimSuffix(strings.TrimPrefix(c.URL(), "ws://"), "/so?user="+user), nil
		}
		a.refuse("dial", time.Time{})
		if time.Now().After(deadline) || a.quit.Load() {
			return nil, "", err
		}
		<-time.After(retryEvery) // pacing between rounds over the whole list
	}
}

// counterView is a client's view of one counter object: the epoch and version it was last told of and the
// counter's value there.
type counterView struct {
	epoch   string
	version uint64
	n       int64
	seen    bool
	stale   int // resubscribes answered by a node behind the version asked for (clear + its older state)
}

func counterValue(raw json.RawMessage) (int64, error) {
	return strconv.ParseInt(string(raw), 10, 64)
}

// apply applies a sync frame (answer: it answers our sub) and returns what is wrong with it, if anything.
func (v *counterView) apply(s *client.Sync, answer bool) []string {
	var bad []string
	if v.seen && v.epoch != "" && s.Epoch != v.epoch {
		bad = append(bad, fmt.Sprintf("epoch changed from %q to %q (v%d → v%d)", v.epoch, s.Epoch, v.version, s.Version))
	}
	clear := len(s.Changes) > 0 && s.Changes[0].Code == client.CodeClear
	switch {
	case v.seen && s.Version < v.version && answer && clear:
		v.stale++ // asked from v.version, the node's replica was behind: full state at its version (1.5)
	case v.seen && s.Version < v.version:
		bad = append(bad, fmt.Sprintf("version went back from v%d to v%d", v.version, s.Version))
	case v.seen && clear && !answer:
		bad = append(bad, fmt.Sprintf("told the object was cleared at v%d (it was at v%d)", s.Version, v.version))
	}
	if v.seen && v.version > 0 && s.Version == 0 {
		bad = append(bad, fmt.Sprintf("the object was cleared to v0 (it was at v%d)", v.version))
	}
	n := v.n
	if clear {
		n = 0
	}
	for _, e := range s.Changes {
		if e.Name != counterSlot {
			continue
		}
		switch e.Code {
		case client.CodeChange:
			x, err := counterValue(e.Value)
			if err != nil {
				bad = append(bad, fmt.Sprintf("counter value %s at v%d", e.Value, s.Version))
			}
			n = x
		case client.CodeDelete:
			bad = append(bad, fmt.Sprintf("counter deleted at v%d", s.Version))
		}
	}
	if s.Version >= v.version || clear || !v.seen {
		v.epoch, v.version, v.n, v.seen = s.Epoch, s.Version, n, true
	}
	if int64(v.version) != v.n {
		bad = append(bad, fmt.Sprintf("counter %d at v%d: each commit adds one, so it must equal the version", v.n, v.version))
	}
	return bad
}

// casWriter makes compare-and-set increments of one object's counter.
type casWriter struct {
	actorStats
	l     *load
	user  string
	obj   string
	start int // index of its first node

	mu     sync.Mutex
	conn   *client.Conn
	epoch  string
	ver    uint64
	n      int64
	seq    int
	drains sync.WaitGroup
}

func newCASWriter(l *load, user, obj string, start int) (*casWriter, error) {
	w := &casWriter{actorStats: actorStats{who: user, quit: &l.closing}, l: l, user: user, obj: obj, start: start}
	if err := w.connect(); err != nil {
		return nil, err
	}
	return w, nil
}

// connect dials the next node (the first time: its own), subscribes from the last state it saw and starts
// reading the connection's broadcasts. It keeps trying for up to resolveWait.
func (w *casWriter) connect() error {
	deadline := time.Now().Add(resolveWait)
	for {
		_, _, home := w.snapshot()
		c, addr, err := dialSOAny(&w.actorStats, rotate(w.l.addrs, home, w.start), w.user, time.Until(deadline))
		if err != nil {
			return err
		}
		w.mu.Lock()
		epoch, ver := w.epoch, w.ver
		w.mu.Unlock()
		s, err := subscribeRetry(&w.actorStats, c, w.obj, ver, epoch, deadline)
		if err != nil {
			c.Close()
			if time.Now().After(deadline) || w.quit.Load() {
				return err
			}
			continue
		}
		w.setHome(addr, w.l.names)
		w.mu.Lock()
		w.conn = c
		w.observeLocked(s)
		w.mu.Unlock()
		w.drains.Add(1)
		go w.drain(c)
		return nil
	}
}

// subscribeRetry subscribes c to obj from (version, epoch), retrying while the node refuses (a log read
// without a stream leader is unavailable), until the connection ends or the deadline.
func subscribeRetry(a *actorStats, c *client.Conn, obj string, version uint64, epoch string, deadline time.Time) (*client.Sync, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
		s, err := c.Subscribe(ctx, obj, true, version, epoch)
		cancel()
		if err == nil {
			return s, nil
		}
		var se *client.ServerError
		if errors.As(err, &se) {
			a.refuseSaying("sub "+se.Code, se.Message, time.Time{})
		} else {
			a.refuse("sub failed", time.Time{})
		}
		select {
		case <-c.Done():
			return nil, err
		default:
		}
		if time.Now().After(deadline) || a.quit.Load() {
			return nil, err
		}
		<-time.After(retryEvery) // pacing the retries
	}
}

// observeLocked takes the counter's value from a sync that shows it (a sub answer or a broadcast).
func (w *casWriter) observeLocked(s *client.Sync) {
	clear := len(s.Changes) > 0 && s.Changes[0].Code == client.CodeClear
	n, known := int64(0), clear
	for _, e := range s.Changes {
		if e.Name == counterSlot && e.Code == client.CodeChange {
			if x, err := counterValue(e.Value); err == nil {
				n, known = x, true
			}
		}
	}
	switch {
	case clear: // the node's full state, maybe older than what the writer saw elsewhere: base on it (1.5)
		w.epoch, w.ver, w.n = s.Epoch, s.Version, n
	case known:
		w.takeLocked(s.Epoch, s.Version, n)
	}
}

// takeLocked takes (version, n) as the base of the next write if it is newer than what the writer has.
func (w *casWriter) takeLocked(epoch string, version uint64, n int64) {
	if epoch != w.epoch || version >= w.ver {
		w.epoch, w.ver, w.n = epoch, version, n
	}
}

func (w *casWriter) drain(c *client.Conn) {
	defer w.drains.Done()
	for ev := range c.Events() {
		if ev.Sync != nil && ev.Sync.Obj == w.obj && ev.Sync.ID == "" {
			w.mu.Lock()
			if w.conn == c { // not what is left of a connection that ended: its node may be ahead of the next one
				w.observeLocked(ev.Sync)
			}
			w.mu.Unlock()
		}
	}
}

func (w *casWriter) run(stop <-chan struct{}) { paced(stop, casEvery, w.writeOne) }

// paced calls one every period until stop is closed or one reports that the client cannot go on.
func paced(stop <-chan struct{}, every time.Duration, one func() bool) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if !one() {
			return
		}
	}
}

// writeOne makes one compare-and-set write and re-sends it (same id) until it gets a definite answer. It
// reports false when the writer cannot go on.
func (w *casWriter) writeOne() bool {
	w.mu.Lock()
	w.seq++
	id := fmt.Sprintf("%s-%d", w.user, w.seq)
	next := w.n + 1
	changes := []client.Change{{Name: counterSlot, Base: w.ver, Value: value(next)}}
	w.mu.Unlock()
	first := time.Now()
	for attempt := 1; ; attempt++ {
		if time.Since(first) > resolveWait || w.l.abandon.Load() {
			w.problem("write %s has no definite answer after %s (%d attempts)", id, since(first), attempt-1)
			return false
		}
		w.mu.Lock()
		c := w.conn
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
		s, err := c.UpdateWithID(ctx, id, w.obj, true, changes)
		cancel()
		var se *client.ServerError
		switch {
		case err == nil:
			w.gotAnswer(id, s, next, attempt, first)
			return true
		case errors.As(err, &se):
			w.refuseSaying(se.Code, se.Message, first)
			switch se.Code {
			case client.ErrCodeUnavailable, client.ErrCodeBusy, client.ErrCodeRateLimited:
			case client.ErrCodeInternal: // a bug (the test fails), but the ledger still needs the definite answer
				w.problem("write %s refused: %v", id, se)
			default:
				w.problem("write %s refused: %v", id, se)
				return true
			}
			<-time.After(retryEvery)
		case errors.Is(err, context.DeadlineExceeded):
			w.refuse("timeout", first)
		default:
			w.refuse("closed", first)
			select {
			case <-c.Done():
			default:
				<-time.After(retryEvery)
				continue
			}
			w.mu.Lock()
			w.conn = nil // what is still queued on c is from a node that may be ahead of the next one
			w.mu.Unlock()
			c.Close()
			if err := w.connect(); err != nil {
				w.problem("write %s: lost its node and found no other: %v", id, err)
				return false
			}
		}
	}
}

// gotAnswer records the definite answer to write id (next: the value it wrote).
func (w *casWriter) gotAnswer(id string, s *client.Sync, next int64, attempt int, first time.Time) {
	now, resent := time.Now(), attempt > 1
	outcome := ""
	rec := ackRec{id: id, obj: w.obj, version: s.Version, resent: resent, attempts: attempt, firstSent: first, answered: now}
	for _, e := range s.Changes {
		if e.Name != counterSlot {
			continue
		}
		outcome = e.Code
		switch e.Code {
		case client.CodeSuccess:
			w.ack(rec)
			if !resent { // a re-send's answer has the current version, not the commit's (1.6)
				w.mu.Lock()
				w.takeLocked(s.Epoch, s.Version, next)
				w.mu.Unlock()
			}
		case client.CodeReject:
			x, err := counterValue(e.Value)
			if err != nil {
				w.problem("write %s rejected showing %s", id, e.Value)
				break
			}
			w.answer(rec)
			w.mu.Lock()
			w.takeLocked(s.Epoch, s.Version, x)
			w.mu.Unlock()
		default:
			w.problem("write %s answered %q", id, e.Code)
		}
	}
	if outcome == "" { // a no-op: the counter already held the value
		w.answer(rec)
	}
}

func (w *casWriter) close() {
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	if c != nil {
		c.Close()
	}
	w.drains.Wait()
}

// watcher only reads: one connection subscribed to every counter object, on its node until that dies, and
// every sync it gets is checked (no clear, no new epoch, the version never goes back, counter = version).
type counterWatcher struct {
	actorStats
	l     *load
	user  string
	objs  []string
	start int

	mu      sync.Mutex
	conn    *client.Conn
	views   map[string]*counterView
	stopped bool
	done    chan struct{}
}

func newCounterWatcher(l *load, user string, objs []string, start int) (*counterWatcher, error) {
	w := &counterWatcher{actorStats: actorStats{who: user, quit: &l.closing}, l: l, user: user, objs: objs, start: start, views: map[string]*counterView{}, done: make(chan struct{})}
	for _, o := range objs {
		w.views[o] = &counterView{}
	}
	c, err := w.connect()
	if err != nil {
		return nil, err
	}
	go w.read(c)
	return w, nil
}

func (w *counterWatcher) connect() (*client.Conn, error) {
	deadline := time.Now().Add(resolveWait)
	for {
		_, _, home := w.snapshot()
		c, addr, err := dialSOAny(&w.actorStats, rotate(w.l.addrs, home, w.start), w.user, time.Until(deadline))
		if err != nil {
			return nil, err
		}
		ok := true
		for _, o := range w.objs {
			w.mu.Lock()
			v := w.views[o]
			ver, epoch := v.version, v.epoch
			w.mu.Unlock()
			s, err := subscribeRetry(&w.actorStats, c, o, ver, epoch, deadline)
			if err != nil {
				ok = false
				break
			}
			w.apply(s, true)
		}
		if ok {
			w.setHome(addr, w.l.names)
			w.mu.Lock()
			w.conn = c
			w.mu.Unlock()
			return c, nil
		}
		c.Close()
		if time.Now().After(deadline) || w.quit.Load() {
			return nil, fmt.Errorf("cannot subscribe again")
		}
	}
}

func (w *counterWatcher) apply(s *client.Sync, answer bool) {
	w.mu.Lock()
	v := w.views[s.Obj]
	var bad []string
	if v != nil {
		bad = v.apply(s, answer)
	}
	w.mu.Unlock()
	for _, b := range bad {
		w.problem("%s: %s", s.Obj, b)
	}
}

func (w *counterWatcher) read(c *client.Conn) {
	defer close(w.done)
	for {
		for ev := range c.Events() {
			if ev.Sync != nil && ev.Sync.ID == "" {
				w.apply(ev.Sync, false)
			}
		}
		w.mu.Lock()
		stopped := w.stopped
		w.mu.Unlock()
		if stopped {
			return
		}
		next, err := w.connect()
		if err != nil {
			w.problem("lost its node (%v) and could not subscribe again: %v", c.CloseErr(), err)
			return
		}
		c = next
		w.mu.Lock()
		stopped = w.stopped
		w.mu.Unlock()
		if stopped {
			c.Close()
		}
	}
}

func (w *counterWatcher) run(stop <-chan struct{}) { <-stop }

func (w *counterWatcher) close() {
	w.mu.Lock()
	w.stopped = true
	c := w.conn
	w.mu.Unlock()
	c.Close()
	<-w.done
}

// interval is one connection of a sender, as a receiver of the others' messages: from when its sub was
// answered until it ended, and what it got.
type interval struct {
	start, end time.Time
	got        map[string]int // "from/id" → times delivered
}

// sender sends messages on chatObj and receives everyone else's.
type objSender struct {
	actorStats
	l     *load
	user  string
	start int

	mu        sync.Mutex
	conn      *client.Conn
	pending   string
	result    chan senderResult
	intervals []*interval
	seq       int
	drains    sync.WaitGroup
}

type senderResult struct {
	id      string
	code    string // "" for the echo, an error code, or "closed"
	message string
}

func newObjSender(l *load, user string, start int) (*objSender, error) {
	s := &objSender{actorStats: actorStats{who: user, quit: &l.closing}, l: l, user: user, start: start, result: make(chan senderResult, 16)}
	if err := s.connect(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *objSender) connect() error {
	deadline := time.Now().Add(resolveWait)
	for {
		_, _, home := s.snapshot()
		c, addr, err := dialSOAny(&s.actorStats, rotate(s.l.addrs, home, s.start), s.user, time.Until(deadline))
		if err != nil {
			return err
		}
		iv := &interval{got: map[string]int{}}
		s.mu.Lock()
		s.conn = c
		s.mu.Unlock()
		s.drains.Add(1)
		go s.drain(c, iv)
		if _, err := subscribeRetry(&s.actorStats, c, chatObj, 0, "", deadline); err != nil {
			c.Close()
			if time.Now().After(deadline) || s.quit.Load() {
				return err
			}
			continue
		}
		s.setHome(addr, s.l.names)
		s.mu.Lock()
		iv.start = time.Now()
		s.intervals = append(s.intervals, iv)
		s.mu.Unlock()
		return nil
	}
}

func (s *objSender) drain(c *client.Conn, iv *interval) {
	defer s.drains.Done()
	for ev := range c.Events() {
		switch {
		case ev.Message != nil && ev.Message.Obj == chatObj && ev.Message.From == s.user:
			s.tell(senderResult{id: ev.Message.ID})
		case ev.Message != nil && ev.Message.Obj == chatObj:
			s.mu.Lock()
			iv.got[ev.Message.From+"/"+ev.Message.ID]++
			s.mu.Unlock()
		case ev.Error != nil:
			s.tell(senderResult{id: ev.Error.ID, code: ev.Error.Code, message: ev.Error.Message})
		}
	}
	s.mu.Lock()
	iv.end = time.Now()
	s.mu.Unlock()
	s.tell(senderResult{code: "closed"})
}

// tell passes a result to the sending loop; results for other ids than the pending one are dropped.
func (s *objSender) tell(r senderResult) {
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if r.code != "closed" && r.id != pending {
		return
	}
	select {
	case s.result <- r:
	default:
	}
}

func (s *objSender) run(stop <-chan struct{}) { paced(stop, sendEvery, s.sendOne) }

func (s *objSender) sendOne() bool {
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("%s-%d", s.user, s.seq)
	s.pending = id
	s.mu.Unlock()
	frame, _ := json.Marshal(map[string]any{"op": "send", "obj": chatObj, "persistent": true, "id": id, "handler": "chat", "args": []string{id}})
	first := time.Now()
	for attempt := 1; ; attempt++ {
		if time.Since(first) > resolveWait || s.l.abandon.Load() {
			s.problem("send %s has no definite answer after %s", id, since(first))
			return false
		}
		s.mu.Lock()
		c := s.conn
		s.mu.Unlock()
		if err := c.WriteRaw(frame); err != nil {
			s.refuse("closed", first)
			if !s.reconnect(c, id) {
				return false
			}
			continue
		}
		timeout := time.After(answerTimeout)
	wait:
		for {
			select {
			case r := <-s.result:
				switch {
				case r.code == "" && r.id == id:
					s.ack(ackRec{id: id, obj: chatObj, resent: attempt > 1, attempts: attempt, firstSent: first, answered: time.Now()})
					return true
				case r.code == "closed":
					select {
					case <-c.Done():
					default:
						continue // a result of an earlier connection
					}
					s.refuse("closed", first)
					if !s.reconnect(c, id) {
						return false
					}
					break wait
				case r.id == id:
					s.refuseSaying(r.code, r.message, first)
					switch r.code {
					case client.ErrCodeUnavailable, client.ErrCodeBusy, client.ErrCodeRateLimited:
					case client.ErrCodeInternal: // a bug, but the ledger still needs the answer
						s.problem("send %s refused: %s: %s", id, r.code, r.message)
					default:
						s.problem("send %s refused: %s: %s", id, r.code, r.message)
						return true
					}
					<-time.After(retryEvery)
					break wait
				}
			case <-timeout:
				s.refuse("timeout", first)
				break wait
			}
		}
	}
}

func (s *objSender) reconnect(c *client.Conn, id string) bool {
	c.Close()
	if err := s.connect(); err != nil {
		s.problem("send %s: lost its node and found no other: %v", id, err)
		return false
	}
	return true
}

func (s *objSender) close() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	c.Close()
	s.drains.Wait()
}

// relayConn is one /relay WebSocket: answers (frames with an id) come on answers; pushes are dropped.
type relayConn struct {
	ws      *websocket.Conn
	addr    string
	answers chan map[string]any
	done    chan struct{}
	wmu     sync.Mutex
}

// dialRelay connects to /relay on addr as user and waits for hello; a refusal before it returns its code.
func dialRelay(addr, user, device string) (*relayConn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("ws://"+addr+"/relay?user="+user+"&device="+device, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	rc := &relayConn{ws: ws, addr: addr, answers: make(chan map[string]any, 64), done: make(chan struct{})}
	hello := make(chan error, 1)
	go rc.read(hello)
	select {
	case err := <-hello:
		if err != nil {
			rc.close()
			return nil, err
		}
		return rc, nil
	case <-time.After(15 * time.Second):
		rc.close()
		return nil, errors.New("no hello")
	}
}

func (rc *relayConn) read(hello chan<- error) {
	defer close(rc.done)
	greeted := false
	defer func() {
		if !greeted {
			hello <- errors.New("closed before hello")
		}
	}()
	for {
		_, data, err := rc.ws.ReadMessage()
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line == "" {
				continue
			}
			var f map[string]any
			if json.Unmarshal([]byte(line), &f) != nil {
				continue
			}
			switch {
			case !greeted && f["op"] == "hello":
				greeted = true
				hello <- nil
			case !greeted && f["op"] == "error":
				greeted = true
				hello <- fmt.Errorf("%v", f["code"])
			case f["id"] != nil:
				select {
				case rc.answers <- f:
				default:
				}
			}
		}
	}
}

func (rc *relayConn) write(f map[string]any) error {
	b, _ := json.Marshal(f)
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_ = rc.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return rc.ws.WriteMessage(websocket.TextMessage, b)
}

// request writes f (with id) and returns the answer carrying id, or an error when the connection ended or
// nothing came within d.
func (rc *relayConn) request(f map[string]any, d time.Duration) (map[string]any, error) {
	if err := rc.write(f); err != nil {
		return nil, errClosed
	}
	timeout := time.After(d)
	for {
		select {
		case a := <-rc.answers:
			if a["id"] == f["id"] {
				return a, nil
			}
		case <-rc.done:
			return nil, errClosed
		case <-timeout:
			return nil, context.DeadlineExceeded
		}
	}
}

var errClosed = errors.New("connection closed")

func (rc *relayConn) close() {
	rc.ws.Close()
	<-rc.done
}

// relayUser sends private messages to its peer over /relay.
type relayUser struct {
	actorStats
	l     *load
	user  string
	peer  string
	start int

	mu   sync.Mutex
	conn *relayConn
	seq  int
	seqs map[string]uint64 // cid → the sequence it was acknowledged with
}

func newRelayUser(l *load, user, peer string, start int) (*relayUser, error) {
	u := &relayUser{actorStats: actorStats{who: user, quit: &l.closing}, l: l, user: user, peer: peer, start: start, seqs: map[string]uint64{}}
	if err := u.connect(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *relayUser) connect() error {
	deadline := time.Now().Add(resolveWait)
	for {
		_, _, home := u.snapshot()
		for _, addr := range rotate(u.l.addrs, home, u.start) {
			rc, err := dialRelay(addr, u.user, "load")
			if err == nil {
				u.setHome(addr, u.l.names)
				u.mu.Lock()
				u.conn = rc
				u.mu.Unlock()
				return nil
			}
			code := "connect: " + err.Error()
			if strings.HasPrefix(err.Error(), "dial:") {
				code = "connect: dial" // the node is down
			}
			u.refuse(code, time.Time{})
		}
		if time.Now().After(deadline) || u.quit.Load() {
			return errors.New("no relay node let it in")
		}
		<-time.After(retryEvery) // pacing between rounds over the whole list
	}
}

func (u *relayUser) run(stop <-chan struct{}) { paced(stop, relayEvery, u.sendOne) }

func (u *relayUser) sendOne() bool {
	u.mu.Lock()
	u.seq++
	n := u.seq
	u.mu.Unlock()
	cid := fmt.Sprintf("%s-%d", u.user, n)
	frame := map[string]any{"op": "send", "id": cid, "to": u.peer, "body": map[string]any{"n": n}}
	first := time.Now()
	for attempt := 1; ; attempt++ {
		if time.Since(first) > resolveWait || u.l.abandon.Load() {
			u.problem("message %s has no definite answer after %s", cid, since(first))
			return false
		}
		u.mu.Lock()
		rc := u.conn
		u.mu.Unlock()
		a, err := rc.request(frame, answerTimeout)
		switch {
		case errors.Is(err, errClosed):
			u.refuse("closed", first)
			rc.close()
			if err := u.connect(); err != nil {
				u.problem("message %s: lost its node and found no other: %v", cid, err)
				return false
			}
			continue
		case err != nil:
			u.refuse("timeout", first)
			continue
		case a["op"] == "sent":
			seq := uint64(a["seq"].(float64))
			u.mu.Lock()
			prev, had := u.seqs[cid]
			u.seqs[cid] = seq
			u.mu.Unlock()
			if had && prev != seq {
				u.problem("message %s acknowledged at seq %d and at seq %d", cid, prev, seq)
			}
			u.ack(ackRec{id: cid, obj: u.peer, version: seq, resent: attempt > 1, attempts: attempt, firstSent: first, answered: time.Now()})
			return true
		case a["op"] == "error":
			code, _ := a["code"].(string)
			msg, _ := a["message"].(string)
			u.refuseSaying(code, msg, first)
			switch code {
			case client.ErrCodeUnavailable, client.ErrCodeBusy, client.ErrCodeRateLimited:
			case client.ErrCodeInternal: // a bug (PROTOCOL 3.8: an unexpected error), but the ledger still needs the answer
				u.problem("message %s refused: %v", cid, a)
			default:
				u.problem("message %s refused: %v", cid, a)
				return true
			}
			<-time.After(retryEvery)
		default:
			u.problem("message %s answered %v", cid, a)
			return true
		}
	}
}

func (u *relayUser) close() {
	u.mu.Lock()
	rc := u.conn
	u.mu.Unlock()
	rc.close()
}

// load is every client of one test.
type load struct {
	t     *testing.T
	addrs []string
	names map[string]string // addr → node name

	writers  []*casWriter
	probes   []*casWriter // one-off writers through a restarted node, counted in the ledger
	watchers []*counterWatcher
	senders  []*objSender
	chatters []*relayUser

	stopCh  chan struct{}
	wg      sync.WaitGroup
	running bool
	abandon atomic.Bool // the test failed: clients give up instead of retrying
	closing atomic.Bool // the clients are being closed: they do not reconnect
	closed  sync.Once
	faults  int
	totals  figures // at the last checkpoint
}

// startLoad starts the clients on the nodes of c: per node two writers of the busy object, one of the quiet
// one, a watcher, a sender and a relay user (writing to the next node's user), and waits for them to run.
func startLoad(t *testing.T, c *rsoCluster) *load {
	t.Helper()
	l := &load{t: t, addrs: c.addrs(), names: map[string]string{}}
	for _, m := range c.members {
		l.names[m.addr] = m.name
	}
	t.Cleanup(l.close)
	n := len(l.addrs)
	fail := func(err error) {
		if err != nil {
			t.Fatalf("start the load: %v", err)
		}
	}
	for i := range n {
		w, err := newCounterWatcher(l, fmt.Sprint("watch", i+1), []string{busyObj, quietObj}, i)
		fail(err)
		l.watchers = append(l.watchers, w)
	}
	for i := range n {
		for k, obj := range []string{busyObj, busyObj, quietObj} {
			w, err := newCASWriter(l, fmt.Sprintf("w%d%c", i+1, 'a'+k), obj, i)
			fail(err)
			l.writers = append(l.writers, w)
		}
		s, err := newObjSender(l, fmt.Sprint("s", i+1), i)
		fail(err)
		l.senders = append(l.senders, s)
	}
	for i := range n { // every relay user is known before anyone writes to it
		u, err := newRelayUser(l, fmt.Sprint("r", i+1), fmt.Sprint("r", (i+1)%n+1), i)
		fail(err)
		l.chatters = append(l.chatters, u)
	}
	l.resume()
	return l
}

// actors are the clients that make requests (all but the watchers).
func (l *load) actors() []actor {
	var a []actor
	for _, w := range l.writers {
		a = append(a, w)
	}
	for _, s := range l.senders {
		a = append(a, s)
	}
	for _, u := range l.chatters {
		a = append(a, u)
	}
	return a
}

func (l *load) resume() {
	if l.running {
		return
	}
	l.stopCh = make(chan struct{})
	l.running = true
	for _, a := range l.actors() {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			a.run(l.stopCh)
		}()
	}
}

// pause stops every client after the definite answer to its request in flight.
func (l *load) pause() {
	l.t.Helper()
	if !l.running {
		return
	}
	close(l.stopCh)
	l.running = false
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(resolveWait + 30*time.Second):
		l.t.Fatalf("the clients did not stop within %s", resolveWait+30*time.Second)
	}
}

// close stops and closes every client; tests defer it, so that it runs before the nodes are stopped.
func (l *load) close() { l.closed.Do(l.closeAll) }

func (l *load) closeAll() {
	if l.t.Failed() {
		l.abandon.Store(true)
	}
	l.pause()
	l.closing.Store(true)
	for _, a := range l.actors() {
		a.close()
	}
	for _, w := range l.watchers {
		w.close()
	}
	for _, p := range l.probes {
		p.close()
	}
}

func (l *load) ackCount() int {
	n := 0
	for _, a := range l.actors() {
		acks, _, _ := a.stats().snapshot()
		n += len(acks)
	}
	return n
}

// waitAcks waits until n more requests were acknowledged and every client has had one acknowledged since.
func (l *load) waitAcks(n int, what string) {
	l.t.Helper()
	began := time.Now()
	want := l.ackCount() + n
	l.waitEach(what, false, func(r ackRec) bool { return r.answered.After(began) }, func() (bool, string) {
		got := l.ackCount()
		return got >= want, fmt.Sprintf("%d of %d acknowledged", got, want)
	})
}

// waitEach waits until every client has an acknowledged request (any definite answer) for which ok
// holds, and more holds.
func (l *load) waitEach(what string, anyAnswer bool, ok func(ackRec) bool, more func() (bool, string)) {
	l.t.Helper()
	waitFor(l.t, convergeWait+resolveWait, what, func() (bool, string) {
		var waiting []string
		for _, a := range l.actors() {
			acks, refused, home := a.stats().snapshot()
			if anyAnswer {
				acks = a.stats().answered()
			}
			if !slices.ContainsFunc(acks, ok) {
				last := ""
				if len(refused) > 0 {
					last = refused[len(refused)-1].code
				}
				waiting = append(waiting, fmt.Sprintf("%s on %s (last refusal %q)", a.stats().who, l.names[home], last))
			}
		}
		if len(waiting) > 0 {
			return false, "waiting for " + strings.Join(waiting, ", ")
		}
		if more != nil {
			return more()
		}
		return true, ""
	})
}

func (l *load) warmUp() {
	l.t.Helper()
	l.waitAcks(scaled(200), "every client has requests acknowledged before the fault")
}

// fault is one fault of a test and how the service went through it.
type fault struct {
	name      string
	began     time.Time
	downAt    time.Time
	downAddrs []string
	service   time.Duration // from the fault until every client had a definite answer again
	converged time.Duration // from the fault until every live node served what was acknowledged by then
	healthy   time.Duration // from the restart until healthy (and, for NATS, its replicas current)
	caughtUp  time.Duration // from healthy until the restarted node served what was acknowledged by then
	jetstream time.Duration // until every stream replica was current again
}

// beginPhase starts a stretch of load without a fault, checked like one.
func (l *load) beginPhase(name string) *fault { return &fault{name: name, began: time.Now()} }

func (l *load) beginFault(name string) *fault {
	l.faults++
	return &fault{name: fmt.Sprintf("fault %d (%s)", l.faults, name), began: time.Now()}
}

// down records that the node at addr is gone from now on.
func (f *fault) down(addr string) {
	f.downAt = time.Now()
	f.downAddrs = append(f.downAddrs, addr)
}

// waitService waits until every client has had a definite answer (for a writer: success or reject) to a
// request first sent after the fault, which for the clients of a node that went down means they are on
// another one.
func (l *load) waitService(f *fault) {
	l.t.Helper()
	l.waitEach(f.name+": every client is served again", true, func(r ackRec) bool { return r.firstSent.After(f.downAt) }, nil)
	f.service = time.Since(f.downAt)
	for _, a := range l.actors() {
		_, _, home := a.stats().snapshot()
		if slices.Contains(f.downAddrs, home) {
			l.t.Errorf("%s: %s is still on %s, which is down", f.name, a.stats().who, l.names[home])
		}
	}
}

// waitServiceSince waits until every client has had a request acknowledged (for a writer: success) after back.
func (l *load) waitServiceSince(f *fault, back time.Time) {
	l.t.Helper()
	l.waitEach(f.name+": every client is served again", false, func(r ackRec) bool { return r.answered.After(back) }, nil)
	f.service = time.Since(f.downAt)
}

// maxAcked returns, per counter object, the highest version any write was acknowledged at.
func (l *load) maxAcked() map[string]uint64 {
	top := map[string]uint64{busyObj: 0, quietObj: 0}
	for _, w := range append(slices.Clone(l.writers), l.probes...) {
		acks, _, _ := w.snapshot()
		for _, a := range acks {
			top[a.obj] = max(top[a.obj], a.version)
		}
	}
	return top
}

// counters reads every counter object through a fresh client on addr.
func readCounters(addr string) (map[string]counterView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+addr+"/so?user=reader", client.Options{DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]counterView{}
	for _, o := range []string{busyObj, quietObj} {
		s, err := c.Subscribe(ctx, o, true, 0, "")
		if err != nil {
			return nil, err
		}
		var v counterView
		if bad := v.apply(s, true); len(bad) > 0 {
			return nil, fmt.Errorf("%s on %s: %s", o, addr, strings.Join(bad, "; "))
		}
		out[o] = v
	}
	return out, nil
}

// waitServes waits until a fresh client on each addr reads every counter at or above the versions in top.
func (l *load) waitServes(what string, top map[string]uint64, addrs ...string) {
	l.t.Helper()
	waitFor(l.t, convergeWait, what, func() (bool, string) {
		for _, addr := range addrs {
			got, err := readCounters(addr)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", l.names[addr], err)
			}
			for o, v := range top {
				if got[o].version < v {
					return false, fmt.Sprintf("%s serves %s at v%d, v%d was acknowledged", l.names[addr], o, got[o].version, v)
				}
			}
		}
		return true, ""
	})
}

// waitConverged waits until every live node serves what was acknowledged until now.
func (l *load) waitConverged(f *fault, live []*member) {
	l.t.Helper()
	var addrs []string
	for _, m := range live {
		addrs = append(addrs, m.addr)
	}
	l.waitServes(f.name+": every live node serves what was acknowledged", l.maxAcked(), addrs...)
	f.converged = time.Since(f.downAt)
}

// waitCaughtUp waits until the restarted node m serves what was acknowledged until now, and takes a write.
func (l *load) waitCaughtUp(f *fault, m *member) {
	l.t.Helper()
	began := time.Now()
	l.waitServes(f.name+": "+m.name+" serves what was acknowledged", l.maxAcked(), m.addr)
	f.caughtUp = time.Since(began)
	p, err := newCASWriter(l, "probe-"+m.name+fmt.Sprint(len(l.probes)), quietObj, slices.Index(l.addrs, m.addr))
	if err != nil {
		l.t.Fatalf("%s: a client on %s: %v", f.name, m.name, err)
	}
	l.probes = append(l.probes, p)
	waitFor(l.t, resolveWait, f.name+": a write through "+m.name, func() (bool, string) {
		p.writeOne()
		acks, refused, _ := p.snapshot()
		return len(acks) > 0, fmt.Sprintf("%d refusals", len(refused))
	})
	if _, _, home := p.snapshot(); home != m.addr {
		l.t.Errorf("%s: the probe of %s ended up on %s", f.name, m.name, l.names[home])
	}
}

// outage is a time when no quorum is up.
type outage struct {
	l          *load
	start, end time.Time
}

func (l *load) noQuorum() *outage { return &outage{l: l, start: time.Now()} }

func (o *outage) during(r ackRec) bool {
	return !r.firstSent.Before(o.start) && (o.end.IsZero() || r.answered.Before(o.end))
}

// quorumBack ends the outage: from now on the nodes are being started again.
func (l *load) quorumBack(o *outage) { o.end = time.Now() }

// acked counts the requests first sent during the outage and acknowledged before it ended.
func (o *outage) acked() int { return len(o.ackedRecs()) }

func (o *outage) ackedRecs() []string {
	var out []string
	for _, a := range o.l.actors() {
		acks, _, _ := a.stats().snapshot()
		for _, r := range acks {
			if o.during(r) {
				out = append(out, fmt.Sprintf("%s %s (sent %s after the kill)", a.stats().who, r.id, r.firstSent.Sub(o.start).Round(time.Millisecond)))
			}
		}
	}
	return out
}

func (o *outage) ackedList() string { return strings.Join(o.ackedRecs(), ", ") }

// waitRefused waits until every client has had k requests (or connections) refused since the outage began,
// and checks that none was acknowledged. Clients of the object service must be refused with unavailable.
func (l *load) waitRefused(o *outage, k int) {
	l.t.Helper()
	waitFor(l.t, resolveWait, "every client is refused while there is no quorum", func() (bool, string) {
		var waiting []string
		for _, a := range l.actors() {
			_, refused, home := a.stats().snapshot()
			n := 0
			for _, r := range refused {
				// unavailable, or (relay) the survivor let it not in: signing in needs the stores too
				survivor := strings.HasPrefix(r.code, "connect:") && r.code != "connect: dial"
				if r.at.After(o.start) && (r.code == client.ErrCodeUnavailable || survivor) {
					n++
				}
			}
			if n < k {
				waiting = append(waiting, fmt.Sprintf("%s on %s (%d refusals)", a.stats().who, l.names[home], n))
			}
		}
		return len(waiting) == 0, "waiting for " + strings.Join(waiting, ", ")
	})
	if n := o.acked(); n > 0 {
		l.t.Errorf("without a quorum, %d requests were acknowledged: %s", n, o.ackedList())
	}
}

// readsWithoutQuorum checks that a fresh client on addr still reads the objects the node has loaded, and
// says what it read, and what a subscription to an object the node never loaded got.
func (l *load) readsWithoutQuorum(addr string) string {
	l.t.Helper()
	got, err := readCounters(addr)
	if err != nil {
		l.t.Errorf("without a quorum, a fresh client on %s cannot read the loaded objects: %v", l.names[addr], err)
		return err.Error()
	}
	top := l.maxAcked()
	var parts []string
	for _, o := range []string{busyObj, quietObj} {
		parts = append(parts, fmt.Sprintf("%s served at v%d (v%d acknowledged)", o, got[o].version, top[o]))
		if got[o].version == 0 {
			l.t.Errorf("without a quorum, %s serves %s at v0", l.names[addr], o)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+addr+"/so", client.Options{})
	if err == nil {
		_, err = c.Subscribe(ctx, "fault/never-loaded", true, 0, "")
		c.Close()
	}
	parts = append(parts, fmt.Sprintf("an object it never loaded: %v", errOrOK(err)))
	return strings.Join(parts, "; ")
}

func errOrOK(err error) string {
	if err == nil {
		return "served"
	}
	return err.Error()
}

// figures are what a checkpoint counted.
type figures struct {
	casAcked, casLost, casDup       int
	sendAcked, sendLost, sendDup    int
	relayAcked, relayLost, relayDup int
}

// checkpoint pauses the load and checks every ledger against what every node serves; it logs the figures
// of the fault.
func (l *load) checkpoint(f *fault, addrs []string) {
	t := l.t
	t.Helper()
	l.pause()
	var fig figures
	problems := capped{t: t, what: "problems"}
	for _, a := range append(l.actors(), l.watcherActors()...) {
		a.stats().smu.Lock()
		ps := slices.Clone(a.stats().problems)
		a.stats().problems = nil
		a.stats().smu.Unlock()
		for _, p := range ps {
			problems.errorf("%s: %s", f.name, p)
		}
	}
	problems.close()

	// Compare-and-set counters: every node serves the same state, and the counter is the number of successes.
	var final map[string]counterView
	waitFor(t, convergeWait, f.name+": every node serves the same counters", func() (bool, string) {
		var first string
		for i, addr := range addrs {
			got, err := readCounters(addr)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", l.names[addr], err)
			}
			desc := fmt.Sprintf("%s v%d n=%d, %s v%d n=%d", busyObj, got[busyObj].version, got[busyObj].n, quietObj, got[quietObj].version, got[quietObj].n)
			if i == 0 {
				final, first = got, desc
			} else if desc != first {
				return false, fmt.Sprintf("%s: %s; %s: %s", l.names[addrs[0]], first, l.names[addr], desc)
			}
		}
		return true, ""
	})
	perObj := map[string]map[string]bool{busyObj: {}, quietObj: {}}
	atVersion := map[string]map[uint64]string{busyObj: {}, quietObj: {}}
	for _, w := range append(slices.Clone(l.writers), l.probes...) {
		acks, _, _ := w.snapshot()
		for _, a := range acks {
			perObj[a.obj][a.id] = true
			if a.version > final[a.obj].version {
				t.Errorf("%s: %s was acknowledged at v%d of %s, but the nodes serve v%d", f.name, a.id, a.version, a.obj, final[a.obj].version)
			}
			if a.resent {
				continue
			}
			if other, ok := atVersion[a.obj][a.version]; ok {
				t.Errorf("%s: %s and %s were both acknowledged as committed at v%d of %s", f.name, other, a.id, a.version, a.obj)
				fig.casLost++
			}
			atVersion[a.obj][a.version] = a.id
		}
	}
	for _, o := range []string{busyObj, quietObj} {
		acked, n := len(perObj[o]), int(final[o].n)
		fig.casAcked += acked
		if n < acked {
			fig.casLost += acked - n
			t.Errorf("%s: %s: %d writes acknowledged, but the counter is %d: %d lost", f.name, o, acked, n, acked-n)
		}
		if n > acked {
			fig.casDup += n - acked
			t.Errorf("%s: %s: %d writes acknowledged, but the counter is %d: %d applied twice or without an acknowledgement", f.name, o, acked, n, n-acked)
		}
	}

	fig.sendAcked, fig.sendLost, fig.sendDup = l.checkSends(f)
	fig.relayAcked, fig.relayLost, fig.relayDup = l.checkRelay(f, addrs)

	prev := l.totals
	l.totals = fig
	codes, said := map[string]int{}, map[string]string{}
	var moves []string
	stale := 0
	for _, a := range append(l.actors(), l.watcherActors()...) {
		_, refused, _ := a.stats().snapshot()
		for _, r := range refused {
			if !r.at.Before(f.began) {
				codes[r.code]++
				if _, ok := said[r.code]; !ok && r.message != "" {
					said[r.code] = r.message
				}
			}
		}
		a.stats().smu.Lock()
		moves = append(moves, a.stats().moves...)
		a.stats().moves = nil
		a.stats().smu.Unlock()
	}
	for _, w := range l.watchers {
		w.mu.Lock()
		for _, v := range w.views {
			stale += v.stale
			v.stale = 0
		}
		w.mu.Unlock()
	}
	sort.Strings(moves)
	outcomes := map[string][2]int{}
	for _, w := range l.writers {
		acks, _, _ := w.snapshot()
		won := map[string]bool{}
		for _, a := range acks {
			won[a.id] = true
		}
		for _, r := range w.answered() {
			if r.firstSent.Before(f.began) {
				continue
			}
			o := outcomes[w.obj]
			if won[r.id] {
				o[0]++
			} else {
				o[1]++
			}
			outcomes[w.obj] = o
		}
	}
	slowest, slowWho := ackRec{}, ""
	for _, a := range l.actors() {
		acks, _, _ := a.stats().snapshot()
		for _, r := range acks {
			if !r.firstSent.Before(f.began) && r.answered.Sub(r.firstSent) > slowest.answered.Sub(slowest.firstSent) {
				slowest, slowWho = r, a.stats().who
			}
		}
	}
	t.Logf("%s: acknowledged since the last check: %d compare-and-set writes, %d sends, %d private messages (in all %d, %d, %d; %s v%d, %s v%d); lost %d/%d/%d, duplicated %d/%d/%d (writes/sends/messages, in all)",
		f.name, fig.casAcked-prev.casAcked, fig.sendAcked-prev.sendAcked, fig.relayAcked-prev.relayAcked, fig.casAcked, fig.sendAcked, fig.relayAcked,
		busyObj, final[busyObj].version, quietObj, final[quietObj].version,
		fig.casLost, fig.sendLost, fig.relayLost, fig.casDup, fig.sendDup, fig.relayDup)
	if !f.downAt.IsZero() {
		t.Logf("%s: every client served again %s after it, every live node served what was acknowledged %s after it; restarted: healthy in %s, caught up %s later; JetStream replicas current %s later",
			f.name, f.service.Round(time.Millisecond), f.converged.Round(time.Millisecond), f.healthy.Round(time.Millisecond), f.caughtUp.Round(time.Millisecond), f.jetstream.Round(time.Millisecond))
	}
	t.Logf("%s: writes first sent since the fault began, successes/rejects: %s %d/%d, %s %d/%d",
		f.name, busyObj, outcomes[busyObj][0], outcomes[busyObj][1], quietObj, outcomes[quietObj][0], outcomes[quietObj][1])
	t.Logf("%s: refusals meanwhile %v (first messages %q); clients that changed node: %v; resubscribes answered by a node behind the client: %d; slowest acknowledged request: %s %s, %s in %d attempts",
		f.name, codes, said, moves, stale, slowWho, slowest.id, slowest.answered.Sub(slowest.firstSent).Round(time.Millisecond), slowest.attempts)
}

func (l *load) watcherActors() []actor {
	var a []actor
	for _, w := range l.watchers {
		a = append(a, w)
	}
	return a
}

// checkSends checks the sends: every connection that was up since before a message was first sent and is
// still up got it (waiting for it), and no connection got one twice.
func (l *load) checkSends(f *fault) (acked, lost, dup int) {
	t := l.t
	t.Helper()
	type sent struct {
		key   string
		first time.Time
	}
	var all []sent
	for _, s := range l.senders {
		acks, _, _ := s.snapshot()
		for _, a := range acks {
			all = append(all, sent{s.user + "/" + a.id, a.firstSent})
		}
	}
	acked = len(all)
	missing := func() (int, string) {
		n, example := 0, ""
		for _, r := range l.senders {
			_, _, home := r.snapshot()
			r.mu.Lock()
			for _, iv := range r.intervals {
				if !iv.end.IsZero() {
					continue
				}
				for _, m := range all {
					if strings.HasPrefix(m.key, r.user+"/") || !iv.start.Before(m.first) {
						continue
					}
					if iv.got[m.key] == 0 {
						n++
						if example == "" {
							example = fmt.Sprintf("%s (sent %s after %s subscribed on %s)", m.key, m.first.Sub(iv.start).Round(time.Millisecond), r.user, l.names[home])
						}
					}
				}
			}
			r.mu.Unlock()
		}
		return n, example
	}
	deadline := time.Now().Add(convergeWait)
	for {
		n, example := missing()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			lost = n
			t.Errorf("%s: %d acknowledged sends never reached a subscriber that was connected since before they were sent, e.g. %s", f.name, n, example)
			break
		}
		<-time.After(50 * time.Millisecond) // polling for deliveries in flight
	}
	for _, r := range l.senders {
		r.mu.Lock()
		for _, iv := range r.intervals {
			for key, k := range iv.got {
				if k > 1 {
					dup += k - 1
					t.Errorf("%s: %s got %s %d times on one connection", f.name, r.user, key, k)
				}
			}
		}
		r.mu.Unlock()
	}
	return acked, lost, dup
}

// checkRelay reads every conversation's history on every node as the recipient: each acknowledged message
// is there exactly once at its sequence, the sequences are 1…last, and nothing unacknowledged is stored.
func (l *load) checkRelay(f *fault, addrs []string) (acked, lost, dup int) {
	t := l.t
	t.Helper()
	acks := map[string]map[string]uint64{} // sender → cid → seq
	peerOf := map[string]string{}
	for _, u := range l.chatters {
		u.mu.Lock()
		acks[u.user] = cloneSeqs(u.seqs)
		acked += len(u.seqs)
		u.mu.Unlock()
		peerOf[u.user] = u.peer
	}
	for _, u := range l.chatters {
		// The conversation of u and its peer: what u wrote, and what the peer wrote, if it writes to u.
		conv := map[string]map[string]uint64{u.user: acks[u.user], u.peer: {}}
		if peerOf[u.peer] == u.user {
			conv[u.peer] = acks[u.peer]
		}
		for _, addr := range addrs {
			var report string
			var nLost, nDup int
			waitFor(t, convergeWait, fmt.Sprintf("%s: %s's history with %s on %s", f.name, u.peer, u.user, l.names[addr]), func() (bool, string) {
				msgs, err := relayHistory(addr, u.peer, u.user)
				if err != nil {
					return false, err.Error()
				}
				nLost, nDup, report = judgeHistory(msgs, conv)
				return nLost == 0, report
			})
			if nDup > 0 || report != "" {
				t.Errorf("%s: %s's history with %s on %s: %s", f.name, u.peer, u.user, l.names[addr], report)
			}
			lost, dup = max(lost, nLost), max(dup, nDup)
		}
	}
	return acked, lost, dup
}

func cloneSeqs(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

type storedMsg struct {
	Seq  uint64 `json:"seq"`
	From string `json:"from"`
	CID  string `json:"cid"`
}

// history pages user's conversation with peer backwards on addr and returns it oldest first.
func relayHistory(addr, user, peer string) ([]storedMsg, error) {
	rc, err := dialRelay(addr, user, "check")
	if err != nil {
		return nil, err
	}
	defer rc.close()
	var all []storedMsg
	var before uint64
	for page := 0; ; page++ {
		req := map[string]any{"op": "history", "id": fmt.Sprint("h", page), "peer": peer, "limit": 200}
		if before > 0 {
			req["before"] = before
		}
		a, err := rc.request(req, answerTimeout)
		if err != nil {
			return nil, err
		}
		if a["op"] != "history" {
			return nil, fmt.Errorf("history answered %v", a)
		}
		b, _ := json.Marshal(a["messages"])
		var msgs []storedMsg
		if err := json.Unmarshal(b, &msgs); err != nil {
			return nil, err
		}
		all = append(msgs, all...)
		if more, _ := a["more"].(bool); !more || len(msgs) == 0 {
			return all, nil
		}
		before = msgs[0].Seq
	}
}

// judgeHistory compares one conversation's messages with the acknowledgements: lost counts acknowledged
// messages missing (or at another sequence), dup messages stored twice; report says what is wrong.
func judgeHistory(msgs []storedMsg, acks map[string]map[string]uint64) (lost, dup int, report string) {
	var bad []string
	seen := map[string]uint64{}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			bad = append(bad, fmt.Sprintf("message %d has seq %d (a gap or a repeat)", i+1, m.Seq))
			break
		}
		key := m.From + "/" + m.CID
		if s, ok := seen[key]; ok {
			dup++
			bad = append(bad, fmt.Sprintf("%s stored twice, at seq %d and %d", key, s, m.Seq))
			continue
		}
		seen[key] = m.Seq
		if mine, ok := acks[m.From]; !ok {
			bad = append(bad, fmt.Sprintf("%s stored at seq %d, from a user outside the conversation", key, m.Seq))
		} else if _, ok := mine[m.CID]; !ok {
			bad = append(bad, fmt.Sprintf("%s stored at seq %d but never acknowledged", key, m.Seq))
		}
	}
	for from, mine := range acks {
		for cid, seq := range mine {
			got, ok := seen[from+"/"+cid]
			switch {
			case !ok:
				lost++
			case got != seq:
				lost++
				bad = append(bad, fmt.Sprintf("%s/%s acknowledged at seq %d, stored at %d", from, cid, seq, got))
			}
		}
	}
	if lost > 0 {
		bad = append(bad, fmt.Sprintf("%d acknowledged messages missing", lost))
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("… %d more", len(bad)-5))
	}
	return lost, dup, strings.Join(bad, "; ")
}
