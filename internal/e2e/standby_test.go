package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
	"github.com/robust/robust/internal/natsx"
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
	// As the supervisor does before every start: the consumers reset, so
	// that what the stopped worker had fetched comes back, in order. Done
	// by the admin, it is tampering, and the summary says so (below).
	for _, in := range w.Inputs {
		if _, err := natsx.ResetConsumer(ctx, js, natsx.Topology{}, in); err != nil {
			t.Fatal(err)
		}
	}
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
	// The run ends; its books balance. The one problem is the test's own
	// reset of the worker's two consumers, which the supervisor saw as
	// tampering (exit 1).
	code := p.wait(2 * time.Minute)
	sum := p.summary()
	if code != 1 || len(sum.Tampered) != 2 || len(sum.Problems) != 1 {
		t.Fatalf("exit %d, tampering %v, problems %v: want exit 1 for the test's two consumer resets alone", code, sum.Tampered, sum.Problems)
	}
	for _, tm := range sum.Tampered {
		if !strings.HasPrefix(tm.By, auth.Admin) || !strings.Contains(tm.What, "worker-") {
			t.Fatalf("tampering %+v: want the admin's reset of a worker consumer", tm)
		}
	}
	if sum.Generated != sum.Logged+sum.Dead.Total()+sum.Queued || sum.Counts != sum.Expected || sum.Logged != 5000 || sum.BeatsSent != sum.BeatsTaken {
		t.Fatalf("the books do not balance: generated %d, logged %d, dead %d, queued %d; counts %+v, expected %+v; beats %d sent, %d taken",
			sum.Generated, sum.Logged, sum.Dead.Total(), sum.Queued, sum.Counts, sum.Expected, sum.BeatsSent, sum.BeatsTaken)
	}
}

// testWriter logs through t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// A spare that stopped answering (SIGSTOP) while it waited does not hold
// up the takeover: the life that finds it launches a process of its own
// (within the spare's half-second check, not the 15 s start timeout,
// and without counting a failed start), the stopped spare is ended, and
// a new spare is launched behind the new worker.
func TestAStoppedSpareDoesNotHoldTheTakeover(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, "", "--rate", "5", "--beats", "0", "--faults", "none", "--http", addr)
	_, js := p.connect()
	active := p.waitPID(protocol.Worker)
	spare := p.waitPID(protocol.SpareName(protocol.Worker))
	waitFor(t, 20*time.Second, "the spare ready (in /status)", func() bool {
		a, _, ok := statusOf(t, "http://"+addr, protocol.Worker)
		return ok && a.SparePID == spare
	})
	waitFor(t, 20*time.Second, "the worker to work", func() bool { _, v := progress(t, js, protocol.Worker); return v > 0 })
	kill(t, spare, syscall.SIGSTOP)
	kill(t, active, syscall.SIGKILL)
	var next int
	waitFor(t, 5*time.Second, "a new worker, neither the killed one nor the stopped spare", func() bool {
		next = p.actorPID(protocol.Worker)
		return next != 0 && next != active && next != spare
	})
	_, before := progress(t, js, protocol.Worker)
	waitFor(t, 5*time.Second, "the new worker to work", func() bool { _, v := progress(t, js, protocol.Worker); return v > before })
	waitFor(t, 5*time.Second, "the stopped spare ended", func() bool { return syscall.Kill(spare, 0) != nil })
	waitFor(t, 10*time.Second, "a new spare", func() bool {
		n := p.actorPID(protocol.SpareName(protocol.Worker))
		return n != 0 && n != spare && n != next
	})
	p.finish(syscall.SIGTERM, time.Minute)
	if strings.Contains(p.stderr.String(), "worker exited: start-failed") {
		t.Fatalf("the stopped spare counted as a failed start:\n%s", lastBytes(p.stderr.String(), 4000))
	}
}
