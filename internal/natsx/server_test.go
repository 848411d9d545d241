package natsx_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/natsx"
)

// A disk that fills: the server's failed write is heard (typed: ENOSPC),
// the stream takes nothing more even once space is back, and
// a JetStreamRestarter brings it back with every acknowledged message, in an
// account of a configuration file as the supervisor runs it.
func TestRestartJetStreamAfterDiskFull(t *testing.T) {
	dir := natstest.Tmpfs(t, 8<<20)
	conf := filepath.Join(t.TempDir(), "server.conf")
	if err := os.WriteFile(conf, []byte(`accounts { A { jetstream: enabled, users: [{user: a, password: a}] } }`), 0o600); err != nil {
		t.Fatal(err)
	}
	noSpace := make(chan error, 100)
	ns, err := natsx.RunServer(natsx.ServerConfig{StoreDir: filepath.Join(dir, "js"), Conf: conf, Account: "A",
		NoSpace: func(err error) {
			select {
			case noSpace <- err:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("a", "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	publish := func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "s", make([]byte, 1000))
		return err
	}
	acked := 0
	for range 10 {
		if err := publish(); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	filler := natstest.Fill(t, dir, 0)
	for publish() == nil {
		acked++
	}
	select {
	case err := <-noSpace:
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("heard %v, want ENOSPC", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write failed for lack of space, and NoSpace was not called")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := publish(); err == nil {
		t.Fatal("the stream took a write after its failed one, before a restart: the restart is not needed?")
	}
	restart, err := natsx.JetStreamRestarter(ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := restart(); err != nil {
		t.Fatal(err)
	}
	if err := publish(); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	acked++
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(acked) {
		t.Fatalf("the stream holds %d messages, %d were acknowledged", info.State.Msgs, acked)
	}
}
