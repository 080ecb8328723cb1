package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/internal/apiwire"
)

// The admin subjects rso.admin.so.<op> (docs/PROTOCOL.md §2.5): Nodes, Objects and Disconnect ask every
// live node (the keys of RSO_NODES) and gather their answers; Object and Clear are answered by one node.

// CloseOperator is the WebSocket close code Disconnect closes sessions with unless told another.
const CloseOperator = apiwire.CloseOperator

// DefaultGatherTimeout is how long Admin waits for the answers of every live node.
const DefaultGatherTimeout = 2 * time.Second

// Admin is the Go client of the admin subjects. It works from any process connected to the nodes' NATS.
type Admin struct {
	nc *nats.Conn
	// Timeout bounds the wait for every live node's answer (0: DefaultGatherTimeout; a sooner context
	// deadline wins).
	Timeout time.Duration
}

// NewAdmin returns a client of the admin subjects over nc.
func NewAdmin(nc *nats.Conn) *Admin { return &Admin{nc: nc} }

// MissingError is returned, beside the answers that came, when live nodes did not answer in time.
type MissingError struct {
	Op      string
	Missing []string // node ids, sorted
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("backend: %s%s: no answer in time from node(s) %s", apiwire.AdminPrefix, e.Op, strings.Join(e.Missing, ", "))
}

// NodeInfo is one node as Nodes reports it.
type NodeInfo struct {
	Node          string
	Started       time.Time
	Uptime        time.Duration
	Connections   int // open /so sessions
	Subscriptions int // over every session
	Objects       int // replicas loaded
}

// ObjectInfo is one replica a node holds.
type ObjectInfo struct {
	Object
	Subscribers int // on that node
	Version     uint64
	Slots       int
	Bytes       int
	// ChangesLastMinute counts its slot changes and messages in the last minute (50 to 60 s), by the
	// times of its log entries: every replica of an object counts the same.
	ChangesLastMinute int
}

// NodeObjects is what one node answers Objects: its replicas, most subscribers first, and how many
// matched in all (Total may exceed len(Objects) when the limit cut the list).
type NodeObjects struct {
	Node    string
	Objects []ObjectInfo
	Total   int
}

// Nodes asks every live node about itself. The nodes are sorted by id.
func (a *Admin) Nodes(ctx context.Context) ([]NodeInfo, error) {
	answers, err := a.gather(ctx, "nodes", apiwire.AdminRequest{})
	var out []NodeInfo
	for _, raw := range answers {
		var rep apiwire.NodeInfo
		if uerr := json.Unmarshal(raw, &rep); uerr != nil {
			return out, fmt.Errorf("backend: %snodes: unreadable answer: %w", apiwire.AdminPrefix, uerr)
		}
		started, _ := time.Parse(time.RFC3339, rep.Started)
		out = append(out, NodeInfo{Node: rep.Node, Started: started, Uptime: time.Duration(rep.UptimeMs) * time.Millisecond,
			Connections: rep.Connections, Subscriptions: rep.Subscriptions, Objects: rep.Objects})
	}
	return out, err
}

// ObjectsQuery says which replicas Objects lists.
type ObjectsQuery struct {
	Prefix string // names starting with it
	Limit  int    // per node (0: 100; at most 1000)
	ByRate bool   // most changes in the last minute first, instead of most subscribers first
}

// Objects asks every live node for the replicas it holds that q selects, most subscribers (or most recent
// changes) first. The nodes are sorted by id.
func (a *Admin) Objects(ctx context.Context, q ObjectsQuery) ([]NodeObjects, error) {
	req := apiwire.AdminRequest{Prefix: q.Prefix, Limit: q.Limit}
	if q.ByRate {
		req.Sort = "rate"
	}
	answers, err := a.gather(ctx, "objects", req)
	var out []NodeObjects
	for _, raw := range answers {
		var rep apiwire.NodeObjects
		if uerr := json.Unmarshal(raw, &rep); uerr != nil {
			return out, fmt.Errorf("backend: %sobjects: unreadable answer: %w", apiwire.AdminPrefix, uerr)
		}
		no := NodeObjects{Node: rep.Node, Total: rep.Total}
		for _, o := range rep.Objects {
			no.Objects = append(no.Objects, ObjectInfo{Object: Object{Name: o.Obj, Persistent: o.Persistent},
				Subscribers: o.Subscribers, Version: o.Version, Slots: o.Slots, Bytes: o.Bytes, ChangesLastMinute: o.Changes1m})
		}
		out = append(out, no)
	}
	return out, err
}

// NodeStats is one node's numbers: the metric families of its /metrics that the admin page draws (listed
// in docs/PROTOCOL.md §2.5), as JSON {"name":[{"labels":{…},"value":…,"sum":…,"buckets":[[le,count]…]}]}.
type NodeStats struct {
	Node    string
	At      time.Time // when it read them
	Metrics json.RawMessage
}

// Stats asks every live node for its numbers. The nodes are sorted by id.
func (a *Admin) Stats(ctx context.Context) ([]NodeStats, error) {
	answers, err := a.gather(ctx, "stats", apiwire.AdminRequest{})
	var out []NodeStats
	for _, raw := range answers {
		var rep struct {
			Node    string          `json:"node"`
			At      int64           `json:"at"`
			Metrics json.RawMessage `json:"metrics"`
		}
		if uerr := json.Unmarshal(raw, &rep); uerr != nil {
			return out, fmt.Errorf("backend: %sstats: unreadable answer: %w", apiwire.AdminPrefix, uerr)
		}
		out = append(out, NodeStats{Node: rep.Node, At: time.UnixMilli(rep.At), Metrics: rep.Metrics})
	}
	return out, err
}

