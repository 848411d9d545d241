package supervisor

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/robust/robust/internal/api"
	"github.com/robust/robust/internal/buildinfo"
	"github.com/robust/robust/internal/ledger"
	"github.com/robust/robust/pkg/protocol"
)

// The API's types, as the control commands and tests read them.
type (
	StatusReport = api.StatusReport
	ActorReport  = api.ActorReport
)

// ErrUnknownActor is returned by Kill for a name that is no actor.
var ErrUnknownActor = api.ErrUnknownActor

// Books is the pipeline's ledger, or nil before Run has connected.
func (s *Supervisor) Books() *ledger.Ledger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.led
}

// Handler serves the supervisor's HTTP API (see internal/api).
func (s *Supervisor) Handler() http.Handler { return s.api.Handler() }

// Report snapshots the pipeline.
func (s *Supervisor) Report(ctx context.Context) (StatusReport, error) {
	s.mu.Lock()
	r := StatusReport{Run: s.run, Build: buildinfo.Read(), Graph: s.reg.Graph(), Queues: map[string]uint64{}}
	restarts := maps.Clone(s.sup.Restarts) // the persisted counts change under s.mu
	causes := map[string]map[string]uint64{}
	for name, c := range s.sup.Causes {
		causes[name] = maps.Clone(c)
	}
	js := s.js
	r.Tampered = slices.Clone(s.sup.Tampered)
	if s.disk != nil {
		full := *s.disk
		r.StorageFull = &full
	}
	s.mu.Unlock()
	for _, st := range s.tab.all() {
		a, _ := s.reg.Get(st.Name)
		ar := ActorReport{Name: st.Name, Kind: a.Kind, PID: st.PID, SparePID: st.SparePID, State: st.State, Restarts: st.Restarts,
			RestartsTotal: restarts[st.Name], Counters: st.Counters,
			Causes: causes[st.Name], ProgressCounter: a.Progress, Progress: st.Counters[a.Progress]}
		if st.LastExit.Cause != "" {
			ar.LastExit = st.LastExit.String()
		}
		if st.State == StateRunning {
			ar.UptimeSeconds = time.Since(st.Since).Seconds()
		}
		r.Actors = append(r.Actors, ar)
	}
	if js == nil {
		return r, nil
	}
	for _, gs := range r.Graph.Streams {
		st, err := js.Stream(ctx, gs.Name)
		if err != nil {
			return r, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return r, err
		}
		if gs.Name == protocol.StreamDLQ {
			r.DeadLetters = info.State.Msgs
		} else {
			r.Queues[gs.Name] = info.State.Msgs
		}
	}
	return r, nil
}
