package natsboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startEmbedded starts a server that the test shuts down when it ends.
func startEmbedded(t testing.TB, opts EmbeddedOptions) *server.Server {
	t.Helper()
	s, err := StartEmbedded(opts)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func connectInProcess(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := ConnectInProcess(s, t.Name(), "")
	if err != nil {
		t.Fatalf("ConnectInProcess: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func timeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEmbeddedInProcess(t *testing.T) {
	dir := t.TempDir()
	s := startEmbedded(t, EmbeddedOptions{DataDir: dir, ServerName: "n1"})
	nc := connectInProcess(t, s)
	ctx := timeout(t, 10*time.Second)
	if err := WaitJetStream(ctx, nc, nil); err != nil {
		t.Fatalf("WaitJetStream: %v", err)
	}
	if got := nc.MaxPayload(); got != MaxPayload {
		t.Errorf("MaxPayload = %d, want %d", got, MaxPayload)
	}
	if s.Name() != "n1" {
		t.Errorf("server name = %q, want n1", s.Name())
	}
	if s.JetStreamConfig().SyncAlways {
		t.Error("SyncAlways is on without being asked for")
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("x")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil || !fi.IsDir() {
		t.Errorf("JetStream files are not in DataDir/jetstream: %v", err)
	}
	if s.Addr() != nil {
		t.Errorf("in-process server listens on %v", s.Addr())
	}
}

func TestEmbeddedSyncAlways(t *testing.T) {
	s := startEmbedded(t, EmbeddedOptions{DataDir: t.TempDir(), SyncAlways: true})
	if !s.JetStreamConfig().SyncAlways {
		t.Error("SyncAlways did not reach JetStream")
	}
}

func TestEmbeddedListen(t *testing.T) {
	addr := freeAddr(t)
	s := startEmbedded(t, EmbeddedOptions{DataDir: t.TempDir(), Listen: addr})
	local := connectInProcess(t, s)

	ctx := timeout(t, 10*time.Second)
	remote, err := Connect(ctx, "nats://"+addr, "remote", Credentials{})
	if err != nil {
		t.Fatalf("Connect over TCP: %v", err)
	}
	defer remote.Close()
	if err := WaitJetStream(ctx, remote, nil); err != nil {
		t.Fatalf("WaitJetStream over TCP: %v", err)
	}

	sub, err := remote.SubscribeSync("hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := local.Publish("hello", []byte("from in-process")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("message from the in-process client did not reach the TCP client: %v", err)
	}
	if string(msg.Data) != "from in-process" {
		t.Errorf("got %q", msg.Data)
	}
}

func TestEmbeddedPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	start := time.Now()
	s, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Listen: addr})
	if err == nil {
		s.Shutdown()
		t.Fatal("started on a port that is in use")
	}
	var le *ListenError
	if !errors.As(err, &le) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("error %v (%T) is not a ListenError for EADDRINUSE", err, err)
	}
	want := "embedded NATS cannot listen on " + addr + ": address already in use"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s to report a busy port", d)
	}
}

func TestEmbeddedBadListen(t *testing.T) {
	for _, listen := range []string{"4222", "127.0.0.1:0", "127.0.0.1:http"} {
		_, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Listen: listen})
		var le *ListenError
		if !errors.As(err, &le) {
			t.Errorf("Listen %q: error %v, want a ListenError", listen, err)
		}
	}
}

func TestEmbeddedDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	first, err := StartEmbedded(EmbeddedOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = StartEmbedded(EmbeddedOptions{DataDir: dir})
	if !errors.Is(err, ErrDataDirLocked) {
		first.Shutdown()
		t.Fatalf("second server on one folder: error %v, want ErrDataDirLocked", err)
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q should name the folder and the holder's pid", err)
	}

	// Once the first is gone, the folder (and its data) can be used again.
	first.Shutdown()
	first.WaitForShutdown()
	startEmbedded(t, EmbeddedOptions{DataDir: dir})
}

func TestEmbeddedDataDirNotAFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := StartEmbedded(EmbeddedOptions{DataDir: filepath.Join(file, "data")})
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("error = %v, want one saying the path is not a directory", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	start := time.Now()
	nc, err := Connect(timeout(t, 10*time.Second), "nats://127.0.0.1:1", "t", Credentials{})
	if err == nil {
		nc.Close()
		t.Fatal("connected to port 1")
	}
	var ce *ConnectError
	if !errors.As(err, &ce) || !ce.Unreachable {
		t.Fatalf("error %v (%T) is not an unreachable ConnectError", err, err)
	}
	if want := "cannot reach NATS at nats://127.0.0.1:1: connection refused"; err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s to report an unreachable server", d)
	}
}

func TestConnectCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Connect(ctx, "nats://127.0.0.1:1", "t", Credentials{})
	if err == nil || !strings.Contains(err.Error(), "cannot reach NATS") {
		t.Fatalf("error = %v", err)
	}
}

func TestConnectRedactsCredentials(t *testing.T) {
	_, err := Connect(timeout(t, 10*time.Second), "nats://alice:s3cret@127.0.0.1:1, nats://tok3n@127.0.0.1:1", "t", Credentials{})
	if err == nil {
		t.Fatal("connected")
	}
	if msg := err.Error(); strings.Contains(msg, "s3cret") || strings.Contains(msg, "tok3n") || strings.Contains(msg, "alice") {
		t.Errorf("credentials leak into %q", msg)
	}
}

// After the first connection, Connect keeps reconnecting, even across a server restart.
func TestConnectReconnectsAfterRestart(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	s, err := StartEmbedded(EmbeddedOptions{DataDir: dir, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := Connect(timeout(t, 10*time.Second), "nats://"+addr, "t", Credentials{})
	if err != nil {
		s.Shutdown()
		t.Fatal(err)
	}
	defer nc.Close()
	reconnected := nc.StatusChanged(nats.CONNECTED)
	s.Shutdown()
	s.WaitForShutdown()

	startEmbedded(t, EmbeddedOptions{DataDir: dir, Listen: addr})
	select {
	case <-reconnected:
	case <-time.After(15 * time.Second):
		t.Fatalf("did not reconnect; status %v", nc.Status())
	}
	if err := WaitJetStream(timeout(t, 10*time.Second), nc, nil); err != nil {
		t.Fatal(err)
	}
}

func TestWaitJetStreamDisabled(t *testing.T) {
	s, err := server.NewServer(&server.Options{DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc := connectInProcess(t, s)
	err = WaitJetStream(timeout(t, 10*time.Second), nc, nil)
	if err == nil || !strings.Contains(err.Error(), "JetStream is not enabled") || !strings.Contains(err.Error(), "-js") {
		t.Fatalf("error = %v, want one saying JetStream is off and how to turn it on", err)
	}
}

func TestWaitJetStreamGivesUpWithContext(t *testing.T) {
	s := startEmbedded(t, EmbeddedOptions{DataDir: t.TempDir()})
	nc := connectInProcess(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitJetStream(ctx, nc, nil); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("error = %v", err)
	}
}

func TestReason(t *testing.T) {
	_, err := net.Dial("tcp", "127.0.0.1:1")
	if got := reason(err); got != "connection refused" {
		t.Errorf("reason(%v) = %q", err, got)
	}
	if got := reason(errors.New("plain")); got != "plain" {
		t.Errorf("reason(plain) = %q", got)
	}
}

// startCluster starts n embedded cluster members at once, all given the same routes (each itself
// included); member i is set up by each(i, &opts) if each is not nil.
func startCluster(t *testing.T, n int, each func(int, *EmbeddedOptions)) []*server.Server {
	t.Helper()
	routes := make([]string, n)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = freeAddr(t)
		routes[i] = "nats://" + addrs[i]
	}
	servers := make([]*server.Server, n)
	t.Cleanup(func() {
		for _, s := range servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	errs := make(chan error, n)
	for i := range servers {
		dir := t.TempDir()
		go func() {
			opts := EmbeddedOptions{
				DataDir:    dir,
				ServerName: "n" + strconv.Itoa(i+1),
				Cluster:    &ClusterOptions{Name: "test", Listen: addrs[i], Routes: routes},
			}
			if each != nil {
				each(i, &opts)
			}
			var err error
			servers[i], err = StartEmbedded(opts)
			errs <- err
		}()
	}
	for range servers {
		if err := <-errs; err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
	}
	return servers
}

func TestEmbeddedCluster(t *testing.T) {
	servers := startCluster(t, 3, nil)
	nc := connectInProcess(t, servers[0])
	ctx := timeout(t, 30*time.Second)
	if err := WaitJetStream(ctx, nc, nil); err != nil {
		t.Fatalf("WaitJetStream: %v", err)
	}
	st, ok := Cluster(servers[0])
	if !ok || st.Peers != 3 || st.Size != 3 || st.Leader == "" {
		t.Errorf("Cluster = %+v, %v; want 3 of 3 peers and a leader", st, ok)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	err = Retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
		return err
	}, nil)
	if err != nil {
		t.Fatalf("create an R3 stream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("x")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// A member without Listen still needs a client port (nats-server routes only once it is open): on loopback.
	if addr, ok := servers[0].Addr().(*net.TCPAddr); !ok || !addr.IP.IsLoopback() {
		t.Errorf("client port of a member without Listen: %v, want a loopback address", servers[0].Addr())
	}
	if _, ok := Cluster(startEmbedded(t, EmbeddedOptions{DataDir: t.TempDir()})); ok {
		t.Error("Cluster reports a single server as a member of a cluster")
	}
}

func TestEmbeddedClusterErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	free := freeAddr(t)
	routes := []string{"nats://" + free}
	tests := []struct {
		name    string
		opts    EmbeddedOptions
		want    string
		isRoute bool
	}{
		{"no server name", EmbeddedOptions{Cluster: &ClusterOptions{Name: "c", Listen: free, Routes: routes}},
			"a cluster member needs a server name that stays the same across restarts", false},
		{"no routes", EmbeddedOptions{ServerName: "n1", Cluster: &ClusterOptions{Name: "c", Listen: free}},
			"a cluster member needs the routes to the other members", false},
		{"bad route", EmbeddedOptions{ServerName: "n1", Cluster: &ClusterOptions{Name: "c", Listen: free, Routes: []string{"tls://a:1"}}},
			`route "tls://a:1": want nats://HOST:PORT`, false},
		{"route port busy", EmbeddedOptions{ServerName: "n1", Cluster: &ClusterOptions{Name: "c", Listen: busy, Routes: routes}},
			"embedded NATS cannot listen on " + busy + " for the other cluster members: address already in use", true},
	}
	for _, tt := range tests {
		tt.opts.DataDir = t.TempDir()
		s, err := StartEmbedded(tt.opts)
		if err == nil {
			s.Shutdown()
			t.Errorf("%s: started", tt.name)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s: error %q\nwant %q", tt.name, err, tt.want)
		}
		var le *ListenError
		if got := errors.As(err, &le) && le.Route; got != tt.isRoute {
			t.Errorf("%s: a route ListenError: %v, want %v", tt.name, got, tt.isRoute)
		}
	}
}

func TestNotReady(t *testing.T) {
	api := func(code jetstream.ErrorCode) error {
		return fmt.Errorf("cannot create stream X: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: "d"})
	}
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("wrapped: %w", nats.ErrTimeout), true},
		{nats.ErrNoResponders, true},
		{fmt.Errorf("cannot register node: %w", jetstream.ErrNoStreamResponse), true},
		{api(10008), true}, // JetStream system temporarily unavailable
		{api(10023), true}, // insufficient resources
		{api(10005), true}, // no suitable peers for placement
		{api(10009), true}, // cluster can not handle request
		{api(jetstream.JSErrCodeStreamNameInUse), false},
		{jetstream.ErrJetStreamNotEnabled, false},
		{context.Canceled, false},
		{errors.New("max payload"), false},
	}
	for _, tt := range tests {
		if got := NotReady(tt.err); got != tt.want {
			t.Errorf("NotReady(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRetry(t *testing.T) {
	// Retried while not ready; each retried error is heard.
	var heard []error
	n := 0
	err := Retry(timeout(t, 10*time.Second), func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("an attempt without a deadline")
		}
		if n++; n < 3 {
			return nats.ErrNoResponders
		}
		return nil
	}, func(err error) { heard = append(heard, err) })
	if err != nil || n != 3 || len(heard) != 2 {
		t.Errorf("Retry = %v after %d attempts, %d heard; want nil after 3, 2 heard", err, n, len(heard))
	}

	// An error that waiting cannot fix ends it at once.
	n = 0
	permanent := errors.New("bad config")
	if err := Retry(timeout(t, 10*time.Second), func(context.Context) error { n++; return permanent }, nil); err != permanent || n != 1 {
		t.Errorf("Retry = %v after %d attempts, want %v after 1", err, n, permanent)
	}

	// When ctx ends, the last error says what was missing, not just that time ran out.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	notYet := fmt.Errorf("create: %w", &jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"})
	err = Retry(ctx, func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
			return notYet
		}
	}, nil)
	if err != notYet {
		t.Errorf("Retry at the deadline = %v, want %v", err, notYet)
	}
}

func TestClusterStateString(t *testing.T) {
	for _, tt := range []struct {
		st   ClusterState
		want string
	}{
		{ClusterState{Peers: 1}, "1 peer connected, no JetStream meta leader yet"},
		{ClusterState{Peers: 2, Size: 3}, "2 of 3 peers connected, no JetStream meta leader yet"},
		{ClusterState{Peers: 3, Size: 3, Leader: "n2"}, "3 of 3 peers connected, JetStream meta leader n2"},
	} {
		if got := tt.st.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.st, got, tt.want)
		}
	}
}
