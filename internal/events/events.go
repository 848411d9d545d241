// Package events holds what happens to a running pipeline, as types: an
// actor started, exited (with its cause), was given up on; a message was
// dead-lettered or replayed. The supervisor's parts report them to a Bus;
// the status table, persistence, metrics, the dashboard and the logs
// subscribe to it. Nothing here parses text.
package events

import (
	"fmt"
	"sync"
	"time"
)

// Cause is why an actor process ended.
type Cause string

// The causes.
const (
	// CauseKilled: ended by a signal the supervisor did not send (kill -9 from
	// outside, the OOM killer), or sent on an operator's request.
	CauseKilled Cause = "killed"
	// CauseHang: killed by the supervisor after failed health checks.
	CauseHang Cause = "hang"
	// CausePanic: the actor reported a panic on its crash channel before dying.
	CausePanic Cause = "panic"
	// CauseError: a non-zero exit (the actor's error, if it reported one, is in
	// the detail).
	CauseError Cause = "error"
	// CauseExited: a zero exit nobody asked for.
	CauseExited Cause = "exited"
	// CauseStartFailed: the process did not complete its handshake or its Start.
	CauseStartFailed Cause = "start-failed"
)

// Causes lists every cause, for metrics that must exist from the start.
var Causes = []Cause{CauseKilled, CauseHang, CausePanic, CauseError, CauseExited, CauseStartFailed}

// Exit is how one actor process ended.
type Exit struct {
	Cause  Cause  `json:"cause"`
	Detail string `json:"detail,omitempty"` // the panic message, the error, the signal or the exit code
}

func (e Exit) String() string {
	if e.Detail == "" {
		return string(e.Cause)
	}
	return string(e.Cause) + ": " + e.Detail
}

// Event is one thing that happened. Every event has a time and an actor.
type Event interface {
	When() time.Time
	Of() string // the actor it concerns, or "" for the pipeline
}

// Base carries what every event has.
type Base struct {
	At    time.Time `json:"time"`
	Actor string    `json:"actor"`
}

// When implements Event.
func (b Base) When() time.Time { return b.At }

// Of implements Event.
func (b Base) Of() string { return b.Actor }

// Starting: a process of the actor is being launched.
type Starting struct{ Base }

// Started: the actor's process completed its handshake and Start.
type Started struct {
	Base
	PID int `json:"pid"`
}

// Exited: the actor's process ended when nobody asked it to. Restart is the
// actor's restart count under this supervisor with this one; it is
// restarted after Delay. When the supervisor gives up, GaveUp is sent
// instead.
type Exited struct {
	Base
	PID     int           `json:"pid"`
	Exit    Exit          `json:"exit"`
	Restart uint64        `json:"restart"`
	Delay   time.Duration `json:"delay"`
	// Held: restarts are paused (the store is full): the next life waits
	// for them to resume, and this exit does not count against the policy.
	Held bool `json:"held,omitempty"`
}

// GaveUp: the actor restarted more often than the restart policy allows
// (Restarts within Window), or failed to start Restarts times in a row
// (Window 0).
type GaveUp struct {
	Base
	Restarts int           `json:"restarts"`
	Window   time.Duration `json:"window"`
	Last     Exit          `json:"last"`
}

// Spare: the actor's warm spare is ready (PID), or gone (PID 0): taken
// by a life (Started follows), ended while it waited, or stopped.
type Spare struct {
	Base
	PID int `json:"pid"`
}

// Stopped: the actor's process was stopped on purpose (end of run, Ctrl-C).
type Stopped struct{ Base }

// Health: the actor answered a health check.
type Health struct {
	Base
	Counters map[string]uint64
	Done     bool // a producer that ends the run has sent everything
}

// DeadLettered: a message was published to the dead-letter stream.
type DeadLettered struct {
	Base
	Reason string `json:"reason"`
}

// Replayed: an operator put a dead letter back on its subject.
type Replayed struct {
	Base
	DeadLetter uint64 `json:"dead_letter"`
}

func (e Exited) String() string {
	if e.Held {
		return fmt.Sprintf("%s exited: %s, restart #%d when the store takes writes again", e.Actor, e.Exit, e.Restart)
	}
	return fmt.Sprintf("%s exited: %s, restart #%d in %s", e.Actor, e.Exit, e.Restart, e.Delay.Round(time.Millisecond))
}

// Bus fans events out to its subscribers, synchronously and in the order
// they were emitted: a subscriber must be quick, and must not emit.
type Bus struct {
	mu   sync.Mutex
	subs []func(Event)
}

// Subscribe adds f; it receives every event emitted from now on.
func (b *Bus) Subscribe(f func(Event)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, f)
}

// Emit hands e to every subscriber. It is safe for concurrent use; events
// emitted concurrently reach each subscriber one at a time.
func (b *Bus) Emit(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.subs {
		f(e)
	}
}
