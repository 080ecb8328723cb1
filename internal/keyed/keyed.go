// Package keyed has a mutex per key, for work that must run one at a time per user or per conversation
// while different keys run in parallel.
package keyed

import "sync"

// Mutex serialises work per key. The zero value is ready; entries exist only while a key is held or
// awaited, so the map does not grow with every key ever used.
type Mutex struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	mu   sync.Mutex
	refs int
}

// Lock waits until key is free, takes it and returns the function that frees it.
func (k *Mutex) Lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*entry{}
	}
	e := k.m[key]
	if e == nil {
		e = &entry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
