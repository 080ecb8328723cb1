package wsconn

import (
	"maps"
	"sync"
)

// Counts says how the server closed its WebSocket connections (every Conn of this process, since it
// started), for an operator's metrics.
type Counts struct {
	// Closes counts closed connections by the code the server closed them with: CloseUnsupported for a
	// binary message, CloseSlowConsumer for a full outbound queue, CloseNormal after the peer closed or
	// went away, …; 0 when a write failed before any close (the peer had gone or stopped reading).
	Closes map[int]uint64
	// Lost counts, by the same codes, the closes whose close frame could not be written: the peer, if
	// it was still there, saw the connection end without a code (1006). A slow consumer's socket is
	// full, so its 4008 is mostly lost; a 1000 after the peer went away is lost too.
	Lost map[int]uint64
}

// closes is the process's Counts. A connection is counted once, when it closes.
var closes counter

type counter struct {
	mu     sync.Mutex
	closes map[int]uint64
	lost   map[int]uint64
}

func (c *counter) count(code int, sent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closes == nil {
		c.closes, c.lost = map[int]uint64{}, map[int]uint64{}
	}
	c.closes[code]++
	if !sent {
		c.lost[code]++
	}
}

// Stats returns the counts so far (a copy).
func Stats() Counts {
	closes.mu.Lock()
	defer closes.mu.Unlock()
	return Counts{Closes: maps.Clone(closes.closes), Lost: maps.Clone(closes.lost)}
}
