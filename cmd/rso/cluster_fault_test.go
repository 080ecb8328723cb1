//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Fault tests of issue 10 with real processes: three rso nodes in embedded cluster mode with -replicas 3 (and
// two rso nodes on an external three-server NATS cluster) under a load that keeps a ledger of everything it
// was told was stored — compare-and-set counters (cluster_load_test.go), sends on an object and private
// messages over /relay. A node is killed with SIGKILL (the JetStream meta leader's, then the stream leader's
// of the busiest object), all three are restarted in turn, two of three are down at once, and one server of
// the external cluster is shut down. After every fault the load is paused and checked: nothing acknowledged is
// lost, nothing is applied twice, every node serves the same state. Each test logs, per fault, what was
// acknowledged, lost and duplicated and how long service and convergence took. RSO_FAULT_LONG=1 runs every
// phase several times longer. -short skips them.

// stream names (sharedobject/node.go, p2p/names.go): the persistent objects' log and the private messages.
const (
	streamObjects  = "RSO_PERSISTENT"
	streamMessages = "RSO_DM"
)

// faultLong reports whether the longer variants were asked for.
func faultLong() bool { return os.Getenv("RSO_FAULT_LONG") == "1" }

// scaled returns n, or n×4 with RSO_FAULT_LONG=1.
func scaled(n int) int {
	if faultLong() {
		return 4 * n
	}
	return n
}

// member is one rso process of a cluster, restartable on the same ports and data folder.
type member struct {
	name       string // its -node-id, also its NATS server name
	addr       string // HTTP
	natsListen string // its -nats-listen ("" on an external NATS)
	args       []string
	p          *proc   // the current (or last) run
	runs       []*proc // every run, for the output of a failing test
	up         bool
}

// rsoCluster is the rso processes of one test.
type rsoCluster struct {
	t       *testing.T
	members []*member
}

// startEmbeddedCluster starts three rso processes at once, each embedding one member of a NATS cluster with
// clustered JetStream (the same routes for all, itself included), -replicas 3, each with its own data folder
// and a -nats-listen port for the test's look at the cluster, and waits until all are healthy.
func startEmbeddedCluster(t *testing.T) *rsoCluster {
	t.Helper()
	c := &rsoCluster{t: t}
	const n = 3
	routes, cluster := make([]string, n), make([]string, n)
	for i := range n {
		cluster[i] = freeAddr(t)
		routes[i] = "nats://" + cluster[i]
	}
	for i := range n {
		m := &member{name: fmt.Sprint("n", i+1), addr: freeAddr(t), natsListen: freeAddr(t)}
		m.args = []string{"-addr", m.addr, "-data", t.TempDir(), "-node-id", m.name, "-replicas", "3",
			"-nats-cluster", cluster[i], "-nats-routes", strings.Join(routes, ","), "-nats-listen", m.natsListen}
		c.members = append(c.members, m)
	}
	c.start()
	return c
}

// startExternalNodes starts n rso processes on the NATS servers at urls with -replicas 3 and waits until all
// are healthy.
func startExternalNodes(t *testing.T, n int, urls []string) *rsoCluster {
	t.Helper()
	c := &rsoCluster{t: t}
	for i := range n {
		m := &member{name: fmt.Sprint("x", i+1), addr: freeAddr(t)}
		m.args = []string{"-addr", m.addr, "-node-id", m.name, "-replicas", "3", "-nats", strings.Join(urls, ",")}
		c.members = append(c.members, m)
	}
	c.start()
	return c
}

func (c *rsoCluster) start() {
	t := c.t
	t.Helper()
	began := time.Now()
	for _, m := range c.members {
		c.run(m)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range c.members {
				for k, p := range m.runs {
					t.Logf("node %s, run %d: warnings and errors:\n%s", m.name, k+1, complaints(p))
				}
			}
		}
	})
	waitHealthy(t, 90*time.Second, c.addrs()...)
	t.Logf("%d nodes healthy %s after they were started", len(c.members), since(began))
}

func (c *rsoCluster) run(m *member) {
	m.p = startProc(c.t, m.args...)
	m.runs = append(m.runs, m.p)
	m.up = true
}

func (c *rsoCluster) addrs() []string {
	var a []string
	for _, m := range c.members {
		a = append(a, m.addr)
	}
	return a
}

// live returns the members that run.
func (c *rsoCluster) live() []*member {
	var l []*member
	for _, m := range c.members {
		if m.up {
			l = append(l, m)
		}
	}
	return l
}

