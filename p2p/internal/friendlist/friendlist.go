// Package friendlist is what the friends service and the messaging service share: the friend-list model
// (pure, no I/O) and the messages they exchange on NATS (bus.go). A list holds one user's relations, each a
// sorted set of user ids. The friends service stores one list per user and changes two lists (both sides)
// per action; the messaging service caches them.
package friendlist

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"slices"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// List is one user's relations to others.
type List struct {
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
func (l *List) Hash() string {
	sum := md5.Sum(l.Canonical())
	return hex.EncodeToString(sum[:])
}

// Canonical is the list as stored and hashed: every relation present (never null) and sorted.
func (l *List) Canonical() []byte {
	c := List{Friends: OrEmpty(l.Friends), Incoming: OrEmpty(l.Incoming), Outgoing: OrEmpty(l.Outgoing), Blocked: OrEmpty(l.Blocked)}
	b, _ := json.Marshal(c)
	return b
}

// OrEmpty is s, or an empty set for nil (a relation in JSON is [] when empty, never null).
func OrEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (l *List) size() int {
	return len(l.Friends) + len(l.Incoming) + len(l.Outgoing) + len(l.Blocked)
}

// IsFriend reports whether user is an accepted friend.
func (l *List) IsFriend(user string) bool { return Contains(l.Friends, user) }

// HasBlocked reports whether the owner of the list blocked user.
func (l *List) HasBlocked(user string) bool { return Contains(l.Blocked, user) }

func (l *List) clone() List {
	return List{Friends: slices.Clone(l.Friends), Incoming: slices.Clone(l.Incoming),
		Outgoing: slices.Clone(l.Outgoing), Blocked: slices.Clone(l.Blocked)}
}

// detach removes every relation to user except a block.
func (l *List) detach(user string) {
	l.Friends = remove(l.Friends, user)
	l.Incoming = remove(l.Incoming, user)
	l.Outgoing = remove(l.Outgoing, user)
}

// Contains reports whether the sorted set holds s.
func Contains(set []string, s string) bool {
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

// Apply computes both lists after me does action to other. mine and theirs are not changed.
// It is idempotent: applied again to its own result it changes nothing, so a retry after a half-written
// update (one list stored, the other not) completes it.
func Apply(action, me, other string, mine, theirs *List, maxEntries int) (List, List, *wire.Error) {
	m, t := mine.clone(), theirs.clone()
	if me == other {
		return m, t, wire.Errorf(wire.CodeBadFrame, "you cannot %s yourself", action)
	}
	switch action {
	case ActionRequest:
		switch {
		case m.HasBlocked(other):
			return m, t, wire.Errorf(wire.CodeBlocked, "you blocked %q; unblock them first", proto.Clip(other))
		case t.HasBlocked(me):
			return m, t, wire.Errorf(wire.CodeBlocked, "%q does not accept requests from you", proto.Clip(other))
		case m.IsFriend(other):
		case Contains(m.Incoming, other): // they asked first: asking back is accepting
			return Apply(ActionAccept, me, other, mine, theirs, maxEntries)
		default:
			m.Outgoing = insert(m.Outgoing, other)
			t.Incoming = insert(t.Incoming, me)
		}
	case ActionAccept:
		switch {
		case m.IsFriend(other) && t.IsFriend(me):
		case !Contains(m.Incoming, other) && !m.IsFriend(other):
			return m, t, wire.Errorf(wire.CodeNotFound, "%q has not asked to be your friend", proto.Clip(other))
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
		return m, t, wire.Errorf(wire.CodeBadFrame, "unknown friend action %q; use request, accept, remove, block or unblock", proto.Clip(action))
	}
	if m.size() > maxEntries && m.size() > mine.size() {
		return m, t, wire.Errorf(wire.CodeTooManyFriends, "your friend list would have %d entries; the limit is %d (max_friends); remove some first", m.size(), maxEntries)
	}
	if t.size() > maxEntries && t.size() > theirs.size() {
		return m, t, wire.Errorf(wire.CodeTooManyFriends, "the friend list of %q would have %d entries; the limit is %d (max_friends)", proto.Clip(other), t.size(), maxEntries)
	}
	return m, t, nil
}
