package tamper_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/tamper"
)

// Each tampering done on another connection is reported once, within a
// second, with what the server said; the same calls on the watcher's own
// connection, refused calls and streams not watched are not.
func TestWatcher(t *testing.T) {
	ns := natstest.RunJetStream(t)
	connect := func(name string) (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(ns.ClientURL(), nats.Name(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	supNC, sup := connect("sup")
	_, other := connect("hand")
	for _, name := range []string{"NUMBERS", "OTHER"} {
		if _, err := sup.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name}}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := sup.Publish(ctx, name, []byte("1")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := sup.CreateConsumer(ctx, "NUMBERS", jetstream.ConsumerConfig{Durable: "c"}); err != nil {
		t.Fatal(err)
	}
	kv, err := sup.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "state"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "worker", []byte(`{"starts":1}`)); err != nil {
		t.Fatal(err)
	}
	otherKV, err := other.KeyValue(ctx, "state")
	if err != nil {
		t.Fatal(err)
	}

	got := make(chan events.Tampered, 16)
	w := &tamper.Watcher{NC: supNC, KV: kv, Streams: []string{"NUMBERS", "KV_state"}, Consumers: []string{"NUMBERS/c"}, Emit: func(e events.Event) { got <- e.(events.Tampered) }}
	wctx, stop := context.WithCancel(ctx)
	if err := w.Start(wctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()

	expect := func(op events.TamperOp, what string, msgs uint64) {
		t.Helper()
		select {
		case e := <-got:
			if e.Op != op || e.What != what || e.Messages != msgs {
				t.Fatalf("got %+v, want %s %s (%d messages)", e, what, op, msgs)
			}
			if what[:3] != "sta" && e.By == "" {
				t.Fatalf("%+v does not say by whom", e)
			}
		case <-time.After(time.Second):
			t.Fatalf("%s %s not reported within a second", what, op)
		}
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case e := <-got:
			t.Fatalf("%s: reported %+v", what, e)
		case <-time.After(300 * time.Millisecond):
		}
	}

	// The watcher's own connection: its calls are the supervisor's.
	if err := sup.DeleteConsumer(ctx, "NUMBERS", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := sup.UpdateStream(ctx, jetstream.StreamConfig{Name: "NUMBERS", Subjects: []string{"NUMBERS"}, MaxMsgs: 100}); err != nil {
		t.Fatal(err)
	}
	quiet("the supervisor's own calls")
	if _, err := other.CreateConsumer(ctx, "NUMBERS", jetstream.ConsumerConfig{Durable: "c"}); err != nil {
		t.Fatal(err)
	}
	quiet("a consumer created")

	st, err := other.Stream(ctx, "NUMBERS")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}
	expect(events.OpMsgDeleted, "NUMBERS", 1)
	if err := st.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("deleted message 1 twice")
	}
	quiet("a refused deletion")
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	expect(events.OpPurged, "NUMBERS", 2)
	if err := other.DeleteConsumer(ctx, "NUMBERS", "c"); err != nil {
		t.Fatal(err)
	}
	expect(events.OpConsumerDeleted, "NUMBERS/c", 0)
	if _, err := other.CreateConsumer(ctx, "NUMBERS", jetstream.ConsumerConfig{Durable: "reader"}); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteConsumer(ctx, "NUMBERS", "reader"); err != nil {
		t.Fatal(err)
	}
	quiet("a consumer not the pipeline's deleted (the nats CLI's own)")
	if ost, err := other.Stream(ctx, "OTHER"); err != nil {
		t.Fatal(err)
	} else if err := ost.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	quiet("a stream not watched")

	if _, err := otherKV.Put(ctx, "worker", []byte(`{"starts":2}`)); err != nil {
		t.Fatal(err)
	}
	quiet("a readable state written")
	if _, err := otherKV.Put(ctx, "worker", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	expect(events.OpKeyUnreadable, "state key worker", 0)
	if err := otherKV.Delete(ctx, "worker"); err != nil {
		t.Fatal(err)
	}
	expect(events.OpKeyDeleted, "state key worker", 0)
	if err := otherKV.Purge(ctx, "worker"); err != nil {
		t.Fatal(err)
	}
	expect(events.OpKeyDeleted, "state key worker", 0)

	if err := other.DeleteStream(ctx, "NUMBERS"); err != nil {
		t.Fatal(err)
	}
	expect(events.OpStreamDeleted, "NUMBERS", 0)

	stop()
	<-done
}

// Forged or broken advisories are not taken for tamperings.
func TestAuditRefusesWhatIsNoAudit(t *testing.T) {
	w := &tamper.Watcher{Streams: []string{"NUMBERS"}}
	for _, data := range []string{
		``, `{`, `null`, `[]`,
		`{"type":"other","subject":"$JS.API.STREAM.PURGE.NUMBERS","response":"{}"}`,
		`{"type":"io.nats.jetstream.advisory.v1.api_audit","subject":"$JS.API.STREAM.PURGE.NUMBERS","response":"not json"}`,
		`{"type":"io.nats.jetstream.advisory.v1.api_audit","subject":"$JS.API.STREAM.PURGE.NUMBERS","response":"{\"error\":{\"description\":\"no\"}}"}`,
		`{"type":"io.nats.jetstream.advisory.v1.api_audit","subject":"$JS.API.STREAM.PURGE","response":"{}"}`,
		`{"type":"io.nats.jetstream.advisory.v1.api_audit","subject":"$JS.API.STREAM.PURGE.NUMBERS.X","response":"{}"}`,
		`{"type":"io.nats.jetstream.advisory.v1.api_audit","subject":"$JS.API.STREAM.INFO.NUMBERS","response":"{}"}`,
	} {
		if e, ok := w.Audit([]byte(data)); ok {
			t.Errorf("%s: taken for %+v", data, e)
		}
	}
	e, ok := w.Audit([]byte(`{"type":"io.nats.jetstream.advisory.v1.api_audit","client":{"user":"admin","name":"n"},"subject":"$JS.API.STREAM.PURGE.NUMBERS","response":"{\"success\":true,\"purged\":7}"}`))
	if !ok || e.Op != events.OpPurged || e.Messages != 7 || e.By != `admin (connection "n")` {
		t.Errorf("a purge: %+v, %v", e, ok)
	}
	long := strings.Repeat("x", 1<<20)
	e, ok = w.Audit([]byte(`{"type":"io.nats.jetstream.advisory.v1.api_audit","client":{"user":"` + long + `"},"subject":"$JS.API.STREAM.PURGE.NUMBERS","response":"{}"}`))
	if !ok || len(e.By) > 300 {
		t.Errorf("a forged advisory with a 1 MB user: kept %d bytes", len(e.By))
	}
}

func FuzzAudit(f *testing.F) {
	f.Add([]byte(`{"type":"io.nats.jetstream.advisory.v1.api_audit","client":{"user":"admin"},"subject":"$JS.API.STREAM.PURGE.NUMBERS","response":"{\"purged\":7}"}`))
	f.Add([]byte(`{"type":"io.nats.jetstream.advisory.v1.api_audit","subject":"$JS.API.CONSUMER.DELETE.NUMBERS.c","response":"{}"}`))
	w := &tamper.Watcher{Streams: []string{"NUMBERS"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if e, ok := w.Audit(data); ok && (e.What == "" || e.Op == "") {
			t.Fatalf("a tampering without what or op: %+v", e)
		}
	})
}
