package main

import (
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// Latencies are counted in a log-linear histogram of nanoseconds: exact below 128 ns, then 64 buckets per
// power of two, so a reported percentile (the bucket's midpoint) is within 0.8 % of the true value. Counts
// are atomic so that many reader goroutines share one histogram without a lock.

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// histBuckets covers every uint64: the top power of two (2^63) lands in bucket 57*64+127.
	histBuckets = (64-histSubBits)*histSub + histSub
)

func bucketOf(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - (histSubBits + 1)
	return e*histSub + int(v>>uint(e))
}

// bucketRange is the half-open range [lo, hi) of values counted in bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i) + 1
	}
	e := uint(i/histSub - 1)
	m := uint64(i%histSub + histSub)
	return m << e, (m + 1) << e
}

type histogram struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Uint64
}

// record counts one latency; negative ones (clocks are one machine's, but ts may come from a skewed peer)
// count as zero.
func (h *histogram) record(ns int64) {
	v := uint64(max(ns, 0))
	h.counts[bucketOf(v)].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// addTo adds this histogram's counts to l.
func (h *histogram) addTo(l *latencies) {
	if l.counts == nil {
		l.counts = make([]uint64, histBuckets)
	}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			l.counts[i] += c
			l.n += c
		}
	}
	l.max = max(l.max, h.max.Load())
}

// latencies is a plain snapshot of one or more histograms.
type latencies struct {
	counts []uint64
	n      uint64
	max    uint64
}

// quantile returns the latency below which a fraction q of the samples lie (0 when there are none).
func (l *latencies) quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	rank := uint64(q*float64(l.n) + 0.5)
	rank = min(max(rank, 1), l.n)
	var seen uint64
	for i, c := range l.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return time.Duration(min((lo+hi-1)/2, l.max))
		}
	}
	return time.Duration(l.max)
}

// recorder counts deliveries and their latencies. Readers each use one shard (chosen by connection index),
// so that thousands of goroutines do not all hit the same cache lines. Latencies are recorded only for
// messages stamped inside the measured window [from, to); deliveries are counted always and sampled at the
// window's edges.
type recorder struct {
	shards   []recShard
	from, to atomic.Int64
}

type recShard struct {
	deliveries atomic.Int64
	lat        histogram
	_          [64]byte // keep the next shard's counter off this cache line
}

const recShards = 16

func newRecorder() *recorder {
	r := &recorder{shards: make([]recShard, recShards)}
	r.from.Store(1<<63 - 1) // nothing is in the window until it opens
	r.to.Store(1<<63 - 1)
	return r
}

func (r *recorder) shard(i int) *recShard { return &r.shards[i%len(r.shards)] }

// open starts the window at t (Unix ns); close ends it.
func (r *recorder) open(t int64)  { r.from.Store(t) }
func (r *recorder) close(t int64) { r.to.Store(t) }

// deliver counts one delivery of a message stamped ts and received at now (both Unix ns).
func (r *recorder) deliver(s *recShard, ts, now int64) {
	s.deliveries.Add(1)
	if ts >= r.from.Load() && ts < r.to.Load() {
		s.lat.record(now - ts)
	}
}

func (r *recorder) deliveries() int64 {
	var n int64
	for i := range r.shards {
		n += r.shards[i].deliveries.Load()
	}
	return n
}

func (r *recorder) latencies() latencies {
	var l latencies
	for i := range r.shards {
		r.shards[i].lat.addTo(&l)
	}
	return l
}

// seqTrack checks one stream of sequence numbers 1, 2, 3, … from one sender to one receiver. A number
// that arrives after a later one is reordered (if it was missing) or duplicated (if it had arrived);
// numbers never seen by the end are lost. Only gaps cost memory; in-order arrival is allocation-free.
// One goroutine owns a seqTrack.
type seqTrack struct {
	next    uint64 // the number expected next; everything below was seen or is in missing
	got     uint64 // distinct numbers seen
	dup     uint64
	reorder uint64
	missing map[uint64]struct{}
}

// maxGap bounds the gap one frame may open, so that a garbled number cannot make the tracker allocate
// without limit; a larger jump is counted as a duplicate (it is a protocol error either way).
const maxGap = 1 << 20

func (t *seqTrack) add(seq uint64) {
	if t.next == 0 {
		t.next = 1
	}
	switch {
	case seq == t.next:
		t.next++
		t.got++
	case seq > t.next && seq-t.next <= maxGap:
		if t.missing == nil {
			t.missing = map[uint64]struct{}{}
		}
		for s := t.next; s < seq; s++ {
			t.missing[s] = struct{}{}
		}
		t.next = seq + 1
		t.got++
	case seq > t.next || seq == 0:
		t.dup++
	default:
		if _, ok := t.missing[seq]; ok {
			delete(t.missing, seq)
			t.reorder++
			t.got++
		} else {
			t.dup++
		}
	}
}

// lost counts the numbers 1..last that never arrived, leaving out those skip says were never sent
// successfully (refused by the server, and reported as such).
func (t *seqTrack) lost(last uint64, skip func(uint64) bool) uint64 {
	var n uint64
	for s := range t.missing {
		if s <= last && (skip == nil || !skip(s)) {
			n++
		}
	}
	for s := max(t.next, 1); s <= last; s++ {
		if skip == nil || !skip(s) {
			n++
		}
	}
	return n
}

// median of xs (which it sorts); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}
