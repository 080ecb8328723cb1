package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// fanout: -subs subscribers of one object and one publisher sending -rate changes per second, open loop.
// Each change's value is {"seq":n,"ts":unix_ns}; latency is arrival − ts, and every subscriber checks the
// sequence for losses, duplicates and reordering. On rso the publisher rotates over pubSlots slots and
// bases each update on the highest version it has seen (its own answers), with fewer than pubSlots
// updates in flight, so that it never conflicts with itself. On barehub it posts frames shaped and sized
// like rso's change frames, which the hub relays unchanged, so subscribers do the same work on both.

func fanoutScenario() scenario {
	return scenario{
		name:    "fanout",
		summary: "-subs clients on one object, -rate changes/s from one publisher (rso, barehub; -nodes)",
		hub:     true,
		newRunner: func(fs *flag.FlagSet) runner {
			f := &fanout{}
			fs.IntVar(&f.subs, "subs", 1000, "subscribers")
			fs.Float64Var(&f.rate, "rate", 100, "changes per second the publisher sends (open loop, paced by a ticker)")
			fs.BoolVar(&f.persistent, "persistent", false, "rso: use a persistent object (default: temporary)")
			return f
		},
	}
}

type fanout struct {
	subs       int
	rate       float64
	persistent bool
}

const (
	pubSlots  = 64
	pubWindow = pubSlots - 1 // updates in flight at most
	// subscribeWait bounds how long one connection may take to be subscribed.
	subscribeWait = 30 * time.Second
	maxRate       = 1e6
)

func (f *fanout) conns() int { return f.subs + 1 }

func (f *fanout) check() error {
	if f.subs < 1 || f.subs > maxConns {
		return fmt.Errorf("-subs %d: want 1 to %d", f.subs, maxConns)
	}
	if !(f.rate > 0) || f.rate > maxRate {
		return fmt.Errorf("-rate %g: want more than 0, at most %g", f.rate, maxRate)
	}
	return nil
}

// subscriber is one reading socket with its own sequence check.
type subscriber struct {
	c       *wsConn
	shard   *recShard
	ready   chan struct{} // closed once subscribed (rso: the sub's answer; hub: its hello)
	done    chan struct{} // closed when the reader has stopped
	closing atomic.Bool   // the tool closed it: the reader's error is expected
	dropped atomic.Bool   // the reader stopped although the tool had not closed it
	readErr error         // why the reader stopped; read after done
	got     atomic.Uint64 // distinct sequence numbers received, for the drain
	errs    atomic.Int64  // error frames
	track   seqTrack      // owned by the reader until done
}

var keyValueSeq = []byte(`"value":{"seq":`)

// read runs the subscriber's reader until the socket ends.
func (s *subscriber) read(rec *recorder, hub bool) {
	defer close(s.done)
	subscribed := false
	err := s.c.readLoop(func(f []byte, now int64) {
		switch frameOp(f) {
		case opSync:
			if !subscribed {
				if id, ok := stringAfter(f, keyID); hub || !ok || !bytes.Equal(id, subID) {
					break // rso: a change before the sub's answer cannot happen; ignore
				}
				subscribed = true
				close(s.ready)
				return // the answer holds the state before the first change: nothing to count
			}
			for i := 0; ; {
				j := bytes.Index(f[i:], keyValueSeq)
				if j < 0 {
					break
				}
				seq, ts, next, ok := stamped(f, i+j+len(keyValueSeq))
				i = next
				if !ok {
					s.errs.Add(1)
					continue
				}
				s.track.add(seq)
				rec.deliver(s.shard, ts, now)
			}
			s.got.Store(s.track.got)
		case opHello:
			if hub && !subscribed {
				subscribed = true
				close(s.ready)
			}
		case opError:
			s.errs.Add(1)
		}
	})
	s.readErr = err
	if !s.closing.Load() {
		s.dropped.Store(true)
	}
}

// shut closes the socket and waits for its reader.
func (s *subscriber) shut() {
	s.closing.Store(true)
	s.c.close()
	<-s.done
}

var subID = []byte("sub")

// subFrame is rso's sub request, answered with id "sub".
func subFrame(obj string, persistent bool) []byte {
	return fmt.Appendf(nil, `{"op":"sub","obj":%q,"persistent":%t,"id":"sub"}`, obj, persistent)
}

