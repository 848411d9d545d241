package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/lifecycle"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/internal/tamper"
	"github.com/robust/robust/pkg/protocol"
)

// ErrDataLost: the pipeline's streams or state are not those its books
// were kept in (a stream deleted and made again, the state bucket or an
// actor's state deleted). Going on would take values again or skip them:
// the supervisor refuses, and says how to start over.
var ErrDataLost = errors.New("the pipeline's data was removed from outside it")

// bucketStream is the state bucket's stream.
const bucketStream = "KV_" + protocol.StateBucket

// checkData runs before the streams are made: it refuses a data dir (or
// server) whose state bucket is gone while its streams hold data, whose
// streams were deleted (and perhaps made again) since the supervisor last
// saw them, or where an actor's state was removed. With --start-over it
// deletes the pipeline's streams and bucket instead, so that everything
// begins again: only then, never on a data dir that nothing was removed
// from (a --start-over left in a script does no harm).
func (s *Supervisor) checkData(ctx context.Context, js jetstream.JetStream) error {
	infos := map[string]*jetstream.StreamInfo{}
	for _, name := range s.topo().Names() {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		infos[name] = info
	}
	lost := s.lostData(ctx, js, infos)
	if lost == nil || !errors.Is(lost, ErrDataLost) {
		if lost == nil && s.cfg.StartOver {
			s.log.Warn("--start-over: nothing was removed, nothing deleted: the run goes on from where it stands")
		}
		return lost
	}
	if !s.cfg.StartOver {
		return lost
	}
	s.log.Warn("starting over", "because", lost.Error())
	for name, info := range infos {
		if err := js.DeleteStream(ctx, name); err != nil {
			return fmt.Errorf("start over: delete stream %s: %w", name, err)
		}
		s.log.Warn("starting over: deleted", "stream", name, "messages", info.State.Msgs)
	}
	return nil
}

// lostData is ErrDataLost, saying what and what to do, when the state
// bucket is gone while streams hold data, a stream was deleted or made
// again, or an actor's state was removed.
func (s *Supervisor) lostData(ctx context.Context, js jetstream.JetStream, infos map[string]*jetstream.StreamInfo) error {
	const how = "start over with --start-over (it deletes the pipeline's streams and state), or restore the data dir from a backup"
	var held []string // streams that have held messages
	for _, name := range s.topo().Names() {
		if info := infos[name]; info != nil && name != bucketStream && info.State.LastSeq > 0 {
			held = append(held, fmt.Sprintf("%s (%d messages so far)", name, info.State.LastSeq))
		}
	}
	var sup supState
	if infos[bucketStream] != nil {
		kv, err := js.KeyValue(ctx, protocol.StateBucket)
		if err != nil {
			return fmt.Errorf("state bucket: %w", err)
		}
		if sup, err = loadSupFrom(ctx, kv); err != nil {
			return err
		}
	}
	if sup.Run == 0 && len(held) > 0 {
		return fmt.Errorf("%w: the state bucket %s is gone or empty, or holds no supervisor state with a run, but streams hold data: %s. Without the actors' states every value would be taken again or skipped: %s",
			ErrDataLost, protocol.StateBucket, strings.Join(held, ", "), how)
	}
	var gone []string
	for name, created := range sup.Streams {
		switch info := infos[name]; {
		case info == nil:
			gone = append(gone, name+" is gone")
		case !info.Created.Equal(created):
			gone = append(gone, fmt.Sprintf("%s was made again at %s (the books were kept in the one made at %s)", name, info.Created.UTC().Format(time.RFC3339), created.UTC().Format(time.RFC3339)))
		}
	}
	if len(gone) > 0 {
		return fmt.Errorf("%w: %s: its values are gone, and the actors' marks refer to its old sequences: %s", ErrDataLost, strings.Join(gone, "; "), how)
	}
	if infos[bucketStream] == nil {
		return nil
	}
	for _, a := range s.reg.All() {
		if err := stateLost(ctx, js, a, sup.Started[a.Name]); err != nil {
			return err
		}
	}
	return nil
}

// recordStreams notes when each stream was made, for checkData's next
// look.
func (s *Supervisor) recordStreams(ctx context.Context, js jetstream.JetStream, st *supState) error {
	st.Streams = map[string]time.Time{}
	for _, name := range s.topo().Names() {
		str, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		st.Streams[name] = str.CachedInfo().Created
	}
	return nil
}

// checkState runs before each life of an actor: it refuses to start one
// whose state was removed (a delete or purge marker, or no key at all for
// an actor that has run) or is unreadable, rather than let it begin
// afresh and take every value again.
func (s *Supervisor) checkState(ctx context.Context, a registry.Actor) error {
	s.mu.Lock()
	ran := s.sup.Started[a.Name]
	s.mu.Unlock()
	return stateLost(ctx, s.js, a, ran)
}

func stateLost(ctx context.Context, js jetstream.JetStream, a registry.Actor, ran bool) error {
	st, err := js.Stream(ctx, bucketStream)
	if err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	const how = "restore the data dir from a backup, or start over with --start-over"
	m, err := st.GetLastMsgForSubject(ctx, "$KV."+protocol.StateBucket+"."+a.StateKey)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		if ran {
			return fmt.Errorf("%w: the %s's state (key %s) is gone although it has run: started afresh it would take every value again: %s",
				ErrDataLost, a.Name, a.StateKey, how)
		}
		return nil // never saved: a first start
	}
	if err != nil {
		return fmt.Errorf("state of %s: %w", a.Name, err)
	}
	if op := m.Header.Get("KV-Operation"); op != "" {
		return fmt.Errorf("%w: the %s's state (key %s) was deleted (%s) at %s: started afresh it would take every value again: %s",
			ErrDataLost, a.Name, a.StateKey, op, m.Time.UTC().Format(time.RFC3339), how)
	}
	if !tamper.Readable(m.Data) {
		return fmt.Errorf("%w: the %s's state (key %s) is unreadable (no JSON object, %d bytes): %s", ErrDataLost, a.Name, a.StateKey, len(m.Data), how)
	}
	return nil
}

// guarded is a child whose state is checked, and whose consumers are
// reset, before each life.
type guarded struct {
	lifecycle.Child
	before func(context.Context) error
}

// Close closes the child, if it holds anything between lives (a warm
// spare).
func (g guarded) Close() {
	if c, ok := g.Child.(interface{ Close() }); ok {
		c.Close()
	}
}

func (g guarded) Life(ctx context.Context) error {
	if err := g.before(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return &lifecycle.ExitError{Exit: events.Exit{Cause: events.CauseStartFailed, Detail: err.Error()}}
	}
	return g.Child.Life(ctx)
}

// beforeLife is what runs before each life of a: the state check, then
// the reset of its consumers: every message its predecessor had not acked
// comes back at once, in stream order, instead of after AckWait. The
// supervisor resets them, not the actor: a subject permission cannot
// limit the consumer config an actor would send, so actors may only pull
// from and ack their consumers.
func (s *Supervisor) beforeLife(a registry.Actor) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		// The check and the resets touch different things: done at once,
		// they take the round trips of one (a replacement waits for them).
		errs := make([]error, 1+len(a.Inputs))
		var wg sync.WaitGroup
		wg.Go(func() { errs[0] = s.checkState(ctx, a) })
		for i, in := range a.Inputs {
			wg.Go(func() { _, errs[1+i] = natsx.ResetConsumer(ctx, s.js, s.topo(), in) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}
