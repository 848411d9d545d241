package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/api/dashboard"
	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/ledger"
	"github.com/robust/robust/pkg/protocol"
)

// The live dashboard: GET / serves one page, which draws the pipeline from
// the snapshots GET /events streams to it.

const (
	// snapshotEvery is how often GET /events sends a snapshot: a kill shows
	// on the page well within a second.
	snapshotEvery = 400 * time.Millisecond
	recentEvents  = 20 // restarts kept for the dashboard
	recentDead    = 10 // dead letters shown on the dashboard
	// deadScanLimit bounds the DLQ sequences read backwards for the latest
	// dead letters, should most of them have been deleted.
	deadScanLimit = 500
)

// Snapshot is one message of GET /events.
type Snapshot struct {
	Time        time.Time      `json:"time"`
	Status      StatusReport   `json:"status"`
	Events      []Event        `json:"events"`       // recent restarts, oldest first
	DeadLetters []RecentLetter `json:"dead_letters"` // the latest dead letters, newest first
	Error       string         `json:"error,omitempty"`
}

// Event is something that happened to the pipeline, for the dashboard.
type Event struct {
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"` // restart
	Actor string    `json:"actor"`
	Cause string    `json:"cause"`   // the exit that caused it
	N     uint64    `json:"restart"` // the actor's restarts under this supervisor, this one included
}

// RecentLetter is a dead letter with the time it was dead-lettered.
type RecentLetter struct {
	DeadLetter
	Time time.Time `json:"time"`
}

// dashState is what the dashboard needs besides a StatusReport.
type dashState struct {
	events []Event // under Supervisor.mu; the last recentEvents

	dlqMu  sync.Mutex // serialises reads of the DLQ and guards the cache
	dlqKey dlqKey     // the DLQ stream's state when dlq was read
	dlq    []RecentLetter
}

// dlqKey identifies the DLQ stream's contents well enough to know that the
// latest dead letters are still those cached.
type dlqKey struct{ first, last, msgs uint64 }

// addEvent keeps e among the recent events. The caller holds s.mu.
func (d *dashState) addEvent(e Event) {
	if len(d.events) >= recentEvents {
		d.events = slices.Delete(d.events, 0, len(d.events)-recentEvents+1)
	}
	d.events = append(d.events, e)
}

// dashEvent keeps the restarts among the recent events.
func (s *Supervisor) dashEvent(e events.Event) {
	if x, ok := e.(events.Exited); ok {
		s.mu.Lock()
		s.dash.addEvent(Event{Time: x.At, Kind: "restart", Actor: x.Actor, Cause: x.Exit.String(), N: x.Restart})
		s.mu.Unlock()
	}
}

// Snapshot reads what the dashboard shows. Whatever could not be read is
// left out and said in Error.
func (s *Supervisor) Snapshot(ctx context.Context) Snapshot {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	snap := Snapshot{Time: time.Now()}
	var errs []error
	var err error
	if snap.Status, err = s.Report(ctx); err != nil {
		errs = append(errs, err)
	}
	if snap.DeadLetters, err = s.latestDeadLetters(ctx); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	snap.Events = slices.Clone(s.dash.events)
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		snap.Error = err.Error()
	}
	return snap
}

// latestDeadLetters returns the newest recentDead dead letters, newest
// first. They are read backwards from the end of the DLQ stream, and read
// again only when the stream has changed.
func (s *Supervisor) latestDeadLetters(ctx context.Context) ([]RecentLetter, error) {
	s.mu.Lock()
	js := s.js
	s.mu.Unlock()
	if js == nil {
		return nil, nil
	}
	st, err := js.Stream(ctx, protocol.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", protocol.StreamDLQ, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", protocol.StreamDLQ, err)
	}
	key := dlqKey{info.State.FirstSeq, info.State.LastSeq, info.State.Msgs}
	d := &s.dash
	d.dlqMu.Lock()
	defer d.dlqMu.Unlock()
	if key == d.dlqKey {
		return slices.Clone(d.dlq), nil
	}
	var out []RecentLetter
	want := min(recentDead, key.msgs)
	for seq, scanned := key.last, 0; seq >= max(key.first, 1) && uint64(len(out)) < want && scanned < deadScanLimit; seq, scanned = seq-1, scanned+1 {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s seq %d: %w", protocol.StreamDLQ, seq, err)
		}
		out = append(out, RecentLetter{DeadLetter: ledger.DeadLetterOf(m.Sequence, m.Header, m.Data), Time: m.Time})
	}
	d.dlqKey, d.dlq = key, out
	return slices.Clone(out), nil
}

// handleDashboard serves GET / and GET /events on mux.
func (s *Supervisor) handleDashboard(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(dashboard.Page)
	})
	mux.HandleFunc("GET /events", s.serveEvents)
}

// serveEvents streams Server-Sent Events: a Snapshot as JSON at once and
// then every snapshotEvery, until the client goes or the server shuts down
// (both end the request's context: see serveHTTP).
func (s *Supervisor) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	// Ask the browser to reconnect after a second if the stream drops.
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	tick := time.NewTicker(snapshotEvery)
	defer tick.Stop()
	for {
		b, err := json.Marshal(s.Snapshot(r.Context()))
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}
