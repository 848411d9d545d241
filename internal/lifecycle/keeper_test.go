package lifecycle

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/robust/robust/internal/events"
)

// fakeClock advances only when the Keeper waits on it: a restart delay
// takes no real time, and the delays asked for are recorded.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	waited []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waited = append(c.waited, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// dying is a child whose every life ends at once with exit.
type dying struct {
	lives int
	exit  events.Exit
	clock *fakeClock
	life  time.Duration // how long each life lasts, on the clock
}

func (d *dying) Life(context.Context) error {
	d.lives++
	d.clock.mu.Lock()
	d.clock.now = d.clock.now.Add(d.life)
	d.clock.mu.Unlock()
	return &ExitError{Exit: d.exit, PID: 100 + d.lives}
}

// A child that keeps dying is restarted with the policy's backoff, each
// exit reported with its cause and restart number, until the intensity is
// exceeded: then GaveUp, and a *GiveUpError naming the last exit.
func TestKeeperBacksOffAndGivesUp(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	child := &dying{exit: events.Exit{Cause: events.CausePanic, Detail: "boom"}, clock: clock, life: time.Millisecond}
	var got []events.Event
	k := &Keeper{
		Name:   "worker",
		Policy: Policy{Base: 100 * time.Millisecond, Max: time.Second, StableAfter: time.Minute, Intensity: 4, Window: time.Hour},
		Clock:  clock,
		Emit:   func(e events.Event) { got = append(got, e) },
		Child:  child,
	}
	err := k.Serve(context.Background())
	var giveUp *GiveUpError
	if !errors.As(err, &giveUp) || giveUp.Actor != "worker" || giveUp.Last != child.exit {
		t.Fatalf("Serve = %v, want a GiveUpError for the worker's panic", err)
	}
	if child.lives != 5 {
		t.Fatalf("%d lives, want 5 (4 restarts allowed)", child.lives)
	}
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	if len(clock.waited) != len(want) {
		t.Fatalf("waited %v, want %v", clock.waited, want)
	}
	for i := range want {
		if clock.waited[i] != want[i] {
			t.Fatalf("waited %v, want %v", clock.waited, want)
		}
	}
	var exits []events.Exited
	var gaveUp int
	for _, e := range got {
		switch e := e.(type) {
		case events.Exited:
			exits = append(exits, e)
		case events.GaveUp:
			gaveUp++
		}
	}
	if len(exits) != 4 || gaveUp != 1 {
		t.Fatalf("events: %d exits, %d gave up; want 4 and 1", len(exits), gaveUp)
	}
	for i, e := range exits {
		if e.Restart != uint64(i+1) || e.Exit != child.exit || e.Delay != want[i] || e.PID != 101+i {
			t.Fatalf("exit %d: %+v", i, e)
		}
	}
}

// A child stopped through its context is not restarted: Serve returns nil
// and reports Stopped.
func TestKeeperStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var got []events.Event
	k := &Keeper{Name: "logger", Clock: &fakeClock{}, Emit: func(e events.Event) { got = append(got, e) },
		Child: childFunc(func(ctx context.Context) error { cancel(); <-ctx.Done(); return nil })}
	if err := k.Serve(ctx); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	if len(got) != 2 {
		t.Fatalf("events %v, want Starting and Stopped", got)
	}
	if _, ok := got[1].(events.Stopped); !ok {
		t.Fatalf("last event %T, want Stopped", got[1])
	}
}

type childFunc func(ctx context.Context) error

func (f childFunc) Life(ctx context.Context) error { return f(ctx) }

// A child that never gets started (a binary that never answers the
// handshake) is given up on after StartFailures failed starts in a row,
// however slowly they fail.
func TestKeeperGivesUpOnStartFailures(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	child := &dying{exit: events.Exit{Cause: events.CauseStartFailed, Detail: "handshake"}, clock: clock, life: 10 * time.Second}
	k := &Keeper{Name: "heartbeat", Policy: Policy{StartFailures: 3}, Clock: clock, Child: child}
	var giveUp *GiveUpError
	if err := k.Serve(context.Background()); !errors.As(err, &giveUp) || giveUp.Last.Cause != events.CauseStartFailed {
		t.Fatalf("Serve = %v, want a give-up on start failures", err)
	}
	if child.lives != 4 {
		t.Fatalf("%d lives, want 4 (3 failed starts in a row allowed)", child.lives)
	}
}

// While the gate is held (the store is full), exits do not count against
// the policy and no life starts; once it opens, the child starts again.
func TestKeeperWaitsForTheGate(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var gate Gate
	lives := make(chan int, 100)
	n := 0
	child := childFunc(func(ctx context.Context) error {
		n++
		if n == 1 {
			gate.Hold() // the disk fills during the first life
		}
		lives <- n
		if n == 3 {
			<-ctx.Done()
			return nil
		}
		return &ExitError{Exit: events.Exit{Cause: events.CauseError, Detail: "no space left on device"}}
	})
	var mu sync.Mutex
	var held []events.Exited
	ctx, cancel := context.WithCancel(context.Background())
	k := &Keeper{Name: "worker", Clock: clock, Child: child, Hold: &gate,
		Policy: Policy{Base: time.Second, Max: time.Second, StableAfter: time.Minute, Intensity: 1, Window: time.Hour},
		Emit: func(e events.Event) {
			if x, ok := e.(events.Exited); ok {
				mu.Lock()
				held = append(held, x)
				mu.Unlock()
			}
		}}
	done := make(chan error, 1)
	go func() { done <- k.Serve(ctx) }()
	<-lives // the first life was running when the gate closed; it ends
	select {
	case l := <-lives:
		t.Fatalf("life %d started while the gate was held", l)
	case err := <-done:
		t.Fatalf("Serve returned %v while held", err)
	case <-time.After(100 * time.Millisecond):
	}
	gate.Release()
	if l := <-lives; l != 2 {
		t.Fatalf("life %d after the gate opened, want 2", l)
	}
	// Life 2's exit, with the gate open, counts: intensity 1 allows it.
	if l := <-lives; l != 3 {
		t.Fatalf("life %d, want 3", l)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v, want nil on stop", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(held) != 2 || !held[0].Held || held[1].Held {
		t.Fatalf("exits %+v: want the first held, the second not", held)
	}
	if len(clock.waited) != 1 {
		t.Fatalf("waited %v: a held exit takes no backoff, the second one does", clock.waited)
	}
}
