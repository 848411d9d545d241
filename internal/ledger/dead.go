package ledger

import (
	"context"
	"fmt"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/pkg/protocol"
)

// CountDead gives each worker or logger state written before the dead
// tallies existed (Dead nil) the tally of its dead letters that have not
// flowed again, counted from the DLQ, which until then was never trimmed.
// The supervisor calls it before any actor starts. It returns the actors
// whose tallies it counted dead letters into (a state without any gets an
// empty tally, not reported).
func (s *Ledger) CountDead(ctx context.Context) ([]string, error) {
	l, err := s.Read(ctx)
	if err != nil {
		return nil, err
	}
	tallies := l.dlqTallies()
	var counted []string
	if l.wk.Data.Dead == nil {
		ok, err := setDead[actors.WorkerState](ctx, s, protocol.Worker, tallies[protocol.Worker], func(d *actors.WorkerState) **actors.Tally { return &d.Dead })
		if err != nil {
			return counted, err
		}
		if ok && tallies[protocol.Worker].Total() > 0 {
			counted = append(counted, protocol.Worker)
		}
	}
	if l.lg.Data.Dead == nil {
		ok, err := setDead[actors.LoggerState](ctx, s, protocol.Logger, tallies[protocol.Logger], func(d *actors.LoggerState) **actors.Tally { return &d.Dead })
		if err != nil {
			return counted, err
		}
		if ok && tallies[protocol.Logger].Total() > 0 {
			counted = append(counted, protocol.Logger)
		}
	}
	return counted, nil
}

// setDead writes t as the Dead tally of key's state if it has none yet and
// the state exists (an actor that never ran starts with an empty tally).
func setDead[D any](ctx context.Context, s *Ledger, key string, t actors.Tally, dead func(*D) **actors.Tally) (bool, error) {
	st, rev, err := actor.LoadStateRev[D](ctx, s.KV, key)
	if err != nil || rev == 0 || *dead(&st.Data) != nil {
		return false, err
	}
	*dead(&st.Data) = &t
	if err := actor.SaveStateRev(ctx, s.KV, key, st, rev); err != nil {
		return false, fmt.Errorf("count the dead letters of %s: %w", key, err)
	}
	return true, nil
}
