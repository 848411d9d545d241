// Package actors holds the four behaviours: what each actor does with a
// message. Everything else is the shared runtime in internal/actor.
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/pkg/protocol"
)

// Generator publishes 0, 1, 2, … as fast as the bounded numbers stream takes them.
type Generator struct{}

var _ actor.Producer[GeneratorState] = Generator{}

func (Generator) Stream() string                                 { return protocol.StreamNumbers }
func (Generator) Resume(*actor.Env, *GeneratorState)             {}
func (Generator) Period(*actor.Env) time.Duration                { return 0 }
func (Generator) PerMessage(*actor.Env) int                      { return 1 }
func (Generator) Advance(_ *actor.Env, d *GeneratorState, k int) { d.Next += uint64(k) }
func (Generator) Done(*actor.Env, *GeneratorState) bool          { return false }
func (Generator) Counters(d *GeneratorState) map[string]uint64 {
	return map[string]uint64{"generated": d.Next}
}

// Next is value d.Next+i; its fault key is the send number (1-based).
func (Generator) Next(env *actor.Env, d *GeneratorState, i int) (actor.Keys, actor.Out, bool) {
	v := d.Next + uint64(i)
	return actor.Key(v + 1), actor.Out{Subject: protocol.SubjectNumbers, MsgID: env.Config.IDs.Of(protocol.NumberMsgID(v)), Data: protocol.EncodeNumber(v)}, true
}

// Heartbeat sends --beats beats per run: one every --rate, or unpaced, as
// fast as the worker spends them, --batch beats to a message.
type Heartbeat struct{}

var _ actor.Producer[HeartbeatState] = Heartbeat{}

func (Heartbeat) Stream() string                      { return protocol.StreamBeats }
func (Heartbeat) Period(env *actor.Env) time.Duration { return env.Config.Rate }
func (Heartbeat) Counters(d *HeartbeatState) map[string]uint64 {
	return map[string]uint64{"beats": d.Beats, "beats_total": d.Total}
}

// PerMessage is 1 when paced; unpaced, a message carries a batch of beats.
func (Heartbeat) PerMessage(env *actor.Env) int {
	if env.Config.Rate > 0 {
		return 1
	}
	return max(env.Config.Batch, 1)
}

// Resume starts counting afresh when the supervisor begins a new run.
func (Heartbeat) Resume(env *actor.Env, d *HeartbeatState) {
	if d.Run != env.Config.Run {
		d.Run, d.Beats = env.Config.Run, 0
	}
}

// span is the first beat and the beat count of the i-th message from d.
func (h Heartbeat) span(env *actor.Env, d *HeartbeatState, i int) (first, count uint64) {
	per := uint64(h.PerMessage(env))
	first = d.Beats + uint64(i)*per + 1
	count = per
	if b := env.Config.Beats; b > 0 {
		if first > b {
			return first, 0
		}
		count = min(per, b-first+1)
	}
	return first, count
}

func (h Heartbeat) Advance(env *actor.Env, d *HeartbeatState, k int) {
	var n uint64
	for i := range k {
		_, c := h.span(env, d, i)
		n += c
	}
	d.Beats += n
	d.Total += n
}

func (Heartbeat) Done(env *actor.Env, d *HeartbeatState) bool {
	return env.Config.Beats > 0 && d.Beats >= env.Config.Beats
}

// Next is the i-th message of beats; its fault keys are its beat numbers.
func (h Heartbeat) Next(env *actor.Env, d *HeartbeatState, i int) (actor.Keys, actor.Out, bool) {
	first, count := h.span(env, d, i)
	if count == 0 {
		return actor.Keys{}, actor.Out{}, false
	}
	beat := protocol.Beat{Run: d.Run, Beat: first}
	if count > 1 {
		beat.Count = count
	}
	out := actor.Out{Subject: protocol.SubjectBeats, MsgID: env.Config.IDs.Of(protocol.BeatMsgID(beat)), Data: protocol.EncodeBeat(beat)}
	if env.Config.Rate > 0 && env.Now != nil { // paced: the start of each value's latency
		out.Header = nats.Header{protocol.HeaderBeatTime: {protocol.FormatBeatTime(env.Now())}}
	}
	return actor.Keys{From: first, To: first + count - 1}, out, true
}

