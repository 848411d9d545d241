package ledger

import (
	"context"
	"fmt"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/pkg/protocol"
)

// InFlight says what work is left, or "" when the pipeline is drained.
// generatorRuns: the generator keeps the numbers stream full, so the
// worker's unspent beats count only while it runs.
func (s *Ledger) InFlight(ctx context.Context, generatorRuns bool) (string, error) {
	// Read the worker's state before and after the streams: if it moved, a
	// result may have been published after RESULTS was read.
	_, before, err := actor.LoadStateRev[actors.WorkerState](ctx, s.KV, protocol.Worker)
	if err != nil {
		return "", err
	}
	msgs := map[string]uint64{}
	for _, name := range []string{protocol.StreamNumbers, protocol.StreamBeats, protocol.StreamResults} {
		st, err := s.JS.Stream(ctx, name)
		if err != nil {
			return "", err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return "", err
		}
		msgs[name] = info.State.Msgs
	}
	w, rev, err := actor.LoadStateRev[actors.WorkerState](ctx, s.KV, protocol.Worker)
	if err != nil {
		return "", err
	}
	lg, err := actor.LoadState[actors.LoggerState](ctx, s.KV, protocol.Logger)
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
