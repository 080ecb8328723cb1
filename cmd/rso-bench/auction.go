package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// auction: -bidders clients bid on one slot ("price") of one persistent object, each as fast as it is
// answered: it bids the highest price it knows + 1, based on the version it last saw, and bids again as
// soon as the answer (success, reject with the current price, or an error) arrives. Accepted bids are
// durable writes. At the end the accepted (version, price) pairs of all bidders must rise strictly
// together, and a fresh subscriber must read the highest accepted price at the highest accepted version.

func auctionScenario() scenario {
	return scenario{
		name:    "auction",
		summary: "-bidders clients bid on one slot as fast as they are answered: accepted durable writes/s, invariants (rso)",
		newRunner: func(fs *flag.FlagSet) runner {
			a := &auction{}
			fs.IntVar(&a.bidders, "bidders", 50, "bidders (connections)")
			fs.BoolVar(&a.persistent, "persistent", true, "bid on a persistent object (durable writes; false: temporary)")
			return a
		},
	}
}

type auction struct {
	bidders    int
	persistent bool
}

func (a *auction) conns() int { return a.bidders + 1 }

func (a *auction) check() error {
	if a.bidders < 1 || a.bidders > maxConns {
		return fmt.Errorf("-bidders %d: want 1 to %d", a.bidders, maxConns)
	}
	return nil
}

type acceptedBid struct{ version, price uint64 }

type bidder struct {
	idx   uint64 // in the ids of its bids: ids must be unique per object
	c     *wsConn
	obj   string
	pers  bool
	rec   *recorder
	shard *recShard
	stop  *atomic.Bool
	ready chan struct{}
	done  chan struct{}

	closing  atomic.Bool
	dropped  atomic.Bool
	readErr  error
	inFlight atomic.Bool

	// The reader bids again from its frame handler; the starter sends the first bid. mu orders the two.
	mu       sync.Mutex
	version  uint64 // highest version seen
	price    uint64 // the price at that version
	n        uint64 // bids sent
	bid      uint64 // the price of the bid in flight
	sentAt   int64
	accepted []acceptedBid
	buf      []byte

	bids, accepts, rejects, noops, errs, broadcasts atomic.Int64
	lastErr                                         atomic.Pointer[string]
	writeErr                                        error
}

var (
	keyValue    = []byte(`"value":`)
	codeSuccess = []byte(`"code":"success"`)
)

func (b *bidder) read() {
	defer close(b.done)
	subscribed := false
	b.readErr = b.c.readLoop(func(f []byte, now int64) {
		op := frameOp(f)
		if op != opSync && op != opError {
			return
		}
		b.mu.Lock() // the starter's first bid reads the same state
		defer b.mu.Unlock()
		id, hasID := stringAfter(f, keyID)
		v, _ := uintAfter(f, keyVersion)
		if op == opSync && !hasID { // someone else's accepted bid
			b.broadcasts.Add(1)
			if p, ok := uintAfter(f, keyValue); ok && v > b.version {
				b.version, b.price = v, p
			}
			return
		}
		if !subscribed {
			if op == opSync && hasID && bytes.Equal(id, subID) {
				b.version = v
				b.price, _ = uintAfter(f, keyValue) // absent: no bid yet, price 0
				subscribed = true
				close(b.ready)
			}
			return
		}
		if idx, n, ok := idPair(id, 'b'); !hasID || !ok || idx != b.idx || n != b.n {
			return // not an answer to the bid in flight
		}
		b.rec.deliver(b.shard, b.sentAt, now)
		switch {
		case op == opError:
			code, _ := stringAfter(f, keyCode)
			s := string(code)
			b.lastErr.Store(&s)
			b.errs.Add(1)
		case bytes.Contains(f, codeSuccess):
			b.accepted = append(b.accepted, acceptedBid{version: v, price: b.bid})
			b.accepts.Add(1)
			if v > b.version {
				b.version, b.price = v, b.bid
			}
		case bytes.Contains(f, codeReject):
			b.rejects.Add(1)
			if p, ok := uintAfter(f, keyValue); ok && v >= b.version {
				b.version, b.price = v, p
			}
		default: // nothing committed: the slot already held the bid
			b.noops.Add(1)
			if v >= b.version {
				b.version, b.price = v, b.bid
			}
		}
		b.inFlight.Store(false)
		if !b.stop.Load() {
			b.sendLocked()
		}
	})
	if !b.closing.Load() {
		b.dropped.Store(true)
	}
}

// send bids the known price + 1 on the known version.
func (b *bidder) send() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sendLocked()
}

