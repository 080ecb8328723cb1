package sharedobject_test

import (
	"strings"
	"testing"

	"github.com/rso-server/rso/client"
)

// These tests pin down the contract of docs/PROTOCOL.md §1 (ARCHITECTURE §4) end to end.

func TestFirstConnectIsClearPlusFullState(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	s := sub(t, a, "room/1", true)
	if codes(s) != "clear" || s.Version != 0 {
		t.Fatalf("empty object: got %q at v%d, want clear at v0", codes(s), s.Version)
	}
	update(t, a, "room/1", true, set("topic", 0, "hi"), set("n", 0, 1))
	b := dial(t, n.url, "")
	s = sub(t, b, "room/1", true)
	if got := codes(s); got != "clear change:n=1 change:topic=\"hi\"" || s.Version != 1 {
		t.Fatalf("got %q at v%d, want clear + both slots at v1", got, s.Version)
	}
}

func TestChangerGetsSuccessOthersGetChange(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a, b := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, a, "o", false)
	sub(t, b, "o", false)

	r := update(t, a, "o", false, set("x", 0, 1), set("y", 0, map[string]int{"k": 2}))
	if codes(r) != "success:x success:y" || r.Version != 1 {
		t.Fatalf("changer got %q v%d", codes(r), r.Version)
	}
	if got := nextSync(t, b); codes(got) != `change:x=1 change:y={"k":2}` || got.Version != 1 {
		t.Fatalf("other got %q v%d", codes(got), got.Version)
	}
	update(t, a, "o", false, set("x", 1, 5), del("y", 1))
	if got := codes(nextSync(t, b)); got != `delete:y(old {"k":2}) change:x=5(old 1)` {
		t.Fatalf("other got %q", got)
	}
	// The changer is not also told of its own change: its next event is someone else's.
	update(t, b, "o", false, set("z", 2, true))
	if got := codes(nextSync(t, a)); got != "change:z=true" {
		t.Fatalf("changer's next event: %q", got)
	}
}

func TestSettingCurrentValueProducesNoEvent(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a, b := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, a, "o", false)
	sub(t, b, "o", false)
	update(t, a, "o", false, set("x", 0, []int{1, 2}))
	nextSync(t, b)

	// Same value, written with other white space: a no-op, not committed.
	r, err := a.Update(ctxT(t), "o", false, []client.Change{{Name: "x", Base: 1, Value: []byte("[1, 2]")}})
	if err != nil || len(r.Changes) != 0 || r.Version != 1 {
		t.Fatalf("no-op answer: %+v %v; want no entries at v1", r, err)
	}
	update(t, a, "o", false, set("y", 1, 0))
	if got := nextSync(t, b); codes(got) != "change:y=0" || got.Version != 2 {
		t.Fatalf("b's next event %q v%d; the no-op must not have produced one", codes(got), got.Version)
	}
}

func TestConflictRejectsWithCurrentValue(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a, b := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, a, "o", true)
	sub(t, b, "o", true)
	update(t, a, "o", true, set("price", 0, 10), set("other", 0, "x"))
	nextSync(t, b)

	update(t, a, "o", true, set("price", 1, 11))
	// b still thinks it is at version 1: price conflicts, "fresh" (untouched since) is accepted.
	r := update(t, b, "o", true, set("price", 1, 12), set("fresh", 1, true))
	if got := codes(r); got != "success:fresh reject:price=11" || r.Version != 3 {
		t.Fatalf("got %q v%d; want price rejected with the current value and fresh accepted at v3", got, r.Version)
	}
	if r.Changes[1].Reason != "conflict" {
		t.Fatalf("reason %q, want conflict", r.Changes[1].Reason)
	}
}

func TestSendReachesEveryoneInOrderWithChanges(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a, b := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, a, "chat", false)
	sub(t, b, "chat", false)
	id, err := a.Send("chat", false, "say", "alice", "hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a, b} {
		ev := next(t, c)
		if ev.Message == nil || ev.Message.Handler != "say" || string(ev.Message.Args) != `["alice","hello"]` || ev.Message.ID != id || ev.Message.From == "" {
			t.Fatalf("want the message, got %s", describe(ev))
		}
	}
	// A change then a message: everybody sees them in that order.
	if _, err := a.Update(ctxT(t), "chat", false, []client.Change{set("topic", 0, "t")}); err != nil {
		t.Fatal(err)
	}
	a.Send("chat", false, "say", "after")
	if got := codes(nextSync(t, b)); got != `change:topic="t"` {
		t.Fatalf("first %q", got)
	}
	if ev := next(t, b); ev.Message == nil || string(ev.Message.Args) != `["after"]` {
		t.Fatalf("second: %s", describe(ev))
	}
}

func TestNamespacesAreSeparate(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "same", true)
	sub(t, a, "same", false)
	update(t, a, "same", true, set("k", 0, "persistent"))
	b := dial(t, n.url, "")
	if s := sub(t, b, "same", false); codes(s) != "clear" {
		t.Fatalf("temporary namespace saw %q", codes(s))
	}
	if s := sub(t, b, "same", true); codes(s) != `clear change:k="persistent"` {
		t.Fatalf("persistent namespace saw %q", codes(s))
	}
}

func TestResentMessageIsDeliveredOnce(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a, b := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, a, "chat", true)
	sub(t, b, "chat", true)
	frame := []byte(`{"op":"send","obj":"chat","persistent":true,"id":"m-1","handler":"say","args":["once"]}`)
	a.WriteRaw(frame)
	a.WriteRaw(frame) // a retry after a reconnect carries the same id
	a.Send("chat", true, "say", "next")
	// The retry is confirmed to the sender once the original is stored: right then, or after the entry that
	// holds the original (and "next", when it was committed with it).
	var got []string
	for range 3 {
		ev := next(t, a)
		if ev.Message == nil {
			t.Fatalf("sender got %s, want messages", describe(ev))
		}
		got = append(got, string(ev.Message.Args))
	}
	if s := strings.Join(got, " "); s != `["once"] ["once"] ["next"]` && s != `["once"] ["next"] ["once"]` {
		t.Fatalf("sender got %s; want the message, its confirmation and the next one", s)
	}
	for i, want := range []string{`["once"]`, `["next"]`} {
		if ev := next(t, b); ev.Message == nil || string(ev.Message.Args) != want {
			t.Fatalf("other event %d: %s, want %s", i, describe(ev), want)
		}
	}
}
