//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
)

// Fault tests: two rso processes, node A embedding NATS (-nats-listen, -data) and node B using it (-nats).
// A is killed with SIGKILL (no shutdown: its NATS, its JetStream and its sockets vanish at once) and started
// again on the same folder and port while clients keep working. Each test takes about 4–12 s when it passes and
// at most about 40 s when it fails (a write that waits 20 s for its answer is measured); -short skips them.

const (
	// answerWait is how soon every write must be answered, also while NATS is down (the behaviour under test).
	answerWait = 5 * time.Second
	// resumeWait is how soon after NATS is back a write on one node reaches a subscriber of the other, and a
	// temporary object that NATS lost is cleared on the other node (the behaviour under test).
	resumeWait = 5 * time.Second
	// gaveUpWait is how long a client waits for an answer before it calls the write lost. It is longer than
	// answerWait so that a late answer is measured and the failure says how late.
	gaveUpWait = 25 * time.Second
	// writeEvery paces each writer below its connection's frames_per_second (200 by default).
	writeEvery = 10 * time.Millisecond
	// slotName is the slot every writer competes for.
	slotName = "s"
)

// kill ends the process with SIGKILL and waits until it is gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("rso still running 10 s after SIGKILL")
	}
}

// pair is node A, which embeds NATS and lets other nodes in, and node B, which uses A's NATS.
type pair struct {
	t                             *testing.T
	addrA, addrB, natsAddr, dataA string
	a, b                          *proc
	front                         *natsFront // between B and A's NATS; nil when B dials A directly
}

// startPair starts A, then B on A's NATS: directly, or with viaFront through a natsFront.
func startPair(t *testing.T, viaFront bool) *pair {
	t.Helper()
	p := &pair{t: t, addrA: freeAddr(t), addrB: freeAddr(t), natsAddr: freeAddr(t), dataA: t.TempDir()}
	p.startA()
	natsURL := "nats://" + p.natsAddr
	if viaFront {
		p.front = startFront(t, p.natsAddr)
		natsURL = "nats://" + p.front.ln.Addr().String()
	}
	p.b = startProc(t, "-addr", p.addrB, "-nats", natsURL, "-node-id", "fault-b")
	waitHealth(t, p.addrB, http.StatusOK)
	return p
}

// natsFront is a TCP forwarder in front of A's NATS, as a load balancer or a Kubernetes service would be.
// It accepts a connection at once, also while A is down, and dials A every few milliseconds until A listens
// again (for up to frontWait, less than the 3 s a NATS client waits for the server's first line), so
// that B's reconnect reaches NATS the moment it is back, before A's rso has recreated its streams.
type natsFront struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	dialing  int // connections accepted and not yet connected upstream
	closed   bool
}

const frontWait = 2500 * time.Millisecond

// startFront listens on a free 127.0.0.1 port and forwards to upstream.
func startFront(t *testing.T, upstream string) *natsFront {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &natsFront{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *natsFront) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			return
		}
		f.wg.Add(1)
		go f.serve(c)
	}
}

// track remembers c so that close can end it; false when the front is closed already.
func (f *natsFront) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

// waiting is how many accepted connections wait for upstream to listen.
func (f *natsFront) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dialing
}

func (f *natsFront) dialingBy(d int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dialing += d
}

func (f *natsFront) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *natsFront) forget(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
	c.Close()
}

// serve connects down to upstream and copies both ways until either side ends, then closes both.
func (f *natsFront) serve(down net.Conn) {
	defer f.wg.Done()
	defer f.forget(down)
	up := f.dialUpstream()
	if up == nil || !f.track(up) {
		return // the client gives up too, and tries again
	}
	defer f.forget(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, down); done <- struct{}{} }()
	go func() { _, _ = io.Copy(down, up); done <- struct{}{} }()
	<-done
	up.Close()
	down.Close()
	<-done
}

// dialUpstream dials until upstream answers, for up to frontWait; nil if it did not.
func (f *natsFront) dialUpstream() net.Conn {
	f.dialingBy(1)
	defer f.dialingBy(-1)
	deadline := time.Now().Add(frontWait)
	for {
		up, err := net.DialTimeout("tcp", f.upstream, frontWait)
		if err == nil {
			return up
		}
		if time.Now().After(deadline) || f.isClosed() {
			return nil
		}
		<-time.After(2 * time.Millisecond) // polling the port: it opening is the condition waited for
	}
}

