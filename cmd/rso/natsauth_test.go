package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/testpki"
)

// A node whose embedded NATS is open to others with a token and TLS: a second node with the token and
// the CA shares its objects; without the token, or without the CA, it stops with one line saying which.
func TestRunNATSWithTokenAndTLS(t *testing.T) {
	const token = "0123456789abcdef-nats-token"
	ca := testpki.New(t, "rso-test")
	pair := ca.Issue("node-a")
	natsAddr, addrA, addrB := freeAddr(t), freeAddr(t), freeAddr(t)
	startRun(t, []string{"-addr", addrA, "-data", t.TempDir(), "-nats-listen", natsAddr,
		"-nats-tls-cert", pair.Cert, "-nats-tls-key", pair.Key}, env{"RSO_NATS_TOKEN": token})
	waitHealth(t, addrA, http.StatusOK)

	natsURL := "tls://" + natsAddr
	startRun(t, []string{"-addr", addrB, "-nats", natsURL, "-nats-tls-ca", ca.File}, env{"RSO_NATS_TOKEN": token})
	waitHealth(t, addrB, http.StatusOK)

	// A change made on one node is read on the other: both are on the same, protected NATS.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := client.Dial(ctx, "ws://"+addrA+"/so", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Subscribe(ctx, "tls-room", true, 0, ""); err != nil {
		t.Fatal(err)
	}
	if s, err := a.Update(ctx, "tls-room", true, []client.Change{{Name: "k", Value: json.RawMessage(`"v"`)}}); err != nil || s.Changes[0].Code != client.CodeSuccess {
		t.Fatalf("write on node A: %+v, %v", s, err)
	}
	b, err := client.Dial(ctx, "ws://"+addrB+"/so", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sub, err := b.Subscribe(ctx, "tls-room", true, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	r := client.Replica{}
	r.Apply(sub)
	if got := slotText(r.Slots["k"]); got != "v" {
		t.Errorf("node B reads k = %s, want v as written on node A", got)
	}

	noToken := startRun(t, []string{"-addr", freeAddr(t), "-nats", natsURL, "-nats-tls-ca", ca.File}, env{})
	if code := noToken.exit(t); code != exitFailure {
		t.Errorf("without the token: exit %d, want %d", code, exitFailure)
	}
	oneLine(t, noToken.out.String(), "Authorization Violation", "refused the credentials", "-nats-token")

	noCA := startRun(t, []string{"-addr", freeAddr(t), "-nats", natsURL}, env{"RSO_NATS_TOKEN": token})
	if code := noCA.exit(t); code != exitFailure {
		t.Errorf("without the CA: exit %d, want %d", code, exitFailure)
	}
	oneLine(t, noCA.out.String(), "certificate signed by unknown authority", "-nats-tls-ca")

	typo := startRun(t, []string{"-addr", freeAddr(t), "-nats", natsURL, "-nats-tls-ca", ca.File + ".typo"}, env{"RSO_NATS_TOKEN": token})
	if code := typo.exit(t); code != exitFailure {
		t.Errorf("with a CA file that does not exist: exit %d, want %d", code, exitFailure)
	}
	oneLine(t, typo.out.String(), "TLS CA file "+ca.File+".typo: no such file or directory")
}
