package sharedobject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/internal/wsconn"
	"github.com/rso-server/rso/sharedobject/internal/apiwire"
)

// The admin subjects: operators and scripts see and steer every node over NATS on rso.admin.so.<op>
// (docs/PROTOCOL.md §2.5). nodes, objects and disconnect are served by every node without a queue group,
// so that each live node answers (backend.Admin gathers the answers); object and clear are answered by
// one node (queue group rso-admin). Requests are handled on the server API's bounded handler slots.

// apiwire (which backend reads, without wsconn) holds the operator's close code too: they must agree.
const _ = uint(apiwire.CloseOperator-wsconn.CloseOperator) + uint(wsconn.CloseOperator-apiwire.CloseOperator)

const (
	defaultOperatorReason = "disconnected by an operator"
	maxUserBytes          = 200 // a token's sub (docs/PROTOCOL.md §1.8)
)

func (n *Node) serveAdmin() error {
	serve := func(op string, queue bool) error {
		handle := func(m *nats.Msg) {
			n.answerBounded(m, func(busy *wire.Error) any {
				var rep any = n.adminFailed(op, busy)
				if busy == nil {
					rep = n.handleAdmin(op, m.Data)
				}
				var e *wire.Error
				if f, ok := rep.(apiwire.AdminError); ok {
					e = f.Error
				}
				n.met.apiAnswered("admin."+op, e)
				return rep
			})
		}
		var sub *nats.Subscription
		var err error
		if queue {
			sub, err = n.nc.QueueSubscribe(apiwire.AdminPrefix+op, apiwire.AdminQueue, handle)
		} else {
			sub, err = n.nc.Subscribe(apiwire.AdminPrefix+op, handle)
		}
		if err != nil {
			return fmt.Errorf("sharedobject: cannot serve %s%s: %w", apiwire.AdminPrefix, op, err)
		}
		n.apiSubs = append(n.apiSubs, sub)
		return nil
	}
	for _, op := range apiwire.AdminAll {
		if err := serve(op, false); err != nil {
			return err
		}
	}
	for _, op := range apiwire.AdminOne {
		if err := serve(op, true); err != nil {
			return err
		}
	}
	return nil
}

// adminOps are the admin ops as the metrics name them: admin.<op>.
func adminOps() []string {
	var ops []string
	for _, op := range slices.Concat(apiwire.AdminAll, apiwire.AdminOne) {
		ops = append(ops, "admin."+op)
	}
	return ops
}

// answerBounded answers m on its own goroutine, taking one of the server API's handler slots; with none
// free, fn is called at once with a busy error. fn returns the answer, marshalled as JSON.
func (n *Node) answerBounded(m *nats.Msg, fn func(busy *wire.Error) any) {
	select {
	case n.apiSlots <- struct{}{}:
	default:
		out, _ := json.Marshal(fn(wire.Errorf(wire.CodeBusy, "this node is working on %d server-API requests; retry shortly", maxAPIHandlers)))
		m.Respond(out)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { <-n.apiSlots }()
		out, _ := json.Marshal(fn(nil))
		m.Respond(out)
	}()
}

// adminFailed is the answer refusing an admin request: ops every node answers name the node.
func (n *Node) adminFailed(op string, e *wire.Error) apiwire.AdminError {
	rep := apiwire.AdminError{Error: e}
	if slices.Contains(apiwire.AdminAll, op) {
		rep.Node = n.id
	}
	return rep
}