func (f *natsFront) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

// startA starts node A (again) on the same HTTP address, NATS port and data folder.
func (p *pair) startA() {
	p.t.Helper()
	p.a = startProc(p.t, "-addr", p.addrA, "-data", p.dataA, "-nats-listen", p.natsAddr, "-node-id", "fault-a")
	waitHealth(p.t, p.addrA, http.StatusOK)
}

// restartA kills node A with SIGKILL and starts it again; it returns when A is healthy. With a front, A
// starts once B's reconnect is waiting there, so B is back on NATS the moment A's NATS listens.
func (p *pair) restartA() {
	p.t.Helper()
	p.a.kill(p.t)
	if p.front != nil {
		waitFor(p.t, 10*time.Second, "B's reconnect waits at the front", func() (bool, string) {
			return p.front.waiting() > 0, "no connection waiting"
		})
	}
	p.startA()
}

// complaints is the warnings and errors a node logged, for failure messages.
func complaints(p *proc) string {
	var out []string
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	if len(out) > 12 {
		out = append([]string{fmt.Sprintf("… %d lines before", len(out)-12)}, out[len(out)-12:]...)
	}
	if len(out) == 0 {
		return "(no warnings)"
	}
	return strings.Join(out, "\n")
}

// dialSO connects to /so without failing the test, for goroutines that reconnect.
func dialSO(addr string) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Dial(ctx, "ws://"+addr+"/so", client.Options{})
}

// subscribeAt dials addr and subscribes to obj from (version, epoch), retrying for up to 10 s while the node
// refuses or does not answer (it may be restarting, or cut off from NATS).
func subscribeAt(addr, obj string, persistent bool, version uint64, epoch string) (*client.Conn, *client.Sync, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dialSO(addr)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), answerWait)
			var s *client.Sync
			s, err = c.Subscribe(ctx, obj, persistent, version, epoch)
			cancel()
			if err == nil {
				return c, s, nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("cannot subscribe to %q on %s: %w", obj, addr, err)
		}
		<-time.After(100 * time.Millisecond) // polling a node that is restarting: its answer is the condition
	}
}

// slotText decodes a slot value written by these tests (a JSON string); raw is nil when the slot is absent.
func slotText(raw json.RawMessage) string {
	if raw == nil {
		return "<absent>"
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "<not a string: " + string(raw) + ">"
	}
	return s
}

// ledger is what the clients of one test saw of the slot: every committed value (from success answers,
// broadcasts and the final read), every reject, and the problems found while writing.
type ledger struct {
	mu        sync.Mutex
	committed map[string]bool
	rejects   []seenReject
	acked     map[int][]ack     // writer → the writes it was told were committed, in order
	answers   map[string]int    // outcomes by kind, for the log: success, reject, error codes, reconnects
	firstErr  map[string]string // error code → the first message with it, for the log
	problems  []string
}

type seenReject struct {
	id, value string
}

// ack is a write answered with success.
type ack struct {
	value   string
	version uint64 // the answer's version: the commit's, unless resent
	resent  bool   // answered after a re-send: the version is the object's current one (1.6)
}

func newLedger() *ledger {
	return &ledger{committed: map[string]bool{}, acked: map[int][]ack{}, answers: map[string]int{}, firstErr: map[string]string{}}
}

func (l *ledger) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

func (l *ledger) count(kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers[kind]++
}

func (l *ledger) refused(e *client.ServerError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers["error "+e.Code]++
	if _, ok := l.firstErr[e.Code]; !ok {
		l.firstErr[e.Code] = e.Message
	}
}

// sawSync records the slot values a sync frame shows as committed.
func (l *ledger) sawSync(s *client.Sync) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range s.Changes {
		if e.Code == client.CodeChange && e.Name == slotName {
			l.committed[slotText(e.Value)] = true
		}
	}
}

func (l *ledger) acks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answers[client.CodeSuccess]
}

