package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/pkg/protocol"
)

func env(rate time.Duration, beats uint64) *actor.Env {
	return &actor.Env{Config: protocol.ActorConfig{Run: 2, Rate: rate, Beats: beats}, Log: slog.New(slog.DiscardHandler)}
}

func TestGenerator(t *testing.T) {
	g, d := Generator{}, &GeneratorState{Next: 12}
	keys, out, ok := g.Next(env(0, 0), d, 1)
	if !ok || keys != actor.Key(14) || string(out.Data) != "13" || out.MsgID != "n-13" || out.Subject != protocol.SubjectNumbers {
		t.Fatalf("Next(i=1) from 12 = %v %+v %v, want send 14 of value 13", keys, out, ok)
	}
	g.Advance(env(0, 0), d, 3)
	if d.Next != 15 {
		t.Fatalf("Advance(3) from 12 = %d", d.Next)
	}
}

func TestHeartbeatCountsBeatsPerRun(t *testing.T) {
	h, e := Heartbeat{}, env(time.Second, 5)
	d := &HeartbeatState{Run: 1, Beats: 5, Total: 5}
	h.Resume(e, d) // a new run
	if d.Run != 2 || d.Beats != 0 || d.Total != 5 {
		t.Fatalf("Resume into run 2: %+v", d)
	}
	d.Beats = 3
	h.Resume(e, d) // the same run: keep counting
	if d.Beats != 3 {
		t.Fatalf("Resume within run 2 reset the beats: %+v", d)
	}
	if keys, out, ok := h.Next(e, d, 1); !ok || keys != actor.Key(5) || out.MsgID != "b-2-5" {
		t.Fatalf("Next(i=1) after 3 beats = %v %+v %v, want beat 5", keys, out, ok)
	}
	if _, _, ok := h.Next(e, d, 2); ok {
		t.Fatal("Next went past --beats")
	}
	h.Advance(e, d, 2)
	if !h.Done(e, d) || d.Total != 7 {
		t.Fatalf("after 5 of 5 beats: done %v, %+v", h.Done(e, d), d)
	}
	if h.Done(env(0, 0), d) {
		t.Fatal("--beats 0 must never be done")
	}
}

// Unpaced, a beat message carries a batch of beats; the last one the rest.
func TestHeartbeatUnpacedBatchesBeats(t *testing.T) {
	h, e := Heartbeat{}, env(0, 600)
	e.Config.Batch = 256
	d := &HeartbeatState{Run: 2}
	var got []string
	for i := 0; ; i++ {
		keys, out, ok := h.Next(e, d, i)
		if !ok {
			break
		}
		got = append(got, fmt.Sprintf("%d-%d %s", keys.From, keys.To, out.Data))
	}
	want := []string{
		`1-256 {"run":2,"beat":1,"count":256}`,
		`257-512 {"run":2,"beat":257,"count":256}`,
		`513-600 {"run":2,"beat":513,"count":88}`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("messages %q, want %q", got, want)
	}
	h.Advance(e, d, 3)
	if d.Beats != 600 || !h.Done(e, d) {
		t.Fatalf("after all messages: %+v", d)
	}
}

func beatMsg(run, beat, count uint64) actor.Msg {
	h := nats.Header{}
	h.Set(protocol.HeaderMsgID, protocol.BeatMsgID(protocol.Beat{Run: run, Beat: beat, Count: count}))
	return actor.Msg{Data: protocol.EncodeBeat(protocol.Beat{Run: run, Beat: beat, Count: count}), Header: h}
}

func numberMsg(n string, seq uint64) actor.Msg {
	h := nats.Header{}
	h.Set(protocol.HeaderMsgID, "n-"+n)
	return actor.Msg{Data: []byte(n), Header: h, Seq: seq}
}

func apply[D any](t *testing.T, p actor.Processor[D], in protocol.Input, m actor.Msg, d *D) []actor.Out {
	t.Helper()
	_, v, err := p.Decode(in, m)
	if err != nil {
		t.Fatal(err)
	}
	return p.Apply(env(0, 0), in, v, d)
}

