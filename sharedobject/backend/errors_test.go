package backend_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rso-server/rso/sharedobject/backend"
)

func TestErrorIsMatchesByCode(t *testing.T) {
	err := fmt.Errorf("update: %w", &backend.Error{Code: backend.CodeBusy, Message: "retry shortly"})
	if !errors.Is(err, &backend.Error{Code: backend.CodeBusy}) {
		t.Error("a wrapped busy error is not busy")
	}
	if errors.Is(err, &backend.Error{Code: backend.CodeUnavailable}) {
		t.Error("a busy error is unavailable")
	}
	var e *backend.Error
	if !errors.As(err, &e) || e.Message != "retry shortly" {
		t.Errorf("errors.As gave %+v", e)
	}
}
