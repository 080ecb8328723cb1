package auth

import (
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern    string
		persistent bool
		name       string
		want       bool
	}{
		{"room/1", false, "room/1", true},
		{"room/1", false, "room/12", false},
		{"room/*", false, "room/42", true},
		{"room/*", true, "room/42", true},
		{"room/*", false, "room/", true}, // * may be empty
		{"room/*", false, "room/42/chat", false},
		{"room/*", false, "rooms/42", false},
		{"room/*/chat", false, "room/42/chat", true},
		{"room/*/chat", false, "room/4/2/chat", false},
		{"slides/**", false, "slides/a/b/c", true},
		{"slides/**", false, "slides/", true},
		{"slides/**", false, "slides", false},
		{"**", false, "anything/at/all", true},
		{"*", false, "a/b", false},
		{"*-draft", false, "doc-draft", true},
		{"a/**/z", false, "a/b/c/z", true},
		{"a/**/z", false, "a/z", false},
		{"a.b", false, "axb", false}, // regexp metacharacters are literal
		{"(x)+", false, "(x)+", true},
		{"[a]", false, "a", false},
		{"é/*", false, "é/ü", true},
		{"*a*a*a*a*a*b", false, strings.Repeat("a", 200), false},
		{"persistent:room/*", true, "room/1", true},
		{"persistent:room/*", false, "room/1", false},
		{"temporary:room/*", false, "room/1", true},
		{"temporary:room/*", true, "room/1", false},
		{"persistent:**", true, "x", true},
		{"chat:room", false, "chat:room", true}, // ':' is legal in names
		{"persistentroom", true, "persistentroom", true},
	}
	for _, tt := range tests {
		p, err := CompilePattern(tt.pattern)
		if err != nil {
			t.Fatalf("CompilePattern(%q): %v", tt.pattern, err)
		}
		if got := p.Match(tt.persistent, tt.name); got != tt.want {
			t.Errorf("%q.Match(%v, %q) = %v, want %v", tt.pattern, tt.persistent, tt.name, got, tt.want)
		}
		if p.String() != tt.pattern {
			t.Errorf("String() = %q, want %q", p.String(), tt.pattern)
		}
	}
}

func TestCompilePatternErrors(t *testing.T) {
	tests := []struct{ pattern, wantErr string }{
		{"", `use "**"`},
		{"a/***", "use * (any run without '/') or **"},
		{"persistent:****", "use *"},
		{"persistent:", `use "persistent:**"`},
		{"temporary:", `use "temporary:**"`},
		{"Persistent:room/*", "lowercase"},
		{"TEMPORARY:room/*", "lowercase"},
		{"persistent:temporary:x", "two namespace prefixes"},
		{"room /*", "spaces or control characters"},
		{"room\n", "spaces or control characters"},
		{"\xff", "not valid UTF-8"},
	}
	for _, tt := range tests {
		_, err := CompilePattern(tt.pattern)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CompilePattern(%q) error = %v, want one containing %q", tt.pattern, err, tt.wantErr)
		}
	}
}

func TestZeroPatternMatchesNothing(t *testing.T) {
	if (Pattern{}).Match(true, "x") {
		t.Error("zero Pattern matched")
	}
}

func FuzzCompilePattern(f *testing.F) {
	for _, s := range []string{"", "room/*", "slides/**", "persistent:a/*/b", "temporary:", "***", "a*b**c", "\xff"} {
		f.Add(s, "room/1")
	}
	f.Fuzz(func(t *testing.T, s, name string) {
		p, err := CompilePattern(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Errorf("String() = %q, want %q", p.String(), s)
		}
		p.Match(true, name)
		p.Match(false, name)
		// A pattern without wildcards or prefix is a plain name and matches itself.
		if !strings.Contains(s, "*") && !strings.Contains(s, ":") && !p.Match(false, s) {
			t.Errorf("literal pattern %q does not match itself", s)
		}
	})
}

func BenchmarkPatternMatch(b *testing.B) {
	for _, bm := range []struct{ pattern, name string }{
		{"room/42", "room/42"},
		{"room/*", "room/42"},
		{"slides/**", "slides/deck/7/notes"},
		{"persistent:org/*/room/**", "org/acme/room/42/chat"},
	} {
		p, err := CompilePattern(bm.pattern)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bm.pattern, func(b *testing.B) {
			for b.Loop() {
				p.Match(true, bm.name)
			}
		})
	}
}
