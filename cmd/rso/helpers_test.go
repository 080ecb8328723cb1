package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that a process or a run goroutine may write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// health returns /healthz's status and body; status 0 means no answer.
func health(addr string) (int, string) {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitFor polls cond until it holds or the deadline passes; explain says what was seen last.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s (last: %s)", what, d, last)
		}
		<-tick.C
	}
}

func waitHealth(t testing.TB, addr string, want int) {
	t.Helper()
	waitFor(t, 20*time.Second, "healthz "+addr+" == "+http.StatusText(want), func() (bool, string) {
		code, body := health(addr)
		return code == want, body
	})
}

// inProcess is rso's run in a goroutine of the test.
type inProcess struct {
	cancel context.CancelFunc
	code   chan int
	out    *syncBuffer
}

func startRun(t *testing.T, args []string, e env) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{cancel: cancel, code: make(chan int, 1), out: &syncBuffer{}}
	go func() { p.code <- run(ctx, args, e.get, p.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.code:
		case <-time.After(30 * time.Second):
			t.Errorf("run did not return after cancel; output:\n%s", p.out)
		}
	})
	return p
}

// stop cancels run's context (as a signal would) and returns its exit code.
func (p *inProcess) stop(t *testing.T) int {
	t.Helper()
	p.cancel()
	return p.exit(t)
}

func (p *inProcess) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-p.code:
		p.code <- code // for Cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return; output:\n%s", p.out)
		return -1
	}
}

func oneLine(t *testing.T, out string, wantParts ...string) {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "rso: ") {
		t.Errorf("output is not one line starting with rso:\n%s", out)
	}
	for _, w := range wantParts {
		if !strings.Contains(out, w) {
			t.Errorf("output %q lacks %q", out, w)
		}
	}
}

func testLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
