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
	"github.com/rso-server/rso/sharedobject/internal/model"
)

// The server-side API: backends read and change objects over NATS request-reply on rso.api.<op>, served by
// every node (queue group rso-api). Server-side writes are not checked against a base version: the backend
// is the authority. API is the Go client of these subjects; docs/PROTOCOL.md §2.2 documents the JSON.

const apiQueue = "rso-api"

type apiRequest struct {
	Obj        string                     `json:"obj"`
	Persistent bool                       `json:"persistent"`
	Set        map[string]json.RawMessage `json:"set,omitempty"`
	Delete     []string                   `json:"delete,omitempty"`
	Handler    string                     `json:"handler,omitempty"`
	Args       json.RawMessage            `json:"args,omitempty"`
	From       string                     `json:"from,omitempty"`
	Lock       string                     `json:"lock,omitempty"`
	TTLms      int64                      `json:"ttl_ms,omitempty"`
}

type apiReply struct {
	Epoch   string                     `json:"epoch,omitempty"`
	Version uint64                     `json:"version"`
	Slots   map[string]json.RawMessage `json:"slots,omitempty"`
	Lock    string                     `json:"lock,omitempty"`
	Error   *WireError                 `json:"error,omitempty"`
}

// MarshalJSON writes a WireError as {"code","message"}.
func (e *WireError) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"code": e.Code, "message": e.Message})
}

// UnmarshalJSON reads {"code","message"}.
func (e *WireError) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	e.Code, e.Message = m["code"], m["message"]
	return nil
}

const (
	maxLockTTL     = 5 * time.Minute
	defaultLockTTL = 10 * time.Second
	// CodeLockExpired answers an unlock whose lock ran out (its changes were not applied).
	CodeLockExpired = "lock_expired"
)

func (n *Node) serveAPI() error {
	for _, op := range []string{"get", "update", "send", "clear", "lock", "unlock"} {
		sub, err := n.nc.QueueSubscribe("rso.api."+op, apiQueue, func(m *nats.Msg) {
			// Answer on its own goroutine: a lock request may wait, and must not hold up other calls. The
			// goroutines are bounded: past maxAPIHandlers the request is answered busy at once.
			select {
			case n.apiSlots <- struct{}{}:
			default:
				out, _ := json.Marshal(apiReply{Error: wireErr(CodeBusy, "this node is working on %d server-API requests; retry shortly", maxAPIHandlers)})
				m.Respond(out)
				return
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer func() { <-n.apiSlots }()
				out, _ := json.Marshal(n.handleAPI(op, m.Data))
				m.Respond(out)
			}()
		})
		if err != nil {
			return fmt.Errorf("sharedobject: cannot serve rso.api.%s: %w", op, err)
		}
		n.apiSubs = append(n.apiSubs, sub)
	}
	return nil
}

