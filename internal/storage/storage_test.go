package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/storage"
)

// tickClock ticks when the test says.
type tickClock struct{ tick chan time.Time }

func (c tickClock) Now() time.Time                       { return time.Unix(1000, 0) }
func (c tickClock) After(time.Duration) <-chan time.Time { return c.tick }

func TestWatcher(t *testing.T) {
	var free atomic.Uint64
	free.Store(100 << 20)
	var restarts atomic.Int32
	failFirst := int32(0) // restarts that fail, from the first
	evs := make(chan events.Event, 10)
	clock := tickClock{tick: make(chan time.Time)}
	w := storage.New(storage.Watcher{Dir: "/store", MinFree: 16 << 20, Clock: clock,
		Free: func(string) (uint64, error) { return free.Load(), nil },
		Restart: func() error {
			if restarts.Add(1) <= failFirst {
				return errors.New("cannot")
			}
			return nil
		},
		Emit: func(e events.Event) { evs <- e }})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	tick := func() { clock.tick <- time.Unix(1000, 0) }
	quiet := func(what string) {
		t.Helper()
		tick()
		tick() // the first look is done once the second tick is taken
		select {
		case e := <-evs:
			t.Fatalf("%s: %T %+v", what, e, e)
		default:
		}
	}
	next := func() events.Event {
		t.Helper()
		select {
		case e := <-evs:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
			return nil
		}
	}
	quiet("plenty of space")

	// Free space below the floor: full; no restart when space is back,
	// since no write failed.
	free.Store(1 << 20)
	tick()
	if e, ok := next().(events.StorageFull); !ok || e.Free != 1<<20 {
		t.Fatalf("want StorageFull with 1 MiB free, got %+v", e)
	}
	quiet("still full: said once")
	free.Store(100 << 20)
	tick()
	if e, ok := next().(events.StorageBack); !ok || e.Restarted || restarts.Load() != 0 {
		t.Fatalf("want StorageBack without a restart, got %+v (%d restarts)", e, restarts.Load())
	}

	// A write failed: full at once, whatever statfs says; space back (it
	// is) at the next look: JetStream restarted. A restart that fails is
	// tried again. (Set before the watcher restarts anything: no race.)
	failFirst = 2
	w.NoSpace(syscall.ENOSPC)
	if e, ok := next().(events.StorageFull); !ok || e.Why == "" {
		t.Fatalf("want StorageFull for a failed write, got %+v", e)
	}
	quiet("the restart fails")
	tick()
	if e, ok := next().(events.StorageBack); !ok || !e.Restarted {
		t.Fatalf("want StorageBack with a restart, got %+v", e)
	}
	if n := restarts.Load(); n != 3 {
		t.Fatalf("%d restarts tried, want 3 (two failed, one done)", n)
	}
	quiet("back")
}

func TestProber(t *testing.T) {
	results := make(chan error)
	evs := make(chan events.Event, 10)
	failed := make(chan error, 10)
	clock := tickClock{tick: make(chan time.Time)}
	p := &storage.Prober{Clock: clock, Emit: func(e events.Event) { evs <- e }, Failed: func(err error) { failed <- err },
		Try: func(context.Context) error { return <-results }}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	defer func() { cancel(); close(results); wg.Wait() }()
	try := func(err error) {
		t.Helper()
		results <- err
		clock.tick <- time.Unix(1000, 0) // the try is handled once the tick is taken
	}
	none := func(what string) {
		t.Helper()
		select {
		case e := <-evs:
			t.Fatalf("%s: %T %+v", what, e, e)
		default:
		}
	}
	try(nil)
	none("writes taken")
	full := fmt.Errorf("%w: the state bucket took no write", storage.ErrFull)
	try(full)
	none("one try that says full: not yet (a server starting, a slow answer)")
	try(nil)
	try(full)
	none("again one: the count starts over after a write taken")
	try(full)
	if e, ok := (<-evs).(events.StorageFull); !ok || e.Why != full.Error() {
		t.Fatalf("want StorageFull saying why, got %+v", e)
	}
	try(full)
	none("still full: said once")
	try(errors.New("account info: timeout"))
	none("cannot tell")
	if err := <-failed; err == nil {
		t.Fatal("Failed did not hear why it cannot tell")
	}
	try(nil)
	if e, ok := (<-evs).(events.StorageBack); !ok || e.Restarted {
		t.Fatalf("want StorageBack without a restart, got %+v", e)
	}
}
