//go:build linux || darwin

package sharedobject_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/sharedobject"
)

const (
	fanoutSubscribers = 1000
	// fanoutInFlight updates are outstanding at once, so that the writer groups commits as it does under
	// load; one at a time would measure the commit round trip instead of the fan-out.
	fanoutInFlight = 8
	fanoutObject   = "bench/fanout"
)

// BenchmarkFanout1000 runs one node on an embedded NATS with 1,000 WebSocket clients subscribed to one
// temporary object, and one more client that publishes b.N changes. The clock stops when every subscriber
// has received every change. ns/op is per change (1,000 deliveries); B/op and allocs/op count the whole
// process: node, NATS and the 1,001 clients.
func BenchmarkFanout1000(b *testing.B) {
	needOpenFiles(b, 2*fanoutSubscribers+512) // both ends of every socket live in this process
	n := startNode(b, startNATS(b, ""), func(c *sharedobject.Config) {
		c.Limits.FramesPerSecond = 1e6 // the publisher is meant to go as fast as commits do
	})
	conns := dialSubscribers(b, n.url, fanoutSubscribers+1)
	pub, subs := conns[0], conns[1:]

	// Each subscriber counts the syncs it receives and checks they come in version order, one per commit.
	var delivered sync.WaitGroup
	failed := make(chan error, len(subs))
	for _, c := range subs {
		delivered.Go(func() {
			last := uint64(0)
			for last < uint64(b.N) {
				ev, ok := <-c.Events()
				if !ok {
					failed <- fmt.Errorf("subscriber lost after v%d: %v", last, c.CloseErr())
					return
				}
				if ev.Sync == nil || ev.Sync.Version != last+1 {
					failed <- fmt.Errorf("after v%d a subscriber got %+v", last, ev)
					return
				}
				last++
			}
		})
	}
	allDelivered := make(chan struct{})
	go func() { delivered.Wait(); close(allDelivered) }()

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	var publishers sync.WaitGroup
	defer publishers.Wait() // before the cleanups close the connection they use
	defer cancel()
	for k := range fanoutInFlight {
		publishers.Go(func() { publish(ctx, pub, k, b.N, failed) })
	}
	select {
	case <-allDelivered:
	case err := <-failed:
		b.Fatal(err)
	case <-time.After(30*time.Second + time.Duration(b.N)*10*time.Millisecond):
		b.Fatal("not every change reached every subscriber in time")
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(subs))/elapsed.Seconds(), "deliveries/s")
}

// publish sends changes k, k+fanoutInFlight, … < n to its own slot, so that its base is always current.
func publish(ctx context.Context, c *client.Conn, k, n int, failed chan<- error) {
	slot, base := "w"+strconv.Itoa(k), uint64(0)
	for i := k; i < n; i += fanoutInFlight {
		s, err := c.Update(ctx, fanoutObject, false, []client.Change{{Name: slot, Base: base, Value: strconv.AppendInt(nil, int64(i), 10)}})
		if err == nil && (len(s.Changes) != 1 || s.Changes[0].Code != client.CodeSuccess) {
			err = fmt.Errorf("update %d answered %+v", i, s.Changes)
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				failed <- err
			}
			return
		}
		base = s.Version
	}
}

// dialSubscribers connects n clients to url, subscribed to fanoutObject, a few dozen at a time.
func dialSubscribers(b *testing.B, url string, n int) []*client.Conn {
	b.Helper()
	conns := make([]*client.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			c, err := client.Dial(ctx, url, client.Options{})
			if err == nil {
				conns[i] = c
				_, err = c.Subscribe(ctx, fanoutObject, false, 0, "")
			}
			errs[i] = err
		})
	}
	wg.Wait()
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			if c != nil {
				wg.Go(func() { c.Close() })
			}
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("connecting %d subscribers: %v", n, err)
	}
	return conns
}

// needOpenFiles raises the soft limit on open files to n, or skips when the hard limit is lower.
func needOpenFiles(b *testing.B, n uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Skipf("cannot read RLIMIT_NOFILE: %v", err)
	}
	if rl.Cur >= n {
		return
	}
	if rl.Max < n {
		b.Skipf("needs %d open files but the hard limit is %d; raise it (ulimit -Hn) to run this benchmark", n, rl.Max)
	}
	rl.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Skipf("needs %d open files; raising RLIMIT_NOFILE failed: %v", n, err)
	}
}
