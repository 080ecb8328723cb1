package sharedobject

import (
	"fmt"
	"strconv"
	"testing"
)

// Benchmarks of the steps of one commit on the hot path: parse the client's frame, judge and apply its
// batch, build the frame every other subscriber is sent. BenchmarkFanout1000 (bench_fanout_test.go)
// measures the whole path over real sockets. Figures: docs/BENCHMARKS.md.

func BenchmarkParseClientFrame(b *testing.B) {
	lim := DefaultLimits()
	for _, bc := range []struct{ name, frame string }{
		{"update3", `{"op":"update","obj":"room/42","persistent":true,"id":"c7-1","changes":[{"name":"topic","base":17,"value":"Hello"},{"name":"cursor","base":17,"value":{"x":120,"y":48}},{"name":"count","base":17,"value":3}]}`},
		{"send", `{"op":"send","obj":"room/42","persistent":true,"id":"c7-2","handler":"chat","args":["alice","hi all"]}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.frame)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, werr := parseClientFrame(data, &lim); werr != nil {
					b.Fatal(werr)
				}
			}
		})
	}
}

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

// BenchmarkEncodeSyncFrame builds the frames subscribers are sent: the change frame of a 3-slot commit
// (built once per commit, whatever the number of subscribers) and the full sync of a 100-slot object
// (once per first subscribe).
func BenchmarkEncodeSyncFrame(b *testing.B) {
	b.Run("change3", func(b *testing.B) {
		events := []Event{
			{Code: "change", Name: "topic", Value: []byte(`"Hello"`), OldValue: []byte(`"Hi"`)},
			{Code: "change", Name: "cursor", Value: []byte(`{"x":120,"y":48}`), OldValue: []byte(`{"x":118,"y":48}`)},
			{Code: "delete", Name: "draft", OldValue: []byte(`"…"`)},
		}
		b.ReportAllocs()
		for b.Loop() {
			f := beginSync("room/42", true, "k2Jq9", 18, "")
			for _, ev := range events {
				f.event(ev)
			}
			b.SetBytes(int64(len(f.end())))
		}
	})
	b.Run("full100", func(b *testing.B) {
		s := NewState()
		for i := range 100 {
			s.Apply(&Commit{Version: uint64(i + 1), Epoch: "k2Jq9", Sets: []SlotValue{
				{Name: fmt.Sprintf("slot%03d", i), Value: fmt.Appendf(nil, `{"x":%d,"label":"a shape"}`, i)},
			}}, 1000)
		}
		b.ReportAllocs()
		for b.Loop() {
			f := beginSync("room/42", true, s.Epoch, s.Version, "")
			f.clear()
			s.Slots(func(name string, value []byte, _ uint64) {
				f.event(Event{Code: "change", Name: name, Value: value})
			})
			b.SetBytes(int64(len(f.end())))
		}
	})
}
