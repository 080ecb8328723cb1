package keyed

import (
	"sync"
	"testing"
)

func TestOneAtATimePerKeyAndNothingLeftBehind(t *testing.T) {
	var k Mutex
	var wg sync.WaitGroup
	inside := map[string]int{}
	var mu sync.Mutex
	for i := range 200 {
		key := []string{"alice", "bob"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := k.Lock(key)
			defer unlock()
			mu.Lock()
			inside[key]++
			n := inside[key]
			mu.Unlock()
			if n != 1 {
				t.Errorf("%d holders of %q at once", n, key)
			}
			mu.Lock()
			inside[key]--
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(k.m) != 0 {
		t.Fatalf("%d keys still in the map after every unlock", len(k.m))
	}
}

func TestKeysDoNotBlockEachOther(t *testing.T) {
	var k Mutex
	unlockA := k.Lock("a")
	defer unlockA()
	done := make(chan struct{})
	go func() { k.Lock("b")(); close(done) }()
	<-done // would hang if "b" waited for "a"
}