func TestWorkerSpendsOneBeatPerNumber(t *testing.T) {
	w, d := Worker{}, &WorkerState{}
	if n := w.Limit(protocol.WorkerNumbers, d); n != 0 {
		t.Fatalf("no beats yet, but may take %d numbers", n)
	}
	for b := uint64(1); b <= 2; b++ {
		if outs := apply(t, w, protocol.WorkerBeats, beatMsg(2, b, 0), d); len(outs) != 0 {
			t.Fatalf("a beat produced %d outputs", len(outs))
		}
	}
	if n := w.Limit(protocol.WorkerNumbers, d); n != 2 {
		t.Fatalf("2 beats allow %d numbers, want 2", n)
	}
	if n := w.Limit(protocol.WorkerBeats, d); n != 254 {
		t.Fatalf("with 2 beats banked the worker takes %d more, want 254", n)
	}
	outs := apply(t, w, protocol.WorkerNumbers, numberMsg("15", 40), d)
	if len(outs) != 1 || outs[0].MsgID != "r-15" || string(outs[0].Data) != `{"value":15,"kind":"fizzbuzz","text":"FizzBuzz"}` ||
		outs[0].Header.Get(protocol.HeaderSourceSequence) != "40" {
		t.Fatalf("outputs %+v", outs)
	}
	w.Discard(env(0, 0), protocol.WorkerNumbers, numberMsg("16", 41), d) // a dead-lettered number spends its beat too
	if d.Credits != 0 || d.Processed != 1 || d.DeadLettered != 1 || d.NextValue != 17 {
		t.Fatalf("state %+v, want the mark past the dead letter (17)", d)
	}
	d.Credits = 1
	if outs := apply(t, w, protocol.WorkerNumbers, numberMsg("16", 42), d); len(outs) != 0 || d.Duplicates != 1 {
		t.Fatalf("a copy of a dead-lettered number was taken: %+v %+v", outs, d)
	}
	if _, _, err := w.Decode(protocol.WorkerNumbers, actor.Msg{Data: []byte("x")}); !errors.Is(err, protocol.ErrMalformed) {
		t.Fatalf("Decode(x) error %v", err)
	}
	if key, _, _ := w.Decode(protocol.WorkerBeats, beatMsg(1, 33, 0)); key != actor.NoKey {
		t.Fatal("a beat must carry no fault key")
	}
}

// Republished copies (the server forgot their IDs) are skipped by position.
func TestWorkerSkipsRepublishedCopies(t *testing.T) {
	w, d := Worker{}, &WorkerState{}
	apply(t, w, protocol.WorkerBeats, beatMsg(1, 1, 256), d)
	apply(t, w, protocol.WorkerBeats, beatMsg(1, 1, 256), d)   // the same batch again
	apply(t, w, protocol.WorkerBeats, beatMsg(1, 200, 100), d) // cut differently: 57 of its beats are new
	if d.Beats != 299 || d.Credits != 299 || d.Duplicates != 1 {
		t.Fatalf("after overlapping beats: %+v, want 299 beats and 1 duplicate", d)
	}
	apply(t, w, protocol.WorkerBeats, beatMsg(2, 1, 0), d) // a new run counts from 1 again
	if d.Beats != 300 || d.BeatRun != 2 || d.LastBeat != 1 {
		t.Fatalf("new run: %+v", d)
	}
	apply(t, w, protocol.WorkerBeats, beatMsg(1, 400, 0), d) // a stale run
	if d.Beats != 300 || d.Duplicates != 2 {
		t.Fatalf("stale run counted: %+v", d)
	}
	for _, n := range []string{"0", "1", "2", "1", "0", "3"} {
		apply(t, w, protocol.WorkerNumbers, numberMsg(n, 1), d)
	}
	if d.Processed != 4 || d.NextValue != 4 || d.Duplicates != 4 {
		t.Fatalf("numbers: %+v, want 4 processed and 2 more duplicates", d)
	}
}

