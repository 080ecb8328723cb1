package messaging

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (the service's, the embedded NATS server's) must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
