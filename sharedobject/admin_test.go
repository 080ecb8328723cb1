package sharedobject_test

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/sharedobject"
	"github.com/rso-server/rso/sharedobject/backend"
)

// closeCode waits until c ends and returns the close frame it got.
func closeCode(t *testing.T, c *client.Conn) *client.CloseError {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("connection still open")
	}
	var ce *client.CloseError
	if !errors.As(c.CloseErr(), &ce) {
		t.Fatalf("want a close frame, got %v", c.CloseErr())
	}
	return ce
}

func stillOpen(t *testing.T, c *client.Conn, what string) {
	t.Helper()
	select {
	case <-c.Done():
		t.Fatalf("%s was closed: %v", what, c.CloseErr())
	default:
	}
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatalf("%s: ping: %v", what, err)
	}
}

func TestAdminSeesAndSteersEveryNode(t *testing.T) {
	srv := startNATS(t, "")
	n1, n2 := startNode(t, srv, func(c *sharedobject.Config) { c.NodeID = "n1" }), startNode(t, srv, func(c *sharedobject.Config) { c.NodeID = "n2" })
	admin := backend.NewAdmin(n1.nc)

	alice1 := dial(t, n1.url+"?user=alice", "")
	alice2 := dial(t, n2.url+"?user=alice", "")
	bob1 := dial(t, n1.url+"?user=bob", "")
	bob2 := dial(t, n2.url+"?user=bob", "")
	sub(t, alice1, "room/1", true)
	sub(t, bob1, "room/1", true)
	sub(t, bob1, "room/2", false)
	sub(t, alice2, "room/1", true)
	sub(t, bob2, "room/1", true)
	update(t, bob2, "room/1", true, set("topic", 0, "hi"))
	for _, c := range []*client.Conn{alice1, bob1, alice2} {
		nextSync(t, c)
	}

	// Every live node answers: the call returns at once, not when its timeout runs out.
	admin.Timeout = waitLimit
	start := time.Now()
	nodes, err := admin.Nodes(ctxT(t))
	if err != nil || len(nodes) != 2 || nodes[0].Node != "n1" || nodes[1].Node != "n2" {
		t.Fatalf("Nodes: %+v %v", nodes, err)
	}
	if took := time.Since(start); took > waitLimit/2 {
		t.Fatalf("Nodes took %v: it waited for its timeout although every node answered", took)
	}
	if a, b := nodes[0], nodes[1]; a.Connections != 2 || a.Subscriptions != 3 || a.Objects != 2 || b.Connections != 2 || b.Subscriptions != 2 || b.Objects != 1 {
		t.Fatalf("Nodes: %+v", nodes)
	}
	if nodes[0].Started.IsZero() || nodes[0].Uptime <= 0 {
		t.Fatalf("Nodes: no start time: %+v", nodes[0])
	}

	objs, err := admin.Objects(ctxT(t), backend.ObjectsQuery{Prefix: "room/"})
	if err != nil || len(objs) != 2 || objs[0].Node != "n1" || len(objs[0].Objects) != 2 || objs[0].Total != 2 {
		t.Fatalf("Objects: %+v %v", objs, err)
	}
	if o := objs[0].Objects[0]; o.Name != "room/1" || !o.Persistent || o.Subscribers != 2 || o.Version != 1 || o.Slots != 1 || o.Bytes == 0 {
		t.Fatalf("Objects n1: %+v", objs[0].Objects)
	}
	if o := objs[0].Objects[1]; o.Name != "room/2" || o.Persistent || o.Subscribers != 1 {
		t.Fatalf("Objects n1: %+v", objs[0].Objects)
	}
	if objs, err := admin.Objects(ctxT(t), backend.ObjectsQuery{Prefix: "room/2", Limit: 1}); err != nil || len(objs[0].Objects) != 1 || len(objs[1].Objects) != 0 {
		t.Fatalf("Objects with a prefix: %+v %v", objs, err)
	}

	snap, err := admin.Object(ctxT(t), backend.Persistent("room/1"))
	if err != nil || snap.Version != 1 || string(snap.Slots["topic"]) != `"hi"` || snap.Epoch == "" {
		t.Fatalf("Object: %+v %v", snap, err)
	}

	// Disconnect alice everywhere: her sessions end with the operator's code and reason, bob stays.
	closed, err := admin.Disconnect(ctxT(t), "alice", "", 0, "maintenance")
	if err != nil || closed["n1"] != 1 || closed["n2"] != 1 {
		t.Fatalf("Disconnect: %v %v", closed, err)
	}
	for _, c := range []*client.Conn{alice1, alice2} {
		if ce := closeCode(t, c); ce.Code != client.CloseOperator || ce.Text != "maintenance" {
			t.Fatalf("alice closed with %d %q", ce.Code, ce.Text)
		}
	}
	stillOpen(t, bob1, "bob on n1")
	stillOpen(t, bob2, "bob on n2")
	waitFor(t, "alice's sessions to go", func() bool {
		nodes, err := admin.Nodes(ctxT(t))
		return err == nil && len(nodes) == 2 && nodes[0].Connections == 1 && nodes[1].Connections == 1
	})

	// One session by its id, with a code of the caller's.
	closed, err = admin.Disconnect(ctxT(t), "", bob2.Hello().Session, 4321, "")
	if err != nil || closed["n1"] != 0 || closed["n2"] != 1 {
		t.Fatalf("Disconnect session: %v %v", closed, err)
	}
	if ce := closeCode(t, bob2); ce.Code != 4321 || ce.Text != "disconnected by an operator" {
		t.Fatalf("bob2 closed with %d %q", ce.Code, ce.Text)
	}
	stillOpen(t, bob1, "bob on n1")

	// Clear goes through the log: the subscriber is told, and the object is empty.
	v, err := admin.Clear(ctxT(t), backend.Persistent("room/1"))
	if err != nil || v != 2 {
		t.Fatalf("Clear: v%d %v", v, err)
	}
	if got := codes(nextSync(t, bob1)); got != `delete:topic(old "hi")` {
		t.Fatalf("bob saw %q", got)
	}
	if snap, err := backend.NewAPI(n2.nc).Get(ctxT(t), backend.Persistent("room/1")); err != nil || len(snap.Slots) != 0 || snap.Version != 2 {
		t.Fatalf("after Clear: %+v %v", snap, err)
	}
}

