package natsboot

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/rso-server/rso/internal/testpki"
)

const testToken = "0123456789abcdef-test-token"

// logBuffer collects what a server logs, for tests that wait for a refusal to be logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// waitLogged waits until the log holds want.
func waitLogged(t *testing.T, log *logBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the server never logged %q; its log:\n%s", want, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEmbeddedTokenRequiredOnTheClientPort(t *testing.T) {
	addr := freeAddr(t)
	s := startEmbedded(t, EmbeddedOptions{DataDir: t.TempDir(), Listen: addr, Auth: Credentials{Token: testToken}})

	for name, cred := range map[string]Credentials{"no token": {}, "wrong token": {Token: "not-the-token-at-all"}} {
		nc, err := Connect(timeout(t, 10*time.Second), "nats://"+addr, "t", cred)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected to a port that requires a token", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}

	nc, err := Connect(timeout(t, 10*time.Second), "nats://"+addr, "t", Credentials{Token: testToken})
	if err != nil {
		t.Fatalf("Connect with the token: %v", err)
	}
	defer nc.Close()
	if err := WaitJetStream(timeout(t, 10*time.Second), nc, nil); err != nil {
		t.Fatalf("JetStream with the token: %v", err)
	}
	local, err := ConnectInProcess(s, "t", testToken)
	if err != nil {
		t.Fatalf("ConnectInProcess with the token: %v", err)
	}
	local.Close()
}

func TestEmbeddedClusterRequiresTheTokenOnEveryPort(t *testing.T) {
	logs := &logBuffer{}
	servers := startCluster(t, 3, func(i int, o *EmbeddedOptions) {
		o.Auth = Credentials{Token: testToken}
		if i == 0 {
			o.Logger = logs.logger()
		}
	})
	nc, err := ConnectInProcess(servers[0], "t", testToken)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := WaitJetStream(timeout(t, 30*time.Second), nc, nil); err != nil {
		t.Fatalf("a cluster whose routes carry the token did not form: %v", err)
	}
	if st, _ := Cluster(servers[0]); st.Peers != 3 {
		t.Fatalf("Cluster = %+v, want 3 peers", st)
	}

	// A server that knows the route address but not the token is turned away.
	routeURL := servers[0].ClusterAddr().String()
	rogue, err := server.NewServer(&server.Options{
		ServerName: "rogue", Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: server.RANDOM_PORT},
		Routes:  server.RoutesFromStr("nats://" + routeURL),
	})
	if err != nil {
		t.Fatal(err)
	}
	go rogue.Start()
	defer func() { rogue.Shutdown(); rogue.WaitForShutdown() }()
	waitLogged(t, logs, "authentication error")
	if n := rogue.NumRoutes(); n != 0 {
		t.Errorf("a server without the token has %d routes into the cluster", n)
	}

	// The member's loopback client port (there for nats-server's routing, not for clients) asks too.
	if c, err := nats.Connect(servers[0].ClientURL(), nats.Timeout(5*time.Second)); err == nil {
		c.Close()
		t.Error("the cluster member's loopback client port let a client in without the token")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("loopback client port without the token: %v, want an authorization violation", err)
	}
}

