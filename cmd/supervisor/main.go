// Command supervisor runs the robust pipeline: an embedded NATS server with
// JetStream and the four actor processes, restarted whenever they die.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/internal/supervisor"
)

func main() {
	ctx, stop := context.WithCancel(context.Background())
	abort, kill := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs // first: graceful
		stop()
		<-sigs // second: at once
		kill()
	}()
	os.Exit(supervisor.Main(ctx, abort, registry.Default(), os.Args[1:], os.Stdout, os.Stderr))
}
