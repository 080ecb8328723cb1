// Package backend is for the services behind RSO: it reads and changes shared objects over NATS (API),
// holds an object's lock to change it as one batch (Lock), validates client changes (RegisterHook), and
// names the error codes the service refuses with (Error). It talks to the nodes only through NATS and
// does not link the WebSocket server (package sharedobject).
package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/sharedobject/internal/apiwire"
)

// The server-side API: backends read and change objects over NATS request-reply on rso.api.<op>, served by
// every node. Server-side writes are not checked against a base version: the backend is the authority.
// docs/PROTOCOL.md §2.2 documents the JSON.

// Object names a shared object. A persistent object is kept in storage; a temporary one ends once nobody
// uses it any more. The same name denotes two different objects, one of each kind.
type Object struct {
	Name       string
	Persistent bool
}

// Persistent names the persistent object name.
func Persistent(name string) Object { return Object{Name: name, Persistent: true} }

// Temporary names the temporary object name.
func Temporary(name string) Object { return Object{Name: name} }

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

// call sends one request; a refusal by the service comes back as an *Error.
func (a *API) call(ctx context.Context, op string, obj Object, req apiwire.Request) (*apiwire.Reply, error) {
	req.Obj, req.Persistent = obj.Name, obj.Persistent
	var rep apiwire.Reply
	if err := request(ctx, a.nc, apiwire.SubjectPrefix+op, req, &rep); err != nil {
		return nil, err
	}
	if rep.Error != nil {
		return nil, rep.Error
	}
	return &rep, nil
}

// request sends req as JSON to subject and reads the one reply into rep.
func request(ctx context.Context, nc *nats.Conn, subject string, req, rep any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if err := json.Unmarshal(m.Data, rep); err != nil {
		return fmt.Errorf("%s: unreadable reply: %w", subject, err)
	}
	return nil
}

// Get reads an object.
func (a *API) Get(ctx context.Context, obj Object) (*Snapshot, error) {
	rep, err := a.call(ctx, "get", obj, apiwire.Request{})
	if err != nil {
		return nil, err
	}
	return &Snapshot{Epoch: rep.Epoch, Version: rep.Version, Slots: rep.Slots}, nil
}

// Update sets and deletes slots in one batch and returns the object version after it.
func (a *API) Update(ctx context.Context, obj Object, set map[string]any, del ...string) (uint64, error) {
	raw, err := rawValues(set)
	if err != nil {
		return 0, err
	}
	rep, err := a.call(ctx, "update", obj, apiwire.Request{Set: raw, Delete: del})
	if err != nil {
		return 0, err
	}
	return rep.Version, nil
}

// Set sets one slot.
func (a *API) Set(ctx context.Context, obj Object, slot string, value any) (uint64, error) {
	return a.Update(ctx, obj, map[string]any{slot: value})
}

// Delete deletes slots in one batch.
func (a *API) Delete(ctx context.Context, obj Object, slots ...string) (uint64, error) {
	return a.Update(ctx, obj, nil, slots...)
}

// Send delivers handler(args...) to every subscriber of the object, from user from.
func (a *API) Send(ctx context.Context, obj Object, from, handler string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	_, err = a.call(ctx, "send", obj, apiwire.Request{From: from, Handler: handler, Args: raw})
	return err
}

// Clear deletes every slot of an object in one batch.
func (a *API) Clear(ctx context.Context, obj Object) (uint64, error) {
	rep, err := a.call(ctx, "clear", obj, apiwire.Request{})
	if err != nil {
		return 0, err
	}
	return rep.Version, nil
}

// Lock waits until it holds the object's lock (at most ttl; 0 = 10s). While it is held, client writes on
// every node wait; the changes made through the Lock are committed as one batch by Unlock.
func (a *API) Lock(ctx context.Context, obj Object, ttl time.Duration) (*Lock, error) {
	rep, err := a.call(ctx, "lock", obj, apiwire.Request{TTLms: ttl.Milliseconds()})
	if err != nil {
		return nil, err
	}
	return &Lock{api: a, obj: obj, id: rep.Lock, set: map[string]any{}}, nil
}

// Lock is a held object lock collecting changes.
type Lock struct {
	api *API
	obj Object
	id  string
	set map[string]any
	del []string
}

// Set records a slot change, committed by Unlock.
func (l *Lock) Set(slot string, value any) { l.set[slot] = value }

// Delete records a slot deletion, committed by Unlock.
func (l *Lock) Delete(slot string) { delete(l.set, slot); l.del = append(l.del, slot) }

// Unlock commits the recorded changes as one batch and releases the lock. If the lock ran out first,
// nothing is applied and the error is an *Error with CodeLockExpired.
func (l *Lock) Unlock(ctx context.Context) (uint64, error) {
	raw, err := rawValues(l.set)
	if err != nil {
		return 0, err
	}
	rep, err := l.api.call(ctx, "unlock", l.obj, apiwire.Request{Lock: l.id, Set: raw, Delete: l.del})
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