func (c *rsoCluster) byName(name string) *member {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// kill ends m with SIGKILL: no shutdown, its sockets, its NATS server and its JetStream vanish at once.
func (c *rsoCluster) kill(m *member) {
	c.t.Helper()
	m.p.kill(c.t)
	m.up = false
}

// stop ends m with SIGTERM (a clean shutdown: clients are told 1012) and checks it exits with 0.
func (c *rsoCluster) stop(m *member) {
	c.t.Helper()
	if code := m.p.terminate(c.t); code != 0 {
		c.t.Errorf("%s exited with %d after SIGTERM, want 0", m.name, code)
	}
	m.up = false
}

// restart starts m again on the same ports and data folder and returns how long it took to be healthy.
func (c *rsoCluster) restart(ms ...*member) time.Duration {
	c.t.Helper()
	began := time.Now()
	var addrs []string
	for _, m := range ms {
		c.run(m)
		addrs = append(addrs, m.addr)
	}
	waitHealthy(c.t, 90*time.Second, addrs...)
	return time.Since(began)
}

// waitReplicasCurrent waits, looking through a live member, until every replica of the objects' and the
// messages' streams is current.
func (c *rsoCluster) waitReplicasCurrent() time.Duration {
	c.t.Helper()
	nc := natsConn(c.t, "nats://"+c.live()[0].natsListen)
	defer nc.Close()
	return waitReplicasCurrent(c.t, nc, 3, streamObjects, streamMessages)
}

// natsConn connects to the NATS of a live member (its -nats-listen), or to url.
func natsConn(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect to NATS %s: %v", url, err)
	}
	return nc
}

// metaLeader returns the server name of the JetStream meta leader, as seen through nc. Only the meta leader
// answers $JS.API.STREAM.NAMES in a cluster, and every answer is audited on $JS.EVENT.ADVISORY.API with
// the name of the server that gave it, so a names request with a filter of our own tells who leads.
func metaLeader(t *testing.T, nc *nats.Conn) string {
	t.Helper()
	nonce := fmt.Sprintf("fault.probe.%d", time.Now().UnixNano())
	body := fmt.Sprintf(`{"subject":%q}`, nonce)
	audits := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.API", audits)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var leader string
	waitFor(t, 30*time.Second, "the JetStream meta leader answers", func() (bool, string) {
		if err := nc.Flush(); err != nil {
			return false, err.Error()
		}
		if _, err := nc.Request("$JS.API.STREAM.NAMES", []byte(body), 2*time.Second); err != nil {
			return false, "names request: " + err.Error()
		}
		timeout := time.After(2 * time.Second)
		for {
			select {
			case m := <-audits:
				var a struct {
					Server, Subject, Request string
				}
				if json.Unmarshal(m.Data, &a) == nil && a.Subject == "$JS.API.STREAM.NAMES" && a.Request == body {
					leader = a.Server
					return true, ""
				}
			case <-timeout:
				return false, "no audit advisory of the names request"
			}
		}
	})
	return leader
}

// streamInfo returns the cluster information of a stream, retrying while it has no leader.
func streamInfo(t *testing.T, nc *nats.Conn, stream string) *jetstream.ClusterInfo {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var ci *jetstream.ClusterInfo
	waitFor(t, 60*time.Second, "stream "+stream+" answers with a leader", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false, err.Error()
		}
		ci = s.CachedInfo().Cluster
		return ci != nil && ci.Leader != "", fmt.Sprintf("cluster %+v", ci)
	})
	return ci
}

// streamLeader returns the server name of the stream's leader.
func streamLeader(t *testing.T, nc *nats.Conn, stream string) string {
	t.Helper()
	return streamInfo(t, nc, stream).Leader
}

// waitReplicasCurrent waits until every replica of each stream is current, with no lag, and returns how long
// that took: the JetStream side of convergence.
func waitReplicasCurrent(t *testing.T, nc *nats.Conn, want int, streams ...string) time.Duration {
	t.Helper()
	began := time.Now()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range streams {
		waitFor(t, 60*time.Second, "every replica of "+name+" current", func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false, err.Error()
			}
			ci := s.CachedInfo().Cluster
			if ci == nil || ci.Leader == "" || len(ci.Replicas) != want-1 {
				return false, fmt.Sprintf("cluster %+v", ci)
			}
			var behind []string
			for _, r := range ci.Replicas {
				if !r.Current || r.Offline || r.Lag > 0 {
					behind = append(behind, fmt.Sprintf("%s (current %v, offline %v, lag %d)", r.Name, r.Current, r.Offline, r.Lag))
				}
			}
			return len(behind) == 0, "leader " + ci.Leader + "; behind: " + strings.Join(behind, ", ")
		})
	}
	return time.Since(began)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// Fault 1: kill -9 of the JetStream meta leader's node, then of the node that leads the stream of the
