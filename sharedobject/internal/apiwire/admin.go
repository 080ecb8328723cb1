package apiwire

import (
	"encoding/json"

	"github.com/rso-server/rso/internal/metrics"
	"github.com/rso-server/rso/internal/wire"
)

// The admin subjects (docs/PROTOCOL.md §2.5): operators and scripts see and steer every node. The ops of
// AdminAll are served by every node without a queue group, so that each live node answers; those of
// AdminOne are served in the queue group AdminQueue, answered by one node.
const (
	AdminPrefix = "rso.admin.so."
	AdminQueue  = "rso-admin"
	// NodesBucket is the key-value bucket of the live nodes: its keys are the node ids.
	NodesBucket = "RSO_NODES"
	// DefaultObjectsLimit and MaxObjectsLimit bound the objects one node lists.
	DefaultObjectsLimit = 100
	MaxObjectsLimit     = 1000
	// CloseOperator is the WebSocket close code of a session closed by rso.admin.so.disconnect.
	CloseOperator = 4011
	// MaxCloseReasonBytes is what a WebSocket close frame has room for after the code.
	MaxCloseReasonBytes = 123
)

var (
	AdminAll = []string{"nodes", "objects", "disconnect", "stats"}
	AdminOne = []string{"object", "clear"}
)

// AdminRequest is the body of a request to AdminPrefix + op; each op reads the fields it needs, and a
// field no op knows is refused.
type AdminRequest struct {
	Obj        string `json:"obj,omitempty"`
	Persistent bool   `json:"persistent,omitempty"`
	Prefix     string `json:"prefix,omitempty"`
	Limit      int    `json:"limit,omitempty"`
	Sort       string `json:"sort,omitempty"` // objects: "subscribers" (the default) or "rate"
	User       string `json:"user,omitempty"`
	Session    string `json:"session,omitempty"`
	Code       int    `json:"code,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// AdminError is a refused admin request; Node names the node that refused it (absent from AdminOne ops).
type AdminError struct {
	Node  string      `json:"node,omitempty"`
	Error *wire.Error `json:"error"`
}

// NodeInfo answers "nodes".
type NodeInfo struct {
	Node          string      `json:"node"`
	Started       string      `json:"started"` // RFC 3339
	UptimeMs      int64       `json:"uptime_ms"`
	Connections   int         `json:"connections"`
	Subscriptions int         `json:"subscriptions"`
	Objects       int         `json:"objects"`
	Error         *wire.Error `json:"error,omitempty"` // read by clients only
}

// ObjectInfo is one replica in an "objects" answer.
type ObjectInfo struct {
	Obj         string `json:"obj"`
	Persistent  bool   `json:"persistent"`
	Subscribers int    `json:"subscribers"`
	Version     uint64 `json:"version"`
	Slots       int    `json:"slots"`
	Bytes       int    `json:"bytes"`
	Changes1m   int    `json:"changes_1m"` // slot changes and messages in the last minute (50 to 60 s)
}

// NodeObjects answers "objects": the node's replicas, most subscribers (or most changes_1m) first; Total
// counts every replica that matched the prefix, listed or not.
type NodeObjects struct {
	Node    string       `json:"node"`
	Objects []ObjectInfo `json:"objects"`
	Total   int          `json:"total"`
	Error   *wire.Error  `json:"error,omitempty"`
}

// Closed answers "disconnect".
type Closed struct {
	Node   string      `json:"node"`
	Closed int         `json:"closed"`
	Error  *wire.Error `json:"error,omitempty"`
}

// ObjectState answers "object" (and, with Version alone set, "clear").
type ObjectState struct {
	Obj        string                     `json:"obj"`
	Persistent bool                       `json:"persistent"`
	Epoch      string                     `json:"epoch,omitempty"`
	Version    uint64                     `json:"version"`
	Slots      map[string]json.RawMessage `json:"slots,omitempty"`
	Error      *wire.Error                `json:"error,omitempty"`
}

// NodeStats answers "stats": the node's own numbers from its /metrics, the families of StatsFamilies.
type NodeStats struct {
	Node    string                      `json:"node"`
	At      int64                       `json:"at"` // when they were read, Unix ms
	Metrics map[string][]metrics.Series `json:"metrics"`
	Error   *wire.Error                 `json:"error,omitempty"`
}

// StatsFamilies are the metric families "stats" answers with: what the admin page draws.
var StatsFamilies = []string{
	"rso_connections", "rso_so_subscriptions", "rso_so_objects_loaded", "rso_relay_users",
	"rso_so_commits_total", "rso_so_commit_duration_seconds", "rso_so_publish_duration_seconds",
	"rso_so_deliveries_total", "rso_relay_deliveries_total", "rso_so_outbound_bytes_total", "rso_relay_outbound_bytes_total",
	"rso_chat_messages_stored_total", "rso_connection_closes_total", "rso_refusals_total",
}
