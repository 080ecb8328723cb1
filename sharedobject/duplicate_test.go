package sharedobject_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/sharedobject/internal/model"
)

// A message stored twice in the log (as a retried send can be around a JetStream leader change) is
// delivered once: the replica remembers its id and skips the copy, and so does every other replica.
func TestMessageStoredTwiceIsDeliveredOnce(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "chat", true)

	js, _ := jetstream.New(n.nc)
	subject := "rso.so.p." + base64.RawURLEncoding.EncodeToString([]byte("chat"))
	msg := func(id, text string) []byte {
		return model.EncodeEntry(time.Now().UnixMilli(), []model.Op{{Msg: &model.Message{ID: id, User: "bob", Handler: "say", Args: []byte(`["` + text + `"]`)}}})
	}
	for _, entry := range [][]byte{msg("m1", "hi"), msg("m1", "hi"), msg("m2", "bye")} {
		if _, err := js.Publish(ctxT(t), subject, entry); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for len(got) < 2 { // m2 comes after any copy of m1
		if ev := next(t, a); ev.Message != nil {
			got = append(got, ev.Message.ID)
		}
	}
	if got[0] != "m1" || got[1] != "m2" {
		t.Fatalf("delivered %v, want [m1 m2]", got)
	}
}
