package relay

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts — the relay's, the sockets', the embedded NATS server's — must be gone
// when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