func TestLoggerTallies(t *testing.T) {
	l, d := Logger{}, &LoggerState{}
	res := func(n, src uint64) actor.Msg {
		m := actor.Msg{Data: protocol.EncodeResult(protocol.FizzBuzz(n)), Header: nats.Header{}}
		m.Header.Set(protocol.HeaderMsgID, protocol.ResultMsgID(n))
		if src != 0 {
			m.Header.Set(protocol.HeaderSourceSequence, strconv.FormatUint(src, 10))
		}
		return m
	}
	for i, n := range []uint64{3, 5, 15, 7, 6} {
		apply(t, l, protocol.LoggerResults, res(n, uint64(i+1)), d)
	}
	apply(t, l, protocol.LoggerResults, res(15, 3), d) // republished: source 3 was logged
	want := Tally{Fizz: 2, Buzz: 1, FizzBuzz: 1, Value: 1, Sum: 36, SumSq: 9 + 25 + 225 + 49 + 36}
	if d.Tally != want || d.Duplicates != 1 || d.LastSource != 5 {
		t.Fatalf("state %+v, want tally %+v and 1 duplicate", d, want)
	}
	l.Discard(env(0, 0), protocol.LoggerResults, res(21, 9), d) // dead-lettered: the mark moves past it
	apply(t, l, protocol.LoggerResults, res(21, 9), d)
	if d.LastSource != 9 || d.Duplicates != 2 || d.Tally.Fizz != 2 {
		t.Fatalf("a copy of a dead-lettered result was logged: %+v", d)
	}
	for _, src := range []string{"", "x", "0"} {
		bad := res(9, 0)
		bad.Header.Set(protocol.HeaderSourceSequence, src)
		if _, _, err := l.Decode(protocol.LoggerResults, bad); !errors.Is(err, protocol.ErrMalformed) {
			t.Fatalf("source header %q: %v, want ErrMalformed", src, err)
		}
	}
}

// Well-formed messages the pipeline did not publish are refused as foreign.
func TestForeignMessagesAreRefused(t *testing.T) {
	byHand := actor.Msg{Data: []byte("999999"), Header: nats.Header{}}
	if _, _, err := (Worker{}).Decode(protocol.WorkerNumbers, byHand); !errors.Is(err, protocol.ErrForeign) {
		t.Fatalf("number by hand: %v, want ErrForeign", err)
	}
	beat := beatMsg(1, 5, 0)
	beat.Header.Set(protocol.HeaderMsgID, "mine")
	if _, _, err := (Worker{}).Decode(protocol.WorkerBeats, beat); !errors.Is(err, protocol.ErrForeign) {
		t.Fatalf("beat by hand: %v, want ErrForeign", err)
	}
	res := actor.Msg{Data: protocol.EncodeResult(protocol.FizzBuzz(9)), Header: nats.Header{}}
	res.Header.Set(protocol.HeaderSourceSequence, "3")
	if _, _, err := (Logger{}).Decode(protocol.LoggerResults, res); !errors.Is(err, protocol.ErrForeign) {
		t.Fatalf("result by hand: %v, want ErrForeign", err)
	}
}