func (l *ledger) problemList() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.problems...)
}

func (l *ledger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("answers %v (first error messages %q), %d committed values seen", l.answers, l.firstErr, len(l.committed))
}

// writer is one client hammering the slot with compare-and-set: each write's base is the last version the
// writer saw, its value and request id are unique ("w<k>-<n>"). A write refused with an error frame is not
// retried; one whose socket closed with a reconnect code is re-sent with the same id after reconnecting.
type writer struct {
	k    int
	addr string
	obj  string
	led  *ledger

	mu      sync.Mutex
	conn    *client.Conn
	epoch   string
	version uint64
	sentAt  time.Time // when the write waiting for its answer was sent; zero when none is
	sentID  string
	wins    int // writes answered with success
	drains  sync.WaitGroup
}

func newWriter(t *testing.T, k int, addr, obj string, led *ledger) *writer {
	t.Helper()
	w := &writer{k: k, addr: addr, obj: obj, led: led}
	if err := w.connect(); err != nil {
		t.Fatalf("writer %d: %v", k, err)
	}
	return w
}

// connect dials the writer's node again and subscribes from the last state seen.
func (w *writer) connect() error {
	w.mu.Lock()
	epoch, version := w.epoch, w.version
	w.mu.Unlock()
	c, s, err := subscribeAt(w.addr, w.obj, true, version, epoch)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	w.saw(s)
	w.drains.Add(1)
	go w.drain(c)
	return nil
}

// drain reads the broadcasts of one connection until it ends.
func (w *writer) drain(c *client.Conn) {
	defer w.drains.Done()
	for ev := range c.Events() {
		if ev.Sync != nil {
			w.saw(ev.Sync)
			w.led.sawSync(ev.Sync)
		}
	}
}

// saw takes the epoch and version of a sync frame as the base of the next write.
func (w *writer) saw(s *client.Sync) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.Epoch != w.epoch {
		w.epoch, w.version = s.Epoch, s.Version
		return
	}
	w.version = max(w.version, s.Version)
}

// stalled describes the write waiting for its answer for longer than answerWait, if any.
func (w *writer) stalled(now time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sentAt.IsZero() && now.Sub(w.sentAt) > answerWait {
		return fmt.Sprintf("write %s unanswered for %.1fs", w.sentID, now.Sub(w.sentAt).Seconds())
	}
	return ""
}

// run writes until stop is closed or limit writes were made (0: no limit).
func (w *writer) run(stop <-chan struct{}, limit int) {
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	for n := 1; limit == 0 || n <= limit; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if !w.write(fmt.Sprintf("w%d-%d", w.k, n)) {
			return
		}
	}
}

// write sends one compare-and-set of the slot to the value id, with request id id, and records what came
// back. It reports false when the writer cannot go on (its node is gone for good).
func (w *writer) write(id string) bool {
	w.mu.Lock()
	changes := []client.Change{{Name: slotName, Base: w.version, Value: value(id)}}
	w.mu.Unlock()
	for attempt := 1; ; attempt++ {
		w.mu.Lock()
		c := w.conn
		sent := time.Now()
		w.sentAt, w.sentID = sent, id
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), gaveUpWait)
		s, err := c.UpdateWithID(ctx, id, w.obj, true, changes)
		cancel()
		took := time.Since(sent)
		w.mu.Lock()
		w.sentAt = time.Time{}
		w.mu.Unlock()

		late := ""
		if took > answerWait {
			late = fmt.Sprintf("write %s (attempt %d) to %s: answer after %.2fs, want within %v", id, attempt, w.addr, took.Seconds(), answerWait)
		}
		var se *client.ServerError
		switch {
		case err == nil:
			w.answered(id, s, attempt > 1)
		case errors.As(err, &se):
			w.led.refused(se)
		case errors.Is(err, client.ErrClosed) && reconnectClose(c.CloseErr()) && attempt < 3:
			// The socket closed with a reconnect code: that counts as an answer once the same request,
			// re-sent after reconnecting, is answered.
			w.led.count("reconnect")
			if late != "" {
				w.led.problem("%s (the socket closed: %v)", late, c.CloseErr())
			}
			if err := w.connect(); err != nil {
				w.led.problem("write %s: closed with %v, then %v", id, c.CloseErr(), err)
				return false
			}
			continue
		default:
			w.led.problem("write %s (attempt %d) to %s: %v after %.1fs", id, attempt, w.addr, err, took.Seconds())
			return !errors.Is(err, client.ErrClosed)
		}
		if late != "" {
			w.led.problem("%s", late)
		}
		return true
	}
}

