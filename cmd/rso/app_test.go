package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/natstest"
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
		s := natstest.Start(t, natstest.Dir(natsData), natstest.Listen(natsAddr))
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

func TestRunNATSClusterInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := startRun(t, []string{"-addr", freeAddr(t), "-data", t.TempDir(), "-node-id", "n1",
		"-nats-routes", "nats://" + ln.Addr().String()}, env{"RSO_NATS_CLUSTER": ln.Addr().String()})
	if code := p.exit(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, p.out.String(), "embedded NATS cannot listen on "+ln.Addr().String()+" for the other cluster members",
		"address already in use", "change RSO_NATS_CLUSTER")
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

// The demos are on by default: / leads to /demos/, the pages and the token endpoint answer, and the
// slideshow hook refuses a slide change from someone who is not presenting. -demos=false removes it all.
func TestRunDemos(t *testing.T) {
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// status returns the answer's code and its Location, or its body when there is none.
	status := func(url string) (int, string) {
		resp, err := noRedirect.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if loc := resp.Header.Get("Location"); loc != "" {
			return resp.StatusCode, loc
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	slideChange := func(addr string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, "ws://"+addr+"/so?user=bob", client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sub, err := c.Subscribe(ctx, "demo/slides/t", true, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		// Based on the current version: a probe that went through before the hook was known must not
		// make every later one a version conflict.
		s, err := c.Update(ctx, "demo/slides/t", true, []client.Change{{Name: "slide", Base: sub.Version, Value: json.RawMessage("1")}})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Changes) == 1 && s.Changes[0].Code == client.CodeReject {
			return s.Changes[0].Reason
		}
		return "accepted"
	}

	addr := freeAddr(t)
	p := startRun(t, []string{"-addr", addr, "-data", t.TempDir()}, env{})
	waitHealth(t, addr, http.StatusOK)
	if code, loc := status("http://" + addr + "/"); code != http.StatusFound || loc != "/demos/" {
		t.Errorf("/: %d %q, want a redirect to /demos/", code, loc)
	}
	if code, body := status("http://" + addr + "/demos/"); code != http.StatusOK || !strings.Contains(body, "chat.html") {
		t.Errorf("/demos/: %d", code)
	}
	if code, body := status("http://" + addr + "/demos/token?user=ada"); code != http.StatusOK || !strings.Contains(body, `"anonymous":true`) {
		t.Errorf("/demos/token: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "the slideshow hook in force", func() (bool, string) {
		why := slideChange(addr)
		return why == "nobody is presenting: take the presenter role first", why
	})
	if !strings.Contains(p.out.String(), "demos=http://"+addr+"/demos/") {
		t.Errorf("the startup line does not say where the demos are:\n%s", p.out)
	}
	p.stop(t)

	addr = freeAddr(t)
	p = startRun(t, []string{"-addr", addr, "-data", t.TempDir()}, env{"RSO_DEMOS": "false"})
	waitHealth(t, addr, http.StatusOK)
	for _, path := range []string{"/", "/demos/", "/demos/token?user=ada"} {
		if code, _ := status("http://" + addr + path); code != http.StatusNotFound {
			t.Errorf("demos off: %s answers %d", path, code)
		}
	}
	if why := slideChange(addr); why != "accepted" {
		t.Errorf("demos off: a slide change was refused: %s", why)
	}
	if !strings.Contains(p.out.String(), "demos=off") {
		t.Errorf("the startup line does not say the demos are off:\n%s", p.out)
	}
}
