package wire

import "fmt"

// Error is a refusal with a stable code; Message says what was wrong and how to fix it.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Errorf returns an Error with code and a message formatted as by fmt.Sprintf.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is makes errors.Is(err, &wire.Error{Code: c}) true for every Error with code c, whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}