// Worker turns one number into its FizzBuzz result for every beat.
type Worker struct{}

var (
	_ actor.Processor[WorkerState] = Worker{}
	_ actor.Checker[WorkerState]   = Worker{}
)

func (Worker) Counters(d *WorkerState) map[string]uint64 {
	return map[string]uint64{"credits": d.Credits, "beats": d.Beats, "processed": d.Processed, "dead_lettered": d.DeadLettered, "duplicates": d.Duplicates}
}

// Limit: numbers only as many as beats allow; beats only while fewer than
// a batch of them are banked, so that the heartbeat's bounded stream, not
// the worker's state, holds the run's lead.
func (Worker) Limit(in protocol.Input, d *WorkerState) int {
	const bank = 256
	if in == protocol.WorkerBeats {
		return int(bank - min(d.Credits, bank))
	}
	return int(min(d.Credits, 1<<20))
}

type number struct {
	n, seq uint64
	gap    bool // messages left the stream just before it
	once
}

// beat is a decoded beat with its place in the stream.
type beat struct {
	protocol.Beat
	gap bool
	at  int64 // HeaderBeatTime, or 0
}

// shapeID returns an ErrForeign error unless id has the shape of base, with
// any token or none (protocol.IDs: the token keeps a stray's ID from
// colliding with the real message's; which token a message carries says
// nothing of its value).
func shapeID(what, id, base string) error {
	if protocol.BaseMsgID(id) == base {
		return nil
	}
	return protocol.CheckMsgID(what, id, base)
}

func (Worker) Decode(in protocol.Input, m actor.Msg) (uint64, any, error) {
	id := m.Header.Get(protocol.HeaderMsgID)
	if in == protocol.WorkerBeats {
		b, err := protocol.DecodeBeat(m.Data)
		if err == nil {
			err = shapeID("beat", id, protocol.BeatMsgID(b))
		}
		at, _, terr := protocol.ParseBeatTime(m.Header)
		if err == nil {
			err = terr
		}
		return actor.NoKey, beat{Beat: b, gap: m.Gap, at: at}, err // faults refer to numbers, not beats
	}
	n, err := protocol.DecodeNumber(m.Data)
	if err != nil {
		return n, nil, err
	}
	replay, isReplay, err := protocol.ParseReplay(m.Header)
	if !isReplay {
		err = shapeID("number", id, protocol.NumberMsgID(n))
	}
	return n, number{n: n, seq: m.Seq, gap: m.Gap, once: once{replay}}, err
}

// Check refuses what the generator and the heartbeat could not have sent:
// a number ahead of the next one with nothing missing before it in the
// stream (out of order: taking it would skip every real value below it),
// a beat of a later run than the supervisor's, beyond the run's beats,
// carrying more than --batch beats, or ahead of the next beat with
// nothing missing before it.
func (Worker) Check(env *actor.Env, in protocol.Input, v any, d *WorkerState) error {
	cfg := env.Config
	if in == protocol.WorkerBeats {
		b := v.(beat)
		last := b.Beat.Beat + b.Beats() - 1
		switch {
		case b.Count > uint64(max(cfg.Batch, 1)):
			return fmt.Errorf("%w: a beat message carrying %d beats: the heartbeat sends at most --batch (%d)", protocol.ErrImplausible, b.Count, cfg.Batch)
		case cfg.Run > 0 && b.Run > cfg.Run:
			return fmt.Errorf("%w: a beat of run %d: the supervisor runs run %d", protocol.ErrImplausible, b.Run, cfg.Run)
		case cfg.Beats > 0 && last > cfg.Beats:
			return fmt.Errorf("%w: beat %d of a run of %d beats", protocol.ErrImplausible, last, cfg.Beats)
		case b.gap:
			return nil
		case b.Run == d.BeatRun && b.Beat.Beat > d.LastBeat+1 && !d.EarlyBeats.covers(d.LastBeat+1, b.Beat.Beat):
			return fmt.Errorf("%w: beat %d of run %d arrived where %d was next, with nothing missing before it in %s", protocol.ErrOutOfOrder, b.Beat.Beat, b.Run, d.LastBeat+1, protocol.StreamBeats)
		case b.Run > d.BeatRun && b.Beat.Beat > 1:
			return fmt.Errorf("%w: beat %d opens run %d, with nothing missing before it in %s", protocol.ErrOutOfOrder, b.Beat.Beat, b.Run, protocol.StreamBeats)
		}
		return nil
	}
	num := v.(number)
	if num.replay == 0 && !num.gap && num.n > d.NextValue {
		return fmt.Errorf("%w: number %d arrived where %d was next, with nothing missing before it in %s", protocol.ErrOutOfOrder, num.n, d.NextValue, protocol.StreamNumbers)
	}
	return nil
}

