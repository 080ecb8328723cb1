package messaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/jsread"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// Sending a message. Each conversation has a gap-free sequence 1, 2, 3, …: message N is stored as the
// subject rso.dm.<conv>.<N> of the RSO_DM stream, published only if the conversation's newest stored
// message is still the one this instance read (Nats-Expected-Last-Subject-Sequence over rso.dm.<conv>.*).
// When another instance stored first, the publish is refused, the instance reads the new head and tries N+1.
// One subject per message makes every message addressable by its conversation sequence, so history pages
// backwards and a client fills a gap with plain direct gets.
//
// The answer ("sent", with the sequence) goes out only after JetStream has stored the message. A resend
// with the same id is recognised by the stream (Nats-Msg-Id, within dedupWindow) and answered with the
// original sequence, not stored again.

func (s *Service) send(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	if werr := s.mayTalk(ctx, c.user, f.to); werr != nil {
		return nil, werr
	}
	conv := convID(c.user, f.to)
	ts := time.Now().UnixMilli()
	record := storedRecord(c.user, f.to, f.id, ts, f.body)
	seq, stored, dup, werr := s.store(ctx, conv, c.user, f.to, f.id, record, f.body)
	if werr != nil {
		return nil, werr
	}
	// Delivered again on a resend too: the original's delivery may be what was lost.
	s.deliver(c, f.to, seq, stored)
	if dup {
		s.m.duplicates.Inc()
		ts = gjson.GetBytes(stored, "ts").Int()
	}
	return sentFrame(f.id, f.to, seq, ts, dup), nil
}

// deliver sends a stored message to every connection of the recipient and to the sender's other connections.
func (s *Service) deliver(c caller, to string, seq uint64, record []byte) {
	frame := appendMessage(make([]byte, 0, len(record)+48), true, seq, record)
	s.publishTo(to, frame, "", "")
	s.publishTo(c.user, frame, c.conn, "")
}

// msgID is the stream's de-duplication key of a message: the sender and its id, hashed to keep the header
// short and free of whatever characters a user id holds.
func msgID(user, id string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(user)))])
	h.Write([]byte(user))
	h.Write([]byte(id))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// store appends record to the conversation and returns its sequence and the stored record (the original
