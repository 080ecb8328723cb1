package p2p

import (
	"sync/atomic"
	"time"
)

// maxQueueWait is how long a request waits for a worker when every worker is busy. Requests take
// milliseconds, so a worker frees up long before that unless the instance is stalled (JetStream slow or
// gone); then the requester is better told at once than left to its own timeout.
const maxQueueWait = time.Second

// workers bounds the requests an instance handles at once. A request that finds every worker busy waits
// for one, up to maxQueueWait, on its subscription's goroutine (more requests wait in NATS meanwhile), so
// that a burst is smoothed. When a wait runs out the instance is overloaded: it refuses at once every
// request that finds no free worker, until one is free again, so that a backlog is answered quickly
// instead of one request per maxQueueWait. Refusals are counted.
type workers struct {
	slots      chan struct{}
	overloaded atomic.Bool
	refused    atomic.Uint64
}

func newWorkers(n int) *workers { return &workers{slots: make(chan struct{}, n)} }

// acquire takes a worker, or reports false: the caller refuses the request (unavailable).
func (w *workers) acquire() bool {
	select {
	case w.slots <- struct{}{}:
		w.overloaded.Store(false)
		return true
	default:
	}
	if !w.overloaded.Load() {
		t := time.NewTimer(maxQueueWait)
		defer t.Stop()
		select {
		case w.slots <- struct{}{}:
			return true
		case <-t.C:
			w.overloaded.Store(true)
		}
	}
	w.refused.Add(1)
	return false
}

func (w *workers) release() { <-w.slots }