// busiest object, each restarted with its data once the others serve again.
func TestClusterFaultKillLeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts rso processes")
	}
	began := time.Now()
	c := startEmbeddedCluster(t)
	l := startLoad(t, c)
	defer l.close()
	l.warmUp()
	ncOn := c.members[0]
	nc := natsConn(t, "nats://"+ncOn.natsListen)
	defer func() { nc.Close() }()

	rounds := 2 // the meta leader's node, then the stream leader's; with RSO_FAULT_LONG=1 three times over
	if faultLong() {
		rounds = 6
	}
	for round := range rounds {
		leader, what := metaLeader(t, nc), "the JetStream meta leader"
		if round%2 == 1 {
			leader, what = streamLeader(t, nc, streamObjects), "the leader of "+streamObjects+" (the busiest object's stream)"
		}
		victim := c.byName(leader)
		f := l.beginFault(fmt.Sprintf("kill -9 %s, %s", victim.name, what))
		if victim == ncOn { // look through a member that stays
			nc.Close()
			ncOn = otherThan(c, victim)
			nc = natsConn(t, "nats://"+ncOn.natsListen)
		}
		t.Logf("%s: meta leader %s, %s leader %s", f.name, metaLeader(t, nc), streamObjects, streamLeader(t, nc, streamObjects))
		c.kill(victim)
		f.down(victim.addr)
		l.waitService(f)
		l.waitConverged(f, c.live())
		f.healthy = c.restart(victim)
		l.waitCaughtUp(f, victim)
		f.jetstream = c.waitReplicasCurrent()
		l.checkpoint(f, c.addrs())
		if t.Failed() {
			return
		}
		after := l.beginPhase("the load after restarting " + victim.name)
		l.resume()
		l.waitAcks(scaled(100), "the load goes on after the restart")
		if round == rounds-1 {
			l.checkpoint(after, c.addrs())
		}
	}
	t.Logf("whole test %s", since(began))
}

// otherThan returns a live member other than m.
func otherThan(c *rsoCluster, m *member) *member {
	for _, o := range c.live() {
		if o != m {
			return o
		}
	}
	c.t.Fatal("no other live member")
	return nil
}

// Fault 2: a rolling restart under load: each node in turn is stopped (SIGTERM, as for an upgrade) and
// started again on its data, the next one only once it is healthy and caught up.
func TestClusterFaultRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts rso processes")
	}
	began := time.Now()
	c := startEmbeddedCluster(t)
	l := startLoad(t, c)
	defer l.close()
	l.warmUp()
	rounds := 1
	if faultLong() {
		rounds = 3
	}
	for k := range rounds * len(c.members) {
		m := c.members[k%len(c.members)]
		f := l.beginFault("rolling restart: SIGTERM " + m.name)
		c.stop(m)
		f.down(m.addr)
		l.waitService(f)
		l.waitConverged(f, c.live())
		f.healthy = c.restart(m)
		l.waitCaughtUp(f, m)
		f.jetstream = c.waitReplicasCurrent()
		l.waitAcks(scaled(40), "the load goes on after restarting "+m.name)
		l.pause()
		l.checkpoint(f, c.addrs())
		if t.Failed() {
			return
		}
		l.resume()
	}
	t.Logf("whole test %s", since(began))
}

// Fault 3: two of three nodes killed at once. The last one has no quorum: every write and message sent from
// then on is refused with unavailable and none is acknowledged; the objects it has loaded still serve their
// state to new subscribers. Once both are back, service resumes by itself: the same clients, retrying their
// refused requests with the same ids, are acknowledged again, and nothing acknowledged is lost.
func TestClusterFaultTwoOfThreeDown(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts rso processes")
	}
	began := time.Now()
	c := startEmbeddedCluster(t)
	l := startLoad(t, c)
	defer l.close()
	l.warmUp()
	nc := natsConn(t, "nats://"+c.members[0].natsListen)
	meta, objects := metaLeader(t, nc), streamLeader(t, nc, streamObjects)
	nc.Close()
	victims := []*member{c.byName(meta)}
	if objects != meta {
		victims = append(victims, c.byName(objects))
	} else {
		victims = append(victims, otherThan(c, victims[0]))
	}
	var survivor *member
	for _, m := range c.members {
		if m != victims[0] && m != victims[1] {
			survivor = m
		}
	}
	f := l.beginFault(fmt.Sprintf("kill -9 %s (meta leader) and %s (%s leader %s): %s alone", victims[0].name, victims[1].name, streamObjects, objects, survivor.name))
	for _, v := range victims {
		c.kill(v)
		f.down(v.addr)
	}
	outage := l.noQuorum()

	// Every client is now on the survivor, and each of its writes and messages is refused with unavailable.
	l.waitRefused(outage, scaled(2))
	reads := l.readsWithoutQuorum(survivor.addr)
	t.Logf("%s: while alone, %s", f.name, reads)

	back := time.Now()
	l.quorumBack(outage)
	f.healthy = c.restart(victims...)
	l.waitServiceSince(f, back)
	t.Logf("%s: service resumed by itself %s after the two were started again", f.name, since(back))
	l.waitConverged(f, c.live())
	for _, v := range victims {
		l.waitCaughtUp(f, v)
	}
	f.jetstream = c.waitReplicasCurrent()
	l.checkpoint(f, c.addrs())
	if n := outage.acked(); n > 0 {
		t.Errorf("%d requests sent while two of three nodes were down were acknowledged: %s", n, outage.ackedList())
	}
	t.Logf("whole test %s", since(began))
}

