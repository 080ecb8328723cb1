package ratelog_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rso-server/rso/internal/ratelog"
)

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buffer) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// A flood of one kind writes the burst, then one summary with the count of what was left out; another
// kind is not held back by it.
func TestFloodIsSummedUp(t *testing.T) {
	var out buffer
	l := ratelog.New(slog.New(slog.NewTextHandler(&out, nil)), 3, time.Hour)
	for range 100 {
		l.Warn("abuse", "client closed for abuse", "conn", "c1")
	}
	l.Warn("token", "token refused")
	l.Stop()
	text := out.String()
	if n := strings.Count(text, "client closed for abuse"); n != 3 {
		t.Errorf("%d abuse lines, want the burst of 3:\n%s", n, text)
	}
	if !strings.Contains(text, "token refused") {
		t.Errorf("another kind was held back:\n%s", text)
	}
	if !strings.Contains(text, "kind=abuse count=97") {
		t.Errorf("no summary of the 97 left out:\n%s", text)
	}
}

// The summary comes by itself once the interval has passed.
func TestSummaryAfterTheInterval(t *testing.T) {
	var out buffer
	l := ratelog.New(slog.New(slog.NewTextHandler(&out, nil)), 1, 20*time.Millisecond)
	defer l.Stop()
	l.Warn("slow", "slow consumer")
	l.Warn("slow", "slow consumer")
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), "count=1"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no summary:\n%s", out.String())
		}
	}
}
