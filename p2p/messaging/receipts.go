package messaging

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// Receipts. "delivered N" and "read N" each mean "up to sequence N of this conversation"; read implies
// delivered. They are stored in the user's index entry (so the sync after a login starts after the last
// delivered message, and the other side sees its marks after its own login), only ever move forward, and
// are forwarded to the other side and to the user's other devices.

func (s *Service) receipt(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	if f.peer == c.user {
		return nil, wire.Errorf(wire.CodeBadFrame, "a receipt names the other user of the conversation in \"peer\"")
	}
	conv := convID(c.user, f.peer)
	if h, ok := s.heads.get(conv); !ok || h.seq < f.seq {
		h, err := s.loadHead(ctx, conv)
		if err != nil {
			return nil, proto.Unavailable("cannot read the conversation", err)
		}
		if h.seq < f.seq {
			return nil, wire.Errorf(wire.CodeBadSeq, "the conversation with %q has %d messages; a receipt cannot cover %d", proto.Clip(f.peer), h.seq, f.seq)
		}
	}
	advanced, werr := s.advanceReceipt(ctx, c.user, f.peer, conv, f.kind, f.seq)
	if werr != nil {
		return nil, werr
	}
	if advanced {
		if mine, werr := s.friendsOf(ctx, c.user); werr != nil || !mine.list.HasBlocked(f.peer) {
			s.publishTo(f.peer, receiptFrame(c.user, c.user, f.kind, f.seq), "", "")
		}
		s.publishTo(c.user, receiptFrame(f.peer, c.user, f.kind, f.seq), c.conn, "")
	}
	s.m.receipt(f.kind)
	return okFrame(f.id), nil
}

// advanceReceipt moves the user's mark forward with compare-and-set; it reports whether anything changed.
func (s *Service) advanceReceipt(ctx context.Context, user, peer, conv, kind string, seq uint64) (bool, *wire.Error) {
	key := indexKey(user, conv)
	for range proto.MaxRetries {
		var e indexEntry
		var rev uint64
		got, err := s.index.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			e.Peer = peer // the conversation's first message is stored after its index entries: not expected
		case err != nil:
			return false, proto.Unavailable("cannot read receipts", err)
		default:
			if json.Unmarshal(got.Value(), &e) != nil {
				e = indexEntry{Peer: peer}
			}
			rev = got.Revision()
		}
		old := e
		e.Delivered = max(e.Delivered, seq)
		if kind == KindRead {
			e.Read = max(e.Read, seq)
		}
		if e == old {
			return false, nil
		}
		v, _ := json.Marshal(e)
		_, err = s.index.Update(ctx, key, v, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return false, proto.Unavailable("cannot store the receipt", err)
		}
		return true, nil
	}
	return false, wire.Errorf(wire.CodeBusy, "receipts changed too often at once; retry")
}