func TestAdminRefusesBadRequests(t *testing.T) {
	srv := startNATS(t, "")
	reg := prometheus.NewRegistry()
	n := startNode(t, srv, func(c *sharedobject.Config) { c.Registerer = reg })
	admin := backend.NewAdmin(n.nc)
	ask := func(op, body string) map[string]any {
		t.Helper()
		m, err := n.nc.RequestWithContext(ctxT(t), "rso.admin.so."+op, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		var rep map[string]any
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			t.Fatalf("%s: answer is not JSON: %q", op, m.Data)
		}
		return rep
	}
	code := func(rep map[string]any) string {
		e, _ := rep["error"].(map[string]any)
		c, _ := e["code"].(string)
		return c
	}
	for _, tc := range []struct{ op, body, code string }{
		{"nodes", `{"prefix":`, "bad_json"},
		{"objects", "{\"prefix\":\"\xff\"}", "bad_json"},
		{"objects", `{} {}`, "bad_json"},
		{"objects", `{"colour":1}`, "bad_frame"},
		{"objects", `{"limit":"ten"}`, "bad_frame"},
		{"objects", `{"limit":1001}`, "bad_frame"},
		{"disconnect", `{}`, "bad_frame"},
		{"disconnect", `{"user":"x","code":1000}`, "bad_frame"},
		{"object", `{"obj":"bad name","persistent":true}`, "bad_name"},
		{"clear", `[1]`, "bad_frame"},
	} {
		if got := code(ask(tc.op, tc.body)); got != tc.code {
			t.Errorf("%s %s: code %q, want %q", tc.op, tc.body, got, tc.code)
		}
	}
	if rep := ask("nodes", ""); rep["node"] == nil || rep["connections"] == nil {
		t.Errorf("nodes with an empty body: %v", rep)
	}
	_, err := admin.Disconnect(ctxT(t), "", "", 0, "")
	if !errors.Is(err, &backend.Error{Code: backend.CodeBadFrame}) {
		t.Fatalf("Disconnect of nobody: %v", err)
	}
	// Counted by op and result, beside the server API's requests.
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	got, err := metrics.Scrape(ms.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		labels []string
		value  float64
	}{
		{[]string{"op=admin.nodes", "result=ok"}, 1},
		{[]string{"op=admin.objects", "result=bad_json"}, 2},
		{[]string{"op=admin.disconnect", "result=bad_frame"}, 3},
		{nil, 12},
	} {
		if v := metrics.Sum(got, "rso_so_api_requests_total", w.labels...); v != w.value {
			t.Errorf("rso_so_api_requests_total%v = %v, want %v", w.labels, v, w.value)
		}
	}
}