// reconnectClose reports whether a connection ended the way a node tells clients to reconnect: close code
// 1012 (restarting) or 1006 (the socket dropped without a close frame; the client reports a reset socket as
// "connection lost").
func reconnectClose(err error) bool {
	var ce *client.CloseError
	if errors.As(err, &ce) {
		return ce.Code == client.CloseRestart || ce.Code == client.CloseAbnormal
	}
	return err != nil && strings.Contains(err.Error(), "connection lost")
}

// answered records the sync that answered write id (resent: after a reconnect).
func (w *writer) answered(id string, s *client.Sync, resent bool) {
	w.saw(s)
	l := w.led
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range s.Changes {
		if e.Name != slotName {
			continue
		}
		l.answers[e.Code]++
		switch e.Code {
		case client.CodeSuccess:
			w.mu.Lock()
			w.wins++
			w.mu.Unlock()
			l.committed[id] = true
			l.acked[w.k] = append(l.acked[w.k], ack{value: id, version: s.Version, resent: resent})
		case client.CodeReject:
			l.rejects = append(l.rejects, seenReject{id: id, value: slotText(e.Value)})
		}
	}
}

func (w *writer) close() {
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	c.Close()
	w.drains.Wait()
}

// watcher is a subscriber that only reads: every version it was told of, with the slot's value if that version
// changed it, and when each value of any slot arrived.
type watcher struct {
	addr, obj string
	led       *ledger
	done      chan struct{}

	mu      sync.Mutex
	conn    *client.Conn
	stopped bool
	epoch   string
	version uint64
	history []seenVersion
	skipped [][2]uint64          // versions from..to it was never told of one by one (a resync jumped them)
	arrived map[string]time.Time // value (of any slot) → when it arrived
	clears  int                  // clear entries after the first sync
}

type seenVersion struct {
	version uint64
	value   string // the slot's value from this version on; "" when the version did not change the slot
}

// newWatcher subscribes on addr. When its socket closes with a reconnect code it subscribes again from the
// last version it saw, as a client should (1.5, 1.9).
func newWatcher(t *testing.T, addr, obj string, led *ledger) *watcher {
	t.Helper()
	w := &watcher{addr: addr, obj: obj, led: led, done: make(chan struct{}), arrived: map[string]time.Time{}}
	c := dialNode(t, addr)
	s := mustSub(t, c, obj)
	if s.Version > 0 {
		w.skipped = append(w.skipped, [2]uint64{1, s.Version})
	}
	w.conn = c
	w.apply(s, time.Now())
	go w.read(c)
	return w
}

func (w *watcher) read(c *client.Conn) {
	defer close(w.done)
	for {
		for ev := range c.Events() {
			if ev.Sync != nil {
				w.apply(ev.Sync, ev.Recv)
			}
		}
		w.mu.Lock()
		stopped, epoch, version := w.stopped, w.epoch, w.version
		w.mu.Unlock()
		if stopped {
			return
		}
		if !reconnectClose(c.CloseErr()) {
			w.led.problem("the watcher's connection ended: %v", c.CloseErr())
			return
		}
		c2, s, err := subscribeAt(w.addr, w.obj, true, version, epoch)
		if err != nil {
			w.led.problem("the watcher's connection ended (%v) and it could not subscribe again: %v", c.CloseErr(), err)
			return
		}
		w.mu.Lock()
		c, w.conn = c2, c2
		stopped = w.stopped
		w.mu.Unlock()
		w.apply(s, time.Now())
		if stopped {
			c.Close()
		}
	}
}

// close ends the watcher's connection and waits for its reader.
func (w *watcher) close() {
	w.mu.Lock()
	w.stopped = true
	c := w.conn
	w.mu.Unlock()
	c.Close()
	<-w.done
}

