package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/backend"
)

// The admin API over HTTP (docs/PROTOCOL.md §2.5): JSON on the metrics listener under /admin/api/, behind the
// admin token. Each call is one backend.Admin call over NATS, so any node answers for all of them.

const adminWait = 5 * time.Second

func (m *Main) adminRoutes(mux *http.ServeMux) {
	admin := backend.NewAdmin(m.nc)
	handle := func(pattern string, fn func(ctx context.Context, r *http.Request) (any, error)) {
		mux.Handle(pattern, m.requireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), adminWait)
			defer cancel()
			out, err := fn(ctx, r)
			writeAdmin(w, out, err)
		})))
	}
	handle("GET /admin/api/nodes", func(ctx context.Context, _ *http.Request) (any, error) {
		nodes, err := admin.Nodes(ctx)
		out := []adminNode{}
		for _, n := range nodes {
			out = append(out, adminNode{n.Node, n.Started.UTC().Format(time.RFC3339), n.Uptime.Milliseconds(), n.Connections, n.Subscriptions, n.Objects})
		}
		return gathered{"nodes", out, err}, err
	})
	handle("GET /admin/api/objects", func(ctx context.Context, r *http.Request) (any, error) {
		limit := 0
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, wire.Errorf(wire.CodeBadFrame, "limit must be a whole number from 1 to 1000")
			}
			limit = n
		}
		q := backend.ObjectsQuery{Prefix: r.URL.Query().Get("prefix"), Limit: limit}
		switch r.URL.Query().Get("sort") {
		case "", "subscribers":
		case "rate":
			q.ByRate = true
		default:
			return nil, wire.Errorf(wire.CodeBadFrame, "sort must be subscribers or rate")
		}
		nodes, err := admin.Objects(ctx, q)
		out := []adminNodeObjects{}
		for _, n := range nodes {
			objs := []adminObject{}
			for _, o := range n.Objects {
				objs = append(objs, adminObject{o.Name, o.Persistent, o.Subscribers, o.Version, o.Slots, o.Bytes, o.ChangesLastMinute})
			}
			out = append(out, adminNodeObjects{n.Node, objs, n.Total})
		}
		return gathered{"nodes", out, err}, err
	})
	handle("GET /admin/api/stats", func(ctx context.Context, _ *http.Request) (any, error) {
		stats, err := admin.Stats(ctx)
		out := []adminStats{}
		for _, s := range stats {
			out = append(out, adminStats{s.Node, s.At.UnixMilli(), s.Metrics})
		}
		return gathered{"nodes", out, err}, err
	})
	handle("GET /admin/api/object", func(ctx context.Context, r *http.Request) (any, error) {
		obj, err := objectParam(r)
		if err != nil {
			return nil, err
		}
		s, err := admin.Object(ctx, obj)
		if err != nil {
			return nil, err
		}
		if s.Slots == nil {
			s.Slots = map[string]json.RawMessage{} // an empty object reads as {}, not null
		}
		return adminSnapshot{obj.Name, obj.Persistent, s.Epoch, s.Version, s.Slots}, nil
	})
	handle("POST /admin/api/clear", func(ctx context.Context, r *http.Request) (any, error) {
		obj, err := objectParam(r)
		if err != nil {
			return nil, err
		}
		v, err := admin.Clear(ctx, obj)
		if err != nil {
			return nil, err
		}
		return map[string]any{"obj": obj.Name, "persistent": obj.Persistent, "version": v}, nil
	})
	handle("POST /admin/api/disconnect", func(ctx context.Context, r *http.Request) (any, error) {
		var req struct {
			User    string `json:"user"`
			Session string `json:"session"`
			Code    int    `json:"code"`
			Reason  string `json:"reason"`
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
		if err == nil {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			return nil, wire.Errorf(wire.CodeBadJSON, `the body must be {"user"?, "session"?, "code"?, "reason"?} in JSON: %v`, err)
		}
		closed, err := admin.Disconnect(ctx, req.User, req.Session, req.Code, req.Reason)
		total := 0
		for _, n := range closed {
			total += n
		}
		return gathered{"closed", map[string]any{"total": total, "by_node": closed}, err}, err
	})
}

// objectParam reads ?obj=NAME&persistent=true|false (temporary by default, as on NATS).
func objectParam(r *http.Request) (backend.Object, error) {
	q := r.URL.Query()
	name := q.Get("obj")
	if name == "" {
		return backend.Object{}, wire.Errorf(wire.CodeBadName, "?obj=NAME is missing")
	}
	persistent := false
	if v := q.Get("persistent"); v != "" {
		var err error
		if persistent, err = strconv.ParseBool(v); err != nil {
			return backend.Object{}, wire.Errorf(wire.CodeBadFrame, "?persistent= must be true or false")
		}
	}
	return backend.Object{Name: name, Persistent: persistent}, nil
}

type adminNode struct {
	Node          string `json:"node"`
	Started       string `json:"started"`
	UptimeMs      int64  `json:"uptime_ms"`
	Connections   int    `json:"connections"`
	Subscriptions int    `json:"subscriptions"`
	Objects       int    `json:"objects"`
}

type adminObject struct {
	Obj         string `json:"obj"`
	Persistent  bool   `json:"persistent"`
	Subscribers int    `json:"subscribers"`
	Version     uint64 `json:"version"`
	Slots       int    `json:"slots"`
	Bytes       int    `json:"bytes"`
	Changes1m   int    `json:"changes_1m"`
}

type adminStats struct {
	Node    string          `json:"node"`
	At      int64           `json:"at"`
	Metrics json.RawMessage `json:"metrics"`
}

type adminNodeObjects struct {
	Node    string        `json:"node"`
	Objects []adminObject `json:"objects"`
	Total   int           `json:"total"`
}

type adminSnapshot struct {
	Obj        string                     `json:"obj"`
	Persistent bool                       `json:"persistent"`
	Epoch      string                     `json:"epoch"`
	Version    uint64                     `json:"version"`
	Slots      map[string]json.RawMessage `json:"slots"`
}

// gathered is the answer of a call every node answers: what came, and the nodes that did not answer.
type gathered struct {
	key  string
	data any
	err  error
}

func (g gathered) MarshalJSON() ([]byte, error) {
	out := map[string]any{g.key: g.data, "missing": []string{}}
	var miss *backend.MissingError
	if errors.As(g.err, &miss) {
		out["missing"] = miss.Missing
	}
	return json.Marshal(out)
}

// writeAdmin answers with out, or with the error as {"error":{"code","message"}} and a status that fits.
func writeAdmin(w http.ResponseWriter, out any, err error) {
	w.Header().Set("Content-Type", "application/json")
	var miss *backend.MissingError
	if err != nil && !errors.As(err, &miss) { // some nodes missing: still an answer, listing them
		var we *wire.Error
		if !errors.As(err, &we) {
			we = wire.Errorf(wire.CodeUnavailable, "%v", err)
		}
		status := http.StatusBadRequest
		switch {
		case wire.Retryable(we.Code):
			status = http.StatusServiceUnavailable
		case we.Code == wire.CodeInternal:
			status = http.StatusInternalServerError
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": we})
		return
	}
	json.NewEncoder(w).Encode(out)
}
