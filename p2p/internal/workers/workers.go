// Package workers bounds the requests a service instance handles at once.
package workers

import (
	"sync/atomic"
	"time"
)

// MaxQueueWait is how long a request waits for a worker when every worker is busy. Requests take
// milliseconds, so a worker frees up long before that unless the instance is stalled (JetStream slow or
// gone); then the requester is better told at once than left to its own timeout.
const MaxQueueWait = time.Second

// Pool bounds the requests an instance handles at once. A request that finds every worker busy waits
// for one, up to MaxQueueWait, on its subscription's goroutine (more requests wait in NATS meanwhile), so
// that a burst is smoothed. When a wait runs out the instance is overloaded: it refuses at once every
// request that finds no free worker, until one is free again, so that a backlog is answered quickly
// instead of one request per MaxQueueWait. Refusals are counted.
type Pool struct {
	slots      chan struct{}
	overloaded atomic.Bool
	refused    atomic.Uint64
}

// New returns a pool of n workers.
func New(n int) *Pool { return &Pool{slots: make(chan struct{}, n)} }

// Acquire takes a worker, or reports false: the caller refuses the request (unavailable).
func (w *Pool) Acquire() bool {
	select {
	case w.slots <- struct{}{}:
		w.overloaded.Store(false)
		return true
	default:
	}
	if !w.overloaded.Load() {
		t := time.NewTimer(MaxQueueWait)
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

// Release gives back a worker taken by Acquire.
func (w *Pool) Release() { <-w.slots }

// Refused counts the requests refused so far.
func (w *Pool) Refused() uint64 { return w.refused.Load() }
