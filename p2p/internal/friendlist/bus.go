package friendlist

import "github.com/rso-server/rso/internal/wire"

// Names and messages of the friends service on NATS (docs/PROTOCOL.md §3.8, §3.10): one struct per kind.
const (
	// SubjGet (GetRequest → Reply) and SubjUpdate (UpdateRequest → Reply) are served by the friends
	// service in queue group Queue, so any instance answers.
	SubjGet    = "rso.friends.get"
	SubjUpdate = "rso.friends.update"
	Queue      = "rso-friends"
	// SubjChangedPrefix + the user's token (proto.UserToken): a Notice that the user's list changed.
	SubjChangedPrefix = "rso.friends.changed."
)

// GetRequest asks for a user's list.
type GetRequest struct {
	User string `json:"user"`
}

// UpdateRequest applies Action (ActionRequest, …) of User to Other.
type UpdateRequest struct {
	User   string `json:"user"`
	Action string `json:"action,omitempty"`
	Other  string `json:"other,omitempty"`
	Conn   string `json:"conn,omitempty"` // the connection that asked (not told twice)
}

// Reply answers a GetRequest (User's list) or an UpdateRequest (User's new list and Other's), or
// carries Error.
type Reply struct {
	User      string      `json:"user"`
	Hash      string      `json:"hash,omitempty"`
	List      *List       `json:"list,omitempty"`
	Rev       uint64      `json:"rev,omitempty"`        // list's revision in RSO_FRIENDS (absent: never stored)
	OtherList *List       `json:"other_list,omitempty"` // update: the other user's new list
	OtherRev  uint64      `json:"other_rev,omitempty"`  // and its revision
	Error     *wire.Error `json:"error,omitempty"`
}

// Notice announces User's new list on SubjChangedPrefix + proto.UserToken(User).
type Notice struct {
	User       string `json:"user"`
	ExceptConn string `json:"except_conn,omitempty"` // the connection whose update caused it (already answered)
	Hash       string `json:"hash,omitempty"`
	List       *List  `json:"list,omitempty"`
	Rev        uint64 `json:"rev,omitempty"` // list's revision in RSO_FRIENDS
}