func (b *bidder) sendLocked() {
	b.n++
	b.bid = b.price + 1
	b.buf = b.buf[:0]
	b.buf = append(b.buf, `{"op":"update","obj":"`...)
	b.buf = append(b.buf, b.obj...)
	b.buf = append(b.buf, `","persistent":`...)
	b.buf = strconv.AppendBool(b.buf, b.pers)
	b.buf = append(b.buf, `,"id":"b`...)
	b.buf = strconv.AppendUint(b.buf, b.idx, 10)
	b.buf = append(b.buf, '.')
	b.buf = strconv.AppendUint(b.buf, b.n, 10)
	b.buf = append(b.buf, `","changes":[{"name":"price","base":`...)
	b.buf = strconv.AppendUint(b.buf, b.version, 10)
	b.buf = append(b.buf, `,"value":`...)
	b.buf = strconv.AppendUint(b.buf, b.bid, 10)
	b.buf = append(b.buf, `}]}`...)
	b.inFlight.Store(true)
	b.sentAt = time.Now().UnixNano()
	if err := b.c.write(b.buf); err != nil {
		b.writeErr = err
		b.inFlight.Store(false)
		return
	}
	b.bids.Add(1)
}

func (b *bidder) shut() {
	b.closing.Store(true)
	b.c.close()
	<-b.done
}

