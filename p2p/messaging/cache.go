package messaging

import "sync"

// Small in-memory helpers. Everything cached here can be rebuilt from JetStream, so the caches are bounded
// crudely: when one is full, half of it is forgotten (map iteration order is random enough for that).

// head is the newest message of a conversation: its conversation sequence and its stream sequence.
type head struct {
	seq       uint64
	streamSeq uint64
}

type headCache struct {
	mu  sync.Mutex
	m   map[string]head
	max int
}

func newHeadCache(max int) *headCache { return &headCache{m: map[string]head{}, max: max} }

func (c *headCache) get(conv string) (head, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[conv]
	return h, ok
}

// put records h unless a newer head is known already (a reader may race a writer).
func (c *headCache) put(conv string, h head) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[conv]; ok && old.seq > h.seq {
		return
	}
	if len(c.m) >= c.max {
		forgetHalf(c.m)
	}
	c.m[conv] = h
}

func (c *headCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// boundedSet remembers facts that never become false (a user is known, an index entry exists).
type boundedSet struct {
	mu  sync.Mutex
	m   map[string]struct{}
	max int
}

func newBoundedSet(max int) boundedSet { return boundedSet{m: map[string]struct{}{}, max: max} }

func (s *boundedSet) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[k]
	return ok
}

func (s *boundedSet) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		forgetHalf(s.m)
	}
	s.m[k] = struct{}{}
}

func forgetHalf[V any](m map[string]V) {
	n := len(m) / 2
	for k := range m {
		if n == 0 {
			return
		}
		delete(m, k)
		n--
	}
}
