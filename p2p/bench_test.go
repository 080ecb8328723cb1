package p2p_test

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
)

// BenchmarkSendStoreDeliver measures private messages end to end: client → relay (node 1) → messaging
// service → JetStream (stored, file storage) → "sent" to the sender and the message to the recipient on
// relay node 2. Senders pipeline their frames; each pair is its own conversation. Reported as msgs/s
// (stored and delivered), for the load tool to compare against.
func BenchmarkSendStoreDeliver(b *testing.B) {
	for _, pairs := range []int{1, 8} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) { benchSend(b, pairs) })
	}
}

func benchSend(b *testing.B, pairs int) {
	c := newCluster(b, 2, "", func(_ *messaging.Config, r *relay.Config) {
		r.Limits.MessagesPerSecond = 1e9
		r.Limits.FramesPerSecond = 1e9
		r.Limits.OutboundBytes = 64 << 20
	})
	type pair struct {
		from, to       *websocket.Conn
		sent, received atomic.Int64
	}
	ps := make([]*pair, pairs)
	var readers sync.WaitGroup
	for i := range ps {
		p := &pair{from: benchDial(b, c.nodes[0], fmt.Sprintf("s%d", i)), to: benchDial(b, c.nodes[1], fmt.Sprintf("r%d", i))}
		ps[i] = p
		for _, side := range []struct {
			ws    *websocket.Conn
			count *atomic.Int64
			op    []byte
		}{{p.from, &p.sent, []byte(`"op":"sent"`)}, {p.to, &p.received, []byte(`"op":"message"`)}} {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					_, msg, err := side.ws.ReadMessage()
					if err != nil {
						return
					}
					if bytes.Contains(msg, []byte(`"op":"error"`)) {
						b.Errorf("error frame: %s", msg)
					}
					side.count.Add(int64(bytes.Count(msg, side.op)))
				}
			}()
		}
	}
	per := (b.N + pairs - 1) / pairs
	body := `{"text":"` + strings.Repeat("x", 100) + `"}`
	b.ResetTimer()
	start := time.Now()
	var writers sync.WaitGroup
	for i, p := range ps {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for n := range per {
				f := fmt.Sprintf(`{"op":"send","id":"b%d-%d","to":"r%d","body":%s}`, i, n, i, body)
				if err := p.from.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	writers.Wait()
	deadline := time.Now().Add(time.Minute)
	for _, p := range ps {
		for p.sent.Load() < int64(per) || p.received.Load() < int64(per) {
			if time.Now().After(deadline) || b.Failed() {
				b.Fatalf("sent %d, received %d of %d", p.sent.Load(), p.received.Load(), per)
			}
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(per*pairs)/elapsed.Seconds(), "msgs/s")
	for _, p := range ps {
		p.from.Close()
		p.to.Close()
	}
	readers.Wait()
}

func benchDial(b *testing.B, n *node, user string) *websocket.Conn {
	ws, _, err := websocket.DefaultDialer.Dial(n.wsURL+"?"+url.Values{"user": {user}}.Encode(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || !bytes.Contains(msg, []byte(`"op":"hello"`)) {
		b.Fatalf("hello: %s %v", msg, err)
	}
	return ws
}
