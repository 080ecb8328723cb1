package sharedobject_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/sharedobject"
	"github.com/rso-server/rso/sharedobject/backend"
)

// At-most-once never lies (docs/PROTOCOL.md §1.6): a remembered id answers only a retry of the same request.

func wireCode(err error) string {
	var se *client.ServerError
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

func TestSameIDWithOtherChangesIsRefused(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url+"?user=alice", "")
	sub(t, a, "doc", true)
	if s, err := a.UpdateWithID(ctxT(t), "req-1", "doc", true, []client.Change{set("title", 0, "first")}); err != nil || codes(s) != "success:title" {
		t.Fatalf("first update: %v %q", err, codes(s))
	}
	// A reloaded page whose id counter started over: same id, another request.
	_, err := a.UpdateWithID(ctxT(t), "req-1", "doc", true, []client.Change{set("body", 1, "second")})
	if wireCode(err) != backend.CodeIDReused {
		t.Fatalf("same id with other changes answered %v; want error %s", err, backend.CodeIDReused)
	}
	// Nothing of it was stored, and the real retry is still answered as one.
	b := dial(t, n.url, "")
	if s := sub(t, b, "doc", true); s.Version != 1 || codes(s) != `clear change:title="first"` {
		t.Fatalf("object after the refused request: v%d %q; want v1 with title only", s.Version, codes(s))
	}
	if s, err := a.UpdateWithID(ctxT(t), "req-1", "doc", true, []client.Change{set("title", 0, "first")}); err != nil || codes(s) != "success:title" || s.Version != 1 {
		t.Fatalf("retry of the original: %v %q v%d; want success at v1", err, codes(s), s.Version)
	}
}

func TestUnnamedAnonymousClientsHaveTheirOwnIDs(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	// Two newcomers following the README word for word: both use id "1".
	a, b := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, a, "board", true)
	sub(t, b, "board", true)
	if s, err := a.UpdateWithID(ctxT(t), "1", "board", true, []client.Change{set("a", 0, 1)}); err != nil || codes(s) != "success:a" {
		t.Fatalf("a: %v %q", err, codes(s))
	}
	s, err := b.UpdateWithID(ctxT(t), "1", "board", true, []client.Change{set("b", 1, 2)})
	if err != nil || codes(s) != "success:b" || s.Version != 2 {
		t.Fatalf("b: %v %q v%d; want its own commit at v2", err, codes(s), s.Version)
	}
	c := dial(t, n.url, "")
	if s := sub(t, c, "board", true); codes(s) != "clear change:a=1 change:b=2" {
		t.Fatalf("object holds %q; want both writes", codes(s))
	}
}

func TestRetryIsRecognisedAfterThousandsOfWrites(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.Limits.FramesPerSecond = 1e6 })
	a := dial(t, n.url+"?user=bidder", "")
	sub(t, a, "auction/9", true)
	if s, err := a.UpdateWithID(ctxT(t), "bid-0", "auction/9", true, []client.Change{set("price", 0, 1)}); err != nil || codes(s) != "success:price" {
		t.Fatalf("first bid: %v %q", err, codes(s))
	}
	// A busy object: far more than 1,000 requests within seconds.
	version := uint64(1)
	for i := 1; i <= 1500; i++ {
		s, err := a.UpdateWithID(ctxT(t), fmt.Sprintf("bid-%d", i), "auction/9", true, []client.Change{set("price", version, i+1)})
		if err != nil {
			t.Fatalf("bid %d: %v", i, err)
		}
		if codes(s) != "success:price" {
			t.Fatalf("bid %d: %q", i, codes(s))
		}
		version = s.Version
	}
	s, err := a.UpdateWithID(ctxT(t), "bid-0", "auction/9", true, []client.Change{set("price", 0, 1)})
	if err != nil || codes(s) != "success:price" || s.Version != version {
		t.Fatalf("retry of the first bid: %v %q v%d; want its success at v%d", err, codes(s), s.Version, version)
	}
}

func TestFullRequestMemoryAnswersBusy(t *testing.T) {
	// Room for a few records: the object must refuse rather than forget an id inside the window.
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.Limits.MaxRememberedBytes = 5 * 34 })
	a := dial(t, n.url+"?user=u", "")
	sub(t, a, "o", true)
	var busy error
	version := uint64(0)
	for i := 0; i < 10 && busy == nil; i++ {
		s, err := a.UpdateWithID(ctxT(t), fmt.Sprintf("r-%d", i), "o", true, []client.Change{set("n", version, i)})
		if err != nil {
			busy = err
			break
		}
		version = s.Version
	}
	if wireCode(busy) != backend.CodeBusy || version != 5 {
		t.Fatalf("after v%d: %v; want busy once 5 requests are remembered", version, busy)
	}
	if s, err := a.UpdateWithID(ctxT(t), "r-0", "o", true, []client.Change{set("n", 0, 0)}); err != nil || codes(s) != "success:n" {
		t.Fatalf("retry of the first request: %v %q; want it still remembered", err, codes(s))
	}
}

func TestSendWithReusedIDIsRefused(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url+"?user=alice", "")
	b := dial(t, n.url, "")
	sub(t, a, "chat", false)
	sub(t, b, "chat", false)
	a.WriteRaw([]byte(`{"op":"send","obj":"chat","persistent":false,"id":"m-1","handler":"say","args":["hi"]}`))
	a.WriteRaw([]byte(`{"op":"send","obj":"chat","persistent":false,"id":"m-1","handler":"say","args":["other text"]}`))
	a.WriteRaw([]byte(`{"op":"send","obj":"chat","persistent":false,"id":"m-1","handler":"say","args":["hi"]}`))
	a.WriteRaw([]byte(`{"op":"send","obj":"chat","persistent":false,"id":"m-2","handler":"say","args":["end"]}`))
	var seen []string
	for len(seen) < 2 || seen[len(seen)-1] != `["end"]` {
		select {
		case ev := <-b.Events():
			if ev.Message != nil {
				seen = append(seen, string(ev.Message.Args))
			}
		case <-time.After(waitLimit):
			t.Fatalf("b got %v", seen)
		}
	}
	if fmt.Sprint(seen) != `[["hi"] ["end"]]` {
		t.Fatalf("b got %v; want the message once, and not the other one sent under its id", seen)
	}
	var codesSeen []string
	for len(codesSeen) < 4 {
		select {
		case ev := <-a.Events():
			switch {
			case ev.Message != nil:
				codesSeen = append(codesSeen, "message:"+ev.Message.ID)
			case ev.Error != nil:
				codesSeen = append(codesSeen, ev.Error.Code+":"+ev.Error.ID)
			}
		case <-time.After(waitLimit):
			t.Fatalf("a got %v", codesSeen)
		}
	}
	slices.Sort(codesSeen) // a refusal is answered when judged, before the entry it was judged with commits
	if want := "[id_reused:m-1 message:m-1 message:m-1 message:m-2]"; fmt.Sprint(codesSeen) != want {
		t.Fatalf("sender got %v; want %s", codesSeen, want)
	}
}

func TestBaseAboveTheVersionIsRefused(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "o", true)
	update(t, a, "o", true, set("n", 0, 1))
	_, err := a.Update(ctxT(t), "o", true, []client.Change{set("n", 7, 2)})
	if wireCode(err) != backend.CodeBadFrame {
		t.Fatalf("base 7 on an object at v1 answered %v; want bad_frame", err)
	}
	b := dial(t, n.url, "")
	if s := sub(t, b, "o", true); s.Version != 1 {
		t.Fatalf("object at v%d after the refusal; want v1", s.Version)
	}
}
