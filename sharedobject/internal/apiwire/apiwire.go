// Package apiwire holds the one definition of what the server-side API and the hook registry exchange over
// NATS (docs/PROTOCOL.md §2.2, §2.3): the subjects, the queue group, the hooks bucket and the JSON of a
// request and its reply. The server (sharedobject) answers with it; the client (sharedobject/backend) asks
// with it.
package apiwire

import (
	"encoding/json"

	"github.com/rso-server/rso/internal/wire"
)

const (
	// SubjectPrefix + op is where API requests go; Ops are the ops every node serves.
	SubjectPrefix = "rso.api."
	// Queue is the queue group of the nodes serving the API: one node answers each request.
	Queue = "rso-api"
	// HooksBucket is the key-value bucket where validation hooks are registered, by name.
	HooksBucket = "RSO_HOOKS"
)

// Ops are the server-side API's operations.
var Ops = []string{"get", "update", "send", "clear", "lock", "unlock"}

// Request is the body of a request to SubjectPrefix + op; each op reads the fields it needs.
type Request struct {
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

// Reply is the answer to a Request: Error, or what the op returns.
type Reply struct {
	Epoch   string                     `json:"epoch,omitempty"`
	Version uint64                     `json:"version"`
	Slots   map[string]json.RawMessage `json:"slots,omitempty"`
	Lock    string                     `json:"lock,omitempty"`
	Error   *wire.Error                `json:"error,omitempty"` // a refusal: a stable code and what was wrong
}
