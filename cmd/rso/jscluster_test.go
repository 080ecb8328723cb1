//go:build unix

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/client"
)

// clusterNode is one rso process of clusterNodes.
type clusterNode struct {
	*proc
	addr       string // HTTP
	natsListen string // its -nats-listen
}

// clusterNodes starts n rso processes at once, each embedding one member of a NATS cluster (every one given
// the same routes, itself included), with a -nats-listen port and extra as further flags. On failure the
// test prints every node's output.
func clusterNodes(t *testing.T, n int, extra ...string) []clusterNode {
	t.Helper()
	nodes, routes := make([]clusterNode, n), make([]string, n)
	cluster := make([]string, n)
	for i := range nodes {
		nodes[i].addr, nodes[i].natsListen, cluster[i] = freeAddr(t), freeAddr(t), freeAddr(t)
		routes[i] = "nats://" + cluster[i]
	}
	for i := range nodes {
		args := []string{"-addr", nodes[i].addr, "-data", t.TempDir(), "-node-id", fmt.Sprint("n", i+1),
			"-nats-cluster", cluster[i], "-nats-routes", strings.Join(routes, ","), "-nats-listen", nodes[i].natsListen}
		nodes[i].proc = startProc(t, append(args, extra...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, nd := range nodes {
				t.Logf("node n%d output:\n%s", i+1, nd.out)
			}
		}
	})
	return nodes
}

// waitHealthy waits until every node answers /healthz with 200, all at once, up to d.
func waitHealthy(t *testing.T, d time.Duration, addrs ...string) {
	t.Helper()
	waitFor(t, d, "every node healthy", func() (bool, string) {
		var sick []string
		for _, a := range addrs {
			if code, body := health(a); code != http.StatusOK {
				sick = append(sick, fmt.Sprintf("%s: %d %s", a, code, body))
			}
		}
		return len(sick) == 0, strings.Join(sick, "; ")
	})
}

// write sets slot to v on obj through c and retries, with the same request id, while the answer is an
// error (a stream electing a new leader answers unavailable, or not in time), for up to d.
func write(t *testing.T, c *client.Conn, obj, slot string, v any, d time.Duration) *client.Sync {
	t.Helper()
	id := fmt.Sprintf("w-%s-%v", slot, v)
	var s *client.Sync
	waitFor(t, d, "write "+slot+" through "+c.URL(), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		s, err = c.UpdateWithID(ctx, id, obj, true, []client.Change{{Name: slot, Value: value(v)}})
		if err != nil {
			return false, err.Error()
		}
		if len(s.Changes) != 1 || s.Changes[0].Code != client.CodeSuccess {
			return false, fmt.Sprintf("answer %+v", s.Changes)
		}
		return true, ""
	})
	return s
}

// subscribe subscribes c to obj, retrying while the server answers with an error, for up to d.
func subscribe(t *testing.T, c *client.Conn, obj string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "subscribe "+obj+" through "+c.URL(), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Subscribe(ctx, obj, true, 0, ""); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// nextChange waits for the change of slot on a subscription of c and returns its value.
func nextChange(t *testing.T, c *client.Conn, slot string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-c.Events():
			if ev.Sync == nil {
				continue
			}
			for _, ch := range ev.Sync.Changes {
				if ch.Name == slot && ch.Code == client.CodeChange {
					return string(ch.Value)
				}
			}
		case <-timeout:
			t.Fatalf("no change of %s reached the client of %s", slot, c.URL())
			return ""
		}
	}
}

