package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/ledger"
)

// The ledger's types, as the supervisor's API and summary show them.
type (
	Summary    = ledger.Summary
	DeadLetter = ledger.DeadLetter
	Replayed   = ledger.Replayed
)

// Replay errors (see ledger.Ledger.Replay).
var (
	ErrNoDeadLetter  = ledger.ErrNoDeadLetter
	ErrNotReplayable = ledger.ErrNotReplayable
)

// Summarize reads the pipeline's books and reconciles them.
func (s *Supervisor) Summarize(ctx context.Context) (*Summary, error) {
	sup, err := s.loadSup(ctx)
	if err != nil {
		return nil, err
	}
	var counts []ledger.ActorCounts
	for _, a := range s.reg.All() {
		c := ledger.ActorCounts{Name: a.Name, StateKey: a.StateKey, Restarts: sup.Restarts[a.Name], LastExit: sup.LastCause[a.Name]}
		if t, ok := s.tab.get(a.Name); ok {
			c.RunRestarts = t.Restarts
		}
		counts = append(counts, c)
	}
	sum, err := s.led.Summarize(ctx, sup.Run, counts)
	if err != nil {
		return nil, err
	}
	sum.Tampered, sum.TamperedTotal = sup.Tampered, sup.TamperedTotal
	if sup.TamperedTotal > 0 {
		sum.Problems = append(sum.Problems, tamperProblem(sup.Tampered, sup.TamperedTotal))
		sum.OK = false
	}
	return sum, nil
}

// summary is Summarize within --summary-timeout; past it, or if the books
// cannot be read, a partial summary that says why (never none: an operator
// always gets the run's restarts and the reason the books are missing).
func (s *Supervisor) summary(ctx context.Context) *Summary {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SummaryTimeout)
	defer cancel()
	sum, err := s.Summarize(ctx)
	if err == nil {
		return sum
	}
	why := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		why = fmt.Sprintf("the books could not be read within --summary-timeout (%s): %v", s.cfg.SummaryTimeout, err)
	}
	s.mu.Lock()
	run := s.run
	s.mu.Unlock()
	p := &Summary{Run: run, Actors: s.reg.Names(), Partial: true, RunRestarts: map[string]uint64{},
		Problems: []string{"partial summary: " + why}}
	for _, a := range s.tab.all() {
		p.RunRestarts[a.Name] = a.Restarts
	}
	s.mu.Lock()
	p.Tampered, p.TamperedTotal = slices.Clone(s.sup.Tampered), s.sup.TamperedTotal
	s.mu.Unlock()
	if p.TamperedTotal > 0 {
		p.Problems = append(p.Problems, tamperProblem(p.Tampered, p.TamperedTotal))
	}
	return p
}

// tamperProblem names the tamperings in a summary's problems.
func tamperProblem(list []events.Tampered, total uint64) string {
	var what []string
	for _, t := range list {
		what = append(what, t.String())
	}
	more := ""
	if n := total - uint64(len(list)); n > 0 {
		more = fmt.Sprintf(" and %d earlier", n)
	}
	return fmt.Sprintf("the pipeline's data was changed from outside it %d times: %s%s", total, strings.Join(what, "; "), more)
}

// Replay puts dead letters back on their subjects (see ledger.Ledger.Replay)
// and reports each as an event.
func (s *Supervisor) Replay(ctx context.Context, ids []uint64, all bool) ([]Replayed, error) {
	rs, err := s.led.Replay(ctx, ids, all)
	for _, r := range rs {
		if r.Skipped == "" {
			s.bus.Emit(events.Replayed{Base: events.Base{At: time.Now(), Actor: r.Actor}, DeadLetter: r.Seq})
			s.log.Info("dead letter replayed", "id", r.Seq, "actor", r.Actor, "value", r.ValueText(), "subject", r.Subject)
		}
	}
	return rs, err
}

// drain waits until every beat is spent and every result logged, or the
// drain timeout passes, or an actor gives up.
func (s *Supervisor) drain(abort context.Context, errc <-chan error, generatorRuns bool) error {
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		left, err := s.led.InFlight(ctx, generatorRuns)
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

// Dead-letter statuses (see ledger).
const (
	StatusDead         = ledger.StatusDead
	StatusReplayQueued = ledger.StatusReplayQueued
	StatusReplayed     = ledger.StatusReplayed
)
