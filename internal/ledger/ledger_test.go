package ledger

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// A result the worker committed (in its outbox) and has not published yet
// is queued: neither lost in the summary nor forgotten by the drain. The
// outbox keeps an output's message ID beside its headers; at c3d2f1f the
// ledger looked for it in the headers, counted 5 as nowhere, and the drain
// ended before the outbox was published.
func TestCommittedOutboxIsQueued(t *testing.T) {
	ns := natstest.RunJetStream(t)
	_, js, err := natsx.Connect(ns.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := natsx.Ensure(ctx, js, natsx.Topology{}, registry.Default().Inputs()); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, protocol.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, st any) {
		t.Helper()
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	// 0 … 5 generated and processed; 0 … 4 logged; the result for 5 is in
	// the worker's outbox, not yet published.
	put(protocol.Generator, actor.State[actors.GeneratorState]{Starts: 1, Data: actors.GeneratorState{Next: 6}})
	put(protocol.Heartbeat, actor.State[actors.HeartbeatState]{Starts: 1, Data: actors.HeartbeatState{Run: 1, Beats: 6, Total: 6}})
	h := nats.Header{}
	h.Set(protocol.HeaderSourceSequence, "6")
	put(protocol.Worker, actor.State[actors.WorkerState]{Starts: 1,
		Data:   actors.WorkerState{Beats: 6, Processed: 6, NextValue: 6, BeatRun: 1, LastBeat: 6},
		Outbox: []actor.Out{{Subject: protocol.SubjectResults, MsgID: protocol.ResultMsgID(5), Data: protocol.EncodeResult(protocol.FizzBuzz(5)), Header: h}},
	})
	var logged actors.LoggerState
	for v := range uint64(5) {
		logged.Tally.Add(v)
	}
	logged.LastSource = 5
	put(protocol.Logger, actor.State[actors.LoggerState]{Starts: 1, Data: logged})

	l := &Ledger{JS: js, KV: kv}
	var counts []ActorCounts
	for _, a := range registry.Default().All() {
		counts = append(counts, ActorCounts{Name: a.Name, StateKey: a.StateKey})
	}
	sum, err := l.Summarize(ctx, 1, counts)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK || sum.Generated != 6 || sum.Logged != 5 || sum.Queued != 1 {
		t.Fatalf("summary: ok %v, generated %d, logged %d, queued %d; problems %v", sum.OK, sum.Generated, sum.Logged, sum.Queued, sum.Problems)
	}
	left, err := l.InFlight(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1 results committed by the worker, not yet logged"; left != want {
		t.Fatalf("InFlight = %q, want %q", left, want)
	}
}

// The DLQ is read in batches: 20,000 dead letters (and more: see the
// benchmark) are all listed, in order, whatever their number.
func TestManyDeadLetters(t *testing.T) {
	ns := natstest.RunJetStream(t)
	_, js, err := natsx.Connect(ns.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.Ensure(t.Context(), js, natsx.Topology{}, registry.Default().Inputs()); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), protocol.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	led := &Ledger{JS: js, KV: kv}
	const n = 20000
	ctx := t.Context()
	var futs []jetstream.PubAckFuture
	for i := range n {
		m := &nats.Msg{Subject: protocol.DLQSubject(protocol.Worker), Data: []byte(strconv.Itoa(i)), Header: nats.Header{}}
		m.Header.Set(protocol.HeaderActor, protocol.Worker)
		m.Header.Set(protocol.HeaderReason, "malformed: test")
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
		if len(futs)%1000 == 0 || i == n-1 { // within the async window
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishing the dead letters took over 30s")
			}
		}
	}
	for _, f := range futs {
		select {
		case err := <-f.Err():
			t.Fatal(err)
		default:
		}
	}
	start := time.Now()
	dls, err := led.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != n || dls[0].Seq != 1 || dls[n-1].Seq != n {
		t.Fatalf("listed %d dead letters (first %d, last %d), want %d", len(dls), dls[0].Seq, dls[len(dls)-1].Seq, n)
	}
	t.Logf("%d dead letters listed in %s", n, time.Since(start))
}

// The check line says "=" only when the sides are equal.
func TestCheckLine(t *testing.T) {
	for _, c := range []struct {
		s    Summary
		want string
	}{
		{Summary{Generated: 10, Logged: 7, Queued: 3}, "check: generated 10 = logged 7 + dead-lettered 0 + queued 3\n"},
		{Summary{Generated: 10, Logged: 5, Queued: 3}, "check: generated 10 != logged 5 + dead-lettered 0 + queued 3\n"},
		{Summary{Generated: 10, Logged: 5, Queued: 3, Removed: 2}, "check: generated 10 = logged 5 + dead-lettered 0 + queued 3 + removed 2\n"},
	} {
		var b strings.Builder
		c.s.WriteText(&b)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("%+v wrote\n%s\nwant the line %q", c.s, b.String(), c.want)
		}
	}
}