// A replayed dead letter is below the marks: it is taken by its ID, once,
// and a copy of it is skipped; a dead-lettered replay counts as taken.
func TestReplaysAreTakenOnce(t *testing.T) {
	replay := func(m actor.Msg, dlq string) actor.Msg {
		m.Header = nats.Header{}
		m.Header.Set(protocol.HeaderMsgID, "replay-"+dlq)
		m.Header.Set(protocol.HeaderReplay, dlq)
		return m
	}
	room := append(make(Seqs, 0, 8), 1, 9) // spare capacity to write into
	w, d := Worker{}, &WorkerState{Credits: 10, NextValue: 50, Replayed: room}
	saved := *d // a shallow copy, as the runtime's working copy is
	outs := apply(t, w, protocol.WorkerNumbers, replay(numberMsg("33", 7), "4"), d)
	if d.Processed != 1 || d.NextValue != 50 || !d.Replayed.Has(4) || len(outs) != 1 || outs[0].MsgID != "r-33" {
		t.Fatalf("replay of 33: %+v, outs %+v; want it processed, the value mark kept", d, outs)
	}
	if !slices.Equal(saved.Replayed, Seqs{1, 9}) || !slices.Equal(d.Replayed, Seqs{1, 4, 9}) {
		t.Fatal("Add wrote through to a shallow copy of the state")
	}
	apply(t, w, protocol.WorkerNumbers, replay(numberMsg("33", 8), "4"), d) // a copy of the replay
	if d.Processed != 1 || d.Duplicates != 1 {
		t.Fatalf("a copy of a replay was taken: %+v", d)
	}
	w.Discard(env(0, 0), protocol.WorkerNumbers, replay(numberMsg("41", 9), "6"), d)
	if !d.Replayed.Has(6) || d.NextValue != 50 || d.DeadLettered != 1 {
		t.Fatalf("a dead-lettered replay: %+v, want it recorded", d)
	}

	bad := replay(numberMsg("33", 10), "4")
	bad.Header.Set(protocol.HeaderMsgID, "n-33")
	if _, _, err := w.Decode(protocol.WorkerNumbers, bad); !errors.Is(err, protocol.ErrForeign) {
		t.Fatalf("replay header without the replay's ID: %v, want ErrForeign", err)
	}
	bad.Header.Set(protocol.HeaderReplay, "x")
	if _, _, err := w.Decode(protocol.WorkerNumbers, bad); !errors.Is(err, protocol.ErrMalformed) {
		t.Fatalf("replay header %q: %v, want ErrMalformed", "x", err)
	}

	l, ld := Logger{}, &LoggerState{LastSource: 100}
	res := actor.Msg{Data: protocol.EncodeResult(protocol.FizzBuzz(41))}
	apply(t, l, protocol.LoggerResults, replay(res, "5"), ld)
	apply(t, l, protocol.LoggerResults, replay(res, "5"), ld)
	if ld.Tally.Total() != 1 || ld.Tally.Sum != 41 || ld.Duplicates != 1 || ld.LastSource != 100 || !ld.Replayed.Has(5) {
		t.Fatalf("logger replays: %+v, want 41 logged once, the source mark kept", ld)
	}
}

// The worker refuses what no producer of the pipeline sent: a number ahead
// of the next with nothing missing before it in the stream, beats beyond
// what the run allows. Dead-lettered, such a message moves no mark; a
// number after a gap in the stream sequence (values removed) is taken.
func TestWorkerRefusesWhatNoProducerSent(t *testing.T) {
	w := Worker{}
	e := env(0, 100)
	e.Config.Batch = 256
	check := func(in protocol.Input, m actor.Msg, d *WorkerState) error {
		t.Helper()
		_, v, err := w.Decode(in, m)
		if err != nil {
			t.Fatal(err)
		}
		return w.Check(e, in, v, d)
	}
	d := &WorkerState{NextValue: 40, BeatRun: 2, LastBeat: 10}
	far := numberMsg("18446744073709551615", 7)
	if err := check(protocol.WorkerNumbers, far, d); !errors.Is(err, protocol.ErrOutOfOrder) {
		t.Fatalf("a number far ahead without a gap: %v, want out-of-order", err)
	}
	w.Discard(e, protocol.WorkerNumbers, far, d)
	if d.NextValue != 40 {
		t.Fatalf("dead-lettering an out-of-order number moved the mark to %d", d.NextValue)
	}
	for _, n := range []string{"40", "12"} { // the next, and a copy
		if err := check(protocol.WorkerNumbers, numberMsg(n, 8), d); err != nil {
			t.Fatalf("number %s: %v", n, err)
		}
	}
	gap := numberMsg("45", 9)
	gap.Gap = true
	if err := check(protocol.WorkerNumbers, gap, d); err != nil {
		t.Fatalf("a number after a gap in the stream: %v", err)
	}
	for _, c := range []struct {
		what string
		m    actor.Msg
		want error
	}{
		{"a count above --batch", beatMsg(2, 11, 257), protocol.ErrImplausible},
		{"a count near 2^64", beatMsg(2, 11, 1<<63), protocol.ErrImplausible},
		{"a later run", beatMsg(3, 1, 0), protocol.ErrImplausible},
		{"beyond --beats", beatMsg(2, 101, 0), protocol.ErrImplausible},
		{"a beat ahead", beatMsg(2, 50, 0), protocol.ErrOutOfOrder},
		{"the next beat", beatMsg(2, 11, 0), nil},
		{"a batch of the next beats", beatMsg(2, 11, 256), protocol.ErrImplausible}, // 11+255 > 100
		{"a copy", beatMsg(2, 3, 0), nil},
	} {
		if err := check(protocol.WorkerBeats, c.m, d); !errors.Is(err, c.want) && (err != nil || c.want != nil) {
			t.Errorf("%s: %v, want %v", c.what, err, c.want)
		}
	}
	w.Discard(e, protocol.WorkerBeats, beatMsg(2, 50, 0), d)
	if d.LastBeat != 10 {
		t.Fatalf("dead-lettering an out-of-order beat moved the mark to %d", d.LastBeat)
	}
}

