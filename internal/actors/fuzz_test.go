package actors

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/pkg/protocol"
)

// FuzzWorker hands the worker arbitrary messages on both inputs, with any
// message ID and replay header, after a gap in the stream or not: never a
// panic; a message Decode or Check refuses moves no mark when it is
// dead-lettered; without a gap the worker's next value moves by at most
// one, and its beat mark by at most --batch.
func FuzzWorker(f *testing.F) {
	f.Add(true, []byte("41"), "n-41", "", false, uint64(41), uint64(3))
	f.Add(true, []byte("18446744073709551615"), "n-18446744073709551615", "", false, uint64(41), uint64(3))
	f.Add(true, []byte("5"), "replay-9", "9", false, uint64(41), uint64(3))
	f.Add(true, []byte("41"), "n-41.0123456789ab", "", false, uint64(41), uint64(3))
	f.Add(true, []byte("41"), "n-41.ffffffffffff", "", false, uint64(41), uint64(3))
	f.Add(false, []byte(`{"run":2,"beat":4}`), "b-2-4", "", false, uint64(0), uint64(3))
	f.Add(false, []byte(`{"run":2,"beat":4,"count":1099511627776}`), "b-2-4+1099511627776", "", false, uint64(0), uint64(3))
	f.Add(false, []byte(`{"run":9,"beat":1}`), "b-9-1", "", true, uint64(0), uint64(3))
	f.Fuzz(func(t *testing.T, numbers bool, data []byte, id, replay string, gap bool, next, lastBeat uint64) {
		w := Worker{}
		e := env(0, 1000)
		e.Config.Batch = 256
		e.Config.IDs = "0123456789ab"
		in := protocol.WorkerBeats
		if numbers {
			in = protocol.WorkerNumbers
		}
		h := nats.Header{}
		h.Set(protocol.HeaderMsgID, id)
		if replay != "" {
			h.Set(protocol.HeaderReplay, replay)
		}
		m := actor.Msg{Data: data, Header: h, Seq: 100, Gap: gap}
		d := &WorkerState{NextValue: next, BeatRun: 2, LastBeat: lastBeat, Credits: 1}
		before := *d
		_, v, err := w.Decode(in, m)
		if err == nil {
			err = w.Check(e, in, v, d)
		}
		if err != nil {
			w.Discard(e, in, m, d)
			if d.NextValue != before.NextValue || d.LastBeat != before.LastBeat || d.BeatRun != before.BeatRun {
				t.Fatalf("a refused message (%v) moved the marks: %+v -> %+v", err, before, *d)
			}
			return
		}
		w.Apply(e, in, v, d)
		if !gap && d.NextValue > before.NextValue+1 {
			t.Fatalf("without a gap the next value went from %d to %d", before.NextValue, d.NextValue)
		}
		if !gap && d.BeatRun == before.BeatRun && d.LastBeat > before.LastBeat+256 {
			t.Fatalf("without a gap the beat mark went from %d to %d", before.LastBeat, d.LastBeat)
		}
	})
}

// FuzzLogger hands the logger arbitrary results, with any ID, source,
// predecessor and replay header, after a gap in the stream or not: never a
// panic; a result Decode or Check refuses moves no mark when it is
// dead-lettered; without a gap the mark moves only to a result that
// follows the last one taken.
func FuzzLogger(f *testing.F) {
	f.Add([]byte(`{"value":3,"kind":"fizz","text":"Fizz"}`), "r-3.0123456789ab", "11", "10", "", false, uint64(10), true)
	f.Add([]byte(`{"value":3,"kind":"fizz","text":"Fizz"}`), "r-3", "1000000000", "", "", false, uint64(10), true)
	f.Add([]byte(`{"value":3,"kind":"fizz","text":"Fizz"}`), "r-3.ffffffffffff", "11", "10", "", false, uint64(10), false)
	f.Add([]byte(`{"value":3,"kind":"fizz","text":"Fizz"}`), "replay-4", "", "", "4", false, uint64(10), true)
	f.Add([]byte(`{"value":3,"kind":"fizz","text":"Fizz"}`), "r-3", "40", "30", "", true, uint64(10), true)
	f.Fuzz(func(t *testing.T, data []byte, id, source, after, replay string, gap bool, last uint64, chained bool) {
		l := Logger{}
		e := env(0, 0)
		e.Config.IDs = "0123456789ab"
		h := nats.Header{}
		h.Set(protocol.HeaderMsgID, id)
		for k, v := range map[string]string{protocol.HeaderSourceSequence: source, protocol.HeaderAfterSource: after, protocol.HeaderReplay: replay} {
			if v != "" {
				h.Set(k, v)
			}
		}
		m := actor.Msg{Data: data, Header: h, Seq: 100, Gap: gap}
		d := &LoggerState{LastSource: last, Chained: chained}
		before := *d
		_, v, err := l.Decode(protocol.LoggerResults, m)
		if err == nil {
			err = l.Check(e, protocol.LoggerResults, v, d)
		}
		if err != nil {
			l.Discard(e, protocol.LoggerResults, m, d)
			if d.LastSource != before.LastSource || d.Tally != before.Tally {
				t.Fatalf("a refused result (%v) moved the mark or the tally: %+v -> %+v", err, before, *d)
			}
			return
		}
		l.Apply(e, protocol.LoggerResults, v, d)
		if res := v.(result); !gap && d.LastSource != before.LastSource && (res.after == nil && before.Chained || res.after != nil && *res.after != before.LastSource) {
			t.Fatalf("without a gap the mark went from %d to %d after a result following %v", before.LastSource, d.LastSource, res.after)
		}
	})
}
