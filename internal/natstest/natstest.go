// Package natstest starts real, embedded NATS servers for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robust/robust/internal/natsx"
)

// RunJetStream starts an embedded server with JetStream on a random port,
// storing in a temp dir, and shuts it down when the test ends.
func RunJetStream(t testing.TB) *server.Server {
	t.Helper()
	ns, err := natsx.RunServer(natsx.ServerConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}
