// Command rso runs one RSO node: an embedded NATS with JetStream (or a connection to an external NATS),
// the shared-object service on it, and the HTTP server in front. rso -h lists the flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // from here on a second signal ends the process at once, without waiting for shutdown
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}
