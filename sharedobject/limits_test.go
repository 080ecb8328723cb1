package sharedobject_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/sharedobject"
)

// Bad input gets an error frame with a stable code, the object is untouched and the connection stays up.

func TestBadFramesGetErrorsAndChangeNothing(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) {
		c.Limits = sharedobject.Limits{MaxFrameBytes: 4096, MaxValueBytes: 100, MaxSlots: 3, MaxChanges: 4, MaxSubscriptions: 2, MaxObjectBytes: 250}
	})
	c := dial(t, n.url, "")
	sub(t, c, "o", true)
	update(t, c, "o", true, set("a", 0, 1))
	long := strings.Repeat("x", 201)
	cases := []struct {
		name  string
		frame string
		code  string
	}{
		{"not JSON", `{"op":"sub",`, "bad_json"},
		{"not an object", `[1,2]`, "bad_json"},
		{"no op", `{"obj":"o"}`, "bad_frame"},
		{"unknown op", `{"op":"explode","obj":"o","id":"x1"}`, "unknown_op"},
		{"op of wrong type", `{"op":5}`, "bad_frame"},
		{"object name with a space", `{"op":"sub","obj":"a b"}`, "bad_name"},
		{"empty object name", `{"op":"sub","obj":""}`, "bad_name"},
		{"object name too long", `{"op":"sub","obj":"` + long + `"}`, "bad_name"},
		{"slot name with control char", `{"op":"update","obj":"o","persistent":true,"id":"x2","changes":[{"name":"a\u0001","base":1,"value":1}]}`, "bad_name"},
		{"update without id", `{"op":"update","obj":"o","persistent":true,"changes":[{"name":"a","base":1,"value":2}]}`, "bad_frame"},
		{"change without base", `{"op":"update","obj":"o","persistent":true,"id":"x3","changes":[{"name":"a","value":2}]}`, "bad_frame"},
		{"negative base", `{"op":"update","obj":"o","persistent":true,"id":"x4","changes":[{"name":"a","base":-1,"value":2}]}`, "bad_frame"},
		{"value and delete", `{"op":"update","obj":"o","persistent":true,"id":"x5","changes":[{"name":"a","base":1,"value":2,"delete":true}]}`, "bad_frame"},
		{"slot twice", `{"op":"update","obj":"o","persistent":true,"id":"x6","changes":[{"name":"a","base":1,"value":2},{"name":"a","base":1,"value":3}]}`, "bad_frame"},
		{"no changes", `{"op":"update","obj":"o","persistent":true,"id":"x7","changes":[]}`, "bad_frame"},
		{"too many changes", `{"op":"update","obj":"o","persistent":true,"id":"x8","changes":[` + changesJSON(5) + `]}`, "too_many_changes"},
		{"value too large", `{"op":"update","obj":"o","persistent":true,"id":"x9","changes":[{"name":"a","base":1,"value":"` + strings.Repeat("v", 120) + `"}]}`, "value_too_large"},
		{"frame too large", `{"op":"send","obj":"o","persistent":true,"id":"x10","handler":"h","args":["` + strings.Repeat("v", 5000) + `"]}`, "frame_too_large"},
		{"too many slots", `{"op":"update","obj":"o","persistent":true,"id":"x11","changes":[` + changesJSON(3) + `]}`, "too_many_slots"},
		{"object too large", `{"op":"update","obj":"o","persistent":true,"id":"x12","changes":[{"name":"b","base":1,"value":"` + strings.Repeat("v", 90) + `"},{"name":"c","base":1,"value":"` + strings.Repeat("v", 90) + `"},{"name":"a","base":1,"value":"` + strings.Repeat("v", 90) + `"}]}`, "object_too_large"},
		{"args not an array", `{"op":"send","obj":"o","persistent":true,"handler":"h","args":{}}`, "bad_frame"},
		{"update without sub", `{"op":"update","obj":"other","persistent":true,"id":"x13","changes":[{"name":"a","base":0,"value":1}]}`, "not_subscribed"},
		{"send without sub", `{"op":"send","obj":"other","handler":"h","args":[]}`, "not_subscribed"},
	}
	for _, tc := range cases {
		if err := c.WriteRaw([]byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		ev := next(t, c)
		if ev.Error == nil || ev.Error.Code != tc.code || ev.Error.Message == "" {
			t.Errorf("%s: got %s, want error %s", tc.name, describe(ev), tc.code)
		}
	}
	// The object is as it was, and the connection still works.
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatalf("connection unusable after bad frames: %v", err)
	}
	other := dial(t, n.url, "")
	if s := sub(t, other, "o", true); codes(s) != "clear change:a=1" || s.Version != 1 {
		t.Fatalf("object changed by refused frames: %q v%d", codes(s), s.Version)
	}
	sub(t, c, "second", true)
	_, err := c.Subscribe(ctxT(t), "third", true, 0, "")
	if se := serverErr(t, err); se.Code != "too_many_subscriptions" {
		t.Fatalf("third subscription: %v", se)
	}
}