// Fresh: a number not yet taken (by value, or a replay by its ID). Beats
// carry no fault key: they are always fresh.
func (Worker) Fresh(in protocol.Input, v any, d *WorkerState) bool {
	if in == protocol.WorkerBeats {
		return true
	}
	num := v.(number)
	return num.fresh(num.n >= d.NextValue, d.Replayed)
}

func (w Worker) Apply(env *actor.Env, in protocol.Input, v any, d *WorkerState) []actor.Out {
	if in == protocol.WorkerBeats {
		b := v.(beat).Beat
		last := b.Beat + b.Beats() - 1
		switch {
		case b.Run > d.BeatRun:
			d.BeatRun, d.LastBeat, d.EarlyBeats = b.Run, 0, nil
		case b.Run < d.BeatRun || last <= d.LastBeat:
			d.Duplicates++
			env.Log.Warn("republished beats skipped", "run", b.Run, "beats", fmt.Sprintf("%d..%d", b.Beat, last))
			return nil
		}
		fresh := last - max(b.Beat-1, d.LastBeat) // a copy cut differently may overlap
		if b.Beat > d.LastBeat+1 && d.EarlyBeats.covers(d.LastBeat+1, b.Beat) {
			early := b.Beat - d.LastBeat - 1
			fresh += early
			env.Log.Warn("beats whose IDs a stray copy took counted: their copies were dead-lettered as out of order", "run", b.Run, "beats", fmt.Sprintf("%d..%d", d.LastBeat+1, b.Beat-1))
		}
		d.LastBeat = last
		d.EarlyBeats = d.EarlyBeats.above(last)
		d.Credits += fresh
		d.Beats += fresh
		d.credit(v.(beat).at, fresh)
		return nil
	}
	num := v.(number)
	if !w.Fresh(in, v, d) {
		d.Duplicates++
		env.Log.Warn("republished number skipped", "value", num.n, "next", d.NextValue, "replay_of", num.replay)
		return nil
	}
	if num.replay != 0 {
		deadRemove(&d.Dead, num.n) // the value goes on
	}
	num.take(env, num.n, &d.Replayed, func() { d.NextValue = num.n + 1 })
	// The result of a replay is an ordinary result: it follows the results
	// of the numbers before the replay, and its source sequence is the
	// replay's, above theirs. Each result names its predecessor's source
	// (LoggerState.Chained), unless this state is older than the chain and
	// has published results whose sources it did not keep.
	h := nats.Header{}
	h.Set(protocol.HeaderSourceSequence, strconv.FormatUint(num.seq, 10))
	if d.Chained || d.Processed == 0 {
		h.Set(protocol.HeaderAfterSource, strconv.FormatUint(d.LastResult, 10))
	}
	d.LastResult, d.Chained = num.seq, true
	if at := d.spend(); at > 0 {
		h.Set(protocol.HeaderBeatTime, strconv.FormatInt(at, 10))
	}
	d.Credits--
	d.Processed++
	r := protocol.FizzBuzz(num.n)
	env.Log.Debug("processed", "value", num.n, "result", r.Text)
	return []actor.Out{{Subject: protocol.SubjectResults, MsgID: env.Config.IDs.Of(protocol.ResultMsgID(num.n)), Data: protocol.EncodeResult(r), Header: h}}
}

