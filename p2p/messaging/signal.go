package messaging

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// Peer-to-peer signalling: WebRTC offers, answers and ICE candidates, relayed to a user who may be written
// to (the rules of send) and who is connected. Signals are not stored: a peer that is not there cannot
// answer an offer anyway, and a client whose direct channel fails keeps sending through the relay.
//
// Presence is not the test: it stays online for the grace period after the user's last connection is
// gone. A signal is a request on the user's live subject, which a relay node subscribes only while it has
// connections of the user, and which it answers once it has written the signal to one of them. No
// responders, or no answer in time (connections only of other devices, or one that just closed): offline.

// signalTimeout bounds the wait for a node's answer: a node with the connection answers at once.
const signalTimeout = 2 * time.Second

func (s *Service) signal(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	if werr := s.mayTalk(ctx, c.user, f.to); werr != nil {
		return nil, werr
	}
	m := &nats.Msg{Subject: chatbus.SubjLivePrefix + proto.UserToken(f.to), Data: signalFrame(c.user, c.device, f.data)}
	if f.device != "" {
		m.Header = nats.Header{}
		m.Header.Set(chatbus.HdrDevice, f.device)
	}
	wctx, cancel := context.WithTimeout(ctx, signalTimeout)
	defer cancel()
	_, err := s.nc.RequestMsgWithContext(wctx, m)
	switch {
	case err == nil:
		return okFrame(f.id), nil
	case ctx.Err() == nil && (errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded)):
		if f.device != "" {
			return nil, wire.Errorf(wire.CodeOffline, "device %q of %q is not connected; signals are not stored", f.device, proto.Clip(f.to))
		}
		return nil, wire.Errorf(wire.CodeOffline, "%q is offline; signals are not stored", proto.Clip(f.to))
	default:
		return nil, proto.Unavailable("cannot deliver the signal", err)
	}
}