func (w *watcher) apply(s *client.Sync, at time.Time) {
	w.led.sawSync(s)
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.Epoch == w.epoch && s.Version <= w.version && w.history != nil {
		return // told nothing new
	}
	if s.Epoch == w.epoch && s.Version > w.version+1 {
		w.skipped = append(w.skipped, [2]uint64{w.version + 1, s.Version - 1})
	}
	seen := seenVersion{version: s.Version}
	for _, e := range s.Changes {
		switch {
		case e.Code == client.CodeClear && w.history != nil:
			w.clears++
		case e.Code == client.CodeChange:
			v := slotText(e.Value)
			if _, ok := w.arrived[v]; !ok {
				w.arrived[v] = at
			}
			if e.Name == slotName {
				seen.value = v
			}
		}
	}
	w.epoch, w.version = s.Epoch, s.Version
	w.history = append(w.history, seen)
}

// arrival returns when value arrived (zero if it has not).
func (w *watcher) arrival(value string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.arrived[value]
}

// last returns the last version the watcher was told of and the slot's value at it.
func (w *watcher) last() (version uint64, value string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.history) - 1; i >= 0; i-- {
		if v := w.history[i].value; v != "" {
			return w.version, v
		}
	}
	return w.version, "<absent>"
}

// fleet is the writers and the watcher of one test; stop ends them all (also from Cleanup).
type fleet struct {
	t        *testing.T
	obj      string
	led      *ledger
	writers  []*writer
	watch    *watcher
	stopCh   chan struct{}
	running  sync.WaitGroup
	stopOnce sync.Once
}

// startFleet subscribes a watcher on watchAddr, then starts one writer per address in writerAddrs, each
// making limit writes (0: until stop).
func startFleet(t *testing.T, obj, watchAddr string, writerAddrs []string, limit int) *fleet {
	t.Helper()
	f := &fleet{t: t, obj: obj, led: newLedger(), stopCh: make(chan struct{})}
	f.watch = newWatcher(t, watchAddr, obj, f.led)
	for k, addr := range writerAddrs {
		f.writers = append(f.writers, newWriter(t, k+1, addr, obj, f.led))
	}
	t.Cleanup(f.stop)
	for _, w := range f.writers {
		f.running.Add(1)
		go func() {
			defer f.running.Done()
			w.run(f.stopCh, limit)
		}()
	}
	return f
}

// stalled describes the writes that have waited longer than answerWait.
func (f *fleet) stalled() string {
	now := time.Now()
	var s []string
	for _, w := range f.writers {
		if d := w.stalled(now); d != "" {
			s = append(s, d)
		}
	}
	return strings.Join(s, "; ")
}

// winsBy returns how many writes of each writer were committed.
func (f *fleet) winsBy() []int {
	n := make([]int, len(f.writers))
	for i, w := range f.writers {
		w.mu.Lock()
		n[i] = w.wins
		w.mu.Unlock()
	}
	return n
}

// waitAcks waits until n more writes were acknowledged with success than before and every writer (so both
// nodes) has committed again, or until a write stalls. It reports false on a stall (the caller stops, and
// the stall is reported once the late answer is in).
func (f *fleet) waitAcks(n int, what string) bool {
	f.t.Helper()
	want, before := f.led.acks()+n, f.winsBy()
	stall := ""
	waitFor(f.t, gaveUpWait, what, func() (bool, string) {
		if stall = f.stalled(); stall != "" {
			return true, ""
		}
		now := f.winsBy()
		for i := range now {
			if now[i] == before[i] {
				return false, fmt.Sprintf("writer %d has committed nothing since; %s", i+1, f.led.summary())
			}
		}
		return f.led.acks() >= want, f.led.summary()
	})
	if stall != "" {
		f.t.Logf("%s: stopped waiting: %s", what, stall)
	}
	return stall == ""
}

// waitDone waits until every writer made its writes (run with a limit).
func (f *fleet) waitDone(d time.Duration) {
	f.t.Helper()
	finished := make(chan struct{})
	go func() { f.running.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(d):
		f.t.Fatalf("writers not done after %v: %s; %s", d, f.stalled(), f.led.summary())
	}
}

