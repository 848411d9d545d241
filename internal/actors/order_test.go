package actors

import (
	"errors"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/pkg/protocol"
)

const token = protocol.IDs("0123456789ab")

func tokenEnv() *actor.Env {
	e := env(0, 0)
	e.Config.IDs = token
	return e
}

// take runs a message through Decode, Check and then Apply, or Discard
// when refused (as the runtime does), and returns the refusal.
func take[D any](t *testing.T, p actor.Processor[D], e *actor.Env, in protocol.Input, m actor.Msg, d *D) ([]actor.Out, error) {
	t.Helper()
	_, v, err := p.Decode(in, m)
	if c, ok := p.(actor.Checker[D]); ok && err == nil {
		err = c.Check(e, in, v, d)
	}
	if err != nil {
		p.Discard(e, in, m, d)
		return nil, err
	}
	return p.Apply(e, in, v, d), nil
}

// The producers put the pipeline's token in their IDs; the worker and the
// logger take an ID of the right shape with any token or none (from before
// tokens): the token keeps a stray from colliding with the real message in
// the duplicate window, it says nothing of the value. An ID of another
// shape is foreign, and moves no mark.
func TestIDsCarryThePipelinesToken(t *testing.T) {
	e := tokenEnv()
	if _, out, _ := (Generator{}).Next(e, &GeneratorState{Next: 7}, 0); out.MsgID != "n-7.0123456789ab" {
		t.Fatalf("generator's ID %q", out.MsgID)
	}
	if _, out, _ := (Heartbeat{}).Next(e, &HeartbeatState{Run: 2}, 0); out.MsgID != "b-2-1.0123456789ab" {
		t.Fatalf("heartbeat's ID %q", out.MsgID)
	}
	w, d := Worker{}, &WorkerState{NextValue: 7, BeatRun: 2, Credits: 10}
	num := func(n uint64, id string) actor.Msg {
		m := numberMsg(strconv.FormatUint(n, 10), n+1)
		m.Header.Set(protocol.HeaderMsgID, id)
		return m
	}
	outs, err := take(t, w, e, protocol.WorkerNumbers, num(7, "n-7.0123456789ab"), d)
	if err != nil || len(outs) != 1 || outs[0].MsgID != "r-7.0123456789ab" {
		t.Fatalf("the pipeline's number 7: %v %+v", err, outs)
	}
	if _, err := take(t, w, e, protocol.WorkerNumbers, num(8, "n-8"), d); err != nil {
		t.Fatalf("number 8 from before tokens: %v", err)
	}
	for _, id := range []string{"n-9.", "n-9.0123456789ab.0123456789ab", "n-9.0123456789AB", "n-10.0123456789ab"} {
		if _, err := take(t, w, e, protocol.WorkerNumbers, num(9, id), d); !errors.Is(err, protocol.ErrForeign) || d.NextValue != 9 {
			t.Fatalf("number 9 as %q: %v, next %d; want ErrForeign and 9 still next", id, err, d.NextValue)
		}
	}
	if _, err := take(t, w, e, protocol.WorkerNumbers, num(9, "n-9.ffffffffffff"), d); err != nil || d.NextValue != 10 {
		t.Fatalf("number 9 with a token of another day: %v, next %d", err, d.NextValue)
	}
	beat := beatMsg(2, 1, 0)
	beat.Header.Set(protocol.HeaderMsgID, "b-2-1.aaaaaaaaaaaa")
	if _, err := take(t, w, e, protocol.WorkerBeats, beat, d); err != nil || d.LastBeat != 1 {
		t.Fatalf("a beat with a token of another day: %v, last beat %d", err, d.LastBeat)
	}
	beat.Header.Set(protocol.HeaderMsgID, "b-2-2.aaaaaaaaaaaa")
	if _, err := take(t, w, e, protocol.WorkerBeats, beat, d); !errors.Is(err, protocol.ErrForeign) || d.LastBeat != 1 {
		t.Fatalf("beat 1 with the ID of beat 2: %v, last beat %d", err, d.LastBeat)
	}
}

