package wsconn

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves no goroutine behind: readers, writers and closing connections all end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
