// Package jsread reads stored messages back from JetStream streams without consumers: direct gets
// ($JS.API.DIRECT.GET, answered by any replica, pipelined on one inbox) and leader gets
// ($JS.API.STREAM.MSG.GET, answered by the stream leader, which holds every acknowledged message).
//
// A direct get on a replicated stream may be answered by a replica that lags: use it where a missing or
// older message is harmless or is checked afterwards, and Leader where a decision depends on the answer.
package jsread

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/tidwall/gjson"
)

// window bounds the direct gets in flight at once on one inbox.
const window = 128

// batch is how many messages one batched direct get asks for.
const batch = 512

// Msg is one stored message.
type Msg struct {
	Subject string
	Seq     uint64 // stream sequence (for a KV bucket: the key's revision)
	Data    []byte
	Deleted bool // a KV delete or purge marker, or a message removed by a marker
}

// Last reads the last message of subject (wildcards allowed) with a direct get; nil when there is none.
func Last(ctx context.Context, nc *nats.Conn, stream, subject string) (*Msg, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	return direct(ctx, nc, stream, req)
}

// BySeq reads the message with stream sequence seq with a direct get; nil when there is none.
func BySeq(ctx context.Context, nc *nats.Conn, stream string, seq uint64) (*Msg, error) {
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	return direct(ctx, nc, stream, req)
}

func direct(ctx context.Context, nc *nats.Conn, stream string, req []byte) (*Msg, error) {
	m, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", stream, err)
	}
	return parseDirect(m)
}

// LastMany reads the last message of each subject, pipelined; out[i] is nil when subjects[i] has none.
func LastMany(ctx context.Context, nc *nats.Conn, stream string, subjects []string) ([]*Msg, error) {
	out := make([]*Msg, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	if len(subjects) == 1 {
		m, err := Last(ctx, nc, stream, subjects[0])
		out[0] = m
		return out, err
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	api := "$JS.API.DIRECT.GET." + stream
	sent, got := 0, 0
	for got < len(subjects) {
		for sent < len(subjects) && sent-got < window {
			req, _ := json.Marshal(map[string]string{"last_by_subj": subjects[sent]})
			if err := nc.PublishRequest(api, inbox+"."+strconv.Itoa(sent), req); err != nil {
				return nil, fmt.Errorf("reading %s: %w", stream, err)
			}
			sent++
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", stream, err)
		}
		i, err := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
		if err != nil || i < 0 || i >= len(subjects) {
			continue // not an answer of this call
		}
		if out[i], err = parseDirect(m); err != nil {
			return nil, err
		}
		got++
	}
	return out, nil
}

// Range reads the messages of subject from sequence from on, in order, with batched direct gets, calling
// fn for each; it returns the sequence after the last message read. On a replicated stream the replica that
// answers may lag: follow with Leader reads from the returned sequence when every message must be seen.
func Range(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64, fn func(seq uint64, data []byte)) (uint64, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return from, err
	}
	defer sub.Unsubscribe()
	for {
		req, _ := json.Marshal(map[string]any{"next_by_subj": subject, "seq": from, "batch": batch})
		if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
			return from, err
		}
		more := false
	answers:
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return from, fmt.Errorf("reading %s of %s: %w", subject, stream, err)
			}
			switch status := m.Header.Get("Status"); status {
			case "":
			case "404":
				return from, nil
			case "204": // end of batch
				pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				more = pending > 0
				break answers
			default:
				return from, fmt.Errorf("reading %s of %s: status %s %s", subject, stream, status, m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			if err != nil {
				return from, fmt.Errorf("reading %s of %s: bad Nats-Sequence header %q", subject, stream, m.Header.Get("Nats-Sequence"))
			}
			fn(seq, m.Data)
			from = seq + 1
		}
		if !more {
			return from, nil
		}
	}
}

// parseDirect reads a direct-get answer: a message with its headers, or a status.
func parseDirect(m *nats.Msg) (*Msg, error) {
	switch status := m.Header.Get("Status"); status {
	case "":
	case "404":
		return nil, nil
	default:
		return nil, fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("direct get: bad Nats-Sequence header %q", m.Header.Get("Nats-Sequence"))
	}
	return &Msg{
		Subject: m.Header.Get("Nats-Subject"),
		Seq:     seq,
		Data:    m.Data,
		Deleted: deleted(m.Header.Get("KV-Operation"), m.Header.Get("Nats-Marker-Reason")),
	}, nil
}

func deleted(kvOp, marker string) bool { return kvOp == "DEL" || kvOp == "PURGE" || marker != "" }

// Query selects one message for Leader: the last of LastBySubject, or the first of NextBySubject at
// or after Seq, or the one at Seq.
type Query struct {
	Seq           uint64
	LastBySubject string
	NextBySubject string
}

// Leader reads one message through the stream leader; nil when there is none.
func Leader(ctx context.Context, nc *nats.Conn, stream string, q Query) (*Msg, error) {
	req := map[string]any{}
	switch {
	case q.LastBySubject != "":
		req["last_by_subj"] = q.LastBySubject
	case q.NextBySubject != "":
		req["seq"], req["next_by_subj"] = q.Seq, q.NextBySubject
	default:
		req["seq"] = q.Seq
	}
	body, _ := json.Marshal(req)
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", stream, err)
	}
	r := gjson.ParseBytes(m.Data)
	if e := r.Get("error"); e.Exists() {
		if e.Get("code").Int() == 404 {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %s: %s", stream, e.Get("description").Str)
	}
	msg := r.Get("message")
	data, err := base64.StdEncoding.DecodeString(msg.Get("data").Str)
	if err != nil {
		return nil, fmt.Errorf("reading %s: message data: %w", stream, err)
	}
	hdrs, err := base64.StdEncoding.DecodeString(msg.Get("hdrs").Str)
	if err != nil {
		return nil, fmt.Errorf("reading %s: message headers: %w", stream, err)
	}
	h := header(hdrs)
	return &Msg{Subject: msg.Get("subject").Str, Seq: msg.Get("seq").Uint(), Data: data,
		Deleted: deleted(h.Get("KV-Operation"), h.Get("Nats-Marker-Reason"))}, nil
}

// header parses a raw NATS header block ("NATS/1.0\r\nKey: value\r\n…"); a malformed one reads as empty.
func header(raw []byte) nats.Header {
	h := nats.Header{}
	lines := strings.Split(string(raw), "\r\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "NATS/1.0") {
		return h
	}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return h
}