// The closed form agrees with adding value by value, and takes no time for
// a range near 2^64.
func TestTallyOfRange(t *testing.T) {
	var loop Tally
	for n := range uint64(2000) {
		if got := TallyOfRange(n); got != loop {
			t.Fatalf("TallyOfRange(%d) = %+v, want %+v", n, got, loop)
		}
		loop.Add(n)
	}
	big := TallyOfRange(^uint64(0))
	if big.Total() != ^uint64(0) {
		t.Fatalf("a range of 2^64-1 values counts %d", big.Total())
	}
	big.Add(^uint64(0) - 1) // not in the range: 0 … 2^64-2
	big.Remove(^uint64(0) - 1)
	if big != TallyOfRange(^uint64(0)) {
		t.Fatal("Remove does not undo Add")
	}
}

// The worker's and logger's Dead tallies hold exactly the values they
// dead-lettered that stand: a value on its one pass counts once; a copy,
// an out-of-order number or a malformed message adds nothing; a replay
// taken takes its value out, a replay dead again leaves it in once.
func TestDeadTally(t *testing.T) {
	replay := func(m actor.Msg, dlq string) actor.Msg {
		m.Header.Set(protocol.HeaderMsgID, "replay-"+dlq)
		m.Header.Set(protocol.HeaderReplay, dlq)
		return m
	}
	w, d := Worker{}, &WorkerState{Credits: 10, NextValue: 10}
	e := env(0, 0)
	w.Discard(e, protocol.WorkerNumbers, numberMsg("10", 11), d) // its one pass: dead
	saved := *d
	w.Discard(e, protocol.WorkerNumbers, numberMsg("10", 12), d) // a copy
	w.Discard(e, protocol.WorkerNumbers, numberMsg("5", 13), d)  // a copy of one taken
	w.Discard(e, protocol.WorkerNumbers, numberMsg("99", 14), d) // out of order: Check refuses it
	w.Discard(e, protocol.WorkerNumbers, numberMsg("x", 15), d)  // malformed
	w.Discard(e, protocol.WorkerNumbers, numberMsg("11", 16), d) // dead
	if want := tallyOfValues(10, 11); d.Dead == nil || *d.Dead != want {
		t.Fatalf("worker's dead tally %+v, want %+v", d.Dead, want)
	}
	w.Discard(e, protocol.WorkerNumbers, replay(numberMsg("10", 17), "1"), d) // dead again: still once
	if want := tallyOfValues(10, 11); *d.Dead != want {
		t.Fatalf("a replay dead again: tally %+v, want %+v", d.Dead, want)
	}
	apply(t, w, protocol.WorkerNumbers, replay(numberMsg("11", 18), "2"), d) // the replay of 11 goes on
	if want := tallyOfValues(10); *d.Dead != want {
		t.Fatalf("a replay taken: tally %+v, want %+v", d.Dead, want)
	}
	if *saved.Dead != tallyOfValues(10) {
		t.Fatal("the tally was written through a shallow copy of the state")
	}

	l, ld := Logger{}, &LoggerState{LastSource: 100}
	res := func(n, src uint64) actor.Msg {
		m := actor.Msg{Data: protocol.EncodeResult(protocol.FizzBuzz(n)), Header: nats.Header{}}
		m.Header.Set(protocol.HeaderMsgID, protocol.ResultMsgID(n))
		m.Header.Set(protocol.HeaderSourceSequence, strconv.FormatUint(src, 10))
		return m
	}
	l.Discard(e, protocol.LoggerResults, res(41, 101), ld) // dead
	l.Discard(e, protocol.LoggerResults, res(41, 101), ld) // a copy
	l.Discard(e, protocol.LoggerResults, res(7, 50), ld)   // a copy of one logged
	if want := tallyOfValues(41); ld.Dead == nil || *ld.Dead != want {
		t.Fatalf("logger's dead tally %+v, want %+v", ld.Dead, want)
	}
	apply(t, l, protocol.LoggerResults, replay(res(41, 102), "3"), ld)
	if *ld.Dead != (Tally{}) || ld.Tally != tallyOfValues(41) {
		t.Fatalf("the replay of 41 logged: dead %+v, logged %+v", ld.Dead, ld.Tally)
	}
}

