package sharedobject

import "testing"

func TestChangeRateCountsTheLastMinute(t *testing.T) {
	var r changeRate
	const t0 = 1_767_225_600_000
	r.add(t0, 3)
	r.add(t0+5_000, 2)
	r.add(t0+30_000, 4)
	if n := r.lastMinute(t0 + 30_000); n != 9 {
		t.Errorf("after 30 s: %d, want 9", n)
	}
	r.add(t0-600_000, 100) // an old entry read during a catch-up
	if n := r.lastMinute(t0 + 30_000); n != 9 {
		t.Errorf("an entry ten minutes old counted: %d, want 9", n)
	}
	if n := r.lastMinute(t0 + 65_000); n != 4 {
		t.Errorf("after 65 s: %d, want 4 (the first bucket has left the window)", n)
	}
	r.add(t0+60_000, 1) // the first bucket's slot, a minute on: starts again
	if n := r.lastMinute(t0 + 60_000); n != 5 {
		t.Errorf("after the ring wrapped: %d, want 5", n)
	}
	if n := r.lastMinute(t0 + 600_000); n != 0 {
		t.Errorf("ten minutes later: %d, want 0", n)
	}
}
