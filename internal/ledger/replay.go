package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// Replay errors.
var (
	// ErrNoDeadLetter: no dead letter has that ID.
	ErrNoDeadLetter = errors.New("no such dead letter")
	// ErrNotReplayable: the dead letter cannot be replayed (see
	// DeadLetter.Replayable).
	ErrNotReplayable = errors.New("not replayable")
)

// Replayed is the outcome of replaying one dead letter.
type Replayed struct {
	DeadLetter
	Skipped string `json:"skipped,omitempty"` // why it was not replayed (with all)
}

// ReplayWait bounds how long a replay waits for room in a full stream.
const ReplayWait = 30 * time.Second

// Replay puts dead letters back on their original subjects, each as one
// message with Nats-Msg-Id replay-<ID> and HeaderReplay, so that it flows
// through exactly once: the server drops a second replay within its
// duplicate window, and the worker and logger keep the replays they took
// in their state and skip a copy after it. With all, it replays every
// dead letter that can be (and reports the others as skipped); otherwise
// the dead letters ids, each of which must exist and be replayable.
//
// Replay it after fixing the cause (for example with --faults none):
// otherwise the replay is dead-lettered again, as a new dead letter that
// replaces this one.
func (s *Ledger) Replay(ctx context.Context, ids []uint64, all bool) ([]Replayed, error) {
	s.replayMu.Lock() // one replay at a time: each checks, then publishes
	defer s.replayMu.Unlock()
	dls, err := s.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	var todo []Replayed
	if all {
		for _, d := range dls {
			if d.Status == StatusDead { // the others were replayed already
				todo = append(todo, Replayed{DeadLetter: d, Skipped: d.Replayable()})
			}
		}
	} else {
		byID := map[uint64]DeadLetter{}
		for _, d := range dls {
			byID[d.Seq] = d
		}
		for _, id := range ids {
			d, ok := byID[id]
			if !ok {
				return nil, fmt.Errorf("%w: %d (see `supervisor dlq list`)", ErrNoDeadLetter, id)
			}
			if why := d.Replayable(); why != "" {
				return nil, fmt.Errorf("dead letter %d is %w: %s", id, ErrNotReplayable, why)
			}
			todo = append(todo, Replayed{DeadLetter: d})
		}
	}
	for i := range todo {
		r := &todo[i]
		if r.Skipped != "" {
			continue
		}
		if err := s.replayOne(ctx, r.DeadLetter); err != nil {
			return todo[:i], fmt.Errorf("replay of dead letter %d: %w", r.Seq, err)
		}
		r.Status = StatusReplayQueued
	}
	return todo, nil
}

// replayOne publishes one dead letter onto its original subject, waiting
// while the stream is full.
func (s *Ledger) replayOne(ctx context.Context, d DeadLetter) error {
	st, err := s.JS.Stream(ctx, protocol.StreamDLQ)
	if err != nil {
		return err
	}
	m, err := st.GetMsg(ctx, d.Seq)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: d.Subject, Data: m.Data, Header: nats.Header{}}
	msg.Header.Set(protocol.HeaderReplay, strconv.FormatUint(d.Seq, 10))
	ctx, cancel := context.WithTimeout(ctx, ReplayWait)
	defer cancel()
	for {
		_, err := s.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(protocol.ReplayMsgID(d.Seq)), jetstream.WithExpectStream(d.Stream))
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != natsx.ErrCodeStreamFull {
			return err // a duplicate (replayed moments ago) is no error
		}
		select { // full: the worker is not taking numbers now
		case <-ctx.Done():
			return fmt.Errorf("stream %s stayed full for %s: is the pipeline running with beats (--beats 0 runs on)? %w", d.Stream, ReplayWait, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WriteReplayed prints replay outcomes for people.
func WriteReplayed(w io.Writer, rs []Replayed) {
	n := 0
	for _, r := range rs {
		if r.Skipped != "" {
			fmt.Fprintf(w, "skipped dead letter %d (%s %s): %s\n", r.Seq, r.Actor, r.ValueText(), r.Skipped)
			continue
		}
		n++
		fmt.Fprintf(w, "replayed dead letter %d (%s %s) onto %s\n", r.Seq, r.Actor, r.ValueText(), r.Subject)
	}
	fmt.Fprintf(w, "%d replayed, %d skipped\n", n, len(rs)-n)
}
