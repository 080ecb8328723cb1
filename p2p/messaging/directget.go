package messaging

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Reads from streams with JetStream direct gets: any replica answers, no consumer is created, and many
// gets can be in flight at once on one inbox (pipelined), so reading a page of history costs about one
// round trip, not one per message.

// getWindow bounds the direct gets in flight at once.
const getWindow = 128

// storedMsg is one message read back from a stream.
type storedMsg struct {
	subject string
	seq     uint64 // stream sequence (for a KV bucket: the key's revision)
	data    []byte
	deleted bool // a KV delete or purge marker
}

// getLast reads the last message of subject (wildcards allowed); nil when there is none.
func getLast(ctx context.Context, nc *nats.Conn, stream, subject string) (*storedMsg, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	return directGet(ctx, nc, stream, req)
}

// getSeq reads the message with stream sequence seq; nil when there is none.
func getSeq(ctx context.Context, nc *nats.Conn, stream string, seq uint64) (*storedMsg, error) {
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	return directGet(ctx, nc, stream, req)
}

func directGet(ctx context.Context, nc *nats.Conn, stream string, req []byte) (*storedMsg, error) {
	m, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", stream, err)
	}
	return parseDirect(m)
}

// getLastMany reads the last message of each subject, pipelined; out[i] is nil when subjects[i] has none.
func getLastMany(ctx context.Context, nc *nats.Conn, stream string, subjects []string) ([]*storedMsg, error) {
	out := make([]*storedMsg, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	if len(subjects) == 1 {
		m, err := getLast(ctx, nc, stream, subjects[0])
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
		for sent < len(subjects) && sent-got < getWindow {
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
			continue
		}
		if out[i], err = parseDirect(m); err != nil {
			return nil, err
		}
		got++
	}
	return out, nil
}

// parseDirect reads a direct-get answer: a message with its headers, or a status.
func parseDirect(m *nats.Msg) (*storedMsg, error) {
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
	op := m.Header.Get("KV-Operation")
	return &storedMsg{
		subject: m.Header.Get("Nats-Subject"),
		seq:     seq,
		data:    m.Data,
		deleted: op == "DEL" || op == "PURGE" || m.Header.Get("Nats-Marker-Reason") != "",
	}, nil
}