// parseAdmin checks a request at the boundary: UTF-8, one JSON object (an empty body is {}), known fields.
func parseAdmin(data []byte) (apiwire.AdminRequest, *wire.Error) {
	var req apiwire.AdminRequest
	if !utf8.Valid(data) {
		return req, wire.Errorf(wire.CodeBadJSON, "request is not valid UTF-8")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		return req, wire.Errorf(wire.CodeBadJSON, "request is not one JSON object: data follows it")
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return req, nil
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return req, wire.Errorf(wire.CodeBadFrame, "request must be a JSON object, not %s", typeErr.Value)
	case errors.As(err, &typeErr):
		return req, wire.Errorf(wire.CodeBadFrame, "field %q must be a JSON %s", typeErr.Field, typeErr.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return req, wire.Errorf(wire.CodeBadFrame, "request has an %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return req, wire.Errorf(wire.CodeBadJSON, "request is not valid JSON: %v", err)
}

func (n *Node) handleAdmin(op string, data []byte) any {
	req, werr := parseAdmin(data)
	if werr != nil {
		return n.adminFailed(op, werr)
	}
	switch op {
	case "nodes":
		return n.adminNodes()
	case "objects":
		return n.adminObjects(&req)
	case "disconnect":
		return n.adminDisconnect(&req)
	case "stats":
		return n.adminStats()
	}
	// object and clear: the server API's get and clear, checked and written as it does.
	api, _ := json.Marshal(apiwire.Request{Obj: req.Obj, Persistent: req.Persistent})
	apiOp := map[string]string{"object": "get", "clear": "clear"}[op]
	rep := n.handleAPI(apiOp, api)
	if rep.Error != nil {
		return n.adminFailed(op, rep.Error)
	}
	return apiwire.ObjectState{Obj: req.Obj, Persistent: req.Persistent, Epoch: rep.Epoch, Version: rep.Version, Slots: rep.Slots}
}

func (n *Node) adminNodes() apiwire.NodeInfo {
	n.mu.Lock()
	sessions := make([]*session, 0, len(n.sessions))
	for s := range n.sessions {
		sessions = append(sessions, s)
	}
	objects := len(n.objects)
	n.mu.Unlock()
	subs := 0
	for _, s := range sessions {
		s.mu.Lock()
		subs += len(s.subs)
		s.mu.Unlock()
	}
	return apiwire.NodeInfo{
		Node: n.id, Started: n.started.UTC().Format(time.RFC3339), UptimeMs: time.Since(n.started).Milliseconds(),
		Connections: len(sessions), Subscriptions: subs, Objects: objects,
	}
}

func (n *Node) adminObjects(req *apiwire.AdminRequest) any {
	limit := req.Limit
	switch {
	case limit == 0:
		limit = apiwire.DefaultObjectsLimit
	case limit < 0 || limit > apiwire.MaxObjectsLimit:
		return n.adminFailed("objects", wire.Errorf(wire.CodeBadFrame, "limit %d must be 1 to %d", limit, apiwire.MaxObjectsLimit))
	}
	byRate := false
	switch req.Sort {
	case "", "subscribers":
	case "rate":
		byRate = true
	default:
		return n.adminFailed("objects", wire.Errorf(wire.CodeBadFrame, "sort %q must be \"subscribers\" or \"rate\"", clip(req.Sort)))
	}
	if len(req.Prefix) > n.cfg.Limits.MaxNameBytes {
		return n.adminFailed("objects", wire.Errorf(wire.CodeBadName, "prefix is %d bytes; object names have at most %d", len(req.Prefix), n.cfg.Limits.MaxNameBytes))
	}
	list := []apiwire.ObjectInfo{}
	now := time.Now().UnixMilli()
	for _, o := range n.loadedObjects() {
		if !strings.HasPrefix(o.key.name, req.Prefix) {
			continue
		}
		select {
		case <-o.ready:
		default:
			continue // still loading
		}
		if o.loadErr != nil {
			continue
		}
		o.mu.Lock()
		list = append(list, apiwire.ObjectInfo{Obj: o.key.name, Persistent: o.key.persistent, Subscribers: len(o.subs),
			Version: o.state.Version, Slots: o.state.Len(), Bytes: o.state.Bytes(), Changes1m: o.rate.lastMinute(now)})
		o.mu.Unlock()
	}
	slices.SortFunc(list, func(a, b apiwire.ObjectInfo) int {
		if byRate && a.Changes1m != b.Changes1m {
			return b.Changes1m - a.Changes1m
		}
		if a.Subscribers != b.Subscribers {
			return b.Subscribers - a.Subscribers
		}
		if c := strings.Compare(a.Obj, b.Obj); c != 0 {
			return c
		}
		if a.Persistent == b.Persistent {
			return 0
		} else if a.Persistent {
			return -1
		}
		return 1
	})
	total := len(list)
	return apiwire.NodeObjects{Node: n.id, Objects: list[:min(limit, total)], Total: total}
}

func (n *Node) adminDisconnect(req *apiwire.AdminRequest) any {
	fail := func(e *wire.Error) any { return n.adminFailed("disconnect", e) }
	if req.User == "" && req.Session == "" {
		return fail(wire.Errorf(wire.CodeBadFrame, "disconnect needs \"user\" or \"session\" (or both)"))
	}
	if len(req.User) > maxUserBytes {
		return fail(wire.Errorf(wire.CodeBadName, "user is %d bytes; user ids have at most %d", len(req.User), maxUserBytes))
	}
	if req.Session != "" && !validName(req.Session, n.cfg.Limits.MaxNameBytes) {
		return fail(wire.Errorf(wire.CodeBadName, "session %q is not a session id", clip(req.Session)))
	}
	code := req.Code
	if code == 0 {
		code = apiwire.CloseOperator
	}
	if code < 4000 || code > 4999 {
		return fail(wire.Errorf(wire.CodeBadFrame, "code %d must be a private close code, 4000 to 4999 (default %d)", code, apiwire.CloseOperator))
	}
	reason := req.Reason
	if reason == "" {
		reason = defaultOperatorReason
	}
	if len(reason) > apiwire.MaxCloseReasonBytes {
		return fail(wire.Errorf(wire.CodeBadFrame, "reason is %d bytes; a close frame has room for %d", len(reason), apiwire.MaxCloseReasonBytes))
	}
	prefix := n.id + "/"
	n.mu.Lock()
	var victims []*session
	for s := range n.sessions {
		if (req.User == "" || s.ident.User == req.User) && (req.Session == "" || strings.TrimPrefix(s.origin, prefix) == req.Session) {
			victims = append(victims, s)
		}
	}
	n.mu.Unlock()
	for _, s := range victims {
		s.close(code, reason)
	}
	if len(victims) > 0 {
		n.log.Info("sessions closed by an operator", "user", req.User, "session", req.Session, "code", code, "closed", len(victims))
	}
	return apiwire.Closed{Node: n.id, Closed: len(victims)}
}

func (n *Node) adminStats() any {
	g, ok := n.cfg.Gatherer, true
	if g == nil {
		g, ok = n.cfg.Registerer.(prometheus.Gatherer)
	}
	if !ok {
		return n.adminFailed("stats", wire.Errorf(wire.CodeUnavailable, "this node's metrics registry cannot be read: give sharedobject.Config a Gatherer"))
	}
	m, err := metrics.Snapshot(g, apiwire.StatsFamilies)
	if err != nil {
		n.alarms.Warn("metrics", "cannot gather the node's metrics for rso.admin.so.stats", "err", err)
	}
	return apiwire.NodeStats{Node: n.id, At: time.Now().UnixMilli(), Metrics: m}
}
