package backend

// Error codes of refusals: in the clients' error frames (docs/PROTOCOL.md §1.7) and in the server-side
// API's replies (§2.2). They are part of the protocol: never rename one.
const (
	CodeBadJSON              = "bad_json"
	CodeBadFrame             = "bad_frame"
	CodeUnknownOp            = "unknown_op"
	CodeBadName              = "bad_name"
	CodeFrameTooLarge        = "frame_too_large"
	CodeValueTooLarge        = "value_too_large"
	CodeTooManyChanges       = "too_many_changes"
	CodeTooManySlots         = "too_many_slots"
	CodeObjectTooLarge       = "object_too_large"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeNotSubscribed        = "not_subscribed"
	CodeForbidden            = "forbidden"
	CodeRateLimited          = "rate_limited"
	CodeHookUnavailable      = "hook_unavailable"
	CodeBusy                 = "busy"
	CodeIDReused             = "id_reused"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
	// CodeLockExpired answers an unlock whose lock ran out (its changes were not applied).
	CodeLockExpired = "lock_expired"
)

// Error is a refusal by the service with a stable Code; Message says what was wrong and how to fix it.
// errors.Is matches it by code alone:
//
//	if errors.Is(err, &backend.Error{Code: backend.CodeBusy}) { /* retry shortly */ }
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}
