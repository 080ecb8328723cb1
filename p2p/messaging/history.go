package messaging

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/jsread"
	"github.com/rso-server/rso/internal/utf8x"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// Reading conversations back: history (a page of one conversation, backwards by sequence) and sync
// (after a login: every conversation of the user, with what came after the user's last "delivered").
// Both read messages by their subjects with pipelined direct gets.

// maxAnswerBytes bounds one history or sync answer: well below what NATS carries in one reply, and below
// the relay's outbound queue (4 MiB by default), so that an answer never closes its client as slow (4008)
// and the next login could never make progress.
func (s *Service) maxAnswerBytes() int {
	return int(min(s.nc.MaxPayload()/2, 1<<20))
}

// convEntryBytes is what a conversation's entry in a sync answer costs, messages aside.
func convEntryBytes(peer string) int { return 160 + 2*len(peer) }

// readRange reads the messages from..to (inclusive) of a conversation, in order; missing ones are skipped.
func (s *Service) readRange(ctx context.Context, conv string, from, to uint64) ([]seqRecord, error) {
	if to < from {
		return nil, nil
	}
	subjects := make([]string, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		subjects = append(subjects, dmSubject(conv, seq))
	}
	msgs, err := jsread.LastMany(ctx, s.nc, streamDM, subjects)
	if err != nil {
		return nil, err
	}
	out := make([]seqRecord, 0, len(msgs))
	for i, m := range msgs {
		if m != nil {
			out = append(out, seqRecord{seq: from + uint64(i), record: servable(m.Data)})
		}
	}
	return out, nil
}

// servable is a stored record as it may go out: valid UTF-8 (a record stored before frames were checked
// for it may hold invalid bytes: each becomes U+FFFD, as encoding/json does) and a JSON object (anything
// else that was written into the stream goes out as an empty record: the message keeps its place in the
// sequence, and the answer stays readable).
func servable(record []byte) []byte {
	record = utf8x.Repair(record)
	if len(record) == 0 || record[0] != '{' || !gjson.ValidBytes(record) {
		return []byte("{}")
	}
	return record
}

type seqRecord struct {
	seq    uint64
	record []byte
}

func appendMessages(b []byte, msgs []seqRecord) []byte {
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMessage(b, false, m.seq, m.record)
	}
	return append(b, ']')
}

// history answers {"op":"history","peer","before"?,"limit"?} with the messages before "before" (the newest
// when absent), oldest first, and "more" when older ones exist.
func (s *Service) history(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	conv := convID(c.user, f.peer)
	h, err := s.loadHead(ctx, conv)
	if err != nil {
		return nil, proto.Unavailable("cannot read the conversation", err)
	}
	limit := f.limit
	if limit == 0 {
		limit = s.cfg.HistoryLimit
	}
	limit = min(limit, s.cfg.MaxHistoryLimit)
	before := h.seq + 1
	if f.before > 0 && f.before < before {
		before = f.before
	}
	from := uint64(1)
	if before > uint64(limit) {
		from = before - uint64(limit)
	}
	msgs, err := s.readRange(ctx, conv, from, before-1)
	if err != nil {
		return nil, proto.Unavailable("cannot read the conversation", err)
	}
	// Keep the newest ones that fit in one answer.
	for size := answerSize(msgs); size > s.maxAnswerBytes() && len(msgs) > 1; size = answerSize(msgs) {
		msgs = msgs[len(msgs)/2:]
	}
	first := before
	if len(msgs) > 0 {
		first = msgs[0].seq
	}
	b := []byte(`{"op":"history"`)
	if f.id != "" {
		b = append(b, `,"id":`...)
		b = jsonx.AppendString(b, f.id)
	}
	b = append(b, `,"peer":`...)
	b = jsonx.AppendString(b, f.peer)
	b = append(b, `,"last":`...)
	b = jsonx.AppendUint(b, h.seq)
	b = append(b, `,"messages":`...)
	b = appendMessages(b, msgs)
	b = append(b, `,"more":`...)
	b = append(b, boolText(first > 1)...)
	return append(b, '}'), nil
}

func answerSize(msgs []seqRecord) int {
	n := 0
	for _, m := range msgs {
		n += len(m.record) + 16
	}
	return n
}

func boolText(v bool) string {
	if v {
		return "true"
	}
	return "false"
}

// convState is one conversation in a sync answer.
type convState struct {
	conv          string
	peer          string
	last          uint64
	delivered     uint64
	read          uint64
	peerDelivered uint64
	peerRead      uint64
	after         uint64
	messages      []seqRecord
	more          bool
}

