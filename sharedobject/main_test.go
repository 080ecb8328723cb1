package sharedobject_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves no goroutine behind: nodes, sessions, writers and catch-ups all end with Shutdown.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
