package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// rooms: many small chat rooms. Every member of a room subscribes to the room's object and sends a message
// ({"seq","ts","from"} as the send's args) every -interval, starting at a random moment; every member
// receives every message of its room, its own included. Each receiver checks, per sender, that nothing is
// lost, duplicated or out of order. One goroutine per room does the sending for its members.

func roomsScenario() scenario {
	return scenario{
		name:    "rooms",
		summary: "-rooms rooms × -members members, each member sending a message every -interval via send (rso)",
		newRunner: func(fs *flag.FlagSet) runner {
			r := &rooms{}
			fs.IntVar(&r.rooms, "rooms", 500, "rooms (objects)")
			fs.IntVar(&r.members, "members", 10, "members per room")
			fs.DurationVar(&r.interval, "interval", time.Second, "time between two messages of one member")
			fs.BoolVar(&r.persistent, "persistent", false, "use persistent objects (default: temporary)")
			return r
		},
	}
}

type rooms struct {
	rooms, members int
	interval       time.Duration
	persistent     bool
}

func (r *rooms) conns() int { return r.rooms * r.members }

func (r *rooms) check() error {
	if r.rooms < 1 || r.members < 1 || r.rooms*r.members > maxConns {
		return fmt.Errorf("-rooms %d × -members %d: want at least 1 each and at most %d connections", r.rooms, r.members, maxConns)
	}
	if r.interval < time.Millisecond || r.interval > time.Minute {
		return fmt.Errorf("-interval %s: want 1ms to 1m", r.interval)
	}
	return nil
}

type room struct {
	obj     string
	members []*member

	mu      sync.Mutex
	refused map[[2]uint64]string // (sender, seq) → error code
	werr    error                // a member's socket failed while sending
}

type member struct {
	room    *room
	idx     int
	c       *wsConn
	shard   *recShard
	ready   chan struct{}
	done    chan struct{}
	closing atomic.Bool
	dropped atomic.Bool
	readErr error
	got     atomic.Uint64 // distinct messages received from all senders
	errs    atomic.Int64  // error frames other than refusals of its own sends
	sent    atomic.Uint64 // as a sender: the last seq sent
	track   []seqTrack    // per sender; owned by the reader until done
}

var keyArgsSeq = []byte(`"args":[{"seq":`)

func (m *member) read(rec *recorder) {
	defer close(m.done)
	subscribed := false
	var got uint64
	err := m.c.readLoop(func(f []byte, now int64) {
		switch frameOp(f) {
		case opMessage:
			i := bytes.Index(f, keyArgsSeq)
			if i < 0 {
				m.errs.Add(1)
				return
			}
			seq, ts, next, ok := stamped(f, i+len(keyArgsSeq))
			if !ok || !bytes.HasPrefix(f[next:], keyFrom) {
				m.errs.Add(1)
				return
			}
			from, _, ok := uintAt(f[next+len(keyFrom):])
			if !ok || from >= uint64(len(m.track)) {
				m.errs.Add(1)
				return
			}
			t := &m.track[from]
			before := t.got
			t.add(seq)
			got += t.got - before
			m.got.Store(got)
			rec.deliver(m.shard, ts, now)
		case opSync:
			if id, ok := stringAfter(f, keyID); !subscribed && ok && bytes.Equal(id, subID) {
				subscribed = true
				close(m.ready)
			}
		case opError:
			if id, ok := stringAfter(f, keyID); ok {
				if _, seq, ok := idPair(id, 'm'); ok {
					code, _ := stringAfter(f, keyCode)
					m.room.refuse(uint64(m.idx), seq, string(code))
					return
				}
			}
			m.errs.Add(1)
		}
	})
	m.readErr = err
	if !m.closing.Load() {
		m.dropped.Store(true)
	}
}

func (rm *room) refuse(sender, seq uint64, code string) {
	rm.mu.Lock()
	rm.refused[[2]uint64{sender, seq}] = code
	rm.mu.Unlock()
}

func (rm *room) isRefused(sender uint64) func(uint64) bool {
	return func(seq uint64) bool {
		rm.mu.Lock()
		defer rm.mu.Unlock()
		_, ok := rm.refused[[2]uint64{sender, seq}]
		return ok
	}
}

