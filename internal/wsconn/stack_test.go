//go:build !race

package wsconn

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// An idle upgraded connection costs one small goroutine stack, also after it has handled messages and
// answered keep-alive pings (whose pongs the reader consumes itself). Without the race detector, which
// grows every stack.
func TestIdleConnectionsKeepSmallStacks(t *testing.T) {
	const n = 400
	var handled sync.WaitGroup
	handled.Add(n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := New(ws, Options{MaxMessageBytes: 1 << 20, OutboundBytes: 1 << 20})
		c.Serve(func(f []byte) {
			var deep func(int) int // a handler that needs a deep stack, like subscribing to an object
			deep = func(d int) int {
				var pad [256]byte
				if d == 0 {
					return int(pad[0])
				}
				return deep(d-1) + int(pad[d%256])
			}
			deep(8) // grows the handling goroutine's stack to 4 KB
			handled.Done()
		}, func(error) {})
	}))
	defer srv.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	var peers []*websocket.Conn
	for range n {
		p, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
		p.WriteMessage(websocket.TextMessage, []byte(`{"op":"sub"}`))
		p.WriteMessage(websocket.PongMessage, nil)
	}
	defer func() {
		for _, p := range peers {
			p.Close()
		}
	}()
	handled.Wait()
	time.Sleep(idleLinger + 500*time.Millisecond) // the quiet readers hand their wait to fresh goroutines
	runtime.GC()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perConn := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("goroutine stack per idle connection: %d bytes (%d goroutines more)", perConn, runtime.NumGoroutine()-g0)
	if perConn > 3400 { // 4 KB stacks and more would be over; the runtime's adaptive starting size adds noise
		t.Errorf("goroutine stack per idle connection: %d bytes, want about 2 KB (one smallest stack)", perConn)
	}
}