// connectSubscribers opens n subscribers of obj (rso) or of the hub, spread over the nodes, each with its
// reader running, and returns once every one is subscribed. On error the opened ones are closed.
func connectSubscribers(ctx context.Context, e *env, n int, obj string, persistent bool, rec *recorder, connected *atomic.Int64) ([]*subscriber, error) {
	subs := make([]*subscriber, n)
	err := dialAll(ctx, n, func(ctx context.Context, i int) error {
		c, err := dialWS(ctx, e.url(i))
		if err != nil {
			return err
		}
		s := &subscriber{c: c, shard: rec.shard(i), ready: make(chan struct{}), done: make(chan struct{})}
		subs[i] = s
		go s.read(rec, e.hub())
		if !e.hub() {
			if err := c.write(subFrame(obj, persistent)); err != nil {
				return err
			}
		}
		if err := s.waitReady(ctx); err != nil {
			return err
		}
		connected.Add(1)
		return nil
	})
	if err != nil {
		shutAll(subs)
		return nil, err
	}
	return subs, nil
}

func (s *subscriber) waitReady(ctx context.Context) error {
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	select {
	case <-s.ready:
		return nil
	case <-s.done:
		return fmt.Errorf("socket closed before it was subscribed: %v", s.readErr)
	case <-t.C:
		return fmt.Errorf("not subscribed after %s", subscribeWait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func shutAll(subs []*subscriber) {
	var wg sync.WaitGroup
	for _, s := range subs {
		if s != nil {
			wg.Go(s.shut)
		}
	}
	wg.Wait()
}

// publisher sends the changes, paced by a ticker; on rso its reader follows the answers.
type publisher struct {
	c    *wsConn
	hub  bool
	obj  string
	pers bool
	rate float64

	sent     atomic.Int64 // the last sequence number sent (they start at 1)
	answered atomic.Int64 // rso: answers (sync or error) to updates
	skipped  atomic.Int64 // changes not sent because the window was full or the socket was slow
	version  atomic.Uint64
	sentAt   [pubSlots]atomic.Int64 // send time of the update in flight on each slot
	acks     *recorder              // answer latency, for updates sent in the window
	ready    chan struct{}
	done     chan struct{}
	readErr  error
	closing  atomic.Bool
	dropped  atomic.Bool // the server closed the socket

	mu       sync.Mutex
	refused  map[uint64]string // seq → error code or "reject"
	writeErr error
}

func newPublisher(hub bool, obj string, persistent bool, rate float64) *publisher {
	return &publisher{hub: hub, obj: obj, pers: persistent, rate: rate, acks: newRecorder(),
		ready: make(chan struct{}), done: make(chan struct{}), refused: map[uint64]string{}}
}

func (p *publisher) connect(ctx context.Context, url string) error {
	c, err := dialWS(ctx, url)
	if err != nil {
		return err
	}
	p.c = c
	go p.read()
	if p.hub {
		close(p.ready)
		return nil
	}
	if err := c.write(subFrame(p.obj, p.pers)); err != nil {
		return err
	}
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("publisher: socket closed before it was subscribed: %v", p.readErr)
	case <-t.C:
		return errors.New("publisher: not subscribed in time")
	case <-ctx.Done():
		return ctx.Err()
	}
}

var codeReject = []byte(`"code":"reject"`)

func (p *publisher) read() {
	defer close(p.done)
	ackShard := p.acks.shard(0)
	subscribed := p.hub
	p.readErr = p.c.readLoop(func(f []byte, now int64) {
		op := frameOp(f)
		if op != opSync && op != opError {
			return
		}
		id, ok := stringAfter(f, keyID)
		if !ok {
			return
		}
		if !subscribed {
			if bytes.Equal(id, subID) && op == opSync {
				if v, ok := uintAfter(f, keyVersion); ok {
					p.version.Store(v)
				}
				subscribed = true
				close(p.ready)
			}
			return
		}
		seq, ok := idNumber(id, 'u')
		if !ok {
			return
		}
		if op == opError {
			code, _ := stringAfter(f, keyCode)
			p.refuse(seq, string(code))
		} else {
			if v, ok := uintAfter(f, keyVersion); ok && v > p.version.Load() {
				p.version.Store(v)
			}
			if bytes.Contains(f, codeReject) {
				p.refuse(seq, "reject")
			}
			p.acks.deliver(ackShard, p.sentAt[seq%pubSlots].Load(), now)
		}
		p.answered.Add(1)
	})
	if !p.closing.Load() {
		p.dropped.Store(true)
	}
}

func (p *publisher) refuse(seq uint64, why string) {
	p.mu.Lock()
	p.refused[seq] = why
	p.mu.Unlock()
}

func (p *publisher) isRefused(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.refused[seq]
	return ok
}

func (p *publisher) refusedCount() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(len(p.refused))
}

// refusals summarises why updates were refused: "rate_limited×12, reject×1".
func (p *publisher) refusals() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := map[string]int{}
	for _, why := range p.refused {
		counts[why]++
	}
	var b bytes.Buffer
	for why, n := range counts {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s×%d", why, n)
	}
	return b.String()
}