// natsCluster is NATS servers with clustered JetStream run inside the test process.
type natsCluster struct {
	t       *testing.T
	opts    []*server.Options
	servers []*server.Server
}

// startNATSCluster runs n NATS servers with JetStream routed over 127.0.0.1, each with its own store.
func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	nc := &natsCluster{t: t}
	var routes []string
	ports := make([]int, n)
	for i := range n {
		ports[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for i := range n {
		nc.opts = append(nc.opts, &server.Options{
			ServerName: fmt.Sprint("s", i+1), Host: "127.0.0.1", Port: freePort(t), NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "rso-ext", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		nc.servers = append(nc.servers, nil)
	}
	for i := range n {
		nc.start(i)
	}
	t.Cleanup(func() {
		for _, s := range nc.servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	for i := range n {
		if !nc.servers[i].ReadyForConnections(10 * time.Second) {
			t.Fatalf("NATS server s%d did not start", i+1)
		}
	}
	return nc
}

func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	var p int
	fmt.Sscan(port, &p)
	return p
}

func (nc *natsCluster) start(i int) {
	nc.t.Helper()
	o := *nc.opts[i] // nats-server changes the options it is given
	s, err := server.NewServer(&o)
	if err != nil {
		nc.t.Fatalf("NATS server s%d: %v", i+1, err)
	}
	go s.Start()
	nc.servers[i] = s
}

func (nc *natsCluster) urls() []string {
	var u []string
	for _, o := range nc.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return u
}

// Fault 4: two rso nodes on an external three-server NATS cluster (servers run by the test from the
// nats-server module) with -replicas 3; the server that leads the busiest object's stream is shut down under
// load and started again on its store.
func TestExternalClusterFaultServerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a NATS cluster and rso processes")
	}
	began := time.Now()
	ns := startNATSCluster(t, 3)
	c := startExternalNodes(t, 2, ns.urls())
	l := startLoad(t, c)
	defer l.close()
	l.warmUp()

	rounds := 2
	if faultLong() {
		rounds = 6
	}
	for round := range rounds {
		// First the leader of the busiest object's stream, then the server the rso nodes are connected to
		// (most of them: each may be on another one).
		victim := -1
		waitFor(t, 30*time.Second, "a leader of "+streamObjects+" and a meta leader among the servers", func() (bool, string) {
			stream, meta, busiest, most := -1, -1, -1, -1
			for i, s := range ns.servers {
				if s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, streamObjects) {
					stream = i
				}
				if s.JetStreamIsLeader() {
					meta = i
				}
				if n := s.NumClients(); n > most {
					busiest, most = i, n
				}
			}
			victim = stream
			if round%2 == 1 {
				victim = busiest
			}
			return stream >= 0 && meta >= 0, fmt.Sprintf("stream leader s%d, meta leader s%d", stream+1, meta+1)
		})
		vs := ns.servers[victim]
		roles := []string{}
		if vs.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, streamObjects) {
			roles = append(roles, "leader of "+streamObjects)
		}
		if vs.JetStreamIsLeader() {
			roles = append(roles, "JetStream meta leader")
		}
		conns := 0
		if cz, err := vs.Connz(&server.ConnzOptions{}); err == nil {
			conns = cz.NumConns
		}
		f := l.beginFault(fmt.Sprintf("shut down NATS server %s: %s, %d client connections", vs.Name(), strings.Join(roles, ", "), conns))
		vs.Shutdown()
		vs.WaitForShutdown()
		ns.servers[victim] = nil
		f.downAt = time.Now()
		l.waitService(f)
		l.waitConverged(f, c.live())
		restarted := time.Now()
		ns.start(victim)
		if !ns.servers[victim].ReadyForConnections(10 * time.Second) {
			t.Fatalf("NATS server %s did not start again", vs.Name())
		}
		nc := natsConn(t, ns.urls()[(victim+1)%3])
		f.healthy = time.Since(restarted)
		f.jetstream = waitReplicasCurrent(t, nc, 3, streamObjects, streamMessages)
		nc.Close()
		l.waitAcks(scaled(100), "the load goes on after the server is back")
		l.checkpoint(f, c.addrs())
		if t.Failed() {
			return
		}
		l.resume()
	}
	t.Logf("whole test %s", since(began))
}
