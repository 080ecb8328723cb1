package messaging

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/friendlist"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// The messaging service as a client of the friends service: it asks for lists (friendlist.GetRequest)
// and runs friend actions (friendlist.UpdateRequest) on NATS, takes every change notice
// (friendlist.Notice) into the cache (friendcache.go) and pushes it to the user's devices, and builds the
// friends frames clients get.

// friendsOf returns user's list from the cache, or from the friends service.
func (s *Service) friendsOf(ctx context.Context, user string) (*cachedList, *wire.Error) {
	if e, ok := s.friends.get(user); ok {
		return e, nil
	}
	return s.fetchFriends(ctx, user)
}

// friendsForClient applies the seed's rule: the client's hash equals the cached one → the cached list
// (notModified, no request); otherwise fetch it from the friends service.
func (s *Service) friendsForClient(ctx context.Context, user, hash string) (e *cachedList, notModified bool, werr *wire.Error) {
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

func (s *Service) fetchFriends(ctx context.Context, user string) (*cachedList, *wire.Error) {
	var r friendlist.Reply
	if werr := s.askFriends(ctx, friendlist.SubjGet, friendlist.GetRequest{User: user}, &r); werr != nil {
		return nil, werr
	}
	if r.List == nil {
		r.List = &friendlist.List{}
	}
	return s.friends.put(user, *r.List, r.Rev), nil
}

func (s *Service) askFriends(ctx context.Context, subject string, req any, out *friendlist.Reply) *wire.Error {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, proto.NATSTimeout)
	defer cancel()
	m, err := s.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return proto.Unavailable("the friends service did not answer", err)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return wire.Errorf(wire.CodeInternal, "bad answer from the friends service: %v", err)
	}
	if out.Error != nil {
		return out.Error
	}
	return nil
}

// onFriendsChanged (every instance) replaces the cached list with the announced one.
func (s *Service) onFriendsChanged(_ context.Context, m *nats.Msg) {
	var n friendlist.Notice
	if json.Unmarshal(m.Data, &n) != nil || n.User == "" || n.List == nil {
		return
	}
	s.friends.put(n.User, *n.List, n.Rev)
}

// onFriendsChangedPush (one instance, queue group) sends the new list to the user's devices, with the
// presence of its friends (a new friend's status arrives with it).
func (s *Service) onFriendsChangedPush(ctx context.Context, m *nats.Msg) {
	var n friendlist.Notice
	if json.Unmarshal(m.Data, &n) != nil || n.User == "" || n.List == nil {
		return
	}
	e := &cachedList{list: *n.List, hash: n.List.Hash()}
	s.publishTo(n.User, s.friendsFrame(ctx, "", e, false), n.ExceptConn, "")
}

// friendsAnswer answers a friends frame: the list and its hash, or not_modified; the friends' presence either way.
func (s *Service) friendsAnswer(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	e, notModified, werr := s.friendsForClient(ctx, c.user, f.hash)
	if werr != nil {
		return nil, werr
	}
	return s.friendsFrame(ctx, f.id, e, notModified), nil
}

// friendAction runs request/accept/remove/block/unblock through the friends service and answers with the
// caller's new list. The friends service announces the change; the other side's devices get their new list
// from that announcement.
func (s *Service) friendAction(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	if f.action == friendlist.ActionRequest || f.action == friendlist.ActionAccept {
		if known, werr := s.isKnown(ctx, f.user); werr != nil {
			return nil, werr
		} else if !known {
			return nil, wire.Errorf(wire.CodeUnknownUser, "no user %q has ever connected", proto.Clip(f.user))
		}
	}
	var r friendlist.Reply
	if werr := s.askFriends(ctx, friendlist.SubjUpdate, friendlist.UpdateRequest{User: c.user, Action: f.action, Other: f.user, Conn: c.conn}, &r); werr != nil {
		return nil, werr
	}
	if r.List == nil {
		r.List = &friendlist.List{}
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
		l.Friends, l.Incoming, l.Outgoing, l.Blocked = friendlist.OrEmpty(l.Friends), friendlist.OrEmpty(l.Incoming), friendlist.OrEmpty(l.Outgoing), friendlist.OrEmpty(l.Blocked)
		fr.Friends, fr.Incoming, fr.Outgoing, fr.Blocked = &l.Friends, &l.Incoming, &l.Outgoing, &l.Blocked
	}
	b, _ := json.Marshal(fr)
	return b
}