func tallyOfValues(vs ...uint64) Tally {
	var t Tally
	for _, v := range vs {
		t.Add(v)
	}
	return t
}

// Paced, each beat carries its send time (HeaderBeatTime) and the result
// of the number it moved carries it on, oldest credit first; a beat
// without a time moves a number whose result has none.
func TestWorkerCarriesBeatTimes(t *testing.T) {
	h, e := Heartbeat{}, env(time.Millisecond, 0)
	sent := time.Unix(1_800_000_000, 123)
	e.Now = func() time.Time { return sent }
	_, out, _ := h.Next(e, &HeartbeatState{Run: 2}, 0)
	if got := out.Header.Get(protocol.HeaderBeatTime); got != "1800000000000000123" {
		t.Fatalf("a paced beat's %s = %q", protocol.HeaderBeatTime, got)
	}
	if _, out, _ := h.Next(env(0, 0), &HeartbeatState{Run: 2}, 0); out.Header != nil {
		t.Fatalf("an unpaced beat carries headers %v: its time says nothing", out.Header)
	}

	w, d := Worker{}, &WorkerState{}
	timed := func(beat uint64, at string) actor.Msg {
		m := beatMsg(2, beat, 0)
		if at != "" {
			m.Header.Set(protocol.HeaderBeatTime, at)
		}
		return m
	}
	apply(t, w, protocol.WorkerBeats, timed(1, ""), d) // untimed: the oldest credit
	for b := uint64(2); b <= 4; b++ {
		apply(t, w, protocol.WorkerBeats, timed(b, strconv.FormatUint(100*b, 10)), d)
	}
	var got []string
	for n := range uint64(3) {
		outs := apply(t, w, protocol.WorkerNumbers, numberMsg(strconv.FormatUint(n, 10), 10+n), d)
		got = append(got, outs[0].Header.Get(protocol.HeaderBeatTime))
	}
	w.Discard(env(0, 0), protocol.WorkerNumbers, numberMsg("x", 13), d) // spends beat 4's credit
	if want := []string{"", "200", "300"}; !slices.Equal(got, want) || d.Credits != 0 || d.Paced != nil {
		t.Fatalf("results carry beat times %q, want %q; state %+v", got, want, d)
	}

	// Banked credits: at most maxPaced spans, the oldest merged under the
	// older time (never a later one).
	for b := uint64(5); b < 5+2*maxPaced; b++ {
		apply(t, w, protocol.WorkerBeats, timed(b, strconv.FormatUint(1000+b, 10)), d)
	}
	if len(d.Paced) > maxPaced || d.Paced[0].At != 1005 {
		t.Fatalf("%d spans, the first %+v: want at most %d, the oldest time first", len(d.Paced), d.Paced[0], maxPaced)
	}
	first := apply(t, w, protocol.WorkerNumbers, numberMsg("3", 14), d)
	if at := first[0].Header.Get(protocol.HeaderBeatTime); at != "1005" {
		t.Fatalf("the oldest banked credit's time %q, want 1005", at)
	}

	for _, bad := range []string{"-5", "0", "+12", "12x", "99999999999999999999", ""} {
		m := beatMsg(2, 99, 0)
		m.Header[protocol.HeaderBeatTime] = []string{bad}
		if _, _, err := w.Decode(protocol.WorkerBeats, m); !errors.Is(err, protocol.ErrMalformed) {
			t.Errorf("a beat with %s %q: error %v, want malformed", protocol.HeaderBeatTime, bad, err)
		}
	}
	m := timed(99, "5")
	m.Header.Add(protocol.HeaderBeatTime, "6")
	if _, _, err := w.Decode(protocol.WorkerBeats, m); !errors.Is(err, protocol.ErrMalformed) {
		t.Errorf("a beat with two times: error %v, want malformed", err)
	}
}
