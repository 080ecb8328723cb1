package main

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rso-server/rso/internal/natsboot"
)

func TestRunServesAndStops(t *testing.T) {
	addr, data := freeAddr(t), t.TempDir()
	p := startRun(t, []string{"-addr", addr, "-data", data}, env{})
	waitHealth(t, addr, http.StatusOK)
	if _, body := health(addr); body != "ok" {
		t.Errorf("healthz body %q, want ok", body)
	}

	resp, err := http.Get("http://" + addr + "/so")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		t.Error("/so is not mounted")
	}

	if code := p.stop(t); code != 0 {
		t.Errorf("exit %d after a signal, want 0; output:\n%s", code, p.out)
	}
	out := p.out.String()
	if !strings.Contains(out, `msg="rso started" addr=`+addr+` nats=embedded data=`+data) {
		t.Errorf("no startup line with addr, NATS mode and data folder:\n%s", out)
	}
	if !strings.Contains(out, "msg=stopped") {
		t.Errorf("no stop line:\n%s", out)
	}
	if code, _ := health(addr); code != 0 {
		t.Errorf("still answering after stop: %d", code)
	}
}

// On an external NATS, /healthz follows the connection: 503 while NATS is gone, 200 once it is back.
func TestRunExternalNATSOutage(t *testing.T) {
	natsAddr, natsData := freeAddr(t), t.TempDir()
	startNATS := func() func() {
		s, err := natsboot.StartEmbedded(natsboot.EmbeddedOptions{DataDir: natsData, Listen: natsAddr})
		if err != nil {
			t.Fatal(err)
		}
		return func() { s.Shutdown(); s.WaitForShutdown() }
	}
	stopNATS := startNATS()

	addr := freeAddr(t)
	p := startRun(t, []string{"-addr", addr, "-nats", "nats://" + natsAddr}, env{})
	waitHealth(t, addr, http.StatusOK)
	// The server may answer before its startup line is written: wait for the line.
	waitFor(t, 10*time.Second, "the startup line naming the external NATS", func() (bool, string) {
		return strings.Contains(p.out.String(), "nats=\"external nats://"+natsAddr+"\""), p.out.String()
	})

	stopNATS()
	waitHealth(t, addr, http.StatusServiceUnavailable)
	if _, body := health(addr); !strings.HasPrefix(body, "nats ") {
		t.Errorf("503 body %q does not say NATS is the problem", body)
	}

	stopNATS = startNATS()
	defer stopNATS()
	waitHealth(t, addr, http.StatusOK)

	if code := p.stop(t); code != 0 {
		t.Errorf("exit %d, want 0; output:\n%s", code, p.out)
	}
}

func TestRunAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := startRun(t, []string{"-addr", ln.Addr().String(), "-data", t.TempDir()}, env{})
	if code := p.exit(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, p.out.String(), "cannot listen on "+ln.Addr().String(), "address already in use", "change -addr")
}

func TestRunNATSListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := startRun(t, []string{"-addr", freeAddr(t), "-data", t.TempDir()}, env{"RSO_NATS_LISTEN": ln.Addr().String()})
	if code := p.exit(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, p.out.String(), "embedded NATS cannot listen on "+ln.Addr().String(), "address already in use", "change RSO_NATS_LISTEN")
}

func TestRunDataDirInUse(t *testing.T) {
	data := t.TempDir()
	first := startRun(t, []string{"-addr", freeAddr(t), "-data", data}, env{})
	waitFor(t, 20*time.Second, "first rso started", func() (bool, string) {
		out := first.out.String()
		return strings.Contains(out, "rso started"), out
	})
	second := startRun(t, []string{"-addr", freeAddr(t), "-data", data}, env{})
	if code := second.exit(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, second.out.String(), "data folder", "in use by another process (pid "+strconv.Itoa(os.Getpid())+")", "-data")
}

func TestRunUnreachableNATS(t *testing.T) {
	p := startRun(t, []string{"-addr", freeAddr(t), "-nats", "nats://127.0.0.1:1"}, env{})
	if code := p.exit(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, p.out.String(), "rso: cannot reach NATS at nats://127.0.0.1:1: connection refused (is nats-server running? check -nats)")
}

func TestCloseIsIdempotent(t *testing.T) {
	c, err := parseConfig([]string{"-addr", freeAddr(t), "-data", t.TempDir()}, env{}.get)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	m := NewMain(c, testLogger(out))
	if err := m.Close(); err != nil { // before Run: nothing to do
		t.Fatal(err)
	}
	m = NewMain(c, testLogger(out))
	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := m.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
}
