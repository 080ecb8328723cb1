package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/wire"
)

// The relay's part of presence: it tells the messaging service when a connection opens (hello, which also
// makes the user known and returns the service's limits) and when a user's last connection on this node has
// been gone for the grace period (bye). The service keeps the state; the relay only reports, one request
// at a time per user, in the order things happened here.

// serviceError is a refusal from the messaging service, or its absence (code unavailable).
type serviceError struct{ code, message string }

func (e *serviceError) Error() string { return e.code + ": " + e.message }

// hello reports a connection (or, with conn empty, re-announces a user) and returns the service's limits.
func (s *Server) hello(userID, device, connID string) (*chatbus.ServiceLimits, error) {
	var r chatbus.Reply
	if err := s.ask(chatbus.SubjHello, chatbus.Presence{User: userID, Device: device, Conn: connID, Node: s.node}, &r); err != nil {
		return nil, err
	}
	return r.Limits, nil
}

func (s *Server) bye(userID string) {
	var r chatbus.Reply
	if err := s.ask(chatbus.SubjBye, chatbus.Presence{User: userID, Node: s.node}, &r); err != nil {
		// Retried at the next heartbeat (under the user's presence lock, and only if the user has not come
		// back), so that the user does not look online for as long as this node lives.
		s.log.Warn("cannot report a user's last connection gone; will retry", "user", userID, "err", err)
		s.mu.Lock()
		s.pendingBye[userID] = struct{}{}
		s.mu.Unlock()
	}
}

func (s *Server) ask(subject string, req any, out *chatbus.Reply) error {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	m, err := s.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return &serviceError{wire.CodeUnavailable, serviceUnavailable(err)}
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return &serviceError{wire.CodeUnavailable, fmt.Sprintf("bad answer from the chat service: %v", err)}
	}
	if out.Error != nil {
		return &serviceError{out.Error.Code, out.Error.Message}
	}
	return nil
}

func serviceUnavailable(err error) string {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return "no chat service is running; retry later"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "the chat service did not answer in time; retry (same id)"
	default:
		return fmt.Sprintf("the chat service cannot be reached (%v); retry later", err)
	}
}
