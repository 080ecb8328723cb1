package chatbus_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The three services meet only on NATS: relay, p2p and sharedobject never import each other (they share
// internal/… packages such as this one instead).
func TestServicesDoNotImportEachOther(t *testing.T) {
	const mod = "github.com/rso-server/rso/"
	services := []string{"relay", "p2p", "sharedobject"}
	for _, svc := range services {
		out, err := exec.Command("go", "list", "-deps", "../../"+svc+"/...").Output()
		if err != nil {
			t.Fatalf("go list -deps ./%s/...: %v", svc, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, other := range services {
				if other != svc && (dep == mod+other || strings.HasPrefix(dep, mod+other+"/")) {
					t.Errorf("%s links %s", svc, dep)
				}
			}
		}
	}
}