// Disconnect makes every live node close its /so sessions of user (or the one session with that id, as in
// the hello frame; both given: both must match) with the WebSocket close code (0: CloseOperator, 4011;
// 4000–4999) and reason (at most 123 bytes; "": "disconnected by an operator"). It returns how many
// sessions each node closed, by node id.
func (a *Admin) Disconnect(ctx context.Context, user, session string, code int, reason string) (map[string]int, error) {
	answers, err := a.gather(ctx, "disconnect", apiwire.AdminRequest{User: user, Session: session, Code: code, Reason: reason})
	out := map[string]int{}
	for _, raw := range answers {
		var rep apiwire.Closed
		if uerr := json.Unmarshal(raw, &rep); uerr != nil {
			return out, fmt.Errorf("backend: %sdisconnect: unreadable answer: %w", apiwire.AdminPrefix, uerr)
		}
		out[rep.Node] = rep.Closed
	}
	return out, err
}

// Object reads an object, as one node has it (loading it if no node does).
func (a *Admin) Object(ctx context.Context, obj Object) (*Snapshot, error) {
	rep, err := a.one(ctx, "object", obj)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Epoch: rep.Epoch, Version: rep.Version, Slots: rep.Slots}, nil
}

// Clear deletes every slot of an object in one batch, through the same log as every write: every
// subscriber is told. It returns the object's version after it.
func (a *Admin) Clear(ctx context.Context, obj Object) (uint64, error) {
	rep, err := a.one(ctx, "clear", obj)
	if err != nil {
		return 0, err
	}
	return rep.Version, nil
}

func (a *Admin) one(ctx context.Context, op string, obj Object) (*apiwire.ObjectState, error) {
	var rep apiwire.ObjectState
	if err := request(ctx, a.nc, apiwire.AdminPrefix+op, apiwire.AdminRequest{Obj: obj.Name, Persistent: obj.Persistent}, &rep); err != nil {
		return nil, err
	}
	if rep.Error != nil {
		return nil, rep.Error
	}
	return &rep, nil
}

// gather publishes one request to a subject every node serves and collects the answers, one per node,
// sorted by node id: until every node listed in RSO_NODES has answered, or the timeout. Nodes that did not
// answer, or answered with a refusal that a retry may fix (busy: its answer slots were full), are named by
// a *MissingError, returned with what came. Any other refusal (the same from every node: the request was
// bad) is returned as an *Error.
func (a *Admin) gather(ctx context.Context, op string, req apiwire.AdminRequest) ([]json.RawMessage, error) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultGatherTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	expect, err := liveNodes(ctx, a.nc)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return gatherRaw(ctx, a.nc, op, data, expect)
}

// gatherRaw is gather with the request's bytes and the nodes expected to answer.
func gatherRaw(ctx context.Context, nc *nats.Conn, op string, data []byte, expect map[string]bool) ([]json.RawMessage, error) {
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(apiwire.AdminPrefix+op, inbox, data); err != nil {
		return nil, fmt.Errorf("%s%s: %w", apiwire.AdminPrefix, op, err)
	}
	got := map[string]json.RawMessage{}
	var refusal error
	var retry []string // nodes that answered busy
	expect = maps.Clone(expect)
	pending := len(expect)
	for pending > 0 {
		select {
		case m := <-ch:
			var head struct {
				Node  string      `json:"node"`
				Error *wire.Error `json:"error"`
			}
			if err := json.Unmarshal(m.Data, &head); err != nil {
				continue // not an answer of a node
			}
			if head.Error != nil && !wire.Retryable(head.Error.Code) {
				refusal = head.Error
			}
			if _, dup := got[head.Node]; dup {
				continue
			}
			if head.Error == nil {
				got[head.Node] = m.Data
			} else if !wire.Retryable(head.Error.Code) {
				got[head.Node] = nil
			}
			if expect[head.Node] {
				pending--
				delete(expect, head.Node) // answered (a retryable refusal still counts as missing below)
				if head.Error != nil && wire.Retryable(head.Error.Code) {
					retry = append(retry, head.Node)
				}
			}
		case <-ctx.Done():
			pending = -1
		}
	}
	names := make([]string, 0, len(got))
	for node, raw := range got {
		if raw != nil {
			names = append(names, node)
		}
	}
	slices.Sort(names)
	out := make([]json.RawMessage, len(names))
	for i, node := range names {
		out[i] = got[node]
	}
	if refusal != nil {
		return out, refusal
	}
	missing := retry
	for node := range expect { // live nodes that never answered
		missing = append(missing, node)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return out, &MissingError{Op: op, Missing: missing}
	}
	return out, nil
}

// liveNodes reads the ids of the live nodes: the keys of RSO_NODES.
func liveNodes(ctx context.Context, nc *nats.Conn) (map[string]bool, error) {
	kv, err := bucket(ctx, nc, apiwire.NodesBucket)
	if err != nil {
		return nil, err
	}
	keys, err := kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, fmt.Errorf("backend: cannot list %s: %w", apiwire.NodesBucket, err)
	}
	live := make(map[string]bool, len(keys))
	for _, k := range keys {
		live[k] = true
	}
	return live, nil
}
