// Package actors holds the four behaviours: what each actor does with a
// message. Everything else is the shared runtime in internal/actor.
package actors

import (
	"fmt"
	"time"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/pkg/protocol"
)

// Generator publishes 0, 1, 2, … as fast as the bounded numbers stream takes them.
type Generator struct{}

var _ actor.Producer[protocol.GeneratorState] = Generator{}

func (Generator) Stream() string                                 { return protocol.StreamNumbers }
func (Generator) Resume(*actor.Env, *protocol.GeneratorState)    {}
func (Generator) Period(*actor.Env) time.Duration                { return 0 }
func (Generator) Advance(d *protocol.GeneratorState, k int)      { d.Next += uint64(k) }
func (Generator) Done(*actor.Env, *protocol.GeneratorState) bool { return false }
func (Generator) Counters(d *protocol.GeneratorState) map[string]uint64 {
	return map[string]uint64{"generated": d.Next}
}

// Next is value d.Next+i; its fault key is the send number (1-based).
func (Generator) Next(_ *actor.Env, d *protocol.GeneratorState, i int) (uint64, actor.Out, bool) {
	v := d.Next + uint64(i)
	return v + 1, actor.Out{Subject: protocol.SubjectNumbers, MsgID: protocol.NumberMsgID(v), Data: protocol.EncodeNumber(v)}, true
}

// Heartbeat sends a beat every --rate, --beats per run.
type Heartbeat struct{}

var _ actor.Producer[protocol.HeartbeatState] = Heartbeat{}

func (Heartbeat) Stream() string                      { return protocol.StreamBeats }
func (Heartbeat) Period(env *actor.Env) time.Duration { return env.Config.Rate }
func (Heartbeat) Counters(d *protocol.HeartbeatState) map[string]uint64 {
	return map[string]uint64{"beats": d.Beats, "beats_total": d.Total}
}

// Resume starts counting afresh when the supervisor begins a new run.
func (Heartbeat) Resume(env *actor.Env, d *protocol.HeartbeatState) {
	if d.Run != env.Config.Run {
		d.Run, d.Beats = env.Config.Run, 0
	}
}

func (Heartbeat) Advance(d *protocol.HeartbeatState, k int) {
	d.Beats += uint64(k)
	d.Total += uint64(k)
}

func (Heartbeat) Done(env *actor.Env, d *protocol.HeartbeatState) bool {
	return env.Config.Beats > 0 && d.Beats >= env.Config.Beats
}

// Next is beat d.Beats+i+1, which is also its fault key.
func (Heartbeat) Next(env *actor.Env, d *protocol.HeartbeatState, i int) (uint64, actor.Out, bool) {
	b := d.Beats + uint64(i) + 1
	if env.Config.Beats > 0 && b > env.Config.Beats {
		return 0, actor.Out{}, false
	}
	beat := protocol.Beat{Run: d.Run, Beat: b}
	return b, actor.Out{Subject: protocol.SubjectBeats, MsgID: protocol.BeatMsgID(d.Run, b), Data: protocol.EncodeBeat(beat)}, true
}

// Worker turns one number into its FizzBuzz result for every beat.
type Worker struct{}

var _ actor.Processor[protocol.WorkerState] = Worker{}

func (Worker) Inputs() []protocol.Input {
	return []protocol.Input{protocol.WorkerBeats, protocol.WorkerNumbers}
}

func (Worker) Counters(d *protocol.WorkerState) map[string]uint64 {
	return map[string]uint64{"credits": d.Credits, "beats": d.Beats, "processed": d.Processed, "dead_lettered": d.DeadLettered}
}

// Limit: beats are always welcome; numbers only as many as beats allow.
func (Worker) Limit(in protocol.Input, d *protocol.WorkerState) int {
	if in == protocol.WorkerBeats {
		return 1 << 20
	}
	return int(min(d.Credits, 1<<20))
}

func (Worker) Decode(in protocol.Input, data []byte) (uint64, any, error) {
	if in == protocol.WorkerBeats {
		b, err := protocol.DecodeBeat(data)
		return actor.NoKey, b, err // faults refer to numbers, not beats
	}
	n, err := protocol.DecodeNumber(data)
	return n, n, err
}

func (Worker) Apply(env *actor.Env, in protocol.Input, v any, d *protocol.WorkerState) []actor.Out {
	if in == protocol.WorkerBeats {
		d.Credits++
		d.Beats++
		return nil
	}
	n := v.(uint64)
	d.Credits--
	d.Processed++
	r := protocol.FizzBuzz(n)
	env.Log.Debug("processed", "value", n, "result", r.Text)
	return []actor.Out{{Subject: protocol.SubjectResults, MsgID: protocol.ResultMsgID(n), Data: protocol.EncodeResult(r)}}
}

// Discard: a dead-lettered number still spends its beat; a malformed beat grants nothing.
func (Worker) Discard(in protocol.Input, d *protocol.WorkerState) {
	if in == protocol.WorkerNumbers {
		d.Credits--
		d.DeadLettered++
	}
}

// Logger logs each result with its running total and tallies them.
type Logger struct{}

var _ actor.Processor[protocol.LoggerState] = Logger{}

func (Logger) Inputs() []protocol.Input                        { return []protocol.Input{protocol.LoggerResults} }
func (Logger) Limit(protocol.Input, *protocol.LoggerState) int { return 1 << 20 }
func (Logger) Discard(protocol.Input, *protocol.LoggerState)   {}
func (Logger) Counters(d *protocol.LoggerState) map[string]uint64 {
	t := d.Tally
	return map[string]uint64{"logged": t.Total(), "fizz": t.Fizz, "buzz": t.Buzz, "fizzbuzz": t.FizzBuzz, "value": t.Value}
}

func (Logger) Decode(_ protocol.Input, data []byte) (uint64, any, error) {
	r, err := protocol.DecodeResult(data)
	return r.Value, r, err
}

// Apply logs "Fizz (fizz total: 12)": at info when paced, at debug when
// unpaced (a line per value would cost more than the value).
func (Logger) Apply(env *actor.Env, _ protocol.Input, v any, d *protocol.LoggerState) []actor.Out {
	r := v.(protocol.Result)
	total := d.Tally.Add(r.Value)
	msg := fmt.Sprintf("%s (%s total: %d)", r.Text, r.Kind, total)
	if env.Config.Rate > 0 {
		env.Log.Info(msg, "value", r.Value)
	} else {
		env.Log.Debug(msg, "value", r.Value)
	}
	return nil
}