func (a *auction) run(ctx context.Context, e *env) (*report, error) {
	obj := "bench/auction-" + e.runID
	rec := newRecorder()
	var stop atomic.Bool
	bs := make([]*bidder, a.bidders)
	sum := func(get func(*bidder) int64) func() int64 {
		return func() int64 {
			var n int64
			for _, b := range bs {
				if b != nil {
					n += get(b)
				}
			}
			return n
		}
	}
	bids := sum(func(b *bidder) int64 { return b.bids.Load() })
	accepts := sum(func(b *bidder) int64 { return b.accepts.Load() })
	rejects := sum(func(b *bidder) int64 { return b.rejects.Load() })
	broadcasts := sum(func(b *bidder) int64 { return b.broadcasts.Load() })
	for i := range bs {
		bs[i] = &bidder{idx: uint64(i), obj: obj, pers: a.persistent, rec: rec, shard: rec.shard(i), stop: &stop,
			ready: make(chan struct{}), done: make(chan struct{})}
	}
	prog := e.startProgress(meter{name: "bids", value: bids}, meter{name: "accepted", value: accepts}, meter{name: "rejected", value: rejects})
	defer prog.end()
	shut := func() {
		var wg sync.WaitGroup
		for _, b := range bs {
			if b.c != nil {
				wg.Go(b.shut)
			}
		}
		wg.Wait()
	}
	defer shut()

	err := dialAll(ctx, a.bidders, func(ctx context.Context, i int) error {
		b := bs[i]
		c, err := dialWS(ctx, e.url(i))
		if err != nil {
			return err
		}
		b.c = c
		go b.read()
		if err := c.write(subFrame(obj, a.persistent)); err != nil {
			return err
		}
		t := time.NewTimer(subscribeWait)
		defer t.Stop()
		select {
		case <-b.ready:
			return nil
		case <-b.done:
			return fmt.Errorf("socket closed before it was subscribed: %v", b.readErr)
		case <-t.C:
			return fmt.Errorf("not subscribed after %s", subscribeWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("connecting %d bidders: %w", a.bidders, err)
	}
	for _, b := range bs {
		b.send()
	}
	u, deltas, err := e.measure(ctx, prog, []*recorder{rec}, accepts, bids, broadcasts)
	stop.Store(true)
	if err != nil {
		return nil, err
	}

	prog.setPhase("drain")
	deadline := time.Now().Add(e.opt.drain)
	for {
		busy := false
		for _, b := range bs {
			if b.inFlight.Load() && !b.dropped.Load() {
				busy = true
				break
			}
		}
		if !busy || time.Now().After(deadline) {
			break
		}
		if err := e.sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	prog.end()
	shut()

	r := newReport("auction", e.target)
	var all []acceptedBid
	var unanswered, dropped, errs, noops int64
	var lastErr string
	for _, b := range bs {
		all = append(all, b.accepted...)
		if b.inFlight.Load() {
			unanswered++
		}
		if b.dropped.Load() {
			dropped++
		}
		errs += b.errs.Load()
		noops += b.noops.Load()
		if p := b.lastErr.Load(); p != nil {
			lastErr = *p
		}
		if b.writeErr != nil {
			r.fail("a bidder's socket failed while sending: %v", b.writeErr)
		}
	}
	violations := checkAccepted(all, r)
	top := acceptedBid{}
	for _, x := range all {
		top.version, top.price = max(top.version, x.version), max(top.price, x.price)
	}
	final, err := readFinal(ctx, e, obj, a.persistent, top.version)
	if err != nil {
		r.fail("reading the final price: %v", err)
		violations++
	} else if final.price != top.price || final.version != top.version {
		r.fail("a fresh subscriber reads price %d at version %d; the highest accepted bid is %d at version %d",
			final.price, final.version, top.price, top.version)
		violations++
	}
	answered := accepts() + rejects() + noops + errs
	if answered+unanswered != bids() {
		r.fail("counts do not add up: %d bids sent, %d answered (%d accepted, %d rejected, %d no-op, %d errors), %d unanswered",
			bids(), answered, accepts(), rejects(), noops, errs, unanswered)
		violations++
	}

	secs := u.elapsed.Seconds()
	r.addInt("bidders", int64(a.bidders), "bidders")
	r.add("accepted_per_sec", float64(deltas[0])/secs, 0, "accepted (durable) writes/s")
	r.add("bids_per_sec", float64(deltas[1])/secs, 0, "bids/s")
	r.add("deliveries_per_sec", float64(deltas[2])/secs, 0, "others' accepted bids delivered/s")
	l := rec.latencies()
	r.addLatency(&l, "bid answer")
	r.addInt("bids", bids(), "bids (whole run)")
	r.addInt("accepted", accepts(), "accepted")
	r.addInt("rejected", rejects(), "rejected (conflict)")
	r.addInt("noop", noops, "no-op answers")
	r.addInt("errors", errs, "error answers (busy, rate_limited, …)")
	r.addInt("unanswered", unanswered, "bids never answered")
	r.addInt("final_price", int64(final.price), "final price (fresh subscribe)")
	r.addInt("final_version", int64(final.version), "final version")
	r.addInt("violations", int64(violations), "invariant violations")
	r.addInt("disconnected", dropped, "bidders disconnected by the server")
	r.addUsage(u, deltas[0], "write")
	perBid := math.NaN()
	if u.serverKnown && deltas[1] > 0 {
		perBid = float64(u.serverCPU.Nanoseconds()) / 1e3 / float64(deltas[1])
	}
	r.add("server_cpu_us_per_bid", perBid, 2, "server CPU per bid, accepted or not (µs)")
	r.failOnCounts("unanswered", "disconnected")
	if violations > 0 && len(r.failures) == 0 {
		r.fail("%d invariant violations", violations)
	}
	if errs > 0 {
		r.fail("%d bids were answered with an error (last: %s); rate_limited: start rso with a higher -frames-per-second", errs, lastErr)
	}
	return r, nil
}

// checkAccepted verifies that accepted bids, ordered by version, have distinct versions and strictly
// rising prices; it reports each violation (the first few in detail) and returns how many there were.
func checkAccepted(all []acceptedBid, r *report) int {
	slices.SortFunc(all, func(a, b acceptedBid) int {
		switch {
		case a.version < b.version:
			return -1
		case a.version > b.version:
			return 1
		}
		return 0
	})
	n := 0
	for i := 1; i < len(all); i++ {
		p, c := all[i-1], all[i]
		if c.version == p.version || c.price <= p.price {
			if n < 3 {
				r.fail("accepted bids do not rise: price %d at version %d, then price %d at version %d", p.price, p.version, c.price, c.version)
			}
			n++
		}
	}
	return n
}

// readFinal subscribes a fresh connection and reads the price and version of the object; on several nodes
// it waits (briefly) until the node has caught up with version atLeast.
func readFinal(ctx context.Context, e *env, obj string, persistent bool, atLeast uint64) (acceptedBid, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := readOnce(ctx, e.cl.pubURL, obj, persistent)
		if err != nil || got.version >= atLeast || time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readOnce(ctx context.Context, url, obj string, persistent bool) (acceptedBid, error) {
	ctx, cancel := context.WithTimeout(ctx, subscribeWait)
	defer cancel()
	c, err := dialWS(ctx, url)
	if err != nil {
		return acceptedBid{}, err
	}
	defer c.close()
	if err := c.write(subFrame(obj, persistent)); err != nil {
		return acceptedBid{}, err
	}
	var got acceptedBid
	var found bool
	go func() { <-ctx.Done(); c.close() }()
	err = c.readLoop(func(f []byte, _ int64) {
		if found || frameOp(f) != opSync {
			return
		}
		if id, ok := stringAfter(f, keyID); ok && bytes.Equal(id, subID) {
			got.version, _ = uintAfter(f, keyVersion)
			got.price, _ = uintAfter(f, keyValue)
			found = true
			c.close()
		}
	})
	if found {
		return got, nil
	}
	return got, fmt.Errorf("no answer to sub: %v", err)
}
