//go:build unix

package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// rsoBin is the rso binary that TestMain builds once for the process tests.
var rsoBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rso-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot make a folder for the test binary:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	rsoBin = filepath.Join(dir, "rso")
	build := exec.Command("go", "build", "-o", rsoBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build -o %s . failed: %v\n%s", rsoBin, err, out)
		return 1
	}
	code := m.Run()
	if code == 0 { // every in-process app the tests started is gone, with its NATS server and sockets
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			return 1
		}
	}
	return code
}

// proc is a running rso binary.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer // stdout and stderr
	done chan struct{}
}

// startProc runs the binary with args and an environment free of RSO_ variables from the machine.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(rsoBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RSO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rso: %v", err)
	}
	go func() {
		defer close(p.done)
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// exitCode waits for the process to end and returns its exit code.
func (p *proc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("rso did not exit; output:\n%s", p.out)
		return -1
	}
}

func (p *proc) terminate(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	return p.exitCode(t)
}

func TestProcessHealthyThenSIGTERM(t *testing.T) {
	addr := freeAddr(t)
	p := startProc(t, "-addr", addr, "-data", t.TempDir())
	waitHealth(t, addr, http.StatusOK)
	if code := p.terminate(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0; output:\n%s", code, p.out)
	}
	if out := p.out.String(); !strings.Contains(out, "rso started") || !strings.Contains(out, "msg=stopped") {
		t.Errorf("output lacks the start or stop line:\n%s", out)
	}
}

func TestProcessUnreachableNATS(t *testing.T) {
	p := startProc(t, "-addr", freeAddr(t), "-nats", "nats://127.0.0.1:1")
	if code := p.exitCode(t); code == 0 {
		t.Errorf("exit 0 with no NATS")
	}
	oneLine(t, p.out.String(), "NATS", "nats://127.0.0.1:1")
}

func TestProcessBadFlag(t *testing.T) {
	p := startProc(t, "-max-slots", "abc")
	if code := p.exitCode(t); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	oneLine(t, p.out.String(), `rso: -max-slots "abc": want a positive whole number`)
}

// A second node uses the first one's embedded NATS through -nats-listen; both are healthy and both stop cleanly.
func TestProcessSecondNodeOnFirstsNATS(t *testing.T) {
	addr1, addr2, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	first := startProc(t, "-addr", addr1, "-data", t.TempDir(), "-nats-listen", natsAddr, "-node-id", "first")
	waitHealth(t, addr1, http.StatusOK)
	second := startProc(t, "-addr", addr2, "-nats", "nats://"+natsAddr, "-node-id", "second")
	waitHealth(t, addr2, http.StatusOK)
	if code, body := health(addr1); code != http.StatusOK {
		t.Errorf("first node unhealthy once the second joined: %d %s", code, body)
	}

	if code := second.terminate(t); code != 0 {
		t.Errorf("second exit %d, want 0; output:\n%s", code, second.out)
	}
	if code := first.terminate(t); code != 0 {
		t.Errorf("first exit %d, want 0; output:\n%s", code, first.out)
	}
}
