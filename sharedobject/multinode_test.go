package sharedobject_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/rso-server/rso/client"
)

// Two nodes on one NATS behave as one server. (cmd/rso has the same test with separate processes.)

func TestTwoNodesSeeTheSameChangesInTheSameOrder(t *testing.T) {
	srv := startNATS(t, "")
	n1, n2 := startNode(t, srv, nil), startNode(t, srv, nil)
	w1, w2 := dial(t, n1.url, ""), dial(t, n2.url, "")
	o1, o2 := dial(t, n1.url, ""), dial(t, n2.url, "")
	for _, c := range []*client.Conn{w1, w2, o1, o2} {
		sub(t, c, "board", true)
	}
	// Both writers write concurrently, each to its own slot and to a shared one, and send messages.
	const rounds = 40
	var wg sync.WaitGroup
	for i, w := range []*client.Conn{w1, w2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var base uint64 // only this writer changes its slot: its last answer's version is a valid base
			for r := range rounds {
				s, err := w.Update(ctxT(t), "board", true, []client.Change{set(fmt.Sprintf("w%d", i), base, r)})
				if err != nil || codes(s) != fmt.Sprintf("success:w%d", i) {
					t.Errorf("writer %d round %d: %v %v", i, r, err, s)
					return
				}
				base = s.Version
				w.Send("board", true, "tick", i, r)
			}
		}()
	}
	wg.Wait()
	// Observers on different nodes must see identical streams of frames.
	log1, log2 := collect(t, o1, 4*rounds), collect(t, o2, 4*rounds)
	for i := range log1 {
		if log1[i] != log2[i] {
			t.Fatalf("event %d differs:\nnode1: %s\nnode2: %s", i, log1[i], log2[i])
		}
	}
}

// collect reads n events as comparable strings (syncs carry their versions).
func collect(t *testing.T, c *client.Conn, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for len(out) < n {
		ev := next(t, c)
		if ev.Sync != nil {
			out = append(out, fmt.Sprintf("v%d %s", ev.Sync.Version, codes(ev.Sync)))
		} else {
			out = append(out, describe(ev))
		}
	}
	return out
}

func TestConcurrentWritesAcrossNodesHaveOneWinner(t *testing.T) {
	srv := startNATS(t, "")
	nodes := []*testNode{startNode(t, srv, nil), startNode(t, srv, nil)}
	var writers []*client.Conn
	for i := range 8 {
		c := dial(t, nodes[i%2].url, "")
		sub(t, c, "lot", true)
		writers = append(writers, c)
	}
	for round := range 10 {
		base := uint64(round)
		results := make([]*client.Sync, len(writers))
		var wg sync.WaitGroup
		for i, c := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := c.Update(ctxT(t), "lot", true, []client.Change{set("price", base, fmt.Sprintf("bid %d by %d", round, i))})
				if err != nil {
					t.Error(err)
					return
				}
				results[i] = s
			}()
		}
		wg.Wait()
		wins := 0
		for _, s := range results {
			if s == nil {
				t.FailNow()
			}
			switch codes := s.Changes[0].Code; codes {
			case client.CodeSuccess:
				wins++
			case client.CodeReject:
			default:
				t.Fatalf("unexpected answer %q", codes)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d successes, want exactly 1", round, wins)
		}
	}
	// Every writer's replica (built from its own events and answers) converges: read it fresh on each node.
	var want string
	for i, n := range nodes {
		s := sub(t, dial(t, n.url, ""), "lot", true)
		if got := fmt.Sprintf("v%d %s", s.Version, codes(s)); i == 0 {
			want = got
		} else if got != want {
			t.Fatalf("nodes disagree:\n%s\n%s", want, got)
		}
	}
}