func TestEmbeddedTLS(t *testing.T) {
	ca := testpki.New(t, "rso-test")
	pair := ca.Issue("nats")
	addr := freeAddr(t)
	startEmbedded(t, EmbeddedOptions{DataDir: t.TempDir(), Listen: addr, Auth: Credentials{
		Token: testToken, TLS: TLSFiles{Cert: pair.Cert, Key: pair.Key, CA: ca.File},
	}})

	ctx := timeout(t, 10*time.Second)
	if nc, err := Connect(ctx, "nats://"+addr, "t", Credentials{Token: testToken}); err == nil {
		nc.Close()
		t.Error("a client without TLS got in")
	}
	var unknownCA x509.UnknownAuthorityError
	other := testpki.New(t, "someone-else")
	nc, err := Connect(ctx, "tls://"+addr, "t", Credentials{Token: testToken, TLS: TLSFiles{CA: other.File}})
	if err == nil {
		nc.Close()
		t.Error("a client trusting another CA accepted the server's certificate")
	} else if !errors.As(err, &unknownCA) {
		t.Errorf("a client trusting another CA: %v, want an unknown-authority error", err)
	}

	nc, err = Connect(ctx, "tls://"+addr, "t", Credentials{Token: testToken, TLS: TLSFiles{CA: ca.File}})
	if err != nil {
		t.Fatalf("Connect over TLS: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("connected, but not over TLS")
	}
	if err := WaitJetStream(ctx, nc, nil); err != nil {
		t.Fatalf("JetStream over TLS: %v", err)
	}
}

func TestEmbeddedClusterOverTLS(t *testing.T) {
	ca := testpki.New(t, "rso-test")
	logs := &logBuffer{}
	servers := startCluster(t, 3, func(i int, o *EmbeddedOptions) {
		p := ca.Issue(o.ServerName)
		o.Auth = Credentials{TLS: TLSFiles{Cert: p.Cert, Key: p.Key, CA: ca.File}}
		if i == 0 {
			o.Logger = logs.logger()
		}
	})
	nc := connectInProcess(t, servers[0])
	if err := WaitJetStream(timeout(t, 30*time.Second), nc, nil); err != nil {
		t.Fatalf("a cluster with TLS routes did not form: %v", err)
	}
	if st, _ := Cluster(servers[0]); st.Peers != 3 {
		t.Fatalf("Cluster = %+v, want 3 peers", st)
	}

	// A server with a certificate from another CA cannot join.
	otherCA := testpki.New(t, "someone-else")
	other := otherCA.Issue("rogue")
	s := startEmbedded(t, EmbeddedOptions{DataDir: t.TempDir(), ServerName: "rogue",
		Cluster: &ClusterOptions{Name: "test", Listen: freeAddr(t), Routes: []string{"nats://" + servers[0].ClusterAddr().String()}},
		Auth:    Credentials{TLS: TLSFiles{Cert: other.Cert, Key: other.Key, CA: otherCA.File}},
	})
	waitLogged(t, logs, "TLS route handshake error")
	if n := s.NumRoutes(); n != 0 {
		t.Errorf("a server with a certificate from another CA has %d routes into the cluster", n)
	}
}

func TestEmbeddedAuthErrors(t *testing.T) {
	ca := testpki.New(t, "rso-test")
	p := ca.Issue("n1")
	cluster := &ClusterOptions{Name: "c", Listen: freeAddr(t), Routes: []string{"nats://127.0.0.1:1"}}
	for _, tc := range []struct {
		name string
		opts EmbeddedOptions
		want string
	}{
		{"creds file", EmbeddedOptions{Auth: Credentials{Creds: "x.creds"}}, "for an external NATS"},
		{"cert without key", EmbeddedOptions{Listen: freeAddr(t), Auth: Credentials{TLS: TLSFiles{Cert: p.Cert}}}, "certificate and its key"},
		{"routes without CA", EmbeddedOptions{ServerName: "n1", Cluster: cluster, Auth: Credentials{TLS: TLSFiles{Cert: p.Cert, Key: p.Key}}}, "needs the CA"},
		{"missing cert", EmbeddedOptions{Listen: freeAddr(t), Auth: Credentials{TLS: TLSFiles{Cert: "nope.pem", Key: p.Key}}}, "nope.pem"},
	} {
		tc.opts.DataDir = t.TempDir()
		s, err := StartEmbedded(tc.opts)
		if err == nil {
			s.Shutdown()
			t.Errorf("%s: started", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

func TestConnectWithNkey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	ctx := timeout(t, 10*time.Second)
	if nc, err := Connect(ctx, s.ClientURL(), "t", Credentials{}); err == nil {
		nc.Close()
		t.Error("connected without the nkey")
	}
	nc, err := Connect(ctx, s.ClientURL(), "t", Credentials{NkeySeed: seedFile})
	if err != nil {
		t.Fatalf("Connect with the nkey seed: %v", err)
	}
	nc.Close()

	for name, cred := range map[string]Credentials{
		"creds":   {Creds: filepath.Join(t.TempDir(), "missing.creds")},
		"nkey":    {NkeySeed: filepath.Join(t.TempDir(), "missing.nk")},
		"ca":      {TLS: TLSFiles{CA: filepath.Join(t.TempDir(), "missing-ca.pem")}},
		"certkey": {TLS: TLSFiles{Cert: "only-a-cert.pem"}},
	} {
		_, err := Connect(context.Background(), s.ClientURL(), "t", cred)
		if err == nil || !strings.Contains(err.Error(), "missing") && !strings.Contains(err.Error(), "both") {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}
