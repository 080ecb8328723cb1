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

// HoldObjectLock takes a loaded object's lock, as a long apply would, until the returned func is called.
func HoldObjectLock(n *Node, obj string, persistent bool) (unlock func()) {
	n.mu.Lock()
	o := n.objects[objKey{persistent: persistent, name: obj}]
	n.mu.Unlock()
	o.mu.Lock()
	return o.mu.Unlock
}

// APIRequestsInProgress is how many server-API requests the node is working on.
func APIRequestsInProgress(n *Node) int { return len(n.apiSlots) }

// BeforeLogRead runs fn before each read of an object's log (subject rso.so.<ns>.<token>).
func BeforeLogRead(n *Node, fn func(subject string)) { n.beforeFetch = fn }

// ClientID is the id the NATS server knows the node's connection by.
func ClientID(n *Node) uint64 {
	id, _ := n.nc.GetClientID()
	return id
}

// MaxParallelCatchUps bounds the replicas that read their logs at once after a reconnect.
const MaxParallelCatchUps = maxParallelCatchUps

// OnVanishCheck runs fn once the node, having dropped a temporary object, has removed it or kept it for
// another node's users.
func OnVanishCheck(n *Node, fn func(obj string)) { n.afterVanishCheck = fn }