// one for a resend).
func (s *Service) store(ctx context.Context, conv, from, to, id string, record, body []byte) (seq uint64, stored []byte, dup bool, werr *wire.Error) {
	unlock := s.convMu.Lock(conv)
	defer unlock()
	h, ok := s.heads.get(conv)
	if !ok {
		var err error
		if h, err = s.loadHead(ctx, conv); err != nil {
			return 0, nil, false, proto.Unavailable("cannot read the conversation", err)
		}
	}
	for range proto.MaxRetries {
		if h.seq == 0 {
			if werr := s.ensureIndex(ctx, conv, from, to); werr != nil {
				return 0, nil, false, werr
			}
		}
		m := &nats.Msg{Subject: dmSubject(conv, h.seq+1), Data: record, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, msgID(from, id))
		pctx, cancel := context.WithTimeout(ctx, proto.NATSTimeout)
		start := time.Now()
		ack, err := s.js.PublishMsg(pctx, m, jetstream.WithExpectLastSequenceForSubject(h.streamSeq, dmWildcard(conv)))
		s.m.storeTime(start)
		cancel()
		switch {
		case isWrongLastSeq(err):
			if h, err = s.loadHead(ctx, conv); err != nil {
				return 0, nil, false, proto.Unavailable("cannot read the conversation", err)
			}
			continue
		case err != nil:
			return 0, nil, false, proto.Unavailable("the message was not stored", err)
		case ack.Duplicate:
			return s.original(ctx, conv, from, to, id, body, ack.Sequence)
		}
		h = head{seq: h.seq + 1, streamSeq: ack.Sequence}
		s.heads.put(conv, h)
		s.m.stored.Inc()
		return h.seq, record, false, nil
	}
	return 0, nil, false, wire.Errorf(wire.CodeBusy, "the conversation is too busy right now; resend (same id)")
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// original reads the message a resend duplicates. A different message under the same id is refused:
// answering it with the original's sequence would silently lose it.
func (s *Service) original(ctx context.Context, conv, from, to, id string, body []byte, streamSeq uint64) (uint64, []byte, bool, *wire.Error) {
	m, err := jsread.BySeq(ctx, s.nc, streamDM, streamSeq)
	if err != nil || m == nil {
		return 0, nil, false, proto.Unavailable("cannot read the original of a resent message", err)
	}
	gotConv, seq, ok := seqOfSubject(m.Subject)
	stored := servable(m.Data) // as the client has seen it in sync or history
	r := gjson.ParseBytes(stored)
	if !ok || gotConv != conv || r.Get("from").Str != from || r.Get("to").Str != to || r.Get("cid").Str != id ||
		!bytes.Equal(jsonx.Compact([]byte(r.Get("body").Raw)), body) {
		return 0, nil, false, wire.Errorf(wire.CodeIDReused, "id %q was used for another message in the last %s; give every message its own id", proto.Clip(id), s.cfg.DuplicateWindow)
	}
	return seq, stored, true, nil
}

// loadHead reads the newest message of a conversation (seq 0 when it has none).
func (s *Service) loadHead(ctx context.Context, conv string) (head, error) {
	ctx, cancel := context.WithTimeout(ctx, proto.NATSTimeout)
	defer cancel()
	m, err := jsread.Last(ctx, s.nc, streamDM, dmWildcard(conv))
	if err != nil || m == nil {
		return head{}, err
	}
	_, seq, ok := seqOfSubject(m.Subject)
	if !ok {
		return head{}, errors.New("a stored message has a malformed subject " + m.Subject)
	}
	h := head{seq: seq, streamSeq: m.Seq}
	s.heads.put(conv, h)
	return h, nil
}

// indexEntry is the value of <user>.<conv> in RSO_DM_INDEX: one conversation of a user, with the user's
// receipts ("up to this sequence").
type indexEntry struct {
	Peer      string `json:"peer"`
	Delivered uint64 `json:"delivered"`
	Read      uint64 `json:"read"`
}

// ensureIndex records a new conversation in both users' indexes, before its first message is stored: a
// message must never exist that its recipient's sync cannot find.
//
// The two entries are created together: both publishes (each "only if the key has no entry", as KV
// Create does) go out at once and their acks are awaited together, one round trip instead of two. A key
// that has an entry already is left to KV Create, which tells a live entry (fine: it exists) from a
// deletion marker (written over).
func (s *Service) ensureIndex(ctx context.Context, conv, a, b string) *wire.Error {
	if s.indexed.has(conv) {
		return nil
	}
	pairs := [2][2]string{{a, b}, {b, a}}
	var acks [2]jetstream.PubAckFuture
	for i, p := range pairs {
		v, _ := json.Marshal(indexEntry{Peer: p[1]})
		m := &nats.Msg{Subject: "$KV." + bucketIndex + "." + indexKey(p[0], conv), Data: v}
		f, err := s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			return proto.Unavailable("cannot record the conversation", err)
		}
		acks[i] = f
	}
	for i, f := range acks {
		var err error
		select {
		case <-f.Ok():
			continue
		case err = <-f.Err():
		case <-ctx.Done():
			return proto.Unavailable("cannot record the conversation", ctx.Err())
		}
		if !isWrongLastSeq(err) {
			return proto.Unavailable("cannot record the conversation", err)
		}
		if _, err := s.index.Create(ctx, indexKey(pairs[i][0], conv), f.Msg().Data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return proto.Unavailable("cannot record the conversation", err)
		}
	}
	s.indexed.add(conv)
	return nil
}
