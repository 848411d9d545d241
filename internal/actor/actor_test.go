package actor

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// runJetStream starts an embedded JetStream server with the pipeline's
// streams and bucket, and returns its URL.
func runJetStream(t testing.TB) string {
	t.Helper()
	ns := natstest.RunJetStream(t)
	nc, js, err := natsx.Connect(ns.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsx.Ensure(ctx, js, natsx.Topology{}, registry.Default().Inputs()); err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL()
}

type count struct{ N uint64 }

type counting struct{}

func (counting) Counters(d *count) map[string]uint64 { return map[string]uint64{"n": d.N} }

func openCore(t *testing.T, url string) *core[count] {
	t.Helper()
	c, err := newCore[count](protocol.ActorConfig{Actor: "worker", NATSURL: url, StallAfter: time.Hour}, slog.New(slog.DiscardHandler), counting{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

// A second copy of an actor fences the first: the first's next state write
// fails with ErrFenced and leaves the state as the second wrote it.
func TestFencing(t *testing.T) {
	// Registered first, so it runs last: after the server and connections close.
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	url := runJetStream(t)
	ctx := context.Background()

	old := openCore(t, url)
	st := old.state()
	st.Data.N = 1
	if err := old.save(ctx, st); err != nil {
		t.Fatalf("first copy, alone: %v", err)
	}
	young := openCore(t, url)
	if got := young.state(); got.Starts != 2 || got.Data.N != 1 {
		t.Fatalf("second copy loaded %+v, want starts 2 and N 1", got)
	}
	st = old.state()
	st.Data.N = 99
	if err := old.save(ctx, st); !errors.Is(err, ErrFenced) {
		t.Fatalf("first copy after the second started: err %v, want ErrFenced", err)
	}
	st = young.state()
	st.Data.N = 2
	if err := young.save(ctx, st); err != nil {
		t.Fatalf("second copy: %v", err)
	}
	got, err := LoadState[count](ctx, young.store.kv, "worker")
	if err != nil || got.Data.N != 2 {
		t.Fatalf("persisted %+v (%v), want N 2", got, err)
	}
}

func TestStatusReportsStall(t *testing.T) {
	c, err := newCore[count](protocol.ActorConfig{Actor: "worker", StallAfter: time.Second}, slog.New(slog.DiscardHandler), counting{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.status(); err != nil {
		t.Fatalf("fresh actor: %v", err)
	}
	c.lastTurn.Store(time.Now().Add(-2 * time.Second).UnixNano())
	if _, err := c.status(); !errors.Is(err, ErrStalled) {
		t.Fatalf("stalled actor: err %v, want ErrStalled", err)
	}
}

func TestBadFaultPlanIsRejected(t *testing.T) {
	_, err := newCore[count](protocol.ActorConfig{Actor: "worker", Faults: "worker:oops"}, slog.New(slog.DiscardHandler), counting{})
	if err == nil {
		t.Fatal("a bad plan was accepted")
	}
}

func TestOutRoundTrip(t *testing.T) {
	h := nats.Header{}
	h.Set("A", "1")
	h["B"] = []string{"x", "y"}
	for _, o := range []Out{
		{Subject: "s", MsgID: "i", Data: []byte(`{"value":3}`), Header: h},
		{Subject: "s", MsgID: "i", Data: []byte{0xff, 0x00}},
		{Subject: "s", MsgID: "i"},
	} {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var got Out
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Subject != o.Subject || got.MsgID != o.MsgID || string(got.Data) != string(o.Data) || !maps.EqualFunc(got.Header, o.Header, slices.Equal) {
			t.Fatalf("round trip of %+v gave %+v (%s)", o, got, b)
		}
	}
}

// A large outbox is stored compressed and loads back whole, small ones plain.
func TestOutboxStoredCompressed(t *testing.T) {
	url := runJetStream(t)
	ctx := context.Background()
	c := openCore(t, url)
	for _, n := range []int{compressAbove, 256} {
		st := c.state()
		st.Outbox = nil
		for i := range n {
			h := nats.Header{}
			h.Set(protocol.HeaderSourceSequence, strconv.Itoa(1000+i))
			st.Outbox = append(st.Outbox, Out{Subject: protocol.SubjectResults, MsgID: protocol.ResultMsgID(uint64(i)),
				Data: protocol.EncodeResult(protocol.FizzBuzz(uint64(i))), Header: h})
		}
		if err := c.save(ctx, st); err != nil {
			t.Fatal(err)
		}
		e, err := c.store.kv.Get(ctx, "worker")
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := json.Marshal(st)
		compressed := strings.Contains(string(e.Value()), `"outbox_s2"`)
		t.Logf("outbox of %d: %d bytes stored, %d plain", n, len(e.Value()), len(plain))
		if compressed != (n > compressAbove) || compressed && len(e.Value()) > len(plain)/3 {
			t.Fatalf("outbox of %d stored in %d bytes (plain %d), compressed %v", n, len(e.Value()), len(plain), compressed)
		}
		got, err := LoadState[count](ctx, c.store.kv, "worker")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Outbox) != n || got.OutboxS2 != nil {
			t.Fatalf("loaded %d outs (compressed bytes left: %d), want %d", len(got.Outbox), len(got.OutboxS2), n)
		}
		for i, o := range got.Outbox {
			w := st.Outbox[i]
			if o.Subject != w.Subject || o.MsgID != w.MsgID || string(o.Data) != string(w.Data) || !maps.EqualFunc(o.Header, w.Header, slices.Equal) {
				t.Fatalf("out %d loaded as %+v, want %+v", i, o, w)
			}
		}
		if len(c.state().Outbox) != n {
			t.Fatal("saving compressed changed the actor's own copy of the state")
		}
	}
}

// The outbox's binary form round-trips, and a damaged one is an error,
// never a panic or a wrong outbox.
func TestOutsEncoding(t *testing.T) {
	h := nats.Header{}
	h.Set(protocol.HeaderSourceSequence, "12")
	h["Multi"] = []string{"a", "", "b"}
	outs := []Out{
		{Subject: protocol.SubjectResults, MsgID: "r-11", Data: protocol.EncodeResult(protocol.FizzBuzz(11)), Header: h},
		{Subject: "robust.dlq.worker", MsgID: "dlq-NUMBERS-3", Data: []byte{0xff, 0, 1}},
		{},
	}
	b := encodeOuts(outs)
	got, err := decodeOuts(b)
	if err != nil || len(got) != len(outs) {
		t.Fatalf("decode: %d outs, %v", len(got), err)
	}
	for i, o := range got {
		w := outs[i]
		if o.Subject != w.Subject || o.MsgID != w.MsgID || string(o.Data) != string(w.Data) || !maps.EqualFunc(o.Header, w.Header, slices.Equal) {
			t.Fatalf("out %d decoded as %+v, want %+v", i, o, w)
		}
	}
	for n := range len(b) {
		if _, err := decodeOuts(b[:n]); err == nil {
			t.Fatalf("decoding the first %d of %d bytes succeeded", n, len(b))
		}
	}
	if _, err := decodeOuts(append(b, 0)); err == nil {
		t.Fatal("trailing bytes accepted")
	}
}

func FuzzDecodeOuts(f *testing.F) {
	f.Add(encodeOuts([]Out{{Subject: "s", MsgID: "i", Data: []byte("d"), Header: nats.Header{"K": {"v"}}}}))
	f.Add([]byte{outsFormat, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		outs, err := decodeOuts(b)
		if err != nil {
			return
		}
		if again, err := decodeOuts(encodeOuts(outs)); err != nil || len(again) != len(outs) {
			t.Fatalf("re-encoding %d outs: %d, %v", len(outs), len(again), err)
		}
	})
}

// A message of somebody else's stored between reading the stream's last
// sequence and a chained publish refuses the whole batch: no later value
// may land ahead of an earlier one (the worker would skip the earlier as a
// copy, and lose it).
func TestChainRefusesAfterForeignPublish(t *testing.T) {
	url := runJetStream(t)
	ctx := context.Background()
	c := openCore(t, url)
	ack, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: protocol.SubjectNumbers, Data: []byte("99")}, jetstream.WithMsgID("n-99"))
	if err != nil {
		t.Fatal(err)
	}
	last := ack.Sequence // what the producer read
	replay := &nats.Msg{Subject: protocol.SubjectNumbers, Data: []byte("33"), Header: nats.Header{}}
	replay.Header.Set(protocol.HeaderReplay, "1")
	if _, err := c.js.PublishMsg(ctx, replay, jetstream.WithMsgID(protocol.ReplayMsgID(1))); err != nil {
		t.Fatal(err)
	}
	var outs []Out
	for v := uint64(100); v < 104; v++ {
		outs = append(outs, Out{Subject: protocol.SubjectNumbers, MsgID: protocol.NumberMsgID(v), Data: protocol.EncodeNumber(v)})
	}
	k, err := c.publish(ctx, outs, &last)
	if k != 0 || !retryable(err) {
		t.Fatalf("chained publish after a foreign one: %d stored, %v; want 0 and a retryable refusal", k, err)
	}
	st, err := c.js.Stream(ctx, protocol.StreamNumbers)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("the stream holds %d messages, want the 2 before the refused batch", info.State.Msgs)
	}
	// Chained again on the stream's new last sequence, the batch lands whole, in order.
	last = info.State.LastSeq
	if k, err := c.publish(ctx, outs, &last); k != len(outs) || err != nil {
		t.Fatalf("chained publish on the right sequence: %d stored, %v", k, err)
	}
	for i := range outs {
		m, err := st.GetMsg(ctx, last+1+uint64(i))
		if err != nil || string(m.Data) != string(outs[i].Data) {
			t.Fatalf("seq %d: %v %q, want %q", last+1+uint64(i), err, m.Data, outs[i].Data)
		}
	}
}
