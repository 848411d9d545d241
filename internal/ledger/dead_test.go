package ledger

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// books is a pipeline's streams and state bucket on a fresh server, with
// the DLQ bounded by dlq, and states written by hand.
type books struct {
	t   testing.TB
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	led *Ledger
}

func newBooks(t testing.TB, dlq natsx.DLQLimits) *books {
	ns := natstest.RunJetStream(t)
	_, js, err := natsx.Connect(ns.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.Ensure(t.Context(), js, natsx.Topology{DLQ: dlq}, registry.Default().Inputs()); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), protocol.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	return &books{t: t, js: js, kv: kv, led: &Ledger{JS: js, KV: kv}}
}

func (b *books) put(key string, st any) {
	b.t.Helper()
	raw, err := json.Marshal(st)
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := b.kv.Put(b.t.Context(), key, raw); err != nil {
		b.t.Fatal(err)
	}
}

// deadNumber publishes the worker's dead letter of number n, as the worker
// writes it.
func (b *books) deadNumber(n uint64) {
	b.t.Helper()
	m := &nats.Msg{Subject: protocol.DLQSubject(protocol.Worker), Data: []byte(strconv.FormatUint(n, 10)), Header: nats.Header{}}
	m.Header.Set(protocol.HeaderActor, protocol.Worker)
	m.Header.Set(protocol.HeaderReason, "showstopper: 3 deliveries without ack")
	m.Header.Set(protocol.HeaderOrigSubject, protocol.SubjectNumbers)
	m.Header.Set(protocol.HeaderOrigStream, protocol.StreamNumbers)
	m.Header.Set(protocol.HeaderOrigMsgID, protocol.NumberMsgID(n))
	if _, err := b.js.PublishMsg(b.t.Context(), m); err != nil {
		b.t.Fatal(err)
	}
}

// states writes the states of a run that generated 0 … generated-1 and
// logged all but dead; workerDead and loggerDead are the actors' tallies
// (nil: a state from before them).
func (b *books) states(generated uint64, dead []uint64, workerDead *actors.Tally) {
	b.t.Helper()
	b.put(protocol.Generator, actor.State[actors.GeneratorState]{Starts: 1, Data: actors.GeneratorState{Next: generated}})
	b.put(protocol.Heartbeat, actor.State[actors.HeartbeatState]{Starts: 1, Data: actors.HeartbeatState{Run: 1, Beats: generated, Total: generated}})
	b.put(protocol.Worker, actor.State[actors.WorkerState]{Starts: 1, Data: actors.WorkerState{
		Beats: generated, Processed: generated - uint64(len(dead)), DeadLettered: uint64(len(dead)),
		NextValue: generated, BeatRun: 1, LastBeat: generated, Dead: workerDead,
	}})
	isDead := map[uint64]bool{}
	for _, v := range dead {
		isDead[v] = true
	}
	var lg actors.LoggerState
	for v := range generated {
		if !isDead[v] {
			lg.Tally.Add(v)
		}
	}
	lg.LastSource = generated
	b.put(protocol.Logger, actor.State[actors.LoggerState]{Starts: 1, Data: lg})
}

func (b *books) summary() *Summary {
	b.t.Helper()
	var counts []ActorCounts
	for _, a := range registry.Default().All() {
		counts = append(counts, ActorCounts{Name: a.Name, StateKey: a.StateKey})
	}
	sum, err := b.led.Summarize(b.t.Context(), 1, counts)
	if err != nil {
		b.t.Fatal(err)
	}
	return sum
}

func tally(vs ...uint64) *actors.Tally {
	var t actors.Tally
	for _, v := range vs {
		t.Add(v)
	}
	return &t
}

// The DLQ is bounded: once its limit removed old dead letters, the books
// still balance by value, from the worker's tally. Without the tally the
// removed values would be lost.
func TestBooksBalanceAfterTheDLQDropped(t *testing.T) {
	b := newBooks(t, natsx.DLQLimits{MaxMsgs: 2})
	dead := []uint64{3, 9, 27, 33}
	for _, v := range dead {
		b.deadNumber(v)
	}
	b.states(40, dead, tally(dead...))
	sum := b.summary()
	if !sum.OK || sum.Dead.Total() != 4 || sum.DLQDropped != 2 || len(sum.DeadLettered) != 2 || sum.Logged != 36 {
		t.Fatalf("summary: ok %v, dead %d, dropped %d, listed %d, logged %d; problems %v",
			sum.OK, sum.Dead.Total(), sum.DLQDropped, len(sum.DeadLettered), sum.Logged, sum.Problems)
	}
	// The worker's tally is the books' evidence: one value short, it shows.
	b.states(40, dead, tally(3, 9, 27))
	if sum := b.summary(); sum.OK {
		t.Fatal("a tally one value short balanced")
	}
}

// While the DLQ holds every dead letter, its values and the tallies must
// agree: a dead letter removed by hand (or a forged one) is named.
func TestDLQAndTalliesAgree(t *testing.T) {
	b := newBooks(t, natsx.DLQLimits{})
	for _, v := range []uint64{3, 9} {
		b.deadNumber(v)
	}
	b.states(20, []uint64{3, 9}, tally(3, 9))
	if sum := b.summary(); !sum.OK {
		t.Fatalf("problems: %v", sum.Problems)
	}
	b.deadNumber(11) // forged: the worker never dead-lettered 11
	sum := b.summary()
	if sum.OK || len(sum.Problems) == 0 || !strings.Contains(sum.Problems[0], "tally of its dead letters (2 values) and the DLQ's (3) disagree") {
		t.Fatalf("a forged dead letter: ok %v, problems %v", sum.OK, sum.Problems)
	}
}

// A data dir from before the tallies: the supervisor counts each actor's
// standing dead letters into its state once, before the actors start.
func TestCountDead(t *testing.T) {
	b := newBooks(t, natsx.DLQLimits{})
	for _, v := range []uint64{3, 9} {
		b.deadNumber(v)
	}
	b.states(20, []uint64{3, 9}, nil)
	ctx := context.Background()
	counted, err := b.led.CountDead(ctx)
	if err != nil || len(counted) != 1 || counted[0] != protocol.Worker { // the logger's empty tally is written, not reported
		t.Fatalf("CountDead: %v, %v; want the worker", counted, err)
	}
	if lg, err := actor.LoadState[actors.LoggerState](ctx, b.kv, protocol.Logger); err != nil || lg.Data.Dead == nil || lg.Data.Dead.Total() != 0 {
		t.Fatalf("the logger's tally: %+v, %v; want an empty one", lg.Data.Dead, err)
	}
	wk, err := actor.LoadState[actors.WorkerState](ctx, b.kv, protocol.Worker)
	if err != nil || wk.Data.Dead == nil || *wk.Data.Dead != *tally(3, 9) {
		t.Fatalf("the worker's tally: %+v, %v", wk.Data.Dead, err)
	}
	if counted, err := b.led.CountDead(ctx); err != nil || len(counted) != 0 {
		t.Fatalf("CountDead again: %v, %v; want nothing", counted, err)
	}
	if sum := b.summary(); !sum.OK || sum.Dead.Total() != 2 {
		t.Fatalf("after counting: ok %v, dead %d, problems %v", sum.OK, sum.Dead.Total(), sum.Problems)
	}
}
