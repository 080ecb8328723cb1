package natslink_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rso-server/rso/internal/natsboot"
	"github.com/rso-server/rso/internal/natslink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Two watchers of one connection are both told of a drop and of the reconnect, in that order, each once;
// a stopped watcher is told nothing more.
func TestWatchersHearDropAndReconnect(t *testing.T) {
	srv, err := natsboot.StartEmbedded(natsboot.EmbeddedOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := natsboot.ConnectInProcess(srv, "t", "")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	var mu sync.Mutex
	var heard [2][]string
	watch := func(i int) func() {
		note := func(what string) func() {
			return func() { mu.Lock(); heard[i] = append(heard[i], what); mu.Unlock() }
		}
		return natslink.Watch(nc, note("down"), note("up"))
	}
	stop0, stop1 := watch(0), watch(1)
	defer stop0()

	kick := func() {
		t.Helper()
		id, err := nc.GetClientID()
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.DisconnectClientByID(id); err != nil {
			t.Fatal(err)
		}
	}
	got := func(i int) string { mu.Lock(); defer mu.Unlock(); return strings.Join(heard[i], " ") }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: heard %q and %q", what, got(0), got(1))
			}
		}
	}
	kick()
	waitFor("both watchers to hear the reconnect", func() bool { return got(0) == "down up" && got(1) == "down up" })

	stop1()
	kick()
	waitFor("the running watcher to hear the second reconnect", func() bool { return got(0) == "down up down up" })
	if g := got(1); g != "down up" {
		t.Fatalf("stopped watcher heard %q, want nothing after stop", g)
	}
}
