package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
)

// dm: private chat through the relay (docs/PROTOCOL.md §3). -users users each hold one connection to
// /relay and send messages ({"seq":n,"ts":unix_ns} as the body) to random other users, -rate messages/s in
// all, open loop. A message counts when it has been stored (the sender's `sent` answer) and delivered (the
// recipient's `message` frame); latency is delivery − ts. Each recipient checks, per sender, the sender's
// own numbering of the messages it sent to that recipient: nothing lost, duplicated or out of order.

func dmScenario() scenario {
	return scenario{
		name:    "dm",
		summary: "-users users sending private messages to random users, -rate in all, stored and delivered (rso serving /relay)",
		newRunner: func(fs *flag.FlagSet) runner {
			d := &dm{}
			fs.IntVar(&d.users, "users", 1000, "users (one connection each)")
			fs.Float64Var(&d.rate, "rate", 10000, "messages per second, all users together (each user's share must stay within the relay's messages_per_second)")
			fs.IntVar(&d.peers, "peers", 0, "each user writes only to this many random users, fixed at the start (0: to anyone; then almost every message opens a new conversation)")
			return d
		},
	}
}

type dm struct {
	users int
	rate  float64
	peers int
}

// dmSenders goroutines pace the sends, each for its share of the users.
const dmSenders = 16

func (d *dm) conns() int { return d.users }

// dmMessagesPerSecond is the -relay-messages-per-second the rso processes get: the relay's default (20 per
// connection) is for people, and the tool's users each send -rate/-users. The relay's frames_per_second
// (50 per connection) still applies; run checks the rate against both.
const dmMessagesPerSecond = 1e6

func (d *dm) serverArgs() []string {
	return []string{"-relay-messages-per-second", strconv.FormatFloat(dmMessagesPerSecond, 'f', -1, 64)}
}

func (d *dm) check() error {
	if d.users < 2 || d.users > maxConns {
		return fmt.Errorf("-users %d: want 2 to %d", d.users, maxConns)
	}
	if !(d.rate > 0) || d.rate > maxRate {
		return fmt.Errorf("-rate %g: want more than 0, at most %g", d.rate, maxRate)
	}
	if d.peers < 0 || d.peers >= d.users {
		return fmt.Errorf("-peers %d: want 0 (anyone) to %d", d.peers, d.users-1)
	}
	return nil
}

type dmUser struct {
	idx     int
	name    string
	c       *wsConn
	shard   *recShard
	ready   chan struct{}
	done    chan struct{}
	closing atomic.Bool
	dropped atomic.Bool
	readErr error
	limit   atomic.Uint64 // messages_per_second from hello, ×1000
	flimit  atomic.Uint64 // frames_per_second from hello, ×1000

	// as a sender: next is owned by its sender goroutine (read after it stops)
	peers    []int          // whom it writes to (nil: anyone)
	next     map[int]uint64 // recipient → the last number sent to it
	sent     atomic.Int64
	answered atomic.Int64
	refusedN atomic.Int64
	werr     error

	// owned by the reader (read after done)
	refused  map[[2]uint64]string // (recipient, number) → error code
	tracks   map[uint64]*seqTrack // sender → its messages to this user
	oddities int64                // duplicate answers, malformed frames, errors without a known id
	got      atomic.Int64         // distinct messages received
}

var (
	opSent      = []byte(`{"op":"sent"`)
	opDMHello   = []byte(`{"op":"hello"`)
	opDMMessage = []byte(`{"op":"message"`)
	opDMError   = []byte(`{"op":"error"`)
	keyBodySeq  = []byte(`"body":{"seq":`)
	keyFromStr  = []byte(`"from":"`)
	duplicateT  = []byte(`"duplicate":true`)
)

func (u *dmUser) read(rec *recorder, prefix []byte) {
	defer close(u.done)
	greeted := false
	u.readErr = u.c.readLoop(func(f []byte, now int64) {
		switch {
		case bytes.HasPrefix(f, opDMMessage):
			i := bytes.Index(f, keyFromStr)
			j := bytes.Index(f, keyBodySeq)
			if i < 0 || j < 0 || !bytes.HasPrefix(f[i+len(keyFromStr):], prefix) {
				u.oddities++
				return
			}
			from, _, ok1 := uintAt(f[i+len(keyFromStr)+len(prefix):])
			seq, ts, _, ok2 := stamped(f, j+len(keyBodySeq))
			if !ok1 || !ok2 {
				u.oddities++
				return
			}
			t := u.tracks[from]
			if t == nil {
				t = &seqTrack{}
				u.tracks[from] = t
			}
			before := t.got
			t.add(seq)
			u.got.Add(int64(t.got - before))
			rec.deliver(u.shard, ts, now)
		case bytes.HasPrefix(f, opSent):
			if bytes.Contains(f, duplicateT) {
				u.oddities++ // the tool never resends: a duplicate answer means an id collision
			}
			u.answered.Add(1)
		case bytes.HasPrefix(f, opDMError):
			id, ok := stringAfter(f, keyID)
			if r, n, ok2 := idPair(id, 'm'); ok && ok2 {
				code, _ := stringAfter(f, keyCode)
				u.refused[[2]uint64{r, n}] = string(code)
				u.refusedN.Add(1)
				u.answered.Add(1)
				return
			}
			u.oddities++
		case bytes.HasPrefix(f, opDMHello) && !greeted:
			greeted = true
			u.limit.Store(uint64(gjson.GetBytes(f, "limits.messages_per_second").Float() * 1000))
			u.flimit.Store(uint64(gjson.GetBytes(f, "limits.frames_per_second").Float() * 1000))
			close(u.ready)
		}
	})
	if !u.closing.Load() {
		u.dropped.Store(true)
	}
}

