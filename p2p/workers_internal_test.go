package p2p

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// With every worker busy, a request waits for one up to maxQueueWait and is then refused (unavailable,
// counted); while the instance stays overloaded the next ones are refused at once; once a worker is free
// again requests are served. The same holds for the messaging and the friends service.
func TestOverloadIsRefusedAndCounted(t *testing.T) {
	nc := connectEmbedded(t, "workers-test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewService(ctx, nc, Config{Workers: 1, SweepInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFriends(ctx, nc, FriendsConfig{Workers: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		f.Shutdown(ctx)
	})
	for _, tc := range []struct {
		name, subject, request, code string
		w                            *workers
		refused                      func() uint64
	}{
		{"frame", subjFrame, `{"user":"alice","conn":"c","node":"n","frame":{"op":"sync","id":"s1"}}`, "code", s.workers, func() uint64 { return s.Stats().Refused }},
		{"hello", subjHello, `{"user":"alice","node":"n"}`, "error.code", s.workers, func() uint64 { return s.Stats().Refused }},
		{"friends", subjFriendsGet, `{"user":"alice"}`, "error.code", f.workers, func() uint64 { return f.Stats().Refused }},
	} {
		ask := func() (code string, took time.Duration) {
			t.Helper()
			start := time.Now()
			m, err := nc.Request(tc.subject, []byte(tc.request), 10*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			return gjson.GetBytes(m.Data, tc.code).Str, time.Since(start)
		}
		before := tc.refused()
		tc.w.slots <- struct{}{} // the only worker is busy
		if code, took := ask(); code != CodeUnavailable || took < maxQueueWait {
			t.Fatalf("%s: %q after %v, want unavailable after %v", tc.name, code, took, maxQueueWait)
		}
		if code, took := ask(); code != CodeUnavailable || took >= maxQueueWait {
			t.Fatalf("%s, overloaded: %q after %v, want unavailable at once", tc.name, code, took)
		}
		if n := tc.refused() - before; n != 2 {
			t.Fatalf("%s: %d refusals counted, want 2", tc.name, n)
		}
		tc.w.release()
		if code, _ := ask(); code != "" {
			t.Fatalf("%s with a free worker: %q", tc.name, code)
		}
	}
}

// The friends limit is stated with its numbers.
func TestTooManyFriendsStatesTheLimit(t *testing.T) {
	full := &FriendList{Outgoing: []string{"b"}}
	_, _, werr := applyFriendAction(ActionRequest, "a", "c", full, &FriendList{}, 1)
	if werr == nil || werr.Code != CodeTooManyFriends || werr.Message != "your friend list would have 2 entries; the limit is 1 (max_friends); remove some first" {
		t.Fatalf("mine full: %+v", werr)
	}
	_, _, werr = applyFriendAction(ActionRequest, "c", "a", &FriendList{}, full, 1)
	if werr == nil || werr.Message != `the friend list of "a" would have 2 entries; the limit is 1 (max_friends)` {
		t.Fatalf("theirs full: %+v", werr)
	}
}
