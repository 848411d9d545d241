package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/pkg/protocol"
)

// drain waits until every beat is spent and every result logged, or the
// drain timeout passes, or an actor gives up.
func (s *Supervisor) drain(abort context.Context, errc <-chan error, generatorRuns bool) error {
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		left, err := s.inFlight(ctx, generatorRuns)
		cancel()
		if err == nil && left == "" {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				left = err.Error()
			}
			return fmt.Errorf("drain timeout (%s) passed with work left: %s", s.cfg.DrainTimeout, left)
		}
		select {
		case <-abort.Done():
			return errors.New("aborted while draining")
		case err := <-errc:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// inFlight says what work is left, or "" when the pipeline is drained.
func (s *Supervisor) inFlight(ctx context.Context, generatorRuns bool) (string, error) {
	// Read the worker's state before and after the streams: if it moved, a
	// result may have been published after RESULTS was read.
	_, before, err := actor.LoadStateRev[actors.WorkerState](ctx, s.kv, protocol.Worker)
	if err != nil {
		return "", err
	}
	msgs := map[string]uint64{}
	for _, name := range []string{protocol.StreamNumbers, protocol.StreamBeats, protocol.StreamResults} {
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return "", err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return "", err
		}
		msgs[name] = info.State.Msgs
	}
	w, rev, err := actor.LoadStateRev[actors.WorkerState](ctx, s.kv, protocol.Worker)
	if err != nil {
		return "", err
	}
	lg, err := actor.LoadState[actors.LoggerState](ctx, s.kv, protocol.Logger)
	if err != nil {
		return "", err
	}
	unpublished := 0
	for _, o := range w.Outbox {
		if _, ok := unloggedResult(o.Subject, o.MsgID, o.Header, o.Data, lg.Data.LastSource); ok {
			unpublished++
		}
	}
	switch {
	case rev != before:
		return "the worker is busy", nil
	case unpublished > 0:
		return fmt.Sprintf("%d results committed by the worker, not yet logged", unpublished), nil
	case msgs[protocol.StreamBeats] > 0:
		return fmt.Sprintf("%d beat messages not yet taken by the worker", msgs[protocol.StreamBeats]), nil
	case w.Data.Credits > 0 && (generatorRuns || msgs[protocol.StreamNumbers] > 0):
		return fmt.Sprintf("worker has %d beats to spend", w.Data.Credits), nil
	case msgs[protocol.StreamResults] > 0:
		return fmt.Sprintf("%d results not yet logged", msgs[protocol.StreamResults]), nil
	}
	return "", nil
}
