package ids

import "testing"

func TestValid(t *testing.T) {
	for _, tt := range []struct {
		s    string
		max  int
		want bool
	}{
		{"node-1_A", 64, true},
		{"", 64, false},
		{"abc", 2, false},
		{"a b", 64, false},
		{"a.b", 64, false},
		{"é", 64, false},
	} {
		if got := Valid(tt.s, tt.max); got != tt.want {
			t.Errorf("Valid(%q, %d) = %v", tt.s, tt.max, got)
		}
	}
	if got := Safe("a.b c/é-_9"); got != "a_b_c__-_9" { // one "_" per character, not per byte
		t.Errorf("Safe = %q", got)
	}
}
