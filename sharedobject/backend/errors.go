package backend

import "github.com/rso-server/rso/internal/wire"

// Error codes of refusals: in the clients' error frames (docs/PROTOCOL.md §1.7) and in the server-side
// API's replies (§2.2). They are the protocol's own codes (one table for every endpoint): never renamed.
const (
	CodeBadJSON              = wire.CodeBadJSON
	CodeBadFrame             = wire.CodeBadFrame
	CodeUnknownOp            = wire.CodeUnknownOp
	CodeBadName              = wire.CodeBadName
	CodeFrameTooLarge        = wire.CodeFrameTooLarge
	CodeValueTooLarge        = wire.CodeValueTooLarge
	CodeTooManyChanges       = wire.CodeTooManyChanges
	CodeTooManySlots         = wire.CodeTooManySlots
	CodeObjectTooLarge       = wire.CodeObjectTooLarge
	CodeTooManySubscriptions = wire.CodeTooManySubscriptions
	CodeNotSubscribed        = wire.CodeNotSubscribed
	CodeForbidden            = wire.CodeForbidden
	CodeRateLimited          = wire.CodeRateLimited
	CodeHookUnavailable      = wire.CodeHookUnavailable
	CodeBusy                 = wire.CodeBusy
	CodeIDReused             = wire.CodeIDReused
	CodeUnavailable          = wire.CodeUnavailable
	CodeInternal             = wire.CodeInternal
	// CodeLockExpired answers an unlock whose lock ran out (its changes were not applied).
	CodeLockExpired = wire.CodeLockExpired
)

// Error is a refusal by the service with a stable Code; Message says what was wrong and how to fix it.
// errors.Is matches it by code alone:
//
//	if errors.Is(err, &backend.Error{Code: backend.CodeBusy}) { /* retry shortly */ }
type Error = wire.Error
