package sharedobject_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/natstest"
	"github.com/rso-server/rso/sharedobject"
	"github.com/rso-server/rso/sharedobject/backend"
)

// Objects on a three-member JetStream cluster with three replicas: every read that a write is judged
// against, or that a catch-up applies, must agree with the stream leader, although direct gets may be
// answered by a replica that lags.

// startReplicatedNode starts a node with three replicas on srv, retrying while the cluster elects its
// JetStream leaders.
func startReplicatedNode(t *testing.T, srv *server.Server) *testNode {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tn, err := tryStartNode(t, srv, func(c *sharedobject.Config) { c.Replicas = 3 })
		if err == nil {
			return tn
		}
		if time.Now().After(deadline) {
			t.Fatalf("node on a three-member cluster: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // polls until the cluster has elected its JetStream leaders
	}
}

func TestCompareAndSetOnThreeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-member JetStream cluster")
	}
	servers := natstest.StartCluster(t, 3)
	nodes := []*testNode{startReplicatedNode(t, servers[0]), startReplicatedNode(t, servers[1])}
	const obj, writers, writesEach = "counter", 4, 150
	var mu sync.Mutex
	var killed sync.Once
	commits, epochs := 0, map[string]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		c := dial(t, nodes[w%2].url+fmt.Sprintf("?user=w%d", w), "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := 0
			s, err := c.Subscribe(ctxT(t), obj, true, 0, "")
			if err != nil {
				t.Error(err)
				return
			}
			version, value := s.Version, counterValue(s)
			for attempt := 0; attempt < 20*writesEach; attempt++ {
				if done >= writesEach {
					return
				}
				// A request that is answered unavailable or busy (a member died, leaders are being elected),
				// or not answered in time (it waits behind writes that wait for a new stream leader), is
				// re-sent with the same id, as the protocol says: it is applied at most once.
				id := fmt.Sprintf("w%d-%d", w, attempt)
				ans, err := c.UpdateWithID(ctxT(t), id, obj, true, []client.Change{set("n", version, value+1)})
				for retries := 0; err != nil && retries < 50 && retryable(err); retries++ {
					ans, err = c.UpdateWithID(ctxT(t), id, obj, true, []client.Change{set("n", version, value+1)})
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				epochs[ans.Epoch] = true
				mu.Unlock()
				switch {
				case len(ans.Changes) == 1 && ans.Changes[0].Code == client.CodeSuccess:
					mu.Lock()
					if commits++; commits == writers*writesEach/2 {
						go killed.Do(func() { servers[2].Shutdown() }) // a member goes, maybe a leader
					}
					mu.Unlock()
					done++
					version, value = ans.Version, value+1
				case len(ans.Changes) == 1 && ans.Changes[0].Code == client.CodeReject:
					// Someone else was first: take the committed value the reject shows, at the answer's version.
					json.Unmarshal(ans.Changes[0].Value, &value)
					version = ans.Version
				default:
					t.Errorf("writer %d: answer %q", w, codes(ans))
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		c := dial(t, n.url, "")
		s := sub(t, c, obj, true)
		if got := counterValue(s); got != commits || len(epochs) != 1 || !epochs[s.Epoch] {
			t.Fatalf("node %d: counter %d after %d commits (epochs seen %v, now %q)", i, got, commits, epochs, s.Epoch)
		}
	}
}

// retryable reports whether a write may be re-sent with the same id.
func retryable(err error) bool {
	code := wireCode(err)
	return code == backend.CodeUnavailable || code == backend.CodeBusy || errors.Is(err, context.DeadlineExceeded)
}

func counterValue(s *client.Sync) int {
	for _, ch := range s.Changes {
		if ch.Name == "n" {
			var v int
			json.Unmarshal(ch.Value, &v)
			return v
		}
	}
	return 0
}
