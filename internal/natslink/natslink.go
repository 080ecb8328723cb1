// Package natslink tells a service when its NATS connection drops and when it is back, through nats.go's
// status listeners. Every service on a shared connection watches it on its own: none wraps another's
// callback, and the order in which they were started does not matter.
package natslink

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// Watch calls down when the connection is lost and up when it is back, alternately and in order, on a
// goroutine of its own, until stop is called. A connection already down when Watch starts counts as lost.
// nats.go reports the reconnect while it still holds the connection's lock, before it sends the
// subscriptions again, so whatever up publishes or requests goes out after them; a reconnect that fails
// right after is reported as lost again (down, then up once more). Both must return quickly (start a
// goroutine for slow work): nats.go drops status events while a listener's buffer is full. stop must not
// be called from down or up.
func Watch(nc *nats.Conn, down, up func()) (stop func()) {
	events := nc.StatusChanged(nats.RECONNECTING, nats.DISCONNECTED, nats.CONNECTED)
	connected := nc.IsConnected() // read after listening: a drop in between is still heard
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st := range events {
			switch {
			case st == nats.CONNECTED && !connected:
				connected = true
				up()
			case st != nats.CONNECTED && connected:
				connected = false
				down()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			nc.RemoveStatusListener(events) // closes events: the goroutine ends after what is buffered
			<-done
		})
	}
}
