package friendlist

import (
	"slices"
	"testing"

	"github.com/rso-server/rso/internal/wire"
)

// FuzzFriendActions runs action sequences among four users, applying both lists as the service does, and
// checks the invariants after each step: lists sorted and duplicate-free, relations disjoint, friendship
// and requests mirrored on both sides, and every action idempotent.
func FuzzFriendActions(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 0, 1, 1, 0, 4, 2, 3})
	f.Add([]byte{3, 0, 1, 0, 1, 0, 2, 0, 1, 4, 0, 1, 0, 1, 0})
	users := []string{"a", "b", "c", "d"}
	actions := []string{ActionRequest, ActionAccept, ActionRemove, ActionBlock, ActionUnblock}
	f.Fuzz(func(t *testing.T, steps []byte) {
		lists := map[string]*List{}
		for _, u := range users {
			lists[u] = &List{}
		}
		for i := 0; i+2 < len(steps); i += 3 {
			action := actions[int(steps[i])%len(actions)]
			me, other := users[int(steps[i+1])%len(users)], users[int(steps[i+2])%len(users)]
			m, o, werr := Apply(action, me, other, lists[me], lists[other], 2)
			if werr != nil {
				continue
			}
			if me != other {
				*lists[me], *lists[other] = m, o
				m2, o2, werr := Apply(action, me, other, &m, &o, 2)
				if werr == nil && (m2.Hash() != m.Hash() || o2.Hash() != o.Hash()) {
					t.Fatalf("%s %s→%s is not idempotent", action, me, other)
				}
			}
			checkLists(t, lists)
		}
	})
}

func checkLists(t *testing.T, lists map[string]*List) {
	t.Helper()
	for u, l := range lists {
		seen := map[string]string{}
		for name, set := range map[string][]string{"friends": l.Friends, "incoming": l.Incoming, "outgoing": l.Outgoing} {
			if !slices.IsSorted(set) || len(slices.Compact(slices.Clone(set))) != len(set) {
				t.Fatalf("%s.%s = %v", u, name, set)
			}
			for _, v := range set {
				if prev, dup := seen[v]; dup {
					t.Fatalf("%s has %s in %s and %s", u, v, prev, name)
				}
				seen[v] = name
				if v == u {
					t.Fatalf("%s relates to itself", u)
				}
			}
		}
		for _, v := range l.Friends {
			if !lists[v].IsFriend(u) {
				t.Fatalf("%s has friend %s but not the other way", u, v)
			}
		}
		for _, v := range l.Outgoing {
			if !Contains(lists[v].Incoming, u) {
				t.Fatalf("%s asked %s, who does not see it", u, v)
			}
		}
	}
}

func TestHashIsStableAndCoversEveryRelation(t *testing.T) {
	a := List{Friends: []string{"b", "c"}}
	b := List{Friends: []string{"b", "c"}, Incoming: []string{}}
	if a.Hash() != b.Hash() || len(a.Hash()) != 32 {
		t.Fatalf("empty and nil lists hash alike: %s %s", a.Hash(), b.Hash())
	}
	for _, other := range []List{
		{Friends: []string{"b"}},
		{Friends: []string{"b", "c"}, Incoming: []string{"d"}},
		{Friends: []string{"b", "c"}, Blocked: []string{"d"}},
		{Friends: []string{"b", "c"}, Outgoing: []string{"d"}},
	} {
		if other.Hash() == a.Hash() {
			t.Fatalf("%+v hashes like %+v", other, a)
		}
	}
}

// The friends limit is stated with its numbers.
func TestTooManyFriendsStatesTheLimit(t *testing.T) {
	full := &List{Outgoing: []string{"b"}}
	_, _, werr := Apply(ActionRequest, "a", "c", full, &List{}, 1)
	if werr == nil || werr.Code != wire.CodeTooManyFriends || werr.Message != "your friend list would have 2 entries; the limit is 1 (max_friends); remove some first" {
		t.Fatalf("mine full: %+v", werr)
	}
	_, _, werr = Apply(ActionRequest, "c", "a", &List{}, full, 1)
	if werr == nil || werr.Message != `the friend list of "a" would have 2 entries; the limit is 1 (max_friends)` {
		t.Fatalf("theirs full: %+v", werr)
	}
}
