package p2p

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
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
	list FriendList
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
func (c *friendCache) put(user string, list FriendList, rev uint64) *cachedList {
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

// friendsMsg is the JSON of the friends service's requests, replies and change notices (PROTOCOL.md §3.8).
type friendsMsg struct {
	User       string      `json:"user"`
	Action     string      `json:"action,omitempty"`
	Other      string      `json:"other,omitempty"`
	Conn       string      `json:"conn,omitempty"`        // update: the connection that asked (not told twice)
	ExceptConn string      `json:"except_conn,omitempty"` // notice: the same connection, for the user who asked
	Hash       string      `json:"hash,omitempty"`
	List       *FriendList `json:"list,omitempty"`
	Rev        uint64      `json:"rev,omitempty"`        // list's revision in RSO_FRIENDS (absent: never stored)
	OtherList  *FriendList `json:"other_list,omitempty"` // update reply: the other user's new list
	OtherRev   uint64      `json:"other_rev,omitempty"`  // and its revision
	Error      *WireError  `json:"error,omitempty"`
}

// friendsOf returns user's list from the cache, or from the friends service.
func (s *Service) friendsOf(ctx context.Context, user string) (*cachedList, *WireError) {
	if e, ok := s.friends.get(user); ok {
		return e, nil
	}
	return s.fetchFriends(ctx, user)
}

// friendsForClient applies the seed's rule: the client's hash equals the cached one → the cached list
// (notModified, no request); otherwise fetch it from the friends service.
func (s *Service) friendsForClient(ctx context.Context, user, hash string) (e *cachedList, notModified bool, werr *WireError) {
	if hash != "" {
		if e, ok := s.friends.get(user); ok && e.hash == hash {
			return e, true, nil
		}
	}
	if e, werr = s.fetchFriends(ctx, user); werr != nil {
		return nil, false, werr
	}
	return e, e.hash == hash, nil
}

func (s *Service) fetchFriends(ctx context.Context, user string) (*cachedList, *WireError) {
	var r friendsMsg
	if werr := s.askFriends(ctx, subjFriendsGet, friendsMsg{User: user}, &r); werr != nil {
		return nil, werr
	}
	if r.List == nil {
		r.List = &FriendList{}
	}
	return s.friends.put(user, *r.List, r.Rev), nil
}

func (s *Service) askFriends(ctx context.Context, subject string, req friendsMsg, out *friendsMsg) *WireError {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	m, err := s.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return unavailable("the friends service did not answer", err)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return wireErr(CodeInternal, "bad answer from the friends service: %v", err)
	}
	if out.Error != nil {
		return out.Error
	}
	return nil
}

// onFriendsChanged (every instance) replaces the cached list with the announced one.
func (s *Service) onFriendsChanged(_ context.Context, m *nats.Msg) {
	var n friendsMsg
	if json.Unmarshal(m.Data, &n) != nil || n.User == "" || n.List == nil {
		return
	}
	s.friends.put(n.User, *n.List, n.Rev)
}

// onFriendsChangedPush (one instance, queue group) sends the new list to the user's devices, with the
// presence of its friends (a new friend's status arrives with it).
func (s *Service) onFriendsChangedPush(ctx context.Context, m *nats.Msg) {
	var n friendsMsg
	if json.Unmarshal(m.Data, &n) != nil || n.User == "" || n.List == nil {
		return
	}
	e := &cachedList{list: *n.List, hash: n.List.Hash()}
	s.publishTo(n.User, s.friendsFrame(ctx, "", e, false), n.ExceptConn, "")
}

// friendsAnswer answers a friends frame: the list and its hash, or not_modified; the friends' presence either way.
func (s *Service) friendsAnswer(ctx context.Context, c caller, f *request) ([]byte, *WireError) {
	e, notModified, werr := s.friendsForClient(ctx, c.user, f.hash)
	if werr != nil {
		return nil, werr
	}
	return s.friendsFrame(ctx, f.id, e, notModified), nil
}

// friendAction runs request/accept/remove/block/unblock through the friends service and answers with the
// caller's new list. The friends service announces the change; the other side's devices get their new list
// from that announcement.
func (s *Service) friendAction(ctx context.Context, c caller, f *request) ([]byte, *WireError) {
	if f.action == ActionRequest || f.action == ActionAccept {
		if known, werr := s.isKnown(ctx, f.user); werr != nil {
			return nil, werr
		} else if !known {
			return nil, wireErr(CodeUnknownUser, "no user %q has ever connected", clip(f.user))
		}
	}
	var r friendsMsg
	if werr := s.askFriends(ctx, subjFriendsUpdate, friendsMsg{User: c.user, Action: f.action, Other: f.user, Conn: c.conn}, &r); werr != nil {
		return nil, werr
	}
	if r.List == nil {
		r.List = &FriendList{}
	}
	// Cache the other side's list now too: its change notice may arrive after the next presence change of
	// either user, which must already reach the new friend.
	if r.OtherList != nil {
		s.friends.put(f.user, *r.OtherList, r.OtherRev)
	}
	return s.friendsFrame(ctx, f.id, s.friends.put(c.user, *r.List, r.Rev), false), nil
}

type presenceItem struct {
	User   string `json:"user"`
	Status string `json:"status"`
	Rev    uint64 `json:"rev"`
}

// friendsFrame builds {"op":"friends",…}. Presence failures are not fatal: the list still goes out, with
// every friend shown offline (rev 0, so any later presence frame wins).
func (s *Service) friendsFrame(ctx context.Context, id string, e *cachedList, notModified bool) []byte {
	type frame struct {
		Op          string         `json:"op"`
		ID          string         `json:"id,omitempty"`
		Hash        string         `json:"hash"`
		NotModified bool           `json:"not_modified,omitempty"`
		Friends     *[]string      `json:"friends,omitempty"` // pointers: absent when not modified, [] when empty
		Incoming    *[]string      `json:"incoming,omitempty"`
		Outgoing    *[]string      `json:"outgoing,omitempty"`
		Blocked     *[]string      `json:"blocked,omitempty"`
		Presence    []presenceItem `json:"presence"`
	}
	fr := frame{Op: "friends", ID: id, Hash: e.hash, NotModified: notModified, Presence: s.presenceOf(ctx, e.list.Friends)}
	if !notModified {
		l := e.list
		l.Friends, l.Incoming, l.Outgoing, l.Blocked = orEmpty(l.Friends), orEmpty(l.Incoming), orEmpty(l.Outgoing), orEmpty(l.Blocked)
		fr.Friends, fr.Incoming, fr.Outgoing, fr.Blocked = &l.Friends, &l.Incoming, &l.Outgoing, &l.Blocked
	}
	b, _ := json.Marshal(fr)
	return b
}
