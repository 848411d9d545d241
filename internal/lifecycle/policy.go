package lifecycle

import (
	"time"
)

// Policy decides when a failed actor is restarted and when the supervisor
// gives up. Zero fields get defaults:
//
//	Base:        100ms  second restart's delay (the first is immediate)
//	Max:         5s     cap on the delay
//	StableAfter: 30s    an actor that ran this long starts again from no delay
//	Intensity:   10     more than this many restarts …
//	Window:      60s    … within this window and the supervisor gives up
//	StartFailures: 3    more failed starts in a row (no handshake, no
//	                    Start: each can take 10 s) and it gives up too
type Policy struct {
	Base          time.Duration
	Max           time.Duration
	StableAfter   time.Duration
	Intensity     int
	Window        time.Duration
	StartFailures int
	// Jitter returns a number in [0, 1); each delay d becomes a random
	// duration in [d/2, d]. Nil: no jitter.
	Jitter func() float64
}

// WithDefaults returns p with its zero fields set to the defaults.
func (p Policy) WithDefaults() Policy {
	if p.Base <= 0 {
		p.Base = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 5 * time.Second
	}
	if p.StableAfter <= 0 {
		p.StableAfter = 30 * time.Second
	}
	if p.Intensity <= 0 {
		p.Intensity = 10
	}
	if p.Window <= 0 {
		p.Window = 60 * time.Second
	}
	if p.StartFailures <= 0 {
		p.StartFailures = 3
	}
	return p
}

// Tracker applies a Policy to one actor's failures.
type Tracker struct {
	p           Policy
	restarts    []time.Time // within the window
	consecutive int         // failures since the last stable run
}

// NewTracker returns a Tracker for p.
func NewTracker(p Policy) *Tracker { return &Tracker{p: p.WithDefaults()} }

// Failed records a failure at now of an actor started at started. It returns
// how long to wait before restarting, or giveUp when restarts exceeded the
// intensity within the window.
func (t *Tracker) Failed(started, now time.Time) (delay time.Duration, giveUp bool) {
	if now.Sub(started) >= t.p.StableAfter {
		t.consecutive = 0
	}
	cut := now.Add(-t.p.Window)
	kept := t.restarts[:0]
	for _, r := range t.restarts {
		if r.After(cut) {
			kept = append(kept, r)
		}
	}
	t.restarts = append(kept, now)
	if len(t.restarts) > t.p.Intensity {
		return 0, true
	}
	n := t.consecutive
	t.consecutive++
	if n == 0 {
		return 0, false
	}
	d := t.p.Base
	for i := 1; i < n && d < t.p.Max; i++ {
		d *= 2
	}
	d = min(d, t.p.Max)
	if t.p.Jitter != nil {
		d = d/2 + time.Duration(t.p.Jitter()*float64(d/2))
	}
	return d, false
}
