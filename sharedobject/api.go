package sharedobject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/internal/apiwire"
	"github.com/rso-server/rso/sharedobject/internal/model"
)

// The server-side API: backends read and change objects over NATS request-reply on rso.api.<op>, served by
// every node (queue group rso-api). Server-side writes are not checked against a base version: the backend
// is the authority. backend.API is the Go client of these subjects; internal/apiwire holds the JSON both
// use, documented in docs/PROTOCOL.md §2.2.

const (
	maxLockTTL     = 5 * time.Minute
	defaultLockTTL = 10 * time.Second
)

func (n *Node) serveAPI() error {
	for _, op := range apiwire.Ops {
		sub, err := n.nc.QueueSubscribe(apiwire.SubjectPrefix+op, apiwire.Queue, func(m *nats.Msg) {
			// Answer on its own goroutine: a lock request may wait, and must not hold up other calls. The
			// goroutines are bounded: past maxAPIHandlers the request is answered busy at once.
			n.answerBounded(m, func(busy *wire.Error) any {
				rep := failed(busy)
				if busy == nil {
					rep = n.handleAPI(op, m.Data)
				}
				n.met.apiAnswered(op, rep.Error)
				return rep
			})
		})
		if err != nil {
			return fmt.Errorf("sharedobject: cannot serve rso.api.%s: %w", op, err)
		}
		n.apiSubs = append(n.apiSubs, sub)
	}
	return nil
}

func (n *Node) handleAPI(op string, data []byte) apiwire.Reply {
	var req apiwire.Request
	if !utf8.Valid(data) { // values are kept verbatim and written into text frames
		return failed(wire.Errorf(wire.CodeBadJSON, "request is not valid UTF-8"))
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return failed(wire.Errorf(wire.CodeBadJSON, "request is not valid JSON: %v", err))
	}
	lim := &n.cfg.Limits
	if !validName(req.Obj, lim.MaxNameBytes) {
		return failed(wire.Errorf(wire.CodeBadName, "object name %q must be 1 to %d bytes of UTF-8 without spaces or control characters", clip(req.Obj), lim.MaxNameBytes))
	}
	ctx, cancel := context.WithTimeout(n.ctx, maxLockTTL)
	defer cancel()
	o, err := n.acquire(ctx, objKey{persistent: req.Persistent, name: req.Obj})
	if err != nil {
		return failed(wire.Errorf(wire.CodeUnavailable, "%v", err))
	}
	defer n.release(o)
	r := &writeReq{user: req.From, force: true}
	switch op {
	case "get":
		o.mu.Lock()
		defer o.mu.Unlock()
		rep := apiwire.Reply{Epoch: o.state.Epoch, Version: o.state.Version, Slots: map[string]json.RawMessage{}}
		o.state.Slots(func(name string, value []byte, _ uint64) { rep.Slots[name] = value })
		return rep
	case "update", "unlock":
		changes, werr := apiChanges(&req, lim)
		if werr != nil {
			return failed(werr)
		}
		r.changes = changes
		if op == "unlock" {
			if req.Lock == "" {
				return failed(wire.Errorf(wire.CodeBadFrame, "unlock needs \"lock\": the id lock returned"))
			}
			r.holds, r.unlockID = req.Lock, req.Lock
		}
	case "send":
		if !validName(req.Handler, lim.MaxNameBytes) {
			return failed(wire.Errorf(wire.CodeBadName, "handler %q must be 1 to %d bytes without spaces or control characters", clip(req.Handler), lim.MaxNameBytes))
		}
		args := jsonx.Compact(req.Args)
		if len(args) == 0 {
			args = []byte("[]")
		}
		if args[0] != '[' {
			return failed(wire.Errorf(wire.CodeBadFrame, "\"args\" must be a JSON array"))
		}
		r.msg = &model.Message{User: req.From, Handler: req.Handler, Args: args}
	case "clear":
		r.clear = true
	case "lock":
		ttl := time.Duration(req.TTLms) * time.Millisecond
		if ttl <= 0 {
			ttl = defaultLockTTL
		}
		if ttl > maxLockTTL {
			return failed(wire.Errorf(wire.CodeBadFrame, "ttl_ms %d is longer than %d; unlock and lock again instead", req.TTLms, maxLockTTL.Milliseconds()))
		}
		r.lock = &model.LockState{ID: randomID(9), Until: time.Now().Add(ttl).UnixMilli()}
	}
	version, err := o.submit(ctx, r)
	if err != nil {
		var werr *wire.Error
		if !errors.As(err, &werr) {
			werr = wire.Errorf(wire.CodeUnavailable, "%v", err)
		}
		return failed(werr)
	}
	rep := apiwire.Reply{Version: version}
	if r.lock != nil {
		rep.Lock = r.lock.ID
	}
	return rep
}

// apiChanges turns a request's set and delete into changes, checked like a client's.
func apiChanges(req *apiwire.Request, lim *Limits) ([]model.Change, *wire.Error) {
	var changes []model.Change
	for name, v := range req.Set {
		if !validName(name, lim.MaxNameBytes) {
			return nil, wire.Errorf(wire.CodeBadName, "slot name %q must be 1 to %d bytes without spaces or control characters", clip(name), lim.MaxNameBytes)
		}
		v = jsonx.Compact(v)
		if len(v) > lim.MaxValueBytes {
			return nil, wire.Errorf(wire.CodeValueTooLarge, "slot %q value is %d bytes; the limit is %d (max_value_bytes)", name, len(v), lim.MaxValueBytes)
		}
		changes = append(changes, model.Change{Name: name, Value: v})
	}
	// Maps have no order; sorted changes make the events (and tests) deterministic.
	slices.SortFunc(changes, func(a, b model.Change) int { return strings.Compare(a.Name, b.Name) })
	for _, name := range req.Delete {
		if _, dup := req.Set[name]; dup || !validName(name, lim.MaxNameBytes) {
			return nil, wire.Errorf(wire.CodeBadName, "slot %q to delete is invalid or also set", clip(name))
		}
		changes = append(changes, model.Change{Name: name, Delete: true})
	}
	return changes, nil
}

// failed is the reply that refuses a request with e.
func failed(e *wire.Error) apiwire.Reply {
	return apiwire.Reply{Error: e}
}