// expected is how many messages each member of the room should have: every one sent and not refused.
func (rm *room) expected() uint64 {
	var n uint64
	for _, m := range rm.members {
		n += m.sent.Load()
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return n - uint64(len(rm.refused))
}

// chat sends every member's messages until stop is closed: each member every interval, from a random
// phase within the first interval.
func (rm *room) chat(stop <-chan struct{}, interval time.Duration, persistent bool) {
	start := time.Now()
	due := make([]time.Time, len(rm.members))
	for i := range due {
		due[i] = start.Add(rand.N(interval))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var buf []byte
	for {
		k := 0
		for i := range due {
			if due[i].Before(due[k]) {
				k = i
			}
		}
		timer.Reset(time.Until(due[k]))
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		m := rm.members[k]
		seq := m.sent.Load() + 1
		buf = chatFrame(buf[:0], rm.obj, persistent, seq, time.Now().UnixNano(), k)
		if err := m.c.write(buf); err != nil {
			rm.mu.Lock()
			rm.werr = err
			rm.mu.Unlock()
			return
		}
		m.sent.Store(seq)
		due[k] = due[k].Add(interval)
	}
}

// chatFrame: {"op":"send",…,"id":"m<from>.<seq>","handler":"chat","args":[{"seq":n,"ts":t,"from":k}]}.
func chatFrame(b []byte, obj string, persistent bool, seq uint64, ts int64, from int) []byte {
	b = append(b, `{"op":"send","obj":"`...)
	b = append(b, obj...)
	b = append(b, `","persistent":`...)
	b = strconv.AppendBool(b, persistent)
	b = append(b, `,"id":"m`...)
	b = strconv.AppendInt(b, int64(from), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `","handler":"chat","args":[{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"from":`...)
	b = strconv.AppendInt(b, int64(from), 10)
	return append(b, `}]}`...)
}

func (r *rooms) run(ctx context.Context, e *env) (*report, error) {
	rec := newRecorder()
	rs := make([]*room, r.rooms)
	all := make([]*member, 0, r.rooms*r.members)
	for i := range rs {
		rm := &room{obj: fmt.Sprintf("bench/room-%s-%d", e.runID, i), refused: map[[2]uint64]string{}}
		for j := range r.members {
			m := &member{room: rm, idx: j, shard: rec.shard(len(all)), ready: make(chan struct{}), done: make(chan struct{}),
				track: make([]seqTrack, r.members)}
			rm.members = append(rm.members, m)
			all = append(all, m)
		}
		rs[i] = rm
	}
	var connected atomic.Int64
	sentTotal := func() int64 {
		var n int64
		for _, m := range all {
			n += int64(m.sent.Load())
		}
		return n
	}
	prog := e.startProgress(
		meter{name: "sent", value: sentTotal},
		meter{name: "deliveries", value: rec.deliveries},
		meter{name: "subscribed", value: connected.Load, total: true},
	)
	defer prog.end()
	shut := func() {
		var wg sync.WaitGroup
		for _, m := range all {
			if m.c != nil {
				wg.Go(func() {
					m.closing.Store(true)
					m.c.close()
					<-m.done
				})
			}
		}
		wg.Wait()
	}
	defer shut()

	err := dialAll(ctx, len(all), func(ctx context.Context, i int) error {
		m := all[i]
		c, err := dialWS(ctx, e.url(i))
		if err != nil {
			return err
		}
		m.c = c
		go m.read(rec)
		if err := c.write(subFrame(m.room.obj, r.persistent)); err != nil {
			return err
		}
		t := time.NewTimer(subscribeWait)
		defer t.Stop()
		select {
		case <-m.ready:
			connected.Add(1)
			return nil
		case <-m.done:
			return fmt.Errorf("socket closed before it was subscribed: %v", m.readErr)
		case <-t.C:
			return fmt.Errorf("not subscribed after %s", subscribeWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("connecting %d members: %w", len(all), err)
	}

	stop := make(chan struct{})
	var chatting sync.WaitGroup
	for _, rm := range rs {
		chatting.Go(func() { rm.chat(stop, r.interval, r.persistent) })
	}
	u, deltas, err := e.measure(ctx, prog, []*recorder{rec}, rec.deliveries, sentTotal)
	close(stop)
	chatting.Wait()
	if err != nil {
		return nil, err
	}

	prog.setPhase("drain")
	deadline := time.Now().Add(e.opt.drain)
	for {
		complete := true
	check:
		for _, rm := range rs {
			want := rm.expected()
			for _, m := range rm.members {
				if m.got.Load() < want && !m.dropped.Load() {
					complete = false
					break check
				}
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
	shut()

	rep := newReport("rooms", e.target)
	var lost, dup, reord, dropped, errFrames, refused, expected uint64
	var werr error
	for _, rm := range rs {
		want := rm.expected()
		for _, m := range rm.members {
			expected += want
			for s := range m.track {
				t := &m.track[s]
				lost += t.lost(rm.members[s].sent.Load(), rm.isRefused(uint64(s)))
				dup += t.dup
				reord += t.reorder
			}
			errFrames += uint64(m.errs.Load())
			if m.dropped.Load() {
				dropped++
			}
		}
		refused += uint64(len(rm.refused))
		if rm.werr != nil {
			werr = rm.werr
		}
	}
	secs := u.elapsed.Seconds()
	rep.addInt("rooms", int64(r.rooms), "rooms")
	rep.addInt("members", int64(r.members), "members per room")
	rep.add("messages_per_sec", float64(deltas[1])/secs, 0, "messages sent/s")
	rep.add("deliveries_per_sec", float64(deltas[0])/secs, 0, "deliveries/s")
	l := rec.latencies()
	rep.addLatency(&l, "latency")
	rep.addInt("messages_sent", sentTotal(), "messages sent (whole run)")
	rep.addInt("deliveries_total", rec.deliveries(), "deliveries (whole run)")
	rep.addInt("expected_deliveries", int64(expected), "expected deliveries (whole run)")
	rep.addInt("lost", int64(lost), "lost")
	rep.addInt("duplicated", int64(dup), "duplicated")
	rep.addInt("reordered", int64(reord), "reordered")
	rep.addInt("disconnected", int64(dropped), "members disconnected by the server")
	rep.addInt("send_refused", int64(refused), "sends refused by the server")
	rep.addInt("error_frames", int64(errFrames), "other error or malformed frames")
	rep.addUsage(u, deltas[0], "delivery")
	rep.failOnCounts("lost", "duplicated", "reordered", "disconnected", "send_refused", "error_frames")
	if werr != nil {
		rep.fail("a member's socket failed while sending: %v", werr)
	}
	return rep, nil
}
