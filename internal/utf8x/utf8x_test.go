package utf8x

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

func TestRepair(t *testing.T) {
	valid := []byte(`{"text":"café ☕"}`)
	if got := Repair(valid); &got[0] != &valid[0] {
		t.Fatal("valid input was copied")
	}
	for _, tc := range []struct{ in, want string }{
		{"{\"text\":\"caf\xe9\xff\"}", "{\"text\":\"caf\uFFFD\uFFFD\"}"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // an encoded surrogate is three invalid bytes
		{"ok\xc3", "ok\uFFFD"},                 // truncated at the end
	} {
		if got := Repair([]byte(tc.in)); string(got) != tc.want {
			t.Errorf("Repair(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzRepair(f *testing.F) {
	f.Add([]byte("caf\xe9\xff"))
	f.Add([]byte("fine"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := Repair(b)
		if !utf8.Valid(got) {
			t.Fatalf("Repair(%q) = %q is not valid UTF-8", b, got)
		}
		if utf8.Valid(b) && !bytes.Equal(got, b) {
			t.Fatalf("valid %q changed to %q", b, got)
		}
	})
}
