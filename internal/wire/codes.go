// Package wire is the vocabulary every endpoint shares: the error codes of docs/PROTOCOL.md, the error
// type that carries one, and the frames and field readers that are the same on /so, /relay and NATS. It
// exists so that these are compile-checked once instead of kept in step by hand in each package.
package wire

// Error codes (docs/PROTOCOL.md §1.7, §2.1, §3.8, §4). They are part of the protocol: never rename one.
// Each endpoint sends a subset; the comment says where a code is specific.
const (
	CodeBadJSON       = "bad_json"
	CodeBadFrame      = "bad_frame"
	CodeUnknownOp     = "unknown_op"
	CodeFrameTooLarge = "frame_too_large"
	CodeRateLimited   = "rate_limited"
	CodeForbidden     = "forbidden"
	CodeIDReused      = "id_reused"
	CodeBusy          = "busy"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"
	CodeUnauthorized  = "unauthorized"  // a token refused (HTTP 401 on an upgrade, the TCP auth frame)
	CodeTokenExpired  = "token_expired" // a token past its exp

	// Shared objects (/so and the server API).
	CodeBadName              = "bad_name"
	CodeValueTooLarge        = "value_too_large"
	CodeTooManyChanges       = "too_many_changes"
	CodeTooManySlots         = "too_many_slots"
	CodeObjectTooLarge       = "object_too_large"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeNotSubscribed        = "not_subscribed"
	CodeHookUnavailable      = "hook_unavailable"
	CodeLockExpired          = "lock_expired" // an unlock whose lock ran out (server API)

	// Private chat (/relay, the messaging and friends services).
	CodeMessageTooLarge = "message_too_large"
	CodeUnknownUser     = "unknown_user"
	CodeBlocked         = "blocked"
	CodeNotFriends      = "not_friends"
	CodeOffline         = "offline"
	CodeBadSeq          = "bad_seq"
	CodeNotFound        = "not_found"
	CodeTooManyFriends  = "too_many_friends"
)

// Codes lists every code, for tests that check the documentation and the SDK against this table.
var Codes = []string{
	CodeBadJSON, CodeBadFrame, CodeUnknownOp, CodeFrameTooLarge, CodeRateLimited, CodeForbidden, CodeIDReused,
	CodeBusy, CodeUnavailable, CodeInternal, CodeUnauthorized, CodeTokenExpired,
	CodeBadName, CodeValueTooLarge, CodeTooManyChanges, CodeTooManySlots, CodeObjectTooLarge,
	CodeTooManySubscriptions, CodeNotSubscribed, CodeHookUnavailable, CodeLockExpired,
	CodeMessageTooLarge, CodeUnknownUser, CodeBlocked, CodeNotFriends, CodeOffline, CodeBadSeq, CodeNotFound,
	CodeTooManyFriends,
}

// Retryable reports whether a request refused with code may succeed when re-sent unchanged, with the
// same id (docs/PROTOCOL.md: busy, unavailable, rate_limited, hook_unavailable).
func Retryable(code string) bool {
	switch code {
	case CodeBusy, CodeUnavailable, CodeRateLimited, CodeHookUnavailable:
		return true
	}
	return false
}
