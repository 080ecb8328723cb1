package client

import "encoding/json"

// Replica is a local copy of one object built from its sync frames, for tests and tools that check that
// every client converges to the same state.
type Replica struct {
	Epoch   string
	Version uint64
	Slots   map[string]json.RawMessage
}

// Apply applies the entries of s in order and takes s's epoch and version. clear, change and delete
// change Slots. success and reject do not: a sync that answers this connection's update carries no values
// for its own committed slots (the caller knows what it sent and applies it itself), and a reject means
// the slot did not change. Apply does not check s.Obj; feed it the syncs of one object only, in order.
func (r *Replica) Apply(s *Sync) {
	if r.Slots == nil {
		r.Slots = make(map[string]json.RawMessage)
	}
	for _, e := range s.Changes {
		switch e.Code {
		case CodeClear:
			clear(r.Slots)
		case CodeChange:
			r.Slots[e.Name] = e.Value
		case CodeDelete:
			delete(r.Slots, e.Name)
		}
	}
	r.Epoch, r.Version = s.Epoch, s.Version
}