// pace sends changes at p.rate until stop is closed. A ticker wakes it every 1/rate (at least every
// millisecond) and it sends what is due since the start; changes it cannot send (rso: window full; a
// scheduling stall or a socket so slow that more than a fifth of a second's worth is due) are skipped, not sent later, so
// the offered rate stays honest and the achieved rate is reported.
func (p *publisher) pace(stop <-chan struct{}) {
	period := max(time.Millisecond, time.Duration(float64(time.Second)/p.rate))
	tick := time.NewTicker(period)
	defer tick.Stop()
	maxBurst := max(int64(p.rate/5), 8)
	start := time.Now()
	var buf []byte
	var lastTS [pubSlots]int64
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds()*p.rate) - p.skipped.Load()
		n := due - p.sent.Load()
		if n > maxBurst {
			p.skipped.Add(n - maxBurst)
			n = maxBurst
		}
		for ; n > 0; n-- {
			seq := p.sent.Load() + 1
			if !p.hub && seq-1-p.answered.Load() >= pubWindow {
				p.skipped.Add(n)
				break
			}
			slot := seq % pubSlots
			now := time.Now().UnixNano()
			if p.hub {
				buf = hubFrame(buf[:0], p.obj, uint64(seq), now, lastTS[slot])
				lastTS[slot] = now
			} else {
				p.sentAt[slot].Store(now)
				buf = updateFrame(buf[:0], p.obj, p.pers, uint64(seq), p.version.Load(), now)
			}
			if err := p.c.write(buf); err != nil {
				p.mu.Lock()
				p.writeErr = err
				p.mu.Unlock()
				return
			}
			p.sent.Store(seq)
		}
	}
}

