// Package natstest is the NATS fixture of the tests: an embedded nats-server with JetStream on a random
// loopback port, stopped when the test ends, and connections to it closed when the test ends.
//
// Cleanups run last registered first, so a test that starts services on a connection must shut them
// down in a cleanup registered after Start and Connect (or explicitly): they then stop while NATS is
// still there.
package natstest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/internal/natsboot"
)

// Option changes what Start starts.
type Option func(*server.Options)

// Dir keeps JetStream's files in dir instead of a fresh t.TempDir(): a server started again on the same
// dir finds the streams and buckets of the one before (a restart).
func Dir(dir string) Option { return func(o *server.Options) { o.StoreDir = dir } }

// Listen serves clients on addr ("127.0.0.1:port") instead of a random port: a server started again on the
// same address and Dir is the same server to its clients (they reconnect).
func Listen(addr string) Option {
	return func(o *server.Options) {
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			o.Host = host
			o.Port, err = strconv.Atoi(port)
		}
		if err != nil {
			panic("natstest.Listen: " + addr + " is not host:port")
		}
	}
}

// StartCluster runs n JetStream nats-servers routed to each other over 127.0.0.1 (cluster "rso-test",
// servers m0…m(n-1)), each as Start would, and waits until every one takes clients. JetStream may still be
// electing its leaders: callers retry what needs them.
func StartCluster(t testing.TB, n int, opts ...Option) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		member := func(o *server.Options) {
			o.ServerName = fmt.Sprintf("m%d", i)
			o.Cluster = server.ClusterOpts{Name: "rso-test", Host: "127.0.0.1", Port: ports[i]}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		servers[i] = Start(t, append([]Option{member}, opts...)...)
	}
	return servers
}

// Start runs a JetStream nats-server on 127.0.0.1 at a random port, its files in t.TempDir() unless Dir
// says otherwise, and shuts it down (waiting for it) when the test ends. Shutting it down earlier is fine.
func Start(t testing.TB, opts ...Option) *server.Server {
	t.Helper()
	o := &server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		MaxPayload: natsboot.MaxPayload, // as in production
		NoSigs:     true,
		NoLog:      true,
	}
	for _, opt := range opts {
		opt(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		t.Fatal("natstest: nats-server not ready after 10 s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect connects to url (a server's ClientURL()) and closes the connection when the test ends.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
