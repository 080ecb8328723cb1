package model

import (
	"fmt"
	"strconv"
	"testing"
)

// Benchmark of the model's step of one commit on the hot path. The server's steps (parse the client's
// frame, build the frame subscribers are sent) are in sharedobject's bench_test.go. Figures:
// docs/BENCHMARKS.md.

// BenchmarkDraftApply is the write path's work under the object lock for one 3-slot update on an object of
// 100 slots: judge, check the limits, draft the commit, apply it (events, tombstones, request-id ring).
func BenchmarkDraftApply(b *testing.B) {
	s := NewState()
	sets := make([]SlotValue, 100)
	for i := range sets {
		sets[i] = SlotValue{Name: fmt.Sprintf("slot%03d", i), Value: []byte(`{"x":0,"label":"initial"}`)}
	}
	s.Apply(&Commit{Version: 1, Epoch: "ep", Sets: sets}, 1000)
	// Values differ from one visit of a slot to the next so that no change is a no-op; ids cycle past
	// 2,000, and each entry moves the clock by 100 ms: ids expire, as on a busy object.
	values := make([][]byte, 256)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"x":%d,"label":"moved"}`, i)
	}
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = "c7-" + strconv.Itoa(i)
	}
	changes := make([]Change, 3)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range changes {
			changes[j] = Change{Name: sets[(3*i+j)%len(sets)].Name, Base: s.Version, Value: values[i%len(values)]}
		}
		d := s.NewDraft()
		outcomes := d.Judge(changes, false)
		d.Fits(changes, outcomes)
		c := d.Add(changes, outcomes)
		if c == nil {
			b.Fatal("nothing accepted")
		}
		c.ID, c.FP = ids[i%len(ids)], uint64(i)|1
		s.Advance(int64(i) * 100)
		s.Apply(c, 1000)
		i++
	}
}