// Each result names the source of the one before it; the logger takes as
// next only the result that follows the last it took, so a stray claiming
// a source far ahead is dead-lettered instead of moving the mark past
// every real result.
func TestResultsFollowOneAnother(t *testing.T) {
	e := tokenEnv()
	w, wd := Worker{}, &WorkerState{Credits: 10}
	var results []actor.Msg
	for i, seq := range []uint64{10, 11, 14} { // 12 and 13: numbers dead-lettered
		m := numberMsg(strconv.Itoa(i), seq)
		m.Header.Set(protocol.HeaderMsgID, token.Of(protocol.NumberMsgID(uint64(i))))
		wd.NextValue = uint64(i)
		outs, err := take(t, w, e, protocol.WorkerNumbers, m, wd)
		if err != nil || len(outs) != 1 {
			t.Fatal(err)
		}
		want := []string{"0", "10", "11"}[i]
		if got := outs[0].Header.Get(protocol.HeaderAfterSource); got != want {
			t.Fatalf("result %d follows %q, want %q", i, got, want)
		}
		outs[0].Header.Set(protocol.HeaderMsgID, outs[0].MsgID)
		results = append(results, actor.Msg{Data: outs[0].Data, Header: outs[0].Header, Seq: uint64(100 + i)})
	}

	l, ld := Logger{}, &LoggerState{}
	forged := func(v, src uint64, after string, gap bool) actor.Msg {
		m := actor.Msg{Data: protocol.EncodeResult(protocol.FizzBuzz(v)), Header: nats.Header{}, Gap: gap}
		m.Header.Set(protocol.HeaderMsgID, protocol.ResultMsgID(v))
		m.Header.Set(protocol.HeaderSourceSequence, strconv.FormatUint(src, 10))
		if after != "" {
			m.Header.Set(protocol.HeaderAfterSource, after)
		}
		return m
	}
	if _, err := take(t, l, e, protocol.LoggerResults, results[0], ld); err != nil {
		t.Fatal(err)
	}
	for _, m := range []actor.Msg{forged(41, 1_000_000_000, "", false), forged(41, 1_000_000_000, "3", false)} {
		if _, err := take(t, l, e, protocol.LoggerResults, m, ld); !errors.Is(err, protocol.ErrOutOfOrder) || ld.LastSource != 10 {
			t.Fatalf("a stray result ahead (after %q): %v, mark %d; want ErrOutOfOrder and the mark at 10", m.Header.Get(protocol.HeaderAfterSource), err, ld.LastSource)
		}
	}
	for _, m := range results[1:] {
		if _, err := take(t, l, e, protocol.LoggerResults, m, ld); err != nil {
			t.Fatalf("a real result after the strays: %v", err)
		}
	}
	if ld.Tally != tallyOfValues(0, 1, 2) || ld.LastSource != 14 || ld.Dead != nil {
		t.Fatalf("logged %+v to source %d (dead %+v), want 0, 1, 2 to 14", ld.Tally, ld.LastSource, ld.Dead)
	}
	// After a gap (results removed from the stream) the next is taken.
	if _, err := take(t, l, e, protocol.LoggerResults, forged(9, 30, "20", true), ld); err != nil || ld.LastSource != 30 {
		t.Fatalf("the first result after a gap: %v, mark %d", err, ld.LastSource)
	}
	for _, after := range []string{"x", "30", "31"} { // not below its own source: malformed
		if _, _, err := l.Decode(protocol.LoggerResults, forged(9, 30, after, false)); !errors.Is(err, protocol.ErrMalformed) {
			t.Fatalf("after %q: %v, want ErrMalformed", after, err)
		}
	}

	// A worker's state from before the chain sends one result without it,
	// which a logger's state from before takes; then both are chained.
	old := &WorkerState{Credits: 1, NextValue: 5, Processed: 5}
	outs, err := take(t, w, e, protocol.WorkerNumbers, numberMsg("5", 40), old)
	if err != nil || outs[0].Header.Get(protocol.HeaderAfterSource) != "" || !old.Chained || old.LastResult != 40 {
		t.Fatalf("an old worker's first result: %v, %v, state %+v", err, outs, old)
	}
	oldLogger := &LoggerState{LastSource: 35}
	if _, err := take(t, l, e, protocol.LoggerResults, forged(5, 40, "", false), oldLogger); err != nil || oldLogger.Chained {
		t.Fatalf("an old logger's first result: %v, %+v", err, oldLogger)
	}
	if _, err := take(t, l, e, protocol.LoggerResults, forged(6, 41, "40", false), oldLogger); err != nil || !oldLogger.Chained {
		t.Fatalf("the next, chained: %v, %+v", err, oldLogger)
	}
	if _, err := take(t, l, e, protocol.LoggerResults, forged(7, 42, "", false), oldLogger); !errors.Is(err, protocol.ErrOutOfOrder) {
		t.Fatalf("a result without the chain once chained: %v", err)
	}
}