// updateFrame is the publisher's rso update: {"op":"update",…,"changes":[{"name":"s7","base":V,"value":{"seq":n,"ts":t}}]}.
func updateFrame(b []byte, obj string, persistent bool, seq, base uint64, ts int64) []byte {
	b = append(b, `{"op":"update","obj":"`...)
	b = append(b, obj...)
	b = append(b, `","persistent":`...)
	b = strconv.AppendBool(b, persistent)
	b = append(b, `,"id":"u`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `","changes":[{"name":"s`...)
	b = strconv.AppendUint(b, seq%pubSlots, 10)
	b = append(b, `","base":`...)
	b = strconv.AppendUint(b, base, 10)
	b = append(b, `,"value":{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, `}}]}`...)
}

// hubFrame is what the publisher posts to the hub: the change frame rso would send for the same update
// (same shape and about the same size), which the hub relays as is.
func hubFrame(b []byte, obj string, seq uint64, ts, oldTS int64) []byte {
	b = append(b, `{"op":"sync","obj":"`...)
	b = append(b, obj...)
	b = append(b, `","persistent":false,"epoch":"bh0000000","version":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"changes":[{"code":"change","name":"s`...)
	b = strconv.AppendUint(b, seq%pubSlots, 10)
	b = append(b, `","value":{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	if seq > pubSlots {
		b = append(b, `},"oldValue":{"seq":`...)
		b = strconv.AppendUint(b, seq-pubSlots, 10)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, oldTS, 10)
	}
	return append(b, `}}]}`...)
}

func (p *publisher) shut() {
	if p.c == nil {
		return
	}
	p.closing.Store(true)
	p.c.close()
	<-p.done
}

func (f *fanout) run(ctx context.Context, e *env) (*report, error) {
	obj := "bench/fanout-" + e.runID
	rec := newRecorder()
	pub := newPublisher(e.hub(), obj, f.persistent, f.rate)
	var connected atomic.Int64
	prog := e.startProgress(
		meter{name: "sent", value: pub.sent.Load},
		meter{name: "deliveries", value: rec.deliveries},
		meter{name: "subscribed", value: connected.Load, total: true},
	)
	defer prog.end()

	subs, err := connectSubscribers(ctx, e, f.subs, obj, f.persistent, rec, &connected)
	if err != nil {
		return nil, fmt.Errorf("connecting %d subscribers: %w", f.subs, err)
	}
	defer shutAll(subs)
	if err := pub.connect(ctx, e.cl.pubURL); err != nil {
		return nil, err
	}
	defer pub.shut()

	stop := make(chan struct{})
	paced := make(chan struct{})
	go func() { defer close(paced); pub.pace(stop) }()
	u, deltas, err := e.measure(ctx, prog, []*recorder{rec, pub.acks}, rec.deliveries, pub.sent.Load)
	close(stop)
	<-paced
	if err != nil {
		return nil, err
	}

	// Drain: wait until every subscriber has every change that was not refused (and rso has answered all).
	prog.setPhase("drain")
	last := pub.sent.Load()
	deadline := time.Now().Add(e.opt.drain)
	for {
		want := uint64(last - pub.refusedCount())
		complete := pub.hub || pub.answered.Load() >= last
		for _, s := range subs {
			if s.got.Load() < want && !s.dropped.Load() {
				complete = false
				break
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
		if err := e.sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	prog.end()
	shutAll(subs)
	pub.shut()

	r := newReport("fanout", e.target)
	var lost, dup, reord, dropped, errFrames uint64
	for _, s := range subs {
		lost += s.track.lost(uint64(last), pub.isRefused)
		dup += s.track.dup
		reord += s.track.reorder
		errFrames += uint64(s.errs.Load())
		if s.dropped.Load() {
			dropped++
		}
	}
	secs := u.elapsed.Seconds()
	refused := pub.refusedCount()
	r.addInt("subs", int64(f.subs), "subscribers")
	r.add("rate_requested", f.rate, 1, "changes/s requested")
	r.add("publish_rate", float64(deltas[1])/secs, 1, "changes/s sent (achieved)")
	r.addInt("publish_skipped", pub.skipped.Load(), "changes skipped (publisher window full or socket slow)")
	r.add("deliveries_per_sec", float64(deltas[0])/secs, 0, "deliveries/s")
	l := rec.latencies()
	r.addLatency(&l, "latency")
	if !e.hub() {
		al := pub.acks.latencies()
		r.add("ack_p50_ms", float64(al.quantile(0.5))/1e6, 2, "publisher answer p50 (ms)")
		r.add("ack_p99_ms", float64(al.quantile(0.99))/1e6, 2, "publisher answer p99 (ms)")
	}
	r.addInt("changes_sent", last, "changes sent (whole run)")
	r.addInt("deliveries_total", rec.deliveries(), "deliveries (whole run)")
	r.addInt("expected_deliveries", int64(f.subs)*(last-refused), "expected deliveries (whole run)")
	r.addInt("lost", int64(lost), "lost")
	r.addInt("duplicated", int64(dup), "duplicated")
	r.addInt("reordered", int64(reord), "reordered")
	r.addInt("disconnected", int64(dropped), "subscribers disconnected by the server")
	r.addInt("error_frames", int64(errFrames), "error frames to subscribers")
	r.addInt("publish_refused", refused, "updates refused by the server")
	r.addUsage(u, deltas[0], "delivery")
	r.failOnCounts("lost", "duplicated", "reordered", "disconnected", "error_frames", "publish_refused")
	if refused > 0 {
		r.fail("refused updates: %s (rate_limited: start rso with a higher -frames-per-second)", pub.refusals())
	}
	if pub.writeErr != nil {
		r.fail("publisher socket failed: %v", pub.writeErr)
	}
	if pub.dropped.Load() {
		r.fail("publisher socket closed by the server: %v", pub.readErr)
	}
	for _, s := range subs {
		if s.dropped.Load() {
			r.fail("a subscriber was disconnected: %v", s.readErr)
			break
		}
	}
	return r, nil
}