func TestAdminNamesMissingNodes(t *testing.T) {
	srv := startNATS(t, "")
	n := startNode(t, srv, nil)
	// A node that is in RSO_NODES but does not answer (it died without removing its key).
	js, _ := jetstreamNew(t, n)
	if _, err := js.Put(ctxT(t), "ghost", []byte("x")); err != nil {
		t.Fatal(err)
	}
	admin := backend.NewAdmin(n.nc)
	admin.Timeout = 300 * time.Millisecond
	nodes, err := admin.Nodes(ctxT(t))
	var me *backend.MissingError
	if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0] != "ghost" || len(nodes) != 1 {
		t.Fatalf("Nodes: %+v %v", nodes, err)
	}
}

func jetstreamNew(t *testing.T, n *testNode) (jetstream.KeyValue, error) {
	js, err := jetstream.New(n.nc)
	if err != nil {
		t.Fatal(err)
	}
	return js.KeyValue(ctxT(t), "RSO_NODES")
}

// The admin page's two sources: objects by their recent changes (every replica counts the same, whichever
// node committed), and each node's own numbers from its metrics.
func TestAdminListsBusiestObjectsAndEachNodesNumbers(t *testing.T) {
	srv := startNATS(t, "")
	n1, n2 := startNode(t, srv, func(c *sharedobject.Config) { c.NodeID = "n1" }), startNode(t, srv, func(c *sharedobject.Config) { c.NodeID = "n2" })
	admin := backend.NewAdmin(n1.nc)
	a := dial(t, n1.url+"?user=alice", "")
	b := dial(t, n2.url+"?user=bob", "")
	sub(t, a, "quiet", true)
	sub(t, a, "busy", true)
	sub(t, b, "busy", true)
	sub(t, b, "quiet", true)
	sub(t, b, "crowd", true) // most subscribers on n2, no changes
	dial2 := dial(t, n2.url+"?user=carol", "")
	sub(t, dial2, "crowd", true)
	update(t, a, "quiet", true, set("x", 0, 1))
	for i := range 4 {
		update(t, b, "busy", true, set("x", uint64(i), i)) // committed on n2, counted on n1's replica too
	}
	waitFor(t, "n1 to apply bob's writes", func() bool {
		objs, err := admin.Objects(ctxT(t), backend.ObjectsQuery{ByRate: true})
		return err == nil && len(objs[0].Objects) == 2 && objs[0].Objects[0].Version == 4
	})
	objs, err := admin.Objects(ctxT(t), backend.ObjectsQuery{ByRate: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, no := range objs {
		if o := no.Objects[0]; o.Name != "busy" || o.ChangesLastMinute != 4 {
			t.Errorf("%s by rate: first %s with %d changes, want busy with 4: %+v", no.Node, o.Name, o.ChangesLastMinute, no.Objects)
		}
	}
	if o := objs[1].Objects; len(o) != 3 || o[2].Name != "crowd" || o[2].ChangesLastMinute != 0 {
		t.Errorf("n2 by rate: %+v, want crowd last", o)
	}
	if objs, err := admin.Objects(ctxT(t), backend.ObjectsQuery{}); err != nil || objs[1].Objects[0].Name != "crowd" {
		t.Errorf("n2 by subscribers: %+v %v, want crowd first", objs, err)
	}

	stats, err := admin.Stats(ctxT(t))
	if err != nil || len(stats) != 2 || stats[0].Node != "n1" || stats[1].Node != "n2" || time.Since(stats[0].At) > waitLimit {
		t.Fatalf("Stats: %+v %v", stats, err)
	}
	commits := func(s backend.NodeStats) float64 {
		var m map[string][]metrics.Series
		if err := json.Unmarshal(s.Metrics, &m); err != nil {
			t.Fatalf("%s's metrics: %v", s.Node, err)
		}
		if h := m["rso_so_commit_duration_seconds"]; len(h) != 1 || len(h[0].Buckets) == 0 || h[0].Value != m["rso_so_commits_total"][0].Value {
			t.Errorf("%s's commit latency %+v: want a histogram with as many writes as commits (%+v)", s.Node, h, m["rso_so_commits_total"])
		}
		return m["rso_so_commits_total"][0].Value
	}
	if c1, c2 := commits(stats[0]), commits(stats[1]); c1 != 1 || c2 != 4 {
		t.Errorf("commits: n1 %v, n2 %v; want 1 and 4", c1, c2)
	}
}
