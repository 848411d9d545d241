package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	ledger.DeadLetter
	Time time.Time `json:"time"`
}

// dlqKey identifies the DLQ stream's contents well enough to know that the
// latest dead letters are still those cached.
type dlqKey struct{ first, last, msgs uint64 }

// addEvent keeps e among the recent events.
func (s *Server) addEvent(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) >= recentEvents {
		s.events = slices.Delete(s.events, 0, len(s.events)-recentEvents+1)
	}
	s.events = append(s.events, e)
}

// On takes one of the pipeline's events: restarts become the dashboard's
// recent events, dead letters the metrics' count.
func (s *Server) On(e events.Event) {
	switch x := e.(type) {
	case events.Exited:
		s.addEvent(Event{Time: x.At, Kind: "restart", Actor: x.Actor, Cause: x.Exit.String(), N: x.Restart})
	case events.DeadLettered:
		s.deadLettered.Add(1)
	case events.Tampered:
		s.tampered.Add(1)
	}
}

// Snapshot reads what the dashboard shows. Whatever could not be read is
// left out and said in Error.
func (s *Server) Snapshot(ctx context.Context) Snapshot {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	snap := Snapshot{Time: time.Now()}
	var errs []error
	var err error
	if snap.Status, err = s.p.Report(ctx); err != nil {
		errs = append(errs, err)
	}
	if snap.DeadLetters, err = s.latestDeadLetters(ctx); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	snap.Events = slices.Clone(s.events)
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		snap.Error = err.Error()
	}
	return snap
}

// latestDeadLetters returns the newest recentDead dead letters, newest
// first. They are read backwards from the end of the DLQ stream, and read
// again only when the stream has changed.
func (s *Server) latestDeadLetters(ctx context.Context) ([]RecentLetter, error) {
	led := s.p.Books()
	if led == nil {
		return nil, nil
	}
	js := led.JS
	st, err := js.Stream(ctx, protocol.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", protocol.StreamDLQ, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", protocol.StreamDLQ, err)
	}
	key := dlqKey{info.State.FirstSeq, info.State.LastSeq, info.State.Msgs}
	s.dlqMu.Lock()
	defer s.dlqMu.Unlock()
	if key == s.dlqKey {
		return slices.Clone(s.dlq), nil
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
	s.dlqKey, s.dlq = key, out
	return slices.Clone(out), nil
}

// handleDashboard serves GET / and GET /events on mux.
func (s *Server) handleDashboard(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(dashboard.Page)
	})
	mux.HandleFunc("GET /events", s.serveEvents)
}

// serveEvents streams Server-Sent Events: the latest Snapshot as JSON at
// once and then each one the hub builds, until the client goes or the
// server shuts down (both end the request's context: see HTTPServer). Past
// Access.EventClients open streams, a new one is refused.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !s.hub.join(s.access.EventClients) {
		http.Error(w, fmt.Sprintf("too many open /events streams (%d): close a dashboard", s.access.EventClients), http.StatusServiceUnavailable)
		return
	}
	defer s.hub.leave()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	// Ask the browser to reconnect after a second if the stream drops.
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	for {
		b, fresh := s.hub.next()
		if b != nil {
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-fresh:
		}
	}
}