// stop ends the writers (each after the answer to its current write) and closes every connection.
func (f *fleet) stop() {
	f.stopOnce.Do(func() {
		close(f.stopCh)
		finished := make(chan struct{})
		go func() { f.running.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(gaveUpWait + 10*time.Second):
			f.t.Errorf("writers did not stop: %s", f.stalled())
		}
		for _, w := range f.writers {
			w.close()
		}
		f.watch.close()
	})
}

// readSlot subscribes a fresh client on addr and returns the object's version and the slot's value.
func readSlot(t *testing.T, addr, obj string) (uint64, string) {
	t.Helper()
	c := dialNode(t, addr)
	defer c.Close()
	s := mustSub(t, c, obj)
	r := client.Replica{}
	r.Apply(s)
	return s.Version, slotText(r.Slots[slotName])
}

// capped reports the first few errors of one kind, then how many there were.
type capped struct {
	t    *testing.T
	what string
	n    int
}

const maxErrorsShown = 10

func (c *capped) errorf(format string, args ...any) {
	c.t.Helper()
	if c.n++; c.n <= maxErrorsShown {
		c.t.Errorf(format, args...)
	}
}

func (c *capped) close() {
	c.t.Helper()
	if c.n > maxErrorsShown {
		c.t.Errorf("… %d %s in all", c.n, c.what)
	}
}

// checkLedger fails the test for the problems found while writing and for every inconsistency between what
// the writers were told, what the watcher saw and what fresh clients on each node read at the end.
func (f *fleet) checkLedger(addrs ...string) {
	t := f.t
	t.Helper()
	f.stop()
	problems := capped{t: t, what: "problems while writing"}
	for _, p := range f.led.problemList() {
		problems.errorf("%s", p)
	}
	problems.close()

	// The final state, read by fresh clients on each node, is the last value the watcher saw committed.
	var version uint64
	var final string
	waitFor(t, 10*time.Second, "fresh clients on every node read the same state", func() (bool, string) {
		version, final = readSlot(t, addrs[0], f.obj)
		for _, addr := range addrs[1:] {
			if v, s := readSlot(t, addr, f.obj); v != version || s != final {
				return false, fmt.Sprintf("%s reads v%d %q, %s reads v%d %q", addrs[0], version, final, addr, v, s)
			}
		}
		return true, ""
	})
	waitFor(t, 10*time.Second, "the watcher is told of the final version", func() (bool, string) {
		v, _ := f.watch.last()
		return v >= version, fmt.Sprintf("watcher at v%d, a fresh client read v%d", v, version)
	})
	if wv, last := f.watch.last(); wv != version || last != final {
		t.Errorf("a fresh client reads v%d %q, but the last committed value the watcher saw is %q at v%d", version, final, last, wv)
	}

	w := f.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.clears > 0 {
		t.Errorf("the watcher was told %d times that the persistent object was cleared (it never is)", w.clears)
	}
	l := f.led
	l.mu.Lock()
	defer l.mu.Unlock()
	l.committed[final] = true
	t.Logf("answers %v (first error messages %q); the watcher saw %d versions one by one, skipped %v; final v%d %q", l.answers, l.firstErr, len(w.history), w.skipped, version, final)

	// A reject shows the slot's current value: it must be one that was committed.
	rejects := capped{t: t, what: "rejects showing uncommitted values"}
	for _, r := range l.rejects {
		if !l.committed[r.value] {
			rejects.errorf("write %s was rejected showing the value %q, which was never committed (no success, broadcast or final read has it)", r.id, r.value)
		}
	}
	rejects.close()

	// Nothing acknowledged is lost: each success is the value the watcher saw at that version (unless a
	// resync jumped over it), each writer's successes come in version order, and none is above the final
	// version (which would mean the log lost its tail in the kill).
	at := make(map[uint64]string, len(w.history))
	for _, h := range w.history {
		at[h.version] = h.value
	}
	jumped := func(v uint64) bool {
		for _, r := range w.skipped {
			if r[0] <= v && v <= r[1] {
				return true
			}
		}
		return false
	}
	lost := capped{t: t, what: "acknowledged writes missing or out of order"}
	for k, acks := range l.acked {
		var prev uint64
		for _, a := range acks {
			if a.version > version {
				lost.errorf("writer %d was told %q was committed at v%d, but the final state is v%d", k, a.value, a.version, version)
			}
			if a.resent {
				continue
			}
			got, ok := at[a.version]
			switch {
			case a.version <= prev:
				lost.errorf("writer %d was told %q was committed at v%d, after an earlier write of its own at v%d", k, a.value, a.version, prev)
			case ok && got != a.value:
				lost.errorf("writer %d was told %q was committed at v%d, but the watcher saw %q there", k, a.value, a.version, got)
			case !ok && !jumped(a.version):
				lost.errorf("writer %d was told %q was committed at v%d, but the watcher was never told of v%d (lost?)", k, a.value, a.version, a.version)
			}
			prev = max(prev, a.version)
		}
	}
	lost.close()
}

