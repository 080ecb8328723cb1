package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A user is known once it has connected at least once: its first hello records it in RSO_CHAT_USERS.
// Messages and friend requests to anyone else are refused with unknown_user, so a typo does not create a
// conversation nobody will ever read. Known users are cached (a user never becomes unknown again).

func (s *Service) ensureKnown(ctx context.Context, user string) *WireError {
	if s.known.has(user) {
		return nil
	}
	v, _ := json.Marshal(map[string]any{"user": user, "first": time.Now().UnixMilli()})
	if _, err := s.users.Create(ctx, userToken(user), v); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return unavailable("cannot record the user", err)
	}
	s.known.add(user)
	return nil
}

func (s *Service) isKnown(ctx context.Context, user string) (bool, *WireError) {
	if s.known.has(user) {
		return true, nil
	}
	_, err := s.users.Get(ctx, userToken(user))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, unavailable("cannot look the user up", err)
	}
	s.known.add(user)
	return true, nil
}

// mayTalk says whether from may write (or signal) to to: to is known, neither blocked the other, and, with
// FriendsOnly, they are friends.
func (s *Service) mayTalk(ctx context.Context, from, to string) *WireError {
	if from == to {
		return wireErr(CodeBadFrame, "you cannot write to yourself; your other devices get your messages anyway")
	}
	if known, werr := s.isKnown(ctx, to); werr != nil {
		return werr
	} else if !known {
		return wireErr(CodeUnknownUser, "no user %q has ever connected", clip(to))
	}
	theirs, werr := s.friendsOf(ctx, to)
	if werr != nil {
		return werr
	}
	if theirs.list.HasBlocked(from) {
		return wireErr(CodeBlocked, "%q does not accept messages from you", clip(to))
	}
	mine, werr := s.friendsOf(ctx, from)
	if werr != nil {
		return werr
	}
	if mine.list.HasBlocked(to) {
		return wireErr(CodeBlocked, "you blocked %q; unblock them to write", clip(to))
	}
	if s.cfg.FriendsOnly && !mine.list.IsFriend(to) {
		return wireErr(CodeNotFriends, "this server lets only friends write to each other; send %q a friend request", clip(to))
	}
	return nil
}
