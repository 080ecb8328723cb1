package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/ids"
	"github.com/rso-server/rso/sharedobject/internal/apiwire"
)

// Validation hooks let a backend approve or reject client changes to the objects that match a pattern
// (an auction: a bid must beat the current price and arrive before the close). A hook is registered in the
// RSO_HOOKS bucket; nodes watch the bucket and, before committing a client update to a matching object,
// ask the hook's subject (NATS request-reply) and wait for the answer. docs/PROTOCOL.md §2.3.

// HookConfig is what a hook registers under its name in RSO_HOOKS.
type HookConfig struct {
	Pattern  string `json:"pattern"`            // object names, as in token permissions (auth.CompilePattern)
	Subject  string `json:"subject"`            // where validation requests go
	Timeout  int    `json:"timeout_ms"`         // how long to wait for an answer (0: the node's -hook-timeout)
	FailOpen bool   `json:"fail_open,omitzero"` // with no answer in time: accept (true) or refuse with hook_unavailable (false)
}

// HookRequest is what a validation hook is asked (docs/PROTOCOL.md §2.3).
type HookRequest struct {
	Obj        string       `json:"obj"`
	Persistent bool         `json:"persistent"`
	User       string       `json:"user"`
	Version    uint64       `json:"version"`
	Changes    []HookChange `json:"changes"`
}

// Object is the object the changes are for.
func (r *HookRequest) Object() Object { return Object{Name: r.Obj, Persistent: r.Persistent} }

// HookChange is one change under validation; Current is absent when the slot does not exist.
type HookChange struct {
	Name    string          `json:"name"`
	Base    uint64          `json:"base"`
	Value   json.RawMessage `json:"value,omitempty"`
	Delete  bool            `json:"delete,omitempty"`
	Current json.RawMessage `json:"current,omitempty"`
}

// HookVerdict is a hook's answer: slots to reject with a reason each, or all of them.
type HookVerdict struct {
	Reject    map[string]string `json:"reject,omitempty"`
	RejectAll string            `json:"reject_all,omitempty"`
}

// RegisterHook registers a validation hook named name and answers its requests with fn until stop is
// called. It can run in any process with access to the NATS the nodes use; several processes may register
// the same name (they share the work as a queue group). stop only stops answering: the registration stays
// (another process may serve the name), so matching updates then meet the hook's fail_open policy until
// UnregisterHook removes it. Without a deadline on ctx, registering gives up after 10 s.
func RegisterHook(ctx context.Context, nc *nats.Conn, name string, cfg HookConfig, fn func(*HookRequest) HookVerdict) (stop func(), err error) {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	if cfg.Subject == "" {
		cfg.Subject = "rso.hook." + ids.Safe(name)
	}
	if _, err := auth.CompilePattern(cfg.Pattern); err != nil {
		return nil, err
	}
	sub, err := nc.QueueSubscribe(cfg.Subject, "rso-hook", func(m *nats.Msg) {
		var req HookRequest
		var verdict HookVerdict
		if err := json.Unmarshal(m.Data, &req); err != nil {
			verdict.RejectAll = "validation request could not be read"
		} else {
			verdict = fn(&req)
		}
		out, _ := json.Marshal(verdict)
		m.Respond(out)
	})
	if err != nil {
		return nil, err
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	kv, err := hooksBucket(ctx, nc)
	if err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	data, _ := json.Marshal(cfg)
	if _, err := kv.Put(ctx, ids.Safe(name), data); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil
}

// UnregisterHook removes the hook named name, so updates to its objects no longer wait for it.
func UnregisterHook(ctx context.Context, nc *nats.Conn, name string) error {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	kv, err := hooksBucket(ctx, nc)
	if err != nil {
		return err
	}
	return kv.Delete(ctx, ids.Safe(name))
}

// hooksBucket opens RSO_HOOKS, which the nodes create.
func hooksBucket(ctx context.Context, nc *nats.Conn) (jetstream.KeyValue, error) {
	return bucket(ctx, nc, apiwire.HooksBucket)
}

// bucket opens a key-value bucket the nodes create.
func bucket(ctx context.Context, nc *nats.Conn, name string) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("backend: no %s bucket (start an rso node first): %w", name, err)
	}
	return kv, nil
}

// withDefaultDeadline bounds ctx by 10 s unless it has a deadline: NATS flushes and KV calls need one.
func withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 10*time.Second)
}