// Three rso processes started together, each embedding one member of a NATS cluster, form a JetStream
// cluster and serve R3 objects with no external NATS; with one of them killed, the other two still take
// writes (two of three are a quorum).
func TestProcessThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three rso processes")
	}
	began := time.Now()
	nodes := clusterNodes(t, 3, "-replicas", "3")
	addrs := []string{nodes[0].addr, nodes[1].addr, nodes[2].addr}
	waitHealthy(t, 45*time.Second, addrs...)
	t.Logf("three nodes healthy %s after they were started", time.Since(began).Round(time.Millisecond))
	for i, nd := range nodes {
		if out := nd.out.String(); !strings.Contains(out, "member of cluster rso") {
			t.Errorf("n%d does not say it is a cluster member:\n%s", i+1, out)
		}
	}
	leaders := checkReplicas(t, nodes[0].natsListen, 3)

	on1, on3 := dialNode(t, addrs[0]), dialNode(t, addrs[2])
	mustSub(t, on1, "board/1")
	mustSub(t, on3, "board/1")
	write(t, on1, "board/1", "title", "from n1", 10*time.Second)
	if got := nextChange(t, on3, "title"); got != `"from n1"` {
		t.Fatalf("client of n3 saw title %s, want \"from n1\"", got)
	}

	// kill -9 the node that leads the persistent objects' stream (sharedobject's RSO_PERSISTENT): the two
	// left are a quorum of every R3 stream, so they elect a new leader and writes through either go on.
	var killed int
	if _, err := fmt.Sscanf(leaders["RSO_PERSISTENT"], "n%d", &killed); err != nil || killed < 1 || killed > 3 {
		t.Fatalf("leader of RSO_PERSISTENT is %q, not one of n1…n3", leaders["RSO_PERSISTENT"])
	}
	killed--
	if err := nodes[killed].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-nodes[killed].done
	var left []clusterNode
	for i, nd := range nodes {
		if i != killed {
			left = append(left, nd)
		}
	}
	t.Logf("killed n%d, the leader of RSO_PERSISTENT", killed+1)
	afterKill := time.Now()
	a, b := dialNode(t, left[0].addr), dialNode(t, left[1].addr)
	// A node without a replica of the object reads its log: answered unavailable until the stream has a
	// new leader (nats-server's election takes up to about 10 s).
	subscribe(t, a, "board/1", 30*time.Second)
	subscribe(t, b, "board/1", 30*time.Second)
	write(t, a, "board/1", "after1", "a", 10*time.Second)
	if got := nextChange(t, b, "after1"); got != `"a"` {
		t.Fatalf("the other node's client saw %s, want \"a\"", got)
	}
	write(t, b, "board/1", "after2", "b", 10*time.Second)
	if got := nextChange(t, a, "after2"); got != `"b"` {
		t.Fatalf("the other node's client saw %s, want \"b\"", got)
	}
	t.Logf("both nodes left took writes %s after the kill", time.Since(afterKill).Round(time.Millisecond))
	for _, nd := range left {
		if code, body := health(nd.addr); code != http.StatusOK {
			t.Errorf("%s unhealthy with one member gone: %d %s", nd.addr, code, body)
		}
	}

	// A clean stop of one of the two left: they are still a quorum while it shuts down.
	if code := left[0].terminate(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// checkReplicas looks, through the NATS client port natsAddr, at every stream rso made: each must have
// want replicas. It returns each stream's leader.
func checkReplicas(t *testing.T, natsAddr string, want int) map[string]string {
	t.Helper()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatalf("connect to -nats-listen %s: %v", natsAddr, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	names := js.StreamNames(ctx)
	leaders := map[string]string{}
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info := s.CachedInfo()
		if info.Config.Replicas != want || info.Cluster == nil || len(info.Cluster.Replicas) != want-1 {
			t.Fatalf("stream %s: %d replicas configured, cluster %+v; want %d", name, info.Config.Replicas, info.Cluster, want)
		}
		leaders[name] = info.Cluster.Leader
	}
	if err := names.Err(); err != nil {
		t.Fatalf("stream names: %v", err)
	}
	if len(leaders) == 0 {
		t.Fatal("no streams")
	}
	return leaders
}

// A cluster member whose peers never come waits for them, saying so, up to -startup-timeout, and then
// exits with one line saying what was missing.
func TestClusterMemberAloneGivesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a startup timeout")
	}
	self := freeAddr(t)
	routes := "nats://" + self + ",nats://" + freeAddr(t) + ",nats://" + freeAddr(t) // nobody listens on the others
	began := time.Now()
	p := startRun(t, []string{"-addr", freeAddr(t), "-data", t.TempDir(), "-node-id", "lonely",
		"-nats-cluster", self, "-nats-routes", routes, "-replicas", "3"}, env{"RSO_STARTUP_TIMEOUT": "3s"})
	if code := p.exit(t); code != exitFailure {
		t.Fatalf("exit %d, want %d; output:\n%s", code, exitFailure, p.out)
	}
	if d := time.Since(began); d < 3*time.Second {
		t.Errorf("gave up after %s, before -startup-timeout", d)
	}
	out := p.out.String()
	if !strings.Contains(out, `msg="waiting for JetStream cluster: 1 of 3 peers connected, no JetStream meta leader yet"`) {
		t.Errorf("no progress line saying what is missing:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	want := "rso: JetStream cluster not ready after 3s: 1 of 3 peers connected, no JetStream meta leader yet (start the other members; check -nats-routes and that their -nats-cluster ports are reachable; or raise RSO_STARTUP_TIMEOUT)"
	if last != want {
		t.Errorf("last line\n%s\nwant\n%s", last, want)
	}
}

// While a node starts, /healthz answers 503 saying what it waits for, and the endpoints answer 503 too
// (a load balancer keeps clients away; nothing hangs in the listen queue).
func TestHealthzSaysWhatStartupWaitsFor(t *testing.T) {
	self, addr := freeAddr(t), freeAddr(t)
	routes := "nats://" + self + ",nats://" + freeAddr(t) + ",nats://" + freeAddr(t) // nobody listens on the others
	p := startRun(t, []string{"-addr", addr, "-data", t.TempDir(), "-node-id", "early",
		"-nats-cluster", self, "-nats-routes", routes, "-replicas", "3"}, env{})
	waitFor(t, 20*time.Second, "/healthz saying what startup waits for", func() (bool, string) {
		code, body := health(addr)
		return code == http.StatusServiceUnavailable &&
			body == "starting: waiting for JetStream cluster: 1 of 3 peers connected, no JetStream meta leader yet", fmt.Sprint(code, " ", body)
	})
	resp, err := http.Get("http://" + addr + "/so")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("/so while starting: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code := p.stop(t); code != exitOK {
		t.Errorf("stopped while starting: exit %d, want %d", code, exitOK)
	}
}