// Discard: a dead-lettered number still spends its beat; a malformed beat
// grants nothing. Either way the marks move past the pipeline's own
// messages (never past one that Check refuses), so that a republished copy
// of a dead letter is not taken later.
func (w Worker) Discard(env *actor.Env, in protocol.Input, m actor.Msg, d *WorkerState) {
	if in == protocol.WorkerNumbers {
		d.spend()
		d.Credits--
		d.DeadLettered++
	}
	_, v, err := w.Decode(in, m)
	if err != nil {
		return
	}
	if err := w.Check(env, in, v, d); err != nil {
		if b, ok := v.(beat); ok && errors.Is(err, protocol.ErrOutOfOrder) && b.Run == d.BeatRun {
			d.earlyBeats(b.Beat)
		}
		return
	}
	switch v := v.(type) {
	case number:
		if v.replay == 0 && v.fresh(v.n >= d.NextValue, d.Replayed) {
			deadAdd(&d.Dead, v.n) // its one pass; a replay dead again stays counted once
		}
		v.take(nil, v.n, &d.Replayed, func() { d.NextValue = max(d.NextValue, v.n+1) })
	case beat:
		last := v.Beat.Beat + v.Beats() - 1
		if v.Run > d.BeatRun {
			d.BeatRun, d.LastBeat, d.EarlyBeats = v.Run, last, nil
		} else if v.Run == d.BeatRun {
			d.LastBeat = max(d.LastBeat, last)
			d.EarlyBeats = d.EarlyBeats.above(d.LastBeat)
		}
	}
}

// earlyBeats notes b's beats as dead-lettered ahead of the next one
// (WorkerState.EarlyBeats), as many as the bound takes.
func (d *WorkerState) earlyBeats(b protocol.Beat) {
	last := b.Beat + b.Beats() - 1
	if last < b.Beat || b.Beat <= d.LastBeat+1 {
		return // wraps around; not ahead
	}
	for q := b.Beat; q <= last && len(d.EarlyBeats) < maxEarlyBeats; q++ {
		d.EarlyBeats.Add(q)
	}
}

// Logger logs each result with its running total and tallies them.
type Logger struct{}

var (
	_ actor.Processor[LoggerState] = Logger{}
	_ actor.Checker[LoggerState]   = Logger{}
)

func (Logger) Limit(protocol.Input, *LoggerState) int { return 1 << 20 }
func (Logger) Counters(d *LoggerState) map[string]uint64 {
	t := d.Tally
	return map[string]uint64{"logged": t.Total(), "fizz": t.Fizz, "buzz": t.Buzz, "fizzbuzz": t.FizzBuzz, "value": t.Value, "duplicates": d.Duplicates}
}

type result struct {
	r      protocol.Result
	source uint64
	after  *uint64 // HeaderAfterSource, if it has one
	gap    bool    // messages left the stream just before it
	once
}

func (Logger) Decode(_ protocol.Input, m actor.Msg) (uint64, any, error) {
	r, err := protocol.DecodeResult(m.Data)
	if err != nil {
		return r.Value, nil, err
	}
	replay, isReplay, err := protocol.ParseReplay(m.Header)
	if err != nil {
		return r.Value, nil, err
	}
	if isReplay {
		return r.Value, result{r: r, once: once{replay}}, nil
	}
	id := m.Header.Get(protocol.HeaderMsgID)
	if err := shapeID("result", id, protocol.ResultMsgID(r.Value)); err != nil {
		return r.Value, nil, err
	}
	h := m.Header.Get(protocol.HeaderSourceSequence)
	src, err := strconv.ParseUint(h, 10, 64)
	if err != nil || src == 0 {
		return r.Value, nil, fmt.Errorf("%w: result: header %s %q: want the sequence of its number", protocol.ErrMalformed, protocol.HeaderSourceSequence, h)
	}
	res := result{r: r, source: src, gap: m.Gap}
	if vs := m.Header.Values(protocol.HeaderAfterSource); len(vs) > 0 {
		after, err := strconv.ParseUint(vs[0], 10, 64)
		if err != nil || len(vs) > 1 || after >= src {
			return r.Value, nil, fmt.Errorf("%w: result: header %s %q: want the source of the result before it, below its own (%d)", protocol.ErrMalformed, protocol.HeaderAfterSource, vs, src)
		}
		res.after = &after
	}
	return r.Value, res, nil
}

