package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi {
			t.Fatalf("bucket %d starts at %d, the previous one ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi-1) != i {
			t.Fatalf("bucket %d = [%d, %d) but bucketOf(lo)=%d, bucketOf(hi-1)=%d", i, lo, hi, bucketOf(lo), bucketOf(hi-1))
		}
		if lo >= 128 && float64(hi-lo)/float64(lo) > 1.0/64 {
			t.Fatalf("bucket %d = [%d, %d) is wider than 1/64 of its start", i, lo, hi)
		}
		prevHi = hi
		if i == histBuckets-1 && hi != 0 { // the last bucket ends at 2^64, which wraps to 0
			t.Fatalf("last bucket ends at %d, want 2^64", hi)
		}
	}
	if got := bucketOf(math.MaxUint64); got != histBuckets-1 {
		t.Fatalf("bucketOf(max) = %d, want %d", got, histBuckets-1)
	}
}

func TestQuantilesMatchExactOnes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	xs := make([]int64, 100000)
	for i := range xs {
		// a long tail: mostly 0.5–5 ms, some up to a second
		v := int64(500_000 + rng.ExpFloat64()*1_500_000)
		if i%100 == 0 {
			v = int64(rng.Float64() * 1e9)
		}
		xs[i] = v
		h.record(v)
	}
	slices.Sort(xs)
	var l latencies
	h.addTo(&l)
	if l.n != uint64(len(xs)) || l.max != uint64(xs[len(xs)-1]) {
		t.Fatalf("n=%d max=%d, want %d and %d", l.n, l.max, len(xs), xs[len(xs)-1])
	}
	for _, q := range []float64{0.5, 0.95, 0.99, 0.999, 1} {
		exact := float64(xs[int(math.Ceil(q*float64(len(xs))))-1])
		got := float64(l.quantile(q))
		if math.Abs(got-exact)/exact > 0.01 {
			t.Errorf("q%.3f = %v, exact %v (more than 1 %% off)", q, time.Duration(got), time.Duration(exact))
		}
	}
}

func TestQuantileEdgeCases(t *testing.T) {
	var l latencies
	if l.quantile(0.99) != 0 {
		t.Errorf("empty: %v, want 0", l.quantile(0.99))
	}
	var h histogram
	h.record(-5) // a clock step: counted as zero
	h.record(3 * int64(time.Millisecond))
	h.addTo(&l)
	if l.quantile(0.5) != 0 || l.quantile(1) > 3*time.Millisecond || l.quantile(1) < 2950*time.Microsecond {
		t.Errorf("p50=%v p100=%v, want 0 and ≈3ms", l.quantile(0.5), l.quantile(1))
	}
}

func TestRecorderWindow(t *testing.T) {
	r := newRecorder()
	s := r.shard(3)
	r.deliver(s, 100, 200) // before the window opened: counted, no latency
	r.open(1000)
	r.deliver(s, 1000, 1500)
	r.deliver(r.shard(20), 1999, 2100)
	r.close(2000)
	r.deliver(s, 2000, 2500) // stamped after the window
	l := r.latencies()
	if r.deliveries() != 4 || l.n != 2 || l.max != 500 {
		t.Fatalf("deliveries=%d samples=%d max=%d, want 4, 2, 500", r.deliveries(), l.n, l.max)
	}
}

func TestSeqTrack(t *testing.T) {
	cases := []struct {
		name                 string
		seqs                 []uint64
		last                 uint64
		refused              []uint64
		got, lost, dup, reor uint64
	}{
		{"in order", []uint64{1, 2, 3, 4}, 4, nil, 4, 0, 0, 0},
		{"tail missing", []uint64{1, 2}, 5, nil, 2, 3, 0, 0},
		{"head missing", []uint64{3, 4}, 4, nil, 2, 2, 0, 0},
		{"gap", []uint64{1, 2, 5, 6}, 6, nil, 4, 2, 0, 0},
		{"gap filled late", []uint64{1, 3, 4, 2, 5}, 5, nil, 5, 0, 0, 1},
		{"duplicate", []uint64{1, 2, 2, 3, 1}, 3, nil, 3, 0, 2, 0},
		{"duplicate of a late one", []uint64{1, 3, 2, 2}, 3, nil, 3, 0, 1, 1},
		{"refused are not lost", []uint64{1, 3}, 4, []uint64{2, 4}, 2, 0, 0, 0},
		{"zero is a protocol error", []uint64{0, 1}, 1, nil, 1, 0, 1, 0},
		{"absurd jump", []uint64{1, 1 << 40}, 1, nil, 1, 0, 1, 0},
		{"nothing", nil, 3, nil, 0, 3, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tr seqTrack
			for _, s := range c.seqs {
				tr.add(s)
			}
			lost := tr.lost(c.last, func(s uint64) bool { return slices.Contains(c.refused, s) })
			if tr.got != c.got || lost != c.lost || tr.dup != c.dup || tr.reorder != c.reor {
				t.Errorf("got=%d lost=%d dup=%d reordered=%d, want %d %d %d %d", tr.got, lost, tr.dup, tr.reorder, c.got, c.lost, c.dup, c.reor)
			}
		})
	}
}

