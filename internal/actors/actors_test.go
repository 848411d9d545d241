package actors

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/pkg/protocol"
)

func env(rate time.Duration, beats uint64) *actor.Env {
	return &actor.Env{Config: protocol.ActorConfig{Run: 2, Rate: rate, Beats: beats}, Log: slog.New(slog.DiscardHandler)}
}

func TestGenerator(t *testing.T) {
	g, d := Generator{}, &protocol.GeneratorState{Next: 12}
	key, out, ok := g.Next(env(0, 0), d, 1)
	if !ok || key != 14 || string(out.Data) != "13" || out.MsgID != "n-13" || out.Subject != protocol.SubjectNumbers {
		t.Fatalf("Next(i=1) from 12 = %d %+v %v, want send 14 of value 13", key, out, ok)
	}
	g.Advance(d, 3)
	if d.Next != 15 {
		t.Fatalf("Advance(3) from 12 = %d", d.Next)
	}
}

func TestHeartbeatCountsBeatsPerRun(t *testing.T) {
	h, e := Heartbeat{}, env(time.Second, 5)
	d := &protocol.HeartbeatState{Run: 1, Beats: 5, Total: 5}
	h.Resume(e, d) // a new run
	if d.Run != 2 || d.Beats != 0 || d.Total != 5 {
		t.Fatalf("Resume into run 2: %+v", d)
	}
	d.Beats = 3
	h.Resume(e, d) // the same run: keep counting
	if d.Beats != 3 {
		t.Fatalf("Resume within run 2 reset the beats: %+v", d)
	}
	if key, out, ok := h.Next(e, d, 1); !ok || key != 5 || out.MsgID != "b-2-5" {
		t.Fatalf("Next(i=1) after 3 beats = %d %+v %v, want beat 5", key, out, ok)
	}
	if _, _, ok := h.Next(e, d, 2); ok {
		t.Fatal("Next went past --beats")
	}
	h.Advance(d, 2)
	if !h.Done(e, d) || d.Total != 7 {
		t.Fatalf("after 5 of 5 beats: done %v, %+v", h.Done(e, d), d)
	}
	if h.Done(env(0, 0), d) {
		t.Fatal("--beats 0 must never be done")
	}
}

func TestWorkerSpendsOneBeatPerNumber(t *testing.T) {
	w, e, d := Worker{}, env(0, 0), &protocol.WorkerState{}
	if n := w.Limit(protocol.WorkerNumbers, d); n != 0 {
		t.Fatalf("no beats yet, but may take %d numbers", n)
	}
	for range 2 {
		_, b, err := w.Decode(protocol.WorkerBeats, protocol.EncodeBeat(protocol.Beat{Run: 2, Beat: 1}))
		if err != nil {
			t.Fatal(err)
		}
		if outs := w.Apply(e, protocol.WorkerBeats, b, d); len(outs) != 0 {
			t.Fatalf("a beat produced %d outputs", len(outs))
		}
	}
	if n := w.Limit(protocol.WorkerNumbers, d); n != 2 {
		t.Fatalf("2 beats allow %d numbers, want 2", n)
	}
	key, v, err := w.Decode(protocol.WorkerNumbers, []byte("15"))
	if err != nil || key != 15 {
		t.Fatal(key, err)
	}
	outs := w.Apply(e, protocol.WorkerNumbers, v, d)
	if len(outs) != 1 || outs[0].MsgID != "r-15" || string(outs[0].Data) != `{"value":15,"kind":"fizzbuzz","text":"FizzBuzz"}` {
		t.Fatalf("outputs %+v", outs)
	}
	w.Discard(protocol.WorkerNumbers, d) // a dead-lettered number spends its beat too
	if d.Credits != 0 || d.Processed != 1 || d.DeadLettered != 1 {
		t.Fatalf("state %+v", d)
	}
	if _, _, err := w.Decode(protocol.WorkerNumbers, []byte("x")); !errors.Is(err, protocol.ErrMalformed) {
		t.Fatalf("Decode(x) error %v", err)
	}
	if key, _, _ := w.Decode(protocol.WorkerBeats, protocol.EncodeBeat(protocol.Beat{Beat: 33})); key != actor.NoKey {
		t.Fatal("a beat must carry no fault key")
	}
}

func TestLoggerTallies(t *testing.T) {
	l, d := Logger{}, &protocol.LoggerState{}
	for _, n := range []uint64{3, 5, 15, 7, 6} {
		_, r, err := l.Decode(protocol.LoggerResults, protocol.EncodeResult(protocol.FizzBuzz(n)))
		if err != nil {
			t.Fatal(err)
		}
		l.Apply(env(time.Second, 0), protocol.LoggerResults, r, d)
	}
	want := protocol.Tally{Fizz: 2, Buzz: 1, FizzBuzz: 1, Value: 1, Sum: 36, SumSq: 9 + 25 + 225 + 49 + 36}
	if d.Tally != want {
		t.Fatalf("tally %+v, want %+v", d.Tally, want)
	}
}