// F1: the node that embeds NATS is killed under writers on both nodes (those on A lose their socket with it
// and re-send after A is back). Every write must be answered within answerWait (success, reject, or an error
// such as unavailable; a dropped socket counts once the re-sent write is answered in time), and once A is back
// a write on A must reach B's subscriber within resumeWait. Five kills, as the freeze depends on where a
// kill lands: a commit or a log read in flight on the dying connection is never answered and waits for its
// timeout (5 s for a commit, 20 s for a log read, which holds the object's lock).
func TestFaultKillNATSNodeWritesAnsweredPromptly(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts rso processes")
	}
	p := startPair(t, false)
	const obj = "fault/answers"
	f := startFleet(t, obj, p.addrB, []string{p.addrB, p.addrA, p.addrB, p.addrA}, 0)
	f.waitAcks(20, "writers commit before the first kill")
	for kill := 1; kill <= 5; kill++ {
		p.restartA()
		if !f.probeBroadcast(t, p, kill) || !f.waitAcks(20, fmt.Sprintf("kill %d: writers commit again", kill)) {
			break
		}
	}
	f.stop()
	problems := capped{t: t, what: "problems while writing"}
	for _, pr := range f.led.problemList() {
		problems.errorf("%s", pr)
	}
	problems.close()
	t.Logf("%s", f.led.summary())
	if t.Failed() {
		t.Logf("node B's warnings:\n%s", complaints(p.b))
	}
}

// probeBroadcast writes a fresh slot from a client on A and checks that B's watcher gets it within
// resumeWait. It reports false when it did not.
func (f *fleet) probeBroadcast(t *testing.T, p *pair, kill int) bool {
	t.Helper()
	c := dialNode(t, p.addrA)
	defer c.Close()
	s := mustSub(t, c, f.obj)
	probe := fmt.Sprintf("probe-%d", kill)
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), gaveUpWait)
	defer cancel()
	ans, err := c.Update(ctx, f.obj, true, []client.Change{{Name: "probe", Base: s.Version, Value: value(probe)}})
	if err != nil || len(ans.Changes) != 1 || ans.Changes[0].Code != client.CodeSuccess {
		t.Errorf("kill %d: a write on A after its restart: %v %+v", kill, err, ans)
		return false
	}
	var at time.Time
	waitFor(t, gaveUpWait, fmt.Sprintf("kill %d: B's subscriber gets the write made on A", kill), func() (bool, string) {
		at = f.watch.arrival(probe)
		return !at.IsZero(), f.stalled()
	})
	if d := at.Sub(sent); d > resumeWait {
		t.Errorf("kill %d: a write on A reached B's subscriber %.1fs after it was sent, want within %v", kill, d.Seconds(), resumeWait)
		return false
	}
	return true
}

// The fault test of the issue: kill the NATS-embedding node under writers on both nodes and check that every
// write is answered within answerWait, that no reject shows a value that was never committed, that the final
// state is the last committed value on both nodes, and that no acknowledged write is lost across the kills.
func TestFaultKillNATSNodeKeepsCommittedValues(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts rso processes")
	}
	p := startPair(t, false)
	const obj = "fault/ledger"
	f := startFleet(t, obj, p.addrB, []string{p.addrB, p.addrA, p.addrB, p.addrA}, 0)
	f.waitAcks(100, "writers commit before the first kill")
	for kill := 1; kill <= 3; kill++ {
		p.restartA()
		if !f.waitAcks(100, fmt.Sprintf("kill %d: writers commit again", kill)) {
			break
		}
	}
	f.checkLedger(p.addrB, p.addrA)
	if t.Failed() {
		t.Logf("node B's warnings:\n%s", complaints(p.b))
	}
}