func TestScanFrames(t *testing.T) {
	// An rso change frame with an oldValue: only "value" counts.
	f := []byte(`{"op":"sync","obj":"bench/fanout-1","persistent":false,"epoch":"k2Jq9","version":77,"changes":[{"code":"change","name":"s13","value":{"seq":77,"ts":1700000000123456789},"oldValue":{"seq":13,"ts":1700000000000000000}}]}`)
	if frameOp(f) != opSync {
		t.Fatalf("op %q", frameOp(f))
	}
	var seqs []uint64
	for i := 0; ; {
		j := indexFrom(f, i, keyValueSeq)
		if j < 0 {
			break
		}
		seq, ts, next, ok := stamped(f, j+len(keyValueSeq))
		if !ok || ts != 1700000000123456789 {
			t.Fatalf("stamped: %d %d %v", seq, ts, ok)
		}
		seqs = append(seqs, seq)
		i = next
	}
	if !slices.Equal(seqs, []uint64{77}) {
		t.Errorf("seqs %v, want [77]", seqs)
	}
	if v, ok := uintAfter(f, keyVersion); !ok || v != 77 {
		t.Errorf("version %d %v", v, ok)
	}
	if id, ok := stringAfter([]byte(`{"op":"error","code":"rate_limited","message":"x","id":"b3.14"}`), keyID); !ok || string(id) != "b3.14" {
		t.Errorf("id %q", id)
	} else if c, n, ok := idPair(id, 'b'); !ok || c != 3 || n != 14 {
		t.Errorf("idPair: %d %d %v", c, n, ok)
	}
	for _, bad := range []string{"b3", "b.14", "b3.", "x3.14", "b3.14x", "b3-14"} {
		if _, _, ok := idPair([]byte(bad), 'b'); ok {
			t.Errorf("idPair(%q) accepted", bad)
		}
	}
	if n, ok := idNumber([]byte("u42"), 'u'); !ok || n != 42 {
		t.Errorf("idNumber: %d %v", n, ok)
	}
	if frameOp([]byte(`{"id":1}`)) != 0 {
		t.Errorf("a frame without op first has an op")
	}
}

func indexFrom(f []byte, i int, key []byte) int {
	for j := i; j+len(key) <= len(f); j++ {
		if string(f[j:j+len(key)]) == string(key) {
			return j
		}
	}
	return -1
}

// The frames the tool builds are valid JSON of the shape the server expects.
func TestBuiltFramesAreJSON(t *testing.T) {
	frames := map[string][]byte{
		"update": updateFrame(nil, "bench/fanout-1", false, 65, 64, 1700000000000000000),
		"hub":    hubFrame(nil, "bench/fanout-1", 65, 1700000000000000000, 1699999999999999999),
		"chat":   chatFrame(nil, "bench/room-1-2", false, 9, 1700000000000000000, 3),
		"sub":    subFrame("bench/x", true),
	}
	for name, f := range frames {
		var v map[string]any
		if err := json.Unmarshal(f, &v); err != nil {
			t.Errorf("%s: %v: %s", name, err, f)
		}
	}
	// The hub frame is read exactly like rso's change frame.
	f := frames["hub"]
	i := indexFrom(f, 0, keyValueSeq)
	if seq, ts, _, ok := stamped(f, i+len(keyValueSeq)); i < 0 || !ok || seq != 65 || ts != 1700000000000000000 {
		t.Errorf("hub frame reads as seq %d ts %d", seq, ts)
	}
}

func TestMedianAndFormatting(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	for v, want := range map[float64]string{1234567: "1,234,567", 999: "999", -1234.5: "-1,234.50", math.NaN(): "-"} {
		prec := 0
		if v != math.Trunc(v) {
			prec = 2
		}
		if got := formatNumber(v, prec); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestSearchAdvance(t *testing.T) {
	s := &search{next: 100, steps: 2}
	rates := []float64{}
	pass := map[float64]bool{100: true, 200: true, 400: false, 300: true, 350: false}
	for s.next != 0 && len(rates) < 10 {
		r := s.next
		rates = append(rates, r)
		s.advance(probe{rate: r, pass: pass[r]}, 10000)
	}
	if !slices.Equal(rates, []float64{100, 200, 400, 300, 350}) || s.lo != 300 || s.hi != 350 {
		t.Errorf("rates %v, lo %v hi %v", rates, s.lo, s.hi)
	}
}
