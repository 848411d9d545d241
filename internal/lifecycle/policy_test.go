package lifecycle

import (
	"testing"
	"time"
)

func TestTrackerBackoff(t *testing.T) {
	tr := NewTracker(Policy{Base: 100 * time.Millisecond, Max: time.Second, StableAfter: 10 * time.Second, Intensity: 100, Window: time.Minute})
	now := time.Unix(1000, 0)
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		d, giveUp := tr.Failed(now, now.Add(time.Millisecond))
		if giveUp || d != w {
			t.Fatalf("failure %d: delay %v giveUp %v, want %v false", i+1, d, giveUp, w)
		}
		now = now.Add(2 * time.Second)
	}
	// A run longer than StableAfter resets the backoff: the next restart is immediate.
	if d, _ := tr.Failed(now, now.Add(11*time.Second)); d != 0 {
		t.Fatalf("after a stable run: delay %v, want 0", d)
	}
}

func TestTrackerIntensity(t *testing.T) {
	tr := NewTracker(Policy{Intensity: 3, Window: 10 * time.Second})
	start := time.Unix(1000, 0)
	for i := range 3 {
		at := start.Add(time.Duration(i) * time.Second)
		if _, giveUp := tr.Failed(at, at); giveUp {
			t.Fatalf("gave up after %d restarts, intensity is 3", i+1)
		}
	}
	if _, giveUp := tr.Failed(start, start.Add(3*time.Second)); !giveUp {
		t.Fatal("4 restarts in 10s did not give up with intensity 3")
	}
	// Old restarts leave the window.
	tr = NewTracker(Policy{Intensity: 3, Window: 10 * time.Second})
	for i := range 10 {
		at := start.Add(time.Duration(i) * 4 * time.Second)
		if _, giveUp := tr.Failed(at, at); giveUp {
			t.Fatalf("gave up at restart %d although at most 3 fall in any 10s window", i+1)
		}
	}
}

func TestTrackerJitter(t *testing.T) {
	r := 0.0
	tr := NewTracker(Policy{Base: 100 * time.Millisecond, Jitter: func() float64 { return r }})
	now := time.Unix(1000, 0)
	tr.Failed(now, now) // immediate
	if d, _ := tr.Failed(now, now); d != 50*time.Millisecond {
		t.Fatalf("jitter 0: delay %v, want 50ms (half)", d)
	}
	r = 0.999
	if d, _ := tr.Failed(now, now); d < 199*time.Millisecond || d > 200*time.Millisecond {
		t.Fatalf("jitter ~1: delay %v, want ~200ms", d)
	}
}
