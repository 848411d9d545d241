// Package lifecycle keeps actor processes running: it starts one through
// go-plugin in its own process group, learns of its exit as an event (not
// by polling), tells why it ended as a typed cause, health-checks it, and
// restarts it by a restart policy with backoff and a give-up rule. What
// happens is reported as typed events (internal/events).
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/robust/robust/internal/events"
)

// Clock is the time the restart policy sees; tests inject their own.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// After implements Clock.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ExitError is how one life of a child ended when nobody asked it to.
type ExitError struct {
	Exit events.Exit
	PID  int
}

func (e *ExitError) Error() string { return e.Exit.String() }

// GiveUpError is returned when an actor restarted more often than the
// restart intensity allows.
type GiveUpError struct {
	Actor    string
	Restarts int
	Window   time.Duration
	Last     events.Exit
}

func (e *GiveUpError) Error() string {
	if e.Window == 0 {
		return fmt.Sprintf("giving up: %s failed to start %d times in a row; last: %s", e.Actor, e.Restarts, e.Last)
	}
	return fmt.Sprintf("giving up: %s restarted more than %d times within %s; last exit: %s", e.Actor, e.Restarts, e.Window, e.Last)
}

// Child is what a Keeper keeps running: one life of it per call.
type Child interface {
	// Life runs one life and blocks until it ends: nil when ctx was done
	// and the child stopped, an *ExitError otherwise (any other error
	// counts as an exit with cause error).
	Life(ctx context.Context) error
}

// Keeper runs one child again and again by a Policy, until its context is
// done or the policy gives up.
type Keeper struct {
	Name   string
	Policy Policy
	Clock  Clock              // nil: RealClock
	Emit   func(events.Event) // nil: events are dropped
	Child  Child
	// Hold, when closed, pauses starts: each life waits for it to open,
	// and an exit while it is closed is not counted against the policy
	// (its cause is outside the child) and takes no backoff. nil: never
	// held.
	Hold *Gate
}

// Serve keeps the child running. It returns nil once ctx is done and the
// child has stopped, or a *GiveUpError. A child with a Close method (what
// it holds between lives: a warm spare) is closed before Serve returns.
func (k *Keeper) Serve(ctx context.Context) error {
	if c, ok := k.Child.(interface{ Close() }); ok {
		defer c.Close()
	}
	clock := k.Clock
	if clock == nil {
		clock = RealClock{}
	}
	emit := k.Emit
	if emit == nil {
		emit = func(events.Event) {}
	}
	base := func() events.Base { return events.Base{At: clock.Now(), Actor: k.Name} }
	tracker := NewTracker(k.Policy)
	var restarts uint64
	startFails := 0 // failed starts in a row
	for {
		if k.Hold.Wait(ctx) != nil {
			emit(events.Stopped{Base: base()})
			return nil
		}
		started := clock.Now()
		emit(events.Starting{Base: base()})
		err := k.Child.Life(ctx)
		if ctx.Err() != nil {
			emit(events.Stopped{Base: base()})
			return nil // stopping: an exit now is no failure to restart
		}
		var exit *ExitError
		if !errors.As(err, &exit) {
			exit = &ExitError{Exit: events.Exit{Cause: events.CauseError, Detail: fmt.Sprint(err)}}
			if err == nil {
				exit.Exit = events.Exit{Cause: events.CauseExited}
			}
		}
		if k.Hold.Held() {
			restarts++
			emit(events.Exited{Base: base(), PID: exit.PID, Exit: exit.Exit, Restart: restarts, Held: true})
			continue // the loop waits for the gate
		}
		delay, giveUp := tracker.Failed(started, clock.Now())
		if exit.Exit.Cause == events.CauseStartFailed {
			startFails++
		} else {
			startFails = 0
		}
		// A binary that never answers takes a handshake timeout each time:
		// the intensity alone would not give up on it within its window.
		if startFails > tracker.p.StartFailures { // Window 0: in a row, not within a window
			emit(events.GaveUp{Base: base(), Restarts: startFails, Last: exit.Exit})
			return &GiveUpError{Actor: k.Name, Restarts: startFails, Last: exit.Exit}
		}
		if giveUp {
			p := tracker.p
			emit(events.GaveUp{Base: base(), Restarts: p.Intensity, Window: p.Window, Last: exit.Exit})
			return &GiveUpError{Actor: k.Name, Restarts: p.Intensity, Window: p.Window, Last: exit.Exit}
		}
		restarts++
		emit(events.Exited{Base: base(), PID: exit.PID, Exit: exit.Exit, Restart: restarts, Delay: delay})
		select {
		case <-clock.After(delay):
		case <-ctx.Done():
			emit(events.Stopped{Base: base()})
			return nil
		}
	}
}