func changesJSON(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, `{"name":"s`+string(rune('a'+i))+`","base":1,"value":1}`)
	}
	return strings.Join(parts, ",")
}

func TestFloodIsRateLimitedThenDisconnected(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.Limits.FramesPerSecond = 5 })
	c := dial(t, n.url, "")
	// A burst over the limit: some frames are refused with rate_limited, the connection stays.
	for range 20 {
		c.WriteRaw([]byte(`{"op":"ping"}`))
	}
	limited := 0
	for limited == 0 {
		if ev := next(t, c); ev.Error != nil && ev.Error.Code == "rate_limited" {
			limited++
		}
	}
	// Abuse that goes on (well past the error budget) ends the connection with 4009.
	for range 400 {
		if c.WriteRaw([]byte(`{"op":"ping"}`)) != nil {
			break
		}
	}
	for {
		select {
		case <-c.Events():
			continue
		case <-c.Done():
		}
		break
	}
	var ce *client.CloseError
	if !errors.As(c.CloseErr(), &ce) || ce.Code != 4009 {
		t.Fatalf("closed with %v, want 4009", c.CloseErr())
	}
}

func TestSlowConsumerIsDisconnectedOthersUnaffected(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.Limits.OutboundBytes = 2 << 20 })
	// A raw client that subscribes and then never reads.
	slow, _, err := websocket.DefaultDialer.Dial(n.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.WriteMessage(websocket.TextMessage, []byte(`{"op":"sub","obj":"feed","id":"s"}`))
	fast, writer := dial(t, n.url, ""), dial(t, n.url, "")
	sub(t, fast, "feed", false)
	sub(t, writer, "feed", false)
	big := strings.Repeat("z", 60<<10)
	var version uint64
	const updates = 300 // 18 MB: more than the socket buffers can hide
	go func() {
		for i := range updates {
			s, err := writer.Update(ctxT(t), "feed", false, []client.Change{set("blob", version, big[:len(big)-i%2])})
			if err != nil {
				return
			}
			version = s.Version
		}
	}()
	for got := 0; got < updates; {
		if s := nextSync(t, fast); len(s.Changes) == 1 {
			got++
		}
	}
	// The slow client was cut off before it got everything: its socket ends (with close code 4008 if
	// the close frame got through), and a read deadline turns "never closed" into a failure.
	slow.SetReadDeadline(time.Now().Add(waitLimit))
	received := 0
	for {
		_, msg, err := slow.ReadMessage()
		if err == nil {
			received += strings.Count(string(msg), `"blob"`)
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != 4008 {
			t.Fatalf("slow client closed with %d, want 4008", ce.Code)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("slow client was never disconnected")
		}
		break
	}
	if received >= updates {
		t.Fatalf("slow client received all %d updates; it should have been cut off", received)
	}
}

func TestTokensDecideAccess(t *testing.T) {
	secret := []byte("test-secret")
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.Auth = auth.NewVerifier(secret) })
	tok, err := auth.Issue(secret, auth.Claims{User: "alice", Read: []string{"room/*"}, Write: []string{"room/mine"}})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, n.url, tok)
	if c.Hello().User != "alice" {
		t.Fatalf("hello user %q", c.Hello().User)
	}
	sub(t, c, "room/mine", true)
	sub(t, c, "room/other", true)
	update(t, c, "room/mine", true, set("a", 0, 1))
	if _, err := c.Update(ctxT(t), "room/other", true, []client.Change{set("a", 0, 1)}); serverErr(t, err).Code != "forbidden" {
		t.Fatalf("write without permission: %v", err)
	}
	if _, err := c.Subscribe(ctxT(t), "secret/x", true, 0, ""); serverErr(t, err).Code != "forbidden" {
		t.Fatalf("read without permission: %v", err)
	}
	// No token, or a token signed with another secret: the upgrade is refused.
	for _, bad := range []string{"", "not-a-token"} {
		if _, err := client.Dial(ctxT(t), n.url, client.Options{Token: bad}); err == nil {
			t.Fatalf("dial with token %q succeeded", bad)
		}
	}
	other, _ := auth.Issue([]byte("other"), auth.Claims{User: "mallory", Read: []string{"**"}})
	if _, err := client.Dial(ctxT(t), n.url, client.Options{Token: other}); err == nil {
		t.Fatal("dial with a token of another secret succeeded")
	}
}

func TestExpiredTokenClosesConnectionWith4003(t *testing.T) {
	secret := []byte("test-secret-0123456789")
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.Auth = auth.NewVerifier(secret) })
	tok, err := auth.Issue(secret, auth.Claims{User: "bob", Read: []string{"**"}, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, n.url, tok)
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("connection outlived its token")
	}
	var ce *client.CloseError
	if !errors.As(c.CloseErr(), &ce) || ce.Code != 4003 {
		t.Fatalf("closed with %v, want 4003", c.CloseErr())
	}
}
