package backend_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A backend that only registers a hook or calls the API must not link the WebSocket server: it talks to
// the nodes over NATS alone.
func TestBackendDoesNotLinkTheServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := map[string]bool{
		"github.com/rso-server/rso/sharedobject":    true,
		"github.com/rso-server/rso/internal/wsconn": true,
		"github.com/gorilla/websocket":              true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		if forbidden[pkg] || strings.HasPrefix(pkg, "github.com/gorilla/websocket/") {
			t.Errorf("package backend depends on %s", pkg)
		}
	}
}
