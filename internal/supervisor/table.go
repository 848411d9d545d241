package supervisor

import (
	"maps"
	"sync"
	"time"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/registry"
)

// Actor states, as status, metrics and the dashboard show them.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateBackingOff = "backing off"
	StateGivenUp    = "given up"
	StateStopped    = "stopped"
)

// ActorState is what the supervisor knows of one actor right now. It is
// built from events only.
type ActorState struct {
	Name     string
	PID      int
	State    string
	Since    time.Time
	Restarts uint64      // under this supervisor
	LastExit events.Exit // the last unplanned exit, if any
	Counters map[string]uint64
	Done     bool      // a producer that ends the run has sent everything
	Started  bool      // has been running at least once under this supervisor
	FirstTry time.Time // its first launch under this supervisor
	SparePID int       // its warm spare, waiting to take over; 0: none
}

// table is every actor's state, kept up to date by the events.
type table struct {
	mu     sync.Mutex
	order  []string
	actors map[string]*ActorState
}

func newTable(reg registry.Registry) *table {
	t := &table{order: reg.Names(), actors: map[string]*ActorState{}}
	for _, n := range t.order {
		t.actors[n] = &ActorState{Name: n, State: StateStarting}
	}
	return t
}

// on applies one event.
func (t *table) on(e events.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.actors[e.Of()]
	if a == nil {
		return
	}
	set := func(state string, pid int) { a.State, a.PID, a.Since = state, pid, e.When() }
	switch e := e.(type) {
	case events.Starting:
		set(StateStarting, 0)
		if a.FirstTry.IsZero() {
			a.FirstTry = e.When()
		}
	case events.Started:
		set(StateRunning, e.PID)
		a.Started = true
		if a.SparePID == e.PID { // the spare took over
			a.SparePID = 0
		}
	case events.Spare:
		a.SparePID = e.PID
	case events.Exited:
		set(StateBackingOff, 0)
		a.Restarts = e.Restart
		a.LastExit = e.Exit
	case events.GaveUp:
		set(StateGivenUp, 0)
		a.LastExit = e.Last
	case events.Stopped:
		set(StateStopped, 0)
	case events.Health:
		a.Counters, a.Done = e.Counters, e.Done
	}
}

// get returns a copy of one actor's state.
func (t *table) get(name string) (ActorState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.actors[name]
	if !ok {
		return ActorState{}, false
	}
	c := *a
	c.Counters = maps.Clone(a.Counters)
	return c, true
}

// all returns a copy of every actor's state, in the registry's order.
func (t *table) all() []ActorState {
	out := make([]ActorState, 0, len(t.order))
	for _, n := range t.order {
		a, _ := t.get(n)
		out = append(out, a)
	}
	return out
}