// dmFrame: {"op":"send","id":"m<to>.<n>","to":"<user>","body":{"seq":n,"ts":t}}.
func dmFrame(b []byte, prefix string, to int, n uint64, ts int64) []byte {
	b = append(b, `{"op":"send","id":"m`...)
	b = strconv.AppendInt(b, int64(to), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `","to":"`...)
	b = append(b, prefix...)
	b = strconv.AppendInt(b, int64(to), 10)
	b = append(b, `","body":{"seq":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, `}}`...)
}

// relayURL turns a node's /so URL into its /relay URL for the user.
func relayURL(soURL, user string) string {
	base := strings.TrimSuffix(soURL, "/so")
	return base + "/relay?user=" + user + "&device=" + user
}

// sendLoop paces the sends of users[] (one goroutine's share) at rate, each to a random other user.
func sendLoop(stop <-chan struct{}, users []*dmUser, total int, prefix string, rate float64) {
	period := max(time.Millisecond, time.Duration(float64(time.Second)/rate))
	tick := time.NewTicker(period)
	defer tick.Stop()
	maxBurst := max(int64(rate/5), 8)
	start := time.Now()
	var sent, skipped int64
	var buf []byte
	k := 0
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		n := int64(time.Since(start).Seconds()*rate) - skipped - sent
		if n > maxBurst {
			skipped += n - maxBurst
			n = maxBurst
		}
		for ; n > 0; n-- {
			u := users[k%len(users)]
			k++
			if u.werr != nil {
				continue
			}
			var to int
			if u.peers != nil {
				to = u.peers[rand.IntN(len(u.peers))]
			} else if to = rand.IntN(total - 1); to >= u.idx {
				to++
			}
			u.next[to]++
			buf = dmFrame(buf[:0], prefix, to, u.next[to], time.Now().UnixNano())
			if err := u.c.write(buf); err != nil {
				u.werr = err
				u.next[to]--
				continue
			}
			u.sent.Add(1)
			sent++
		}
	}
}

func (d *dm) run(ctx context.Context, e *env) (*report, error) {
	if e.hub() {
		return nil, fmt.Errorf("dm runs against rso only")
	}
	prefix := "bench" + e.runID + "u" // user names: prefix + index
	rec := newRecorder()
	us := make([]*dmUser, d.users)
	for i := range us {
		us[i] = &dmUser{idx: i, name: prefix + strconv.Itoa(i), shard: rec.shard(i), ready: make(chan struct{}), done: make(chan struct{}),
			next: map[int]uint64{}, refused: map[[2]uint64]string{}, tracks: map[uint64]*seqTrack{}}
	}
	for _, u := range us {
		if d.peers > 0 {
			for _, p := range rand.Perm(d.users - 1)[:d.peers] {
				if p >= u.idx {
					p++
				}
				u.peers = append(u.peers, p)
			}
		}
	}
	sum := func(get func(*dmUser) int64) func() int64 {
		return func() int64 {
			var n int64
			for _, u := range us {
				n += get(u)
			}
			return n
		}
	}
	sentTotal := sum(func(u *dmUser) int64 { return u.sent.Load() })
	answered := sum(func(u *dmUser) int64 { return u.answered.Load() })
	refused := sum(func(u *dmUser) int64 { return u.refusedN.Load() })
	got := sum(func(u *dmUser) int64 { return u.got.Load() })
	var connected atomic.Int64
	prog := e.startProgress(meter{name: "sent", value: sentTotal}, meter{name: "delivered", value: rec.deliveries},
		meter{name: "connected", value: connected.Load, total: true})
	defer prog.end()
	shut := func() {
		var wg sync.WaitGroup
		for _, u := range us {
			if u.c != nil {
				wg.Go(func() {
					u.closing.Store(true)
					u.c.close()
					<-u.done
				})
			}
		}
		wg.Wait()
	}
	defer shut()

	err := dialAll(ctx, d.users, func(ctx context.Context, i int) error {
		u := us[i]
		url := relayURL(e.url(i), u.name)
		c, err := dialWS(ctx, url)
		if err != nil {
			if strings.Contains(err.Error(), strconv.Itoa(http.StatusNotFound)) {
				return fmt.Errorf("%v: this rso does not serve /relay (private chat is not wired into it)", err)
			}
			return err
		}
		u.c = c
		go u.read(rec, []byte(prefix))
		t := time.NewTimer(subscribeWait)
		defer t.Stop()
		select {
		case <-u.ready:
			connected.Add(1)
			return nil
		case <-u.done:
			return fmt.Errorf("closed before hello: %v", u.readErr)
		case <-t.C:
			return fmt.Errorf("no hello after %s", subscribeWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("connecting %d users: %w", d.users, err)
	}
	perUser := d.rate / float64(d.users)
	if lim := float64(us[0].limit.Load()) / 1000; lim > 0 && perUser > lim {
		return nil, fmt.Errorf("-rate %g over %d users is %.1f messages/s per user; the relay allows %g (messages_per_second; the tool starts rso with -relay-messages-per-second %g): add users or lower -rate",
			d.rate, d.users, perUser, lim, dmMessagesPerSecond)
	}
	if lim := float64(us[0].flimit.Load()) / 1000; lim > 0 && perUser > lim {
		return nil, fmt.Errorf("-rate %g over %d users is %.1f frames/s per user; the relay allows %g (frames_per_second): add users or lower -rate",
			d.rate, d.users, perUser, lim)
	}

	stop := make(chan struct{})
	var senders sync.WaitGroup
	for k := range dmSenders {
		var share []*dmUser
		for i := k; i < len(us); i += dmSenders {
			share = append(share, us[i])
		}
		if len(share) == 0 {
			continue
		}
		senders.Go(func() { sendLoop(stop, share, d.users, prefix, d.rate*float64(len(share))/float64(d.users)) })
	}
	u, deltas, err := e.measure(ctx, prog, []*recorder{rec}, rec.deliveries, sentTotal)
	close(stop)
	senders.Wait()
	if err != nil {
		return nil, err
	}

	prog.setPhase("drain")
	deadline := time.Now().Add(e.opt.drain)
	for {
		s := sentTotal()
		if answered() >= s && got() >= s-refused() || time.Now().After(deadline) {
			break
		}
		if err := e.sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	prog.end()
	shut()

	r := newReport("dm", e.target)
	var lost, dup, reord, dropped, odd uint64
	codes := map[string]int{}
	var werr error
	for _, snd := range us {
		for to, last := range snd.next {
			refusedBySender := func(n uint64) bool { _, ok := snd.refused[[2]uint64{uint64(to), n}]; return ok }
			t := us[to].tracks[uint64(snd.idx)]
			if t == nil {
				t = &seqTrack{}
			}
			lost += t.lost(last, refusedBySender)
		}
		for _, code := range snd.refused {
			codes[code]++
		}
		if snd.werr != nil {
			werr = snd.werr
		}
	}
	for _, rcv := range us {
		for _, t := range rcv.tracks {
			dup += t.dup
			reord += t.reorder
		}
		odd += uint64(rcv.oddities)
		if rcv.dropped.Load() {
			dropped++
		}
	}
	secs := u.elapsed.Seconds()
	unanswered := sentTotal() - answered()
	r.addInt("users", int64(d.users), "users")
	r.addInt("peers", int64(d.peers), "peers per user (0: anyone)")
	r.add("rate_requested", d.rate, 0, "messages/s requested")
	r.add("send_rate", float64(deltas[1])/secs, 0, "messages/s sent (achieved)")
	r.add("deliveries_per_sec", float64(deltas[0])/secs, 0, "stored and delivered messages/s")
	l := rec.latencies()
	r.addLatency(&l, "send → delivery")
	r.addInt("messages_sent", sentTotal(), "messages sent (whole run)")
	r.addInt("deliveries_total", rec.deliveries(), "messages delivered (whole run)")
	r.addInt("refused", refused(), "sends refused by the server")
	r.addInt("unanswered", unanswered, "sends never answered")
	r.addInt("lost", int64(lost), "lost (stored but not delivered, or never answered)")
	r.addInt("duplicated", int64(dup), "duplicated")
	r.addInt("reordered", int64(reord), "reordered (per sender → recipient)")
	r.addInt("disconnected", int64(dropped), "users disconnected by the server")
	r.addInt("oddities", int64(odd), "duplicate answers, malformed or unmatched frames")
	r.addUsage(u, deltas[0], "delivery")
	r.failOnCounts("lost", "duplicated", "reordered", "disconnected", "refused", "unanswered", "oddities")
	if len(codes) > 0 {
		r.fail("refused sends by code: %v (rate_limited: each user may send messages_per_second)", codes)
	}
	if werr != nil {
		r.fail("a user's socket failed while sending: %v", werr)
	}
	return r, nil
}
