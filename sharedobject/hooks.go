package sharedobject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/backend"
	"github.com/rso-server/rso/sharedobject/internal/apiwire"
)

// Validation hooks let a backend approve or reject client changes to the objects that match a pattern
// (an auction: a bid must beat the current price and arrive before the close). A hook is registered in the
// RSO_HOOKS bucket; nodes watch the bucket and, before committing a client update to a matching object,
// ask the hook's subject (NATS request-reply) and wait for the answer. docs/PROTOCOL.md §2.3. A backend
// registers with backend.RegisterHook; the request built here has the shape of backend.HookRequest.

type hook struct {
	name    string
	cfg     backend.HookConfig
	pattern auth.Pattern
	timeout time.Duration
}

type hookTable struct {
	mu      sync.RWMutex
	hooks   []*hook // sorted by name: the first match wins
	watcher jetstream.KeyWatcher
	done    chan struct{}
}

func startHookTable(ctx context.Context, n *Node) (*hookTable, error) {
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: apiwire.HooksBucket, Replicas: n.cfg.Replicas})
	if err != nil {
		return nil, fmt.Errorf("sharedobject: cannot create bucket %s: %w", apiwire.HooksBucket, err)
	}
	w, err := kv.WatchAll(n.ctx) // lives as long as the node, not as long as setup
	if err != nil {
		return nil, fmt.Errorf("sharedobject: cannot watch %s: %w", apiwire.HooksBucket, err)
	}
	t := &hookTable{watcher: w, done: make(chan struct{})}
	loaded := make(chan struct{})
	go t.run(n, loaded)
	select {
	case <-loaded:
	case <-ctx.Done():
		w.Stop()
		return nil, ctx.Err()
	}
	return t, nil
}

func (t *hookTable) run(n *Node, loaded chan struct{}) {
	defer close(t.done)
	byName := map[string]*hook{}
	for e := range t.watcher.Updates() {
		if e == nil { // end of the initial values
			close(loaded)
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			delete(byName, e.Key())
		} else if h, err := parseHook(e.Key(), e.Value(), n.cfg.HookTimeout); err != nil {
			n.log.Warn("ignoring validation hook", "name", e.Key(), "err", err)
			delete(byName, e.Key())
		} else {
			byName[e.Key()] = h
		}
		list := make([]*hook, 0, len(byName))
		for _, h := range byName {
			list = append(list, h)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
		t.mu.Lock()
		t.hooks = list
		t.mu.Unlock()
	}
}

func parseHook(name string, data []byte, defTimeout time.Duration) (*hook, error) {
	var cfg backend.HookConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("value is not a hook config: %w", err)
	}
	p, err := auth.CompilePattern(cfg.Pattern)
	if err != nil {
		return nil, err
	}
	if cfg.Subject == "" {
		return nil, errors.New("hook has no subject")
	}
	h := &hook{name: name, cfg: cfg, pattern: p, timeout: time.Duration(cfg.Timeout) * time.Millisecond}
	if h.timeout <= 0 {
		h.timeout = defTimeout
	}
	return h, nil
}

func (t *hookTable) find(key objKey) *hook {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, h := range t.hooks {
		if h.pattern.Match(key.persistent, key.name) {
			return h
		}
	}
	return nil
}

func (t *hookTable) stop() {
	t.watcher.Stop()
	<-t.done
}

// hookVerdicts is a hook's answer for the one write at the head of a hooked object's queue, given at seq.
type hookVerdicts struct {
	seq    uint64
	reject map[string]string // slot → reason
}

// askHooks asks the hook covering the object about a client update. ok=false means the write was
// answered already (no hook answered and the hook fails closed, or the answer was unusable).
var errBadHookReply = errors.New("hook reply is not a JSON object")

func (o *object) askHooks(reqs []*writeReq) (v *hookVerdicts, ok bool) {
	h := o.node.hooks.find(o.key)
	if h == nil || len(reqs) != 1 || reqs[0].sess == nil || reqs[0].changes == nil {
		return nil, true
	}
	r := reqs[0]
	o.mu.Lock()
	req, seq := o.hookRequestLocked(r), o.seq
	o.mu.Unlock()
	ctx, cancel := context.WithTimeout(o.node.ctx, h.timeout)
	defer cancel()
	met := o.node.met
	start := time.Now()
	reply, err := o.node.nc.RequestWithContext(ctx, h.cfg.Subject, req)
	met.hookDuration.Observe(time.Since(start).Seconds())
	if err == nil && (!gjson.ValidBytes(reply.Data) || !utf8.Valid(reply.Data) || !gjson.ParseBytes(reply.Data).IsObject()) {
		err = errBadHookReply // checked at the boundary like any frame: garbage is no answer, not an approval
	}
	switch {
	case err == nil:
	case errors.Is(err, errBadHookReply):
		met.hookGarbled.Inc()
	case errors.Is(err, context.DeadlineExceeded):
		met.hookTimeout.Inc()
	default:
		met.hookUnavailable.Inc()
	}
	if err != nil {
		if h.cfg.FailOpen {
			return &hookVerdicts{seq: seq}, true
		}
		why := "did not answer in time"
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			why = "has no backend listening"
		case errors.Is(err, errBadHookReply):
			why = "answered with something that is not a JSON object in UTF-8"
		}
		o.mu.Lock()
		o.answerErrLocked(r, wire.Errorf(wire.CodeHookUnavailable, "validation hook %q for %q %s; try again later", h.name, o.key.name, why))
		o.mu.Unlock()
		o.node.alarms.Warn("hook", "validation hook failed", "hook", h.name, "subject", h.cfg.Subject, "why", why, "err", err)
		return nil, false
	}
	v = &hookVerdicts{seq: seq, reject: map[string]string{}}
	ans := gjson.ParseBytes(reply.Data)
	if all := ans.Get("reject_all"); all.Exists() {
		for _, c := range r.changes {
			v.reject[c.Name] = all.String()
		}
	}
	ans.Get("reject").ForEach(func(k, why gjson.Result) bool {
		v.reject[k.String()] = why.String()
		return true
	})
	if len(v.reject) > 0 {
		met.hookRejected.Inc()
	} else {
		met.hookAccepted.Inc()
	}
	return v, true
}

func (o *object) hookRequestLocked(r *writeReq) []byte {
	b := appendObjHeader(make([]byte, 0, 256), "validate", o.key.name, o.key.persistent)
	b = append(b, `,"user":`...)
	b = jsonx.AppendString(b, r.user)
	b = append(b, `,"version":`...)
	b = jsonx.AppendUint(b, o.state.Version)
	b = append(b, `,"changes":[`...)
	for i, c := range r.changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = jsonx.AppendString(b, c.Name)
		b = append(b, `,"base":`...)
		b = jsonx.AppendUint(b, c.Base)
		if c.Delete {
			b = append(b, `,"delete":true`...)
		} else {
			b = append(b, `,"value":`...)
			b = append(b, c.Value...)
		}
		if cur, _, ok := o.state.Get(c.Name); ok {
			b = append(b, `,"current":`...)
			b = append(b, cur...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}