// A stray copy of a beat, ahead, with the heartbeat's ID (the admin copied
// the token) takes the real beat's place in the duplicate window: the real
// one never comes. The stray is dead-lettered as out of order; once the
// beat after it comes, its beats are counted, and the worker goes on,
// where it used to dead-letter every later beat and stall. If the real
// beat comes after all, nothing is counted twice.
func TestABeatsStrayCopyDoesNotStallTheWorker(t *testing.T) {
	e := tokenEnv()
	e.Config.Batch = 256
	w := Worker{}
	beat := func(n, count uint64) actor.Msg {
		m := beatMsg(2, n, count)
		m.Header.Set(protocol.HeaderMsgID, token.Of(protocol.BeatMsgID(protocol.Beat{Run: 2, Beat: n, Count: count})))
		return m
	}
	d := &WorkerState{BeatRun: 2, LastBeat: 338}
	if _, err := take(t, w, e, protocol.WorkerBeats, beat(340, 0), d); !errors.Is(err, protocol.ErrOutOfOrder) || d.Credits != 0 {
		t.Fatalf("the stray beat 340: %v, %d credits", err, d.Credits)
	}
	saved := *d
	for _, n := range []uint64{339, 341} { // the real 340 was dropped as its copy
		if _, err := take(t, w, e, protocol.WorkerBeats, beat(n, 0), d); err != nil {
			t.Fatalf("beat %d: %v", n, err)
		}
	}
	if d.Credits != 3 || d.Beats != 3 || d.LastBeat != 341 || d.EarlyBeats != nil {
		t.Fatalf("after 339 and 341: %+v, want 3 beats counted and none early", d)
	}
	d = &saved // the real 340 came after all
	for _, n := range []uint64{339, 340, 341} {
		if _, err := take(t, w, e, protocol.WorkerBeats, beat(n, 0), d); err != nil {
			t.Fatalf("beat %d: %v", n, err)
		}
	}
	if d.Credits != 3 || d.Beats != 3 || d.EarlyBeats != nil {
		t.Fatalf("after 339, 340 and 341: %+v, want 3 beats counted", d)
	}
	// Beats ahead of one that never was a stray's are still out of order;
	// early beats are kept to their bound.
	d = &WorkerState{BeatRun: 2, LastBeat: 10}
	if _, err := take(t, w, e, protocol.WorkerBeats, beat(13, 0), d); !errors.Is(err, protocol.ErrOutOfOrder) {
		t.Fatalf("beat 13 after 10: %v", err)
	}
	for b := uint64(100); b < 100+8*256; b += 256 {
		_, _ = take(t, w, e, protocol.WorkerBeats, beat(b, 256), d)
	}
	if len(d.EarlyBeats) != maxEarlyBeats {
		t.Fatalf("%d early beats kept, want the bound %d", len(d.EarlyBeats), maxEarlyBeats)
	}
}
