package jsread

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stream starts an embedded NATS with JetStream and a stream "S" on "s.>" that allows direct gets.
func stream(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func publish(t *testing.T, js jetstream.JetStream, subject, data string) uint64 {
	t.Helper()
	ack, err := js.Publish(ctx(t), subject, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func TestDirectGets(t *testing.T) {
	nc, js := stream(t)
	publish(t, js, "s.a", "a1")
	b1 := publish(t, js, "s.b", "b1")
	publish(t, js, "s.a", "a2")

	if m, err := Last(ctx(t), nc, "S", "s.a"); err != nil || m == nil || string(m.Data) != "a2" || m.Subject != "s.a" || m.Seq != 3 {
		t.Errorf("Last s.a: %+v, %v", m, err)
	}
	if m, err := Last(ctx(t), nc, "S", "s.none"); err != nil || m != nil {
		t.Errorf("Last of a subject without messages: %+v, %v; want nil, nil", m, err)
	}
	if m, err := BySeq(ctx(t), nc, "S", b1); err != nil || m == nil || string(m.Data) != "b1" {
		t.Errorf("BySeq %d: %+v, %v", b1, m, err)
	}
	subjects := []string{"s.b", "s.none", "s.a"}
	for range 100 { // more than one window in flight
		subjects = append(subjects, "s.a")
	}
	ms, err := LastMany(ctx(t), nc, "S", subjects)
	if err != nil || len(ms) != len(subjects) {
		t.Fatalf("LastMany: %d answers, %v", len(ms), err)
	}
	if string(ms[0].Data) != "b1" || ms[1] != nil || string(ms[2].Data) != "a2" || string(ms[len(ms)-1].Data) != "a2" {
		t.Errorf("LastMany: %+v %+v %+v", ms[0], ms[1], ms[2])
	}
}

// Range reads every message of one subject in order, across batches, and says where to go on.
func TestRangeReadsAcrossBatches(t *testing.T) {
	nc, js := stream(t)
	const n = batch*2 + 7
	for i := range n {
		publish(t, js, "s.log", fmt.Sprint(i))
		if i%100 == 0 {
			publish(t, js, "s.other", "x")
		}
	}
	var got []string
	var last uint64
	next, err := Range(ctx(t), nc, "S", "s.log", 1, func(seq uint64, data []byte) {
		if seq <= last {
			t.Fatalf("sequence %d after %d", seq, last)
		}
		last = seq
		got = append(got, string(data))
	})
	if err != nil || len(got) != n || got[0] != "0" || got[n-1] != fmt.Sprint(n-1) || next != last+1 {
		t.Fatalf("Range: %d messages (first %q), next %d after %d, %v", len(got), got[0], next, last, err)
	}
	more := 0
	if next2, err := Range(ctx(t), nc, "S", "s.log", next, func(uint64, []byte) { more++ }); err != nil || more != 0 || next2 != next {
		t.Errorf("Range from the end: %d messages, next %d, %v", more, next2, err)
	}
}

func TestLeaderGets(t *testing.T) {
	nc, js := stream(t)
	publish(t, js, "s.a", "a1")
	publish(t, js, "s.b", "b1")
	a2 := publish(t, js, "s.a", "a2")
	for _, tc := range []struct {
		q    Query
		want string
	}{
		{Query{LastBySubject: "s.a"}, "a2"},
		{Query{Seq: 2, NextBySubject: "s.a"}, "a2"},
		{Query{Seq: 2}, "b1"},
		{Query{LastBySubject: "s.none"}, ""},
		{Query{Seq: a2 + 1, NextBySubject: "s.a"}, ""},
	} {
		m, err := Leader(ctx(t), nc, "S", tc.q)
		switch {
		case err != nil:
			t.Errorf("%+v: %v", tc.q, err)
		case tc.want == "" && m != nil:
			t.Errorf("%+v: %+v, want none", tc.q, m)
		case tc.want != "" && (m == nil || string(m.Data) != tc.want):
			t.Errorf("%+v: %+v, want %q", tc.q, m, tc.want)
		}
	}
}

// A KV delete marker reads as Deleted through both kinds of get.
func TestDeletedKeys(t *testing.T) {
	nc, js := stream(t)
	kv, err := js.CreateKeyValue(ctx(t), jetstream.KeyValueConfig{Bucket: "B"})
	if err != nil {
		t.Fatal(err)
	}
	kv.Put(ctx(t), "k", []byte("v"))
	kv.Put(ctx(t), "live", []byte("v"))
	kv.Delete(ctx(t), "k")
	for _, key := range []string{"k", "live"} {
		d, err := Last(ctx(t), nc, "KV_B", "$KV.B."+key)
		if err != nil || d == nil || d.Deleted != (key == "k") {
			t.Errorf("direct get of %s: %+v, %v", key, d, err)
		}
		l, err := Leader(ctx(t), nc, "KV_B", Query{LastBySubject: "$KV.B." + key})
		if err != nil || l == nil || l.Deleted != (key == "k") {
			t.Errorf("leader get of %s: %+v, %v", key, l, err)
		}
	}
}
