// Package proto holds what the messaging and friends services share on the bus (the codes and the error
// type are internal/wire's): the refusal of storage errors, the boundary check of everything taken from NATS, the encoding of
// user ids in subjects and keys, and the timeouts and retry bound of one request.
package proto

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/wire"
	"github.com/tidwall/gjson"
)

const (
	// NATSTimeout bounds one call to NATS (a publish, a get, a request to the friends service).
	NATSTimeout = 5 * time.Second
	// RequestTimeout bounds the handling of one request; the relay waits a little longer.
	RequestTimeout = 9 * time.Second
	// MaxRetries bounds lost compare-and-set races before a request is answered busy.
	MaxRetries = 50
	// MaxUserBytes bounds a user id, as a token's "sub".
	MaxUserBytes = 200
)

// ErrConflict is a lost compare-and-set: the value was changed by someone else first.
var ErrConflict = errors.New("changed by someone else first")

// JetStream API errors that mean "not now": the same request may succeed when it is retried.
const (
	codeClusterNotAvailable = 10008 // no JetStream meta leader (a cluster without a quorum, or electing)
	codeClusterNotLeader    = 10009 // the leader is changing
	codeDuplicateInProcess  = 10158 // a resend whose original (same Nats-Msg-Id) is still being stored, e.g. without a quorum
)

// Unavailable turns a failed call to NATS into the error a client can act on.
func Unavailable(what string, err error) *wire.Error {
	var api *jetstream.APIError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.As(err, &api) && (api.ErrorCode == codeClusterNotAvailable || api.ErrorCode == codeClusterNotLeader || api.ErrorCode == codeDuplicateInProcess) {
		return wire.Errorf(wire.CodeUnavailable, "%s: %v; retry (same id)", what, err)
	}
	return wire.Errorf(wire.CodeInternal, "%s: %v", what, err)
}

// CheckJSON is the boundary check of everything the services take from NATS (what names it in the
// refusal): valid JSON, and valid UTF-8 inside its strings too, which gjson.ValidBytes does not look at.
// Nothing else may touch state or be relayed: a browser fails its socket on a frame that is not UTF-8.
func CheckJSON(data []byte, what string) *wire.Error {
	if !gjson.ValidBytes(data) {
		return wire.Errorf(wire.CodeBadJSON, "%s is not valid JSON", what)
	}
	if !utf8.Valid(data) {
		return wire.Errorf(wire.CodeBadJSON, "%s is not valid UTF-8", what)
	}
	return nil
}

// RespondJSON answers a request with v as JSON.
func RespondJSON(m *nats.Msg, v any) {
	b, _ := json.Marshal(v)
	m.Respond(b)
}

// Clip shortens untrusted text quoted back in an error message.
func Clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// UserToken turns a user id (any 1–200 bytes, from a token's "sub") into one subject token / KV key part.
func UserToken(user string) string { return chatbus.UserToken(user) }

// UserFromToken reverses UserToken.
func UserFromToken(tok string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	return string(b), err == nil && len(b) > 0
}