// sync answers {"op":"sync","after"?} with every conversation of the user: its last sequence, both sides'
// receipts, and the messages after the user's "delivered" mark (or after the client's own "after" for that
// peer), up to SyncMaxMessages in all. A conversation with more waiting says "more".
func (s *Service) sync(ctx context.Context, c caller, f *request) ([]byte, *wire.Error) {
	convs, err := s.listConversations(ctx, c.user)
	if err != nil {
		return nil, proto.Unavailable("cannot list conversations", err)
	}
	heads := make([]string, len(convs))
	peerKeys := make([]string, len(convs))
	for i, cv := range convs {
		heads[i] = dmWildcard(cv.conv)
		peerKeys[i] = "$KV." + bucketIndex + "." + indexKey(cv.peer, cv.conv)
	}
	lasts, err := jsread.LastMany(ctx, s.nc, streamDM, heads)
	if err != nil {
		return nil, proto.Unavailable("cannot read conversations", err)
	}
	peers, err := jsread.LastMany(ctx, s.nc, "KV_"+bucketIndex, peerKeys)
	if err != nil {
		return nil, proto.Unavailable("cannot read receipts", err)
	}
	budget := s.cfg.SyncMaxMessages
	if f.limit > 0 {
		budget = min(budget, f.limit)
	}
	bytesLeft := s.maxAnswerBytes()
	for i := range convs {
		bytesLeft -= convEntryBytes(convs[i].peer)
	}
	for i := range convs {
		cv := &convs[i]
		if m := lasts[i]; m != nil {
			_, cv.last, _ = seqOfSubject(m.Subject)
			s.heads.put(cv.conv, head{seq: cv.last, streamSeq: m.Seq})
		}
		var pe indexEntry
		if m := peers[i]; m != nil && !m.Deleted && json.Unmarshal(m.Data, &pe) == nil {
			cv.peerDelivered, cv.peerRead = pe.Delivered, pe.Read
		}
		cv.after = cv.delivered
		if a, ok := f.after[cv.peer]; ok {
			cv.after = a
		}
		cv.after = min(cv.after, cv.last)
		if cv.last == cv.after {
			continue
		}
		n := min(cv.last-cv.after, uint64(budget))
		if n > 0 && bytesLeft > 0 {
			msgs, err := s.readRange(ctx, cv.conv, cv.after+1, cv.after+n)
			if err != nil {
				return nil, proto.Unavailable("cannot read messages", err)
			}
			for len(msgs) > 0 && answerSize(msgs) > bytesLeft {
				msgs = msgs[:len(msgs)/2]
			}
			cv.messages = msgs
			budget -= len(msgs)
			bytesLeft -= answerSize(msgs)
		}
		cv.more = cv.after+uint64(len(cv.messages)) < cv.last
	}
	b := []byte(`{"op":"sync"`)
	if f.id != "" {
		b = append(b, `,"id":`...)
		b = jsonx.AppendString(b, f.id)
	}
	b = append(b, `,"convs":[`...)
	for i, cv := range convs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"peer":`...)
		b = jsonx.AppendString(b, cv.peer)
		for _, kv := range []struct {
			k string
			v uint64
		}{{"last", cv.last}, {"delivered", cv.delivered}, {"read", cv.read}, {"peer_delivered", cv.peerDelivered}, {"peer_read", cv.peerRead}} {
			b = append(b, `,"`...)
			b = append(b, kv.k...)
			b = append(b, `":`...)
			b = jsonx.AppendUint(b, kv.v)
		}
		b = append(b, `,"messages":`...)
		b = appendMessages(b, cv.messages)
		b = append(b, `,"more":`...)
		b = append(b, boolText(cv.more)...)
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

// listConversations reads the user's index entries (one KV watch over <user>.*).
func (s *Service) listConversations(ctx context.Context, user string) ([]convState, error) {
	prefix := proto.UserToken(user) + "."
	w, err := s.index.Watch(ctx, prefix+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []convState
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				slices.SortFunc(out, func(a, b convState) int {
					if a.peer < b.peer {
						return -1
					}
					if a.peer > b.peer {
						return 1
					}
					return 0
				})
				return out, nil
			}
			var ie indexEntry
			if json.Unmarshal(e.Value(), &ie) != nil || ie.Peer == "" {
				continue
			}
			out = append(out, convState{conv: e.Key()[len(prefix):], peer: ie.Peer, delivered: ie.Delivered, read: ie.Read})
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
