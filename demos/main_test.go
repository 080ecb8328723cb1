package demos_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The demo server's tests leave no goroutine behind: the node, the relay and their sockets all stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
