package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/lifecycle"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// write is one write of the worker's state, as a watch sees it.
type write struct{ starts, processed uint64 }

// watchWrites records every write of key's state, in order.
func watchWrites(t *testing.T, kv jetstream.KeyValue, key string) func() []write {
	t.Helper()
	w, err := kv.Watch(context.Background(), key, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	var mu sync.Mutex
	var got []write
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var st actor.State[actors.WorkerState]
			if json.Unmarshal(e.Value(), &st) != nil {
				continue
			}
			mu.Lock()
			got = append(got, write{st.Starts, st.Data.Processed})
			mu.Unlock()
		}
	}()
	return func() []write {
		mu.Lock()
		defer mu.Unlock()
		return append([]write(nil), got...)
	}
}

// A warm spare takes nothing while the active worker lives, and a copy
// that was active, paused while the spare takes over, is fenced when it
// resumes: it writes nothing.
//
// The old copy is started outside the supervisor, as a lifecycle.Process
// of the test's with the worker's own credentials and config, while the
// supervisor's worker is stopped (SIGSTOP; health checks off: a long
// --health-timeout): it claims the state and works. Then it is stopped
// too, and the supervisor's worker is killed (SIGKILL): the supervisor
// hands the role to the spare, which claims the state in turn. The
// outside copy is resumed.
func TestSpareTakesOverAndTheOldCopyIsFenced(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "2", "--beats", "5000", "--faults", "none", "--batch", "64", "--health-timeout", "10m")
	nc, js := p.connect()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kv := stateBucket(ctx, t, js)
	writes := watchWrites(t, kv, protocol.Worker)

	active := p.waitPID(protocol.Worker)
	spare := p.waitPID(protocol.SpareName(protocol.Worker))
	if active == spare {
		t.Fatalf("the active worker and its spare are one process (%d)", active)
	}
	// While the active worker lives, the spare claims nothing: every
	// write is the active's (one start count), and values flow.
	waitFor(t, 20*time.Second, "the worker to process values", func() bool { return len(writes()) > 10 })
	before := writes()
	time.Sleep(time.Second)
	steady := writes()[len(before)-1:]
	if len(steady) < 10 || steady[len(steady)-1].processed <= steady[0].processed {
		t.Fatalf("the worker made no progress in a second: %v", steady)
	}
	for _, w := range steady {
		if w.starts != steady[0].starts {
			t.Fatalf("a write with start count %d while the active worker (start %d) lived and the spare waited: %v", w.starts, steady[0].starts, steady)
		}
	}

	// The outside copy: the worker's binary, credentials and config. The
	// stopped worker's pull requests expire first (200 ms): the server
	// would deliver to them, and the outside copy would see a delivery
	// gap and end.
	kill(t, active, syscall.SIGSTOP)
	time.Sleep(time.Second)
	keys, err := auth.Open(p.dataDir, registry.Default().Names())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := keys.Actor(protocol.Worker)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, protocol.SupervisorKey)
	if err != nil {
		t.Fatal(err)
	}
	var sup struct {
		Run uint64       `json:"run"`
		IDs protocol.IDs `json:"ids"`
	}
	if err := json.Unmarshal(e.Value(), &sup); err != nil {
		t.Fatal(err)
	}
	w, _ := registry.Default().Get(protocol.Worker)
	short, err := os.MkdirTemp("/tmp", "fx") // a unix socket's path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	started := make(chan int, 1)
	old := &lifecycle.Process{
		Name: protocol.Worker, Path: filepath.Join(binDir, protocol.Worker), TempDir: short,
		Config: protocol.ActorConfig{
			Actor: w.Name, StateKey: w.StateKey, Inputs: w.Inputs, NATSURL: p.url, NATSCreds: creds,
			Run: sup.Run, IDs: sup.IDs, Rate: 2 * time.Millisecond, Beats: 5000, Queue: 1000, Batch: 64, Showstopper: 3,
			Faults: "none", LogLevel: "info",
		},
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("copy", "outside"),
		Emit: func(e events.Event) {
			if s, ok := e.(events.Started); ok {
				started <- s.PID
			}
		},
		PingEvery: time.Hour, // no health checks: it is stopped on purpose
	}
	lived := make(chan error, 1)
	go func() { lived <- old.Life(ctx) }()
	var oldPID int
	select {
	case oldPID = <-started:
	case err := <-lived:
		t.Fatalf("the outside copy did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the outside copy did not start in 30s")
	}
	var oldStart uint64
	waitFor(t, 10*time.Second, "the outside copy to process values", func() bool {
		ws := writes()
		last := ws[len(ws)-1]
		oldStart = last.starts
		return last.starts > steady[0].starts && last.processed > steady[len(steady)-1].processed
	})
	kill(t, oldPID, syscall.SIGSTOP)
	pausedAt := len(writes())

	// The supervisor's worker is killed: the spare takes over and claims
	// the state: a later start count, and values.
	kill(t, active, syscall.SIGKILL)
	var spareStart uint64
	waitFor(t, 30*time.Second, "the spare to take over and process values", func() bool {
		ws := writes()
		for _, w := range ws[pausedAt:] {
			if w.starts > oldStart {
				spareStart = w.starts
			}
		}
		return spareStart > 0 && ws[len(ws)-1].starts == spareStart && ws[len(ws)-1].processed > ws[pausedAt-1].processed
	})
	if pid := p.actorPID(protocol.Worker); pid != spare {
		t.Fatalf("the active worker is %d, not the spare (%d)", pid, spare)
	}

	// Resumed, the outside copy is fenced: it ends, and none of its
	// writes lands after the spare's claim.
	resumedAt := len(writes())
	kill(t, oldPID, syscall.SIGCONT)
	select {
	case err := <-lived:
		var exit *lifecycle.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("the outside copy ended with %v, want an exit", err)
		}
		t.Logf("the outside copy, resumed, ended: %s", exit.Exit)
	case <-time.After(15 * time.Second):
		t.Fatal("the outside copy still runs 15s after it resumed")
	}
	time.Sleep(500 * time.Millisecond)
	all := writes()
	claimed := false
	for i, w := range all {
		if i > 0 && w.starts < all[i-1].starts {
			t.Fatalf("write %d has start count %d after one of %d: two copies wrote the state at once", i, w.starts, all[i-1].starts)
		}
		claimed = claimed || w.starts == spareStart
		if claimed && w.starts == oldStart {
			t.Fatalf("the outside copy (start %d) wrote after the spare's claim (start %d)", oldStart, spareStart)
		}
	}
	if len(all) <= resumedAt {
		t.Fatal("no write after the outside copy resumed: the spare stopped working")
	}
	p.finish(0, 2*time.Minute)
}

// testWriter logs through t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