func (n *Node) handleAPI(op string, data []byte) apiReply {
	var req apiRequest
	if !utf8.Valid(data) { // values are kept verbatim and written into text frames
		return apiReply{Error: wireErr(CodeBadJSON, "request is not valid UTF-8")}
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return apiReply{Error: wireErr(CodeBadJSON, "request is not valid JSON: %v", err)}
	}
	lim := &n.cfg.Limits
	if !validName(req.Obj, lim.MaxNameBytes) {
		return apiReply{Error: wireErr(CodeBadName, "object name %q must be 1 to %d bytes of UTF-8 without spaces or control characters", clip(req.Obj), lim.MaxNameBytes)}
	}
	ctx, cancel := context.WithTimeout(n.ctx, maxLockTTL)
	defer cancel()
	o, err := n.acquire(ctx, objKey{persistent: req.Persistent, name: req.Obj})
	if err != nil {
		return apiReply{Error: wireErr(CodeUnavailable, "%v", err)}
	}
	defer n.release(o)
	r := &writeReq{user: req.From, force: true}
	switch op {
	case "get":
		o.mu.Lock()
		defer o.mu.Unlock()
		rep := apiReply{Epoch: o.state.Epoch, Version: o.state.Version, Slots: map[string]json.RawMessage{}}
		o.state.Slots(func(name string, value []byte, _ uint64) { rep.Slots[name] = value })
		return rep
	case "update", "unlock":
		changes, werr := apiChanges(&req, lim)
		if werr != nil {
			return apiReply{Error: werr}
		}
		r.changes = changes
		if op == "unlock" {
			if req.Lock == "" {
				return apiReply{Error: wireErr(CodeBadFrame, "unlock needs \"lock\": the id lock returned")}
			}
			r.holds, r.unlockID = req.Lock, req.Lock
		}
	case "send":
		if !validName(req.Handler, lim.MaxNameBytes) {
			return apiReply{Error: wireErr(CodeBadName, "handler %q must be 1 to %d bytes without spaces or control characters", clip(req.Handler), lim.MaxNameBytes)}
		}
		args := jsonx.Compact(req.Args)
		if len(args) == 0 {
			args = []byte("[]")
		}
		if args[0] != '[' {
			return apiReply{Error: wireErr(CodeBadFrame, "\"args\" must be a JSON array")}
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
			return apiReply{Error: wireErr(CodeBadFrame, "ttl_ms %d is longer than %d; unlock and lock again instead", req.TTLms, maxLockTTL.Milliseconds())}
		}
		r.lock = &model.LockState{ID: randomID(9), Until: time.Now().Add(ttl).UnixMilli()}
	}
	version, err := o.submit(ctx, r)
	if err != nil {
		var werr *WireError
		if !errors.As(err, &werr) {
			werr = wireErr(CodeUnavailable, "%v", err)
		}
		return apiReply{Error: werr}
	}
	rep := apiReply{Version: version}
	if r.lock != nil {
		rep.Lock = r.lock.ID
	}
	return rep
}

// apiChanges turns a request's set and delete into changes, checked like a client's.
func apiChanges(req *apiRequest, lim *Limits) ([]model.Change, *WireError) {
	var changes []model.Change
	for name, v := range req.Set {
		if !validName(name, lim.MaxNameBytes) {
			return nil, wireErr(CodeBadName, "slot name %q must be 1 to %d bytes without spaces or control characters", clip(name), lim.MaxNameBytes)
		}
		v = jsonx.Compact(v)
		if len(v) > lim.MaxValueBytes {
			return nil, wireErr(CodeValueTooLarge, "slot %q value is %d bytes; the limit is %d (max_value_bytes)", name, len(v), lim.MaxValueBytes)
		}
		changes = append(changes, model.Change{Name: name, Value: v})
	}
	// Maps have no order; sorted changes make the events (and tests) deterministic.
	slices.SortFunc(changes, func(a, b model.Change) int { return strings.Compare(a.Name, b.Name) })
	for _, name := range req.Delete {
		if _, dup := req.Set[name]; dup || !validName(name, lim.MaxNameBytes) {
			return nil, wireErr(CodeBadName, "slot %q to delete is invalid or also set", clip(name))
		}
		changes = append(changes, model.Change{Name: name, Delete: true})
	}
	return changes, nil
}

// API is the Go client of the server-side API. It works from any process connected to the same NATS.
type API struct {
	nc *nats.Conn
}

// NewAPI returns a client of the server-side API over nc.
func NewAPI(nc *nats.Conn) *API { return &API{nc: nc} }

// Snapshot is an object's state as read by Get.
type Snapshot struct {
	Epoch   string
	Version uint64
	Slots   map[string]json.RawMessage
}

func (a *API) call(ctx context.Context, op string, req apiRequest) (*apiReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	m, err := a.nc.RequestWithContext(ctx, "rso.api."+op, data)
	if err != nil {
		return nil, fmt.Errorf("rso.api.%s: %w", op, err)
	}
	var rep apiReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return nil, fmt.Errorf("rso.api.%s: unreadable reply: %w", op, err)
	}
	if rep.Error != nil {
		return nil, rep.Error
	}
	return &rep, nil
}

