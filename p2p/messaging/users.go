package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// A user is known once it has connected at least once: its first hello records it in RSO_CHAT_USERS.
// Messages and friend requests to anyone else are refused with unknown_user, so a typo does not create a
// conversation nobody will ever read. Known users are cached (a user never becomes unknown again).

// userRecord is the value of a user's key in RSO_CHAT_USERS.
type userRecord struct {
	First int64  `json:"first"` // ms since the epoch of the first hello
	User  string `json:"user"`
}

func (s *Service) ensureKnown(ctx context.Context, user string) *wire.Error {
	if s.known.has(user) {
		return nil
	}
	v, _ := json.Marshal(userRecord{First: time.Now().UnixMilli(), User: user})
	if _, err := s.users.Create(ctx, proto.UserToken(user), v); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return proto.Unavailable("cannot record the user", err)
	}
	s.known.add(user)
	return nil
}

func (s *Service) isKnown(ctx context.Context, user string) (bool, *wire.Error) {
	if s.known.has(user) {
		return true, nil
	}
	_, err := s.users.Get(ctx, proto.UserToken(user))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, proto.Unavailable("cannot look the user up", err)
	}
	s.known.add(user)
	return true, nil
}

// mayTalk says whether from may write (or signal) to to: to is known, neither blocked the other, and, with
// FriendsOnly, they are friends.
func (s *Service) mayTalk(ctx context.Context, from, to string) *wire.Error {
	if from == to {
		return wire.Errorf(wire.CodeBadFrame, "you cannot write to yourself; your other devices get your messages anyway")
	}
	if known, werr := s.isKnown(ctx, to); werr != nil {
		return werr
	} else if !known {
		return wire.Errorf(wire.CodeUnknownUser, "no user %q has ever connected", proto.Clip(to))
	}
	theirs, werr := s.friendsOf(ctx, to)
	if werr != nil {
		return werr
	}
	if theirs.list.HasBlocked(from) {
		return wire.Errorf(wire.CodeBlocked, "%q does not accept messages from you", proto.Clip(to))
	}
	mine, werr := s.friendsOf(ctx, from)
	if werr != nil {
		return werr
	}
	if mine.list.HasBlocked(to) {
		return wire.Errorf(wire.CodeBlocked, "you blocked %q; unblock them to write", proto.Clip(to))
	}
	if s.cfg.FriendsOnly && !mine.list.IsFriend(to) {
		return wire.Errorf(wire.CodeNotFriends, "this server lets only friends write to each other; send %q a friend request", proto.Clip(to))
	}
	return nil
}