// Check refuses a result the worker could not have sent next: one past the
// logger's mark, with nothing missing before it in the stream, that does
// not follow the last result logged (HeaderAfterSource). Taking it would
// move the mark to its source and skip every real result below that as a
// copy.
func (Logger) Check(_ *actor.Env, _ protocol.Input, v any, d *LoggerState) error {
	res := v.(result)
	if res.replay != 0 || res.gap || res.source <= d.LastSource {
		return nil // a replay is taken by its ID; after a gap anything goes; below the mark, a copy
	}
	switch {
	case res.after == nil && d.Chained:
		return fmt.Errorf("%w: result %d from source %d carries no %s, with nothing missing before it in %s: the worker's do", protocol.ErrOutOfOrder, res.r.Value, res.source, protocol.HeaderAfterSource, protocol.StreamResults)
	case res.after != nil && *res.after != d.LastSource:
		return fmt.Errorf("%w: result %d from source %d follows source %d, where the last result taken came from %d, with nothing missing before it in %s", protocol.ErrOutOfOrder, res.r.Value, res.source, *res.after, d.LastSource, protocol.StreamResults)
	}
	return nil
}

// Fresh: a result not yet logged (by source, or a replay by its ID).
func (Logger) Fresh(_ protocol.Input, v any, d *LoggerState) bool {
	res := v.(result)
	return res.fresh(res.source > d.LastSource, d.Replayed)
}

// Apply logs "Fizz (fizz total: 12)": at info when paced, at debug when
// unpaced (a line per value would cost more than the value).
func (l Logger) Apply(env *actor.Env, in protocol.Input, v any, d *LoggerState) []actor.Out {
	res := v.(result)
	r := res.r
	if !l.Fresh(in, v, d) {
		d.Duplicates++
		env.Log.Warn("republished result skipped", "value", r.Value, "source", res.source, "replay_of", res.replay)
		return nil
	}
	if res.replay != 0 {
		deadRemove(&d.Dead, r.Value)
	}
	res.take(env, r.Value, &d.Replayed, func() { d.LastSource, d.Chained = res.source, d.Chained || res.after != nil })
	total := d.Tally.Add(r.Value)
	level := slog.LevelInfo
	if env.Config.Rate == 0 {
		level = slog.LevelDebug
	}
	if env.Log.Enabled(context.Background(), level) {
		env.Log.Log(context.Background(), level, fmt.Sprintf("%s (%s total: %d)", r.Text, r.Kind, total), "value", r.Value)
	}
	return nil
}

// Discard moves the source mark past a dead-lettered result of the
// worker's (never past one that Check refuses), or records a dead-lettered
// replay as taken.
func (l Logger) Discard(env *actor.Env, in protocol.Input, m actor.Msg, d *LoggerState) {
	if _, v, err := l.Decode(in, m); err == nil && l.Check(env, in, v, d) == nil {
		res := v.(result)
		if res.replay == 0 && res.fresh(res.source > d.LastSource, d.Replayed) {
			deadAdd(&d.Dead, res.r.Value)
			d.Chained = d.Chained || res.after != nil
		}
		res.take(nil, res.r.Value, &d.Replayed, func() { d.LastSource = max(d.LastSource, res.source) })
	}
}

// once is how the worker and the logger take each of the pipeline's
// messages once. Producers publish in order, so a message is new when it
// lies past the consumer's position mark; a replayed dead letter lies
// below the mark and is taken once by its ID, kept in the state's set of
// replays taken.
type once struct {
	replay uint64 // the dead letter this replays, or 0
}

// fresh reports whether the message is new: pastMark for the pipeline's
// own, not yet among replayed for a replay.
func (o once) fresh(pastMark bool, replayed Seqs) bool {
	if o.replay != 0 {
		return !replayed.Has(o.replay)
	}
	return pastMark
}

// take records the message as taken: a replay in replayed, any other by
// moving the mark. env, if not nil, logs a replay taken.
func (o once) take(env *actor.Env, value uint64, replayed *Seqs, moveMark func()) {
	if o.replay == 0 {
		moveMark()
		return
	}
	// A dead letter put back: below the mark, taken once by its ID.
	replayed.Add(o.replay)
	if env != nil {
		env.Log.Info("replayed dead letter taken", "value", value, "dead_letter", o.replay)
	}
}
