package friends

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/internal/natstest"
	"github.com/rso-server/rso/internal/wire"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/p2p/internal/friendlist"
	"github.com/rso-server/rso/p2p/internal/workers"
)

// With every worker busy, a request waits for one up to workers.MaxQueueWait and is then refused (unavailable,
// counted); while the instance stays overloaded the next ones are refused at once; once a worker is free
// again requests are served. The same holds for the friends service as for the messaging service.
func connectEmbedded(t *testing.T, name string) *nats.Conn {
	t.Helper()
	return natstest.Connect(t, natstest.Start(t).ClientURL(), nats.Name(name))
}

func TestOverloadIsRefusedAndCounted(t *testing.T) {
	nc := connectEmbedded(t, "workers-test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(ctx, nc, Config{Workers: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	for _, tc := range []struct {
		name, subject, request, code string
		w                            *workers.Pool
		refused                      func() uint64
	}{
		{"get", friendlist.SubjGet, `{"user":"alice"}`, "error.code", s.workers, func() uint64 { return s.Stats().Refused }},
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
		tc.w.Acquire() // the only worker is busy
		if code, took := ask(); code != wire.CodeUnavailable || took < workers.MaxQueueWait {
			t.Fatalf("%s: %q after %v, want unavailable after %v", tc.name, code, took, workers.MaxQueueWait)
		}
		if code, took := ask(); code != wire.CodeUnavailable || took >= workers.MaxQueueWait {
			t.Fatalf("%s, overloaded: %q after %v, want unavailable at once", tc.name, code, took)
		}
		if n := tc.refused() - before; n != 2 {
			t.Fatalf("%s: %d refusals counted, want 2", tc.name, n)
		}
		tc.w.Release()
		if code, _ := ask(); code != "" {
			t.Fatalf("%s with a free worker: %q", tc.name, code)
		}
	}
}
