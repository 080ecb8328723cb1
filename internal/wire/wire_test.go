package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

func TestErrorIsByCode(t *testing.T) {
	err := fmt.Errorf("writing: %w", Errorf(CodeBusy, "object %q is under heavy contention", "room"))
	if !errors.Is(err, &Error{Code: CodeBusy}) {
		t.Error("errors.Is does not match an Error by its code")
	}
	if errors.Is(err, &Error{Code: CodeUnavailable}) {
		t.Error("errors.Is matches an Error of another code")
	}
	if errors.Is(err, &Error{Code: CodeBusy, Message: "something else"}) {
		t.Error("errors.Is matches an Error with another message")
	}
	var e *Error
	if !errors.As(err, &e) || e.Message != `object "room" is under heavy contention` {
		t.Errorf("errors.As: %v", e)
	}
}

// Error frames are valid JSON whatever the message holds (quotes, control bytes, bytes that are not UTF-8).
func TestErrorFrameIsValidJSON(t *testing.T) {
	for _, msg := range []string{"plain", `a "quoted" \ word`, "line\nbreak\x00", "bad \xff utf-8", "<script>"} {
		for _, id := range []string{"", "r-1"} {
			f := ErrorFrame(&Error{Code: CodeBadFrame, Message: msg}, id)
			var got struct{ Op, Code, Message, ID string }
			if !utf8.Valid(f) || json.Unmarshal(f, &got) != nil {
				t.Fatalf("%q: frame %q is not valid UTF-8 JSON", msg, f)
			}
			if got.Op != "error" || got.Code != CodeBadFrame || got.ID != id {
				t.Errorf("%q: frame %s", msg, f)
			}
		}
	}
	if got := string(PongFrame("p\"1")); got != `{"op":"pong","id":"p\"1"}` {
		t.Errorf("pong %s", got)
	}
}

func TestPeekID(t *testing.T) {
	long := fmt.Sprintf(`"%065d"`, 0)
	for raw, want := range map[string]string{
		`{"op":"send","id":"a1"}`: "a1",
		`{"id":""}`:               "",
		`{"id":7}`:                "",
		`{"id":` + long + `}`:     "",
		`not json, "id":"x"`:      "",
	} {
		if got := PeekID([]byte(raw)); got != want {
			t.Errorf("%s: %q, want %q", raw, got, want)
		}
	}
}

// Whole numbers are plain digits up to 2^53 on every endpoint.
func TestWhole(t *testing.T) {
	for raw, want := range map[string]int64{
		`0`: 0, `42`: 42, `9007199254740992`: 1 << 53,
		`9007199254740993`: -1, `1e3`: -1, `1000.0`: -1, `-1`: -1, `"7"`: -1, `true`: -1, `1E3`: -1,
	} {
		n, ok := Whole(gjson.Parse(raw))
		if want < 0 && ok || want >= 0 && (!ok || n != uint64(want)) {
			t.Errorf("%s: %d %v, want %d", raw, n, ok, want)
		}
	}
}

func TestCodesAreUniqueAndRetryableOnesKnown(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Codes {
		if seen[c] {
			t.Errorf("code %q listed twice", c)
		}
		seen[c] = true
	}
	for _, c := range []string{CodeBusy, CodeUnavailable, CodeRateLimited, CodeHookUnavailable} {
		if !Retryable(c) || !slices.Contains(Codes, c) {
			t.Errorf("%s should be retryable and listed", c)
		}
	}
	if Retryable(CodeBadFrame) || Retryable(CodeIDReused) {
		t.Error("a frame that is wrong is not retryable")
	}
}

func FuzzWhole(f *testing.F) {
	for _, s := range []string{"0", "1e3", "9007199254740993", "-0", "01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !gjson.Valid(raw) {
			return // frames are checked for valid JSON before any field is read
		}
		n, ok := Whole(gjson.Parse(raw))
		if !ok {
			return
		}
		var f64 float64
		if json.Unmarshal([]byte(raw), &f64) != nil || n > MaxWhole || float64(n) != f64 {
			t.Fatalf("%q read as %d", raw, n)
		}
	})
}