// F2, without a kill: writers on both nodes race compare-and-sets on one slot (two per node, so that one
// node's group commit can hold two of them and lose the race to the other node). No reject may show a value
// that was never committed, and both nodes end on the last committed value.
func TestFaultCompareAndSetAcrossNodesRejectsShowCommittedValues(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two rso processes")
	}
	p := startPair(t, false)
	const obj = "fault/race"
	f := startFleet(t, obj, p.addrB, []string{p.addrA, p.addrB, p.addrA, p.addrB}, 400)
	f.waitDone(time.Minute)
	f.checkLedger(p.addrB, p.addrA)
	if t.Failed() {
		t.Logf("node A's warnings:\n%s\nnode B's warnings:\n%s", complaints(p.a), complaints(p.b))
	}
}

// F3: a temporary object lives in a memory stream, lost when the NATS that holds it dies. After A (which
// embeds that NATS) restarts, B's subscriber must be told the object is gone (a sync holding only clear, at
// version 0 with a new epoch) within resumeWait, without any further write. B reaches NATS through a
// natsFront, so its reconnect lands as soon as NATS listens, before A's rso has recreated the streams.
func TestFaultTemporaryObjectClearedAfterNATSRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts rso processes")
	}
	p := startPair(t, true)
	const obj = "fault/temp"
	c := dialNode(t, p.addrB)
	for kill := 1; kill <= 3; kill++ {
		s, err := c.Subscribe(testCtx(t), obj, false, 0, "")
		if err != nil {
			t.Fatalf("kill %d: subscribe: %v", kill, err)
		}
		for i := range 3 {
			ans, err := c.Update(testCtx(t), obj, false, []client.Change{{Name: fmt.Sprint("slot", i), Base: s.Version, Value: value(kill*10 + i)}})
			if err != nil || ans.Changes[0].Code != client.CodeSuccess {
				t.Fatalf("kill %d: write before the kill: %v %+v", kill, err, ans)
			}
			s = ans
		}
		epoch, version := s.Epoch, s.Version

		p.restartA()
		back := time.Now()
		deadline := time.After(resumeWait)
		for cleared := false; !cleared; {
			var got *client.Sync
			select {
			case ev, open := <-c.Events():
				if open {
					got = ev.Sync
					break
				}
				// B closed the socket: a client that is told to reconnect subscribes again from what it saw.
				if !reconnectClose(c.CloseErr()) {
					t.Fatalf("kill %d: B closed the subscriber's socket with %v, not a reconnect code", kill, c.CloseErr())
				}
				var err error
				if c, got, err = subscribeAt(p.addrB, obj, false, version, epoch); err != nil {
					t.Fatalf("kill %d: %v", kill, err)
				}
				t.Cleanup(func() { c.Close() })
			case <-deadline:
				t.Fatalf("kill %d: the temporary object (v%d, epoch %q) was lost with A's NATS, but B's subscriber got no clear within %v of A being healthy again; node B's warnings:\n%s",
					kill, version, epoch, resumeWait, complaints(p.b))
			}
			if got == nil || got.Obj != obj || len(got.Changes) == 0 || got.Changes[0].Code != client.CodeClear {
				t.Logf("kill %d: B's subscriber got %+v", kill, got)
				continue
			}
			if got.Version != 0 || got.Epoch == epoch || len(got.Changes) != 1 {
				t.Fatalf("kill %d: the object was v%d epoch %q; after the restart B's subscriber got v%d epoch %q %+v, want only clear at v0 with a new epoch",
					kill, version, epoch, got.Version, got.Epoch, got.Changes)
			}
			t.Logf("kill %d: cleared %.1fs after A was healthy again", kill, time.Since(back).Seconds())
			cleared = true
		}
	}
}
