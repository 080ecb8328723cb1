package sharedobject

import "context"

// Hooks into the package for its external tests.

// StallLogReads makes every read of obj's log wait until release is closed.
func StallLogReads(n *Node, obj string, persistent bool, release <-chan struct{}) {
	subject := "rso.so." + objKey{persistent: persistent, name: obj}.ns() + "." + objKey{name: obj}.token()
	n.beforeFetch = func(s string) {
		if s == subject {
			<-release
		}
	}
}

// CatchUp starts a catch-up of a loaded object's replica, as a gap in its live entries does.
func CatchUp(n *Node, obj string, persistent bool) {
	n.mu.Lock()
	o := n.objects[objKey{persistent: persistent, name: obj}]
	n.mu.Unlock()
	go o.catchUp(context.Background())
}

// PauseRegistration makes the next upgraded session wait for proceed before the node registers it.
func PauseRegistration(n *Node, upgraded chan<- struct{}, proceed <-chan struct{}) {
	n.beforeRegister = func() {
		upgraded <- struct{}{}
		<-proceed
	}
}
