package sharedobject

import (
	"fmt"
	"testing"

	"github.com/rso-server/rso/sharedobject/internal/model"
)

// Benchmarks of the steps of one commit on the hot path: parse the client's frame, build the frame every
// other subscriber is sent; judging and applying its batch is BenchmarkDraftApply in internal/model.
// BenchmarkFanout1000 (bench_fanout_test.go) measures the whole path over real sockets. Figures:
// docs/BENCHMARKS.md.

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

// BenchmarkEncodeSyncFrame builds the frames subscribers are sent: the change frame of a 3-slot commit
// (built once per commit, whatever the number of subscribers) and the full sync of a 100-slot object
// (once per first subscribe).
func BenchmarkEncodeSyncFrame(b *testing.B) {
	b.Run("change3", func(b *testing.B) {
		events := []model.Event{
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
		s := model.NewState()
		for i := range 100 {
			s.Apply(&model.Commit{Version: uint64(i + 1), Epoch: "k2Jq9", Sets: []model.SlotValue{
				{Name: fmt.Sprintf("slot%03d", i), Value: fmt.Appendf(nil, `{"x":%d,"label":"a shape"}`, i)},
			}}, 1000)
		}
		b.ReportAllocs()
		for b.Loop() {
			f := beginSync("room/42", true, s.Epoch, s.Version, "")
			f.clear()
			s.Slots(func(name string, value []byte, _ uint64) {
				f.event(model.Event{Code: "change", Name: name, Value: value})
			})
			b.SetBytes(int64(len(f.end())))
		}
	})
}