// Get reads an object.
func (a *API) Get(ctx context.Context, persistent bool, obj string) (*Snapshot, error) {
	rep, err := a.call(ctx, "get", apiRequest{Obj: obj, Persistent: persistent})
	if err != nil {
		return nil, err
	}
	return &Snapshot{Epoch: rep.Epoch, Version: rep.Version, Slots: rep.Slots}, nil
}

// Update sets and deletes slots in one batch and returns the object version after it.
func (a *API) Update(ctx context.Context, persistent bool, obj string, set map[string]any, del ...string) (uint64, error) {
	raw, err := rawValues(set)
	if err != nil {
		return 0, err
	}
	rep, err := a.call(ctx, "update", apiRequest{Obj: obj, Persistent: persistent, Set: raw, Delete: del})
	if err != nil {
		return 0, err
	}
	return rep.Version, nil
}

// Set sets one slot.
func (a *API) Set(ctx context.Context, persistent bool, obj, slot string, value any) (uint64, error) {
	return a.Update(ctx, persistent, obj, map[string]any{slot: value})
}

// Delete deletes slots in one batch.
func (a *API) Delete(ctx context.Context, persistent bool, obj string, slots ...string) (uint64, error) {
	return a.Update(ctx, persistent, obj, nil, slots...)
}

// Send delivers handler(args...) to every subscriber of the object, from user from.
func (a *API) Send(ctx context.Context, persistent bool, obj, from, handler string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	_, err = a.call(ctx, "send", apiRequest{Obj: obj, Persistent: persistent, From: from, Handler: handler, Args: raw})
	return err
}

// Clear deletes every slot of an object in one batch.
func (a *API) Clear(ctx context.Context, persistent bool, obj string) (uint64, error) {
	rep, err := a.call(ctx, "clear", apiRequest{Obj: obj, Persistent: persistent})
	if err != nil {
		return 0, err
	}
	return rep.Version, nil
}

// Lock waits until it holds the object's lock (at most ttl; 0 = 10s). While it is held, client writes on
// every node wait; the changes made through the Lock are committed as one batch by Unlock.
func (a *API) Lock(ctx context.Context, persistent bool, obj string, ttl time.Duration) (*Lock, error) {
	rep, err := a.call(ctx, "lock", apiRequest{Obj: obj, Persistent: persistent, TTLms: ttl.Milliseconds()})
	if err != nil {
		return nil, err
	}
	return &Lock{api: a, obj: obj, persistent: persistent, id: rep.Lock, set: map[string]any{}}, nil
}

// Lock is a held object lock collecting changes.
type Lock struct {
	api        *API
	obj        string
	persistent bool
	id         string
	set        map[string]any
	del        []string
}

// Set records a slot change, committed by Unlock.
func (l *Lock) Set(slot string, value any) { l.set[slot] = value }

// Delete records a slot deletion, committed by Unlock.
func (l *Lock) Delete(slot string) { delete(l.set, slot); l.del = append(l.del, slot) }

// Unlock commits the recorded changes as one batch and releases the lock.
func (l *Lock) Unlock(ctx context.Context) (uint64, error) {
	raw, err := rawValues(l.set)
	if err != nil {
		return 0, err
	}
	rep, err := l.api.call(ctx, "unlock", apiRequest{Obj: l.obj, Persistent: l.persistent, Lock: l.id, Set: raw, Delete: l.del})
	if err != nil {
		return 0, err
	}
	return rep.Version, nil
}

func rawValues(set map[string]any) (map[string]json.RawMessage, error) {
	raw := make(map[string]json.RawMessage, len(set))
	for k, v := range set {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("slot %q: %w", k, err)
		}
		raw[k] = b
	}
	return raw, nil
}
