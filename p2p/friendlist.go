package p2p

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// The friend-list model: pure, no I/O. A list holds one user's relations, each a sorted set of user ids. The
// friends service stores one list per user and changes two lists (both sides) per action.

// FriendList is one user's relations to others.
type FriendList struct {
	Friends  []string `json:"friends"`  // accepted, on both sides
	Incoming []string `json:"incoming"` // asked to be my friend; I have not answered
	Outgoing []string `json:"outgoing"` // I asked them; they have not answered
	Blocked  []string `json:"blocked"`  // may not write to me, ask me, see my presence
}

// Friend actions (the "action" of a friend frame).
const (
	ActionRequest = "request"
	ActionAccept  = "accept"
	ActionRemove  = "remove" // unfriend, decline a request or withdraw one's own
	ActionBlock   = "block"
	ActionUnblock = "unblock"
)

// Hash is the list's version as clients see it: hex MD5 over the sorted ids of every relation (the canonical
// JSON of the list). As in the seed it is MD5 over sorted ids; unlike the seed it covers requests and blocks
// too, because a client that caches the list must learn about a new request even when its friends did not change.
func (l *FriendList) Hash() string {
	sum := md5.Sum(l.canonical())
	return hex.EncodeToString(sum[:])
}

// canonical is the list as stored and hashed: every relation present (never null) and sorted.
func (l *FriendList) canonical() []byte {
	c := FriendList{Friends: orEmpty(l.Friends), Incoming: orEmpty(l.Incoming), Outgoing: orEmpty(l.Outgoing), Blocked: orEmpty(l.Blocked)}
	b, _ := json.Marshal(c)
	return b
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (l *FriendList) size() int {
	return len(l.Friends) + len(l.Incoming) + len(l.Outgoing) + len(l.Blocked)
}

// IsFriend reports whether user is an accepted friend.
func (l *FriendList) IsFriend(user string) bool { return contains(l.Friends, user) }

// HasBlocked reports whether the owner of the list blocked user.
func (l *FriendList) HasBlocked(user string) bool { return contains(l.Blocked, user) }

func (l *FriendList) clone() FriendList {
	return FriendList{Friends: slices.Clone(l.Friends), Incoming: slices.Clone(l.Incoming),
		Outgoing: slices.Clone(l.Outgoing), Blocked: slices.Clone(l.Blocked)}
}

// detach removes every relation to user except a block.
func (l *FriendList) detach(user string) {
	l.Friends = remove(l.Friends, user)
	l.Incoming = remove(l.Incoming, user)
	l.Outgoing = remove(l.Outgoing, user)
}

func contains(set []string, s string) bool {
	_, ok := slices.BinarySearch(set, s)
	return ok
}

func insert(set []string, s string) []string {
	i, ok := slices.BinarySearch(set, s)
	if ok {
		return set
	}
	return slices.Insert(set, i, s)
}

func remove(set []string, s string) []string {
	i, ok := slices.BinarySearch(set, s)
	if !ok {
		return set
	}
	return slices.Delete(set, i, i+1)
}

// applyFriendAction computes both lists after me does action to other. mine and theirs are not changed.
// It is idempotent: applied again to its own result it changes nothing, so a retry after a half-written
// update (one list stored, the other not) completes it.
func applyFriendAction(action, me, other string, mine, theirs *FriendList, maxEntries int) (FriendList, FriendList, *WireError) {
	m, t := mine.clone(), theirs.clone()
	if me == other {
		return m, t, wireErr(CodeBadFrame, "you cannot %s yourself", action)
	}
	switch action {
	case ActionRequest:
		switch {
		case m.HasBlocked(other):
			return m, t, wireErr(CodeBlocked, "you blocked %q; unblock them first", clip(other))
		case t.HasBlocked(me):
			return m, t, wireErr(CodeBlocked, "%q does not accept requests from you", clip(other))
		case m.IsFriend(other):
		case contains(m.Incoming, other): // they asked first: asking back is accepting
			return applyFriendAction(ActionAccept, me, other, mine, theirs, maxEntries)
		default:
			m.Outgoing = insert(m.Outgoing, other)
			t.Incoming = insert(t.Incoming, me)
		}
	case ActionAccept:
		switch {
		case m.IsFriend(other) && t.IsFriend(me):
		case !contains(m.Incoming, other) && !m.IsFriend(other):
			return m, t, wireErr(CodeNotFound, "%q has not asked to be your friend", clip(other))
		default:
			m.detach(other)
			t.detach(me)
			m.Friends = insert(m.Friends, other)
			t.Friends = insert(t.Friends, me)
		}
	case ActionRemove:
		m.detach(other)
		t.detach(me)
	case ActionBlock:
		m.detach(other)
		t.detach(me)
		m.Blocked = insert(m.Blocked, other)
	case ActionUnblock:
		m.Blocked = remove(m.Blocked, other)
	default:
		return m, t, wireErr(CodeBadFrame, "unknown friend action %q; use request, accept, remove, block or unblock", clip(action))
	}
	if m.size() > maxEntries && m.size() > mine.size() {
		return m, t, wireErr(CodeTooManyFriends, "your friend list would have %d entries; the limit is %d (max_friends); remove some first", m.size(), maxEntries)
	}
	if t.size() > maxEntries && t.size() > theirs.size() {
		return m, t, wireErr(CodeTooManyFriends, "the friend list of %q would have %d entries; the limit is %d (max_friends)", clip(other), t.size(), maxEntries)
	}
	return m, t, nil
}
