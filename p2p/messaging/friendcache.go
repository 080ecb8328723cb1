package messaging

import (
	"sync"
	"time"

	"github.com/rso-server/rso/p2p/internal/friendlist"
)

// The messaging service's view of friend lists. As in the seed, lists are written rarely and read often
// (every message is checked against blocks, every presence change goes to the friends), so each instance
// caches them and asks the friends service only when it must:
//
//   - a client that presents the hash of the cached list gets "not modified" and costs no request;
//   - a client with another hash (or none) makes the instance fetch the list from the friends service;
//   - every change made by the friends service is announced on rso.friends.changed.<user> with the new
//     list, which replaces the cached one on every instance at once;
//   - entries older than FriendsCacheTTL are fetched again (a bound on a lost announcement), and the whole
//     cache is dropped when the NATS connection comes back;
//   - every list comes with its revision in RSO_FRIENDS (0: never stored, the empty list), and a list
//     older than the cached one is ignored, so that a slow get reply processed after a newer change notice
//     cannot bring back, say, a list without a block.

type cachedList struct {
	list friendlist.List
	hash string
	rev  uint64 // revision of the list in RSO_FRIENDS; 0 = never stored
	at   time.Time
}

type friendCache struct {
	mu  sync.Mutex
	m   map[string]*cachedList
	ttl time.Duration
	max int
}

func newFriendCache(ttl time.Duration, max int) *friendCache {
	return &friendCache{m: map[string]*cachedList{}, ttl: ttl, max: max}
}

func (c *friendCache) get(user string) (*cachedList, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[user]
	if !ok || time.Since(e.at) > c.ttl {
		return nil, false
	}
	return e, true
}

// put caches user's list at revision rev and returns the entry to use: the given list, or the cached one
// if that is newer (a higher revision, still fresh). Revisions only grow while a list exists, and a list
// once stored is never deleted, so 0 (never stored) is older than any other. An expired entry gives way to
// anything: its revision could come from a bucket that has been recreated since.
func (c *friendCache) put(user string, list friendlist.List, rev uint64) *cachedList {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[user]; ok && old.rev > rev && now.Sub(old.at) <= c.ttl {
		return old
	}
	e := &cachedList{list: list, hash: list.Hash(), rev: rev, at: now}
	if len(c.m) >= c.max {
		forgetHalf(c.m)
	}
	c.m[user] = e
	return e
}

func (c *friendCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
