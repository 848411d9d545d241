package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// Messages no producer of the pipeline could have sent, published by the
// admin amid a running pipeline: a number far ahead with a producer's ID
// (it used to move the worker's mark and skip every real value below it),
// a number a little ahead of the generator with a producer's ID (it used
// to take the real value's place in the duplicate window: the worker then
// waited for that value forever), a beat a little ahead with the
// heartbeat's very ID, token and all (it stalled the worker for good), a
// result claiming a source far ahead (it
// used to move the logger's mark past every real result below it),
// a number of about 1 MB and a result of 800 kB (they used to grow the
// actors' state past the server's maximum payload and wedge the data dir),
// a beat claiming 2^40 beats, and a replay of a dead letter that does not
// exist. Each is dead-lettered with its reason, the big ones truncated
// with their size and SHA-256 and not replayable; the pipeline goes on,
// nothing real is skipped, and the summary, printed within its deadline,
// balances.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "5", "--beats", "0", "--queue", "50", "--faults", "none", "--log-level", "warn")
	_, js := p.connect()
	publish := func(subject string, data []byte, h nats.Header) {
		t.Helper()
		m := &nats.Msg{Subject: subject, Data: data, Header: h}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := js.PublishMsg(ctx, m)
			cancel()
			var apiErr *jetstream.APIError
			if err == nil {
				return
			}
			if !(errors.As(err, &apiErr) && apiErr.ErrorCode == natsx.ErrCodeStreamFull) || time.Now().After(deadline) {
				t.Fatalf("publish to %s: %v", subject, err)
			}
			time.Sleep(50 * time.Millisecond) // a bounded queue, full: as `nats pub -J` would, again
		}
	}
	header := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	// Let real values flow first.
	waitFor(t, 30*time.Second, "the worker to process", func() bool { _, v := progress(t, js, protocol.Worker); return v > 20 })

	const far = "18446744073709551000"
	publish(protocol.SubjectNumbers, []byte(far), header(protocol.HeaderMsgID, "n-"+far))
	huge := bytes.Repeat([]byte("7"), 1000*1000)
	publish(protocol.SubjectNumbers, huge, header(protocol.HeaderMsgID, "n-huge"))
	publish(protocol.SubjectNumbers, []byte("5"), header(protocol.HeaderMsgID, protocol.ReplayMsgID(999999), protocol.HeaderReplay, "999999"))
	_, generated := progress(t, js, protocol.Generator)
	near := generated + 200 // the generator's before long, but not yet
	nearText := strconv.FormatUint(near, 10)
	publish(protocol.SubjectNumbers, []byte(nearText), header(protocol.HeaderMsgID, protocol.NumberMsgID(near)))
	publish(protocol.SubjectResults, protocol.EncodeResult(protocol.FizzBuzz(3)),
		header(protocol.HeaderMsgID, protocol.ResultMsgID(3), protocol.HeaderSourceSequence, "1000000000"))
	// A beat a little ahead with the heartbeat's own ID, token and all
	// (copied from the supervisor's state): the real beat is dropped as its
	// copy, and the worker must not wait for it forever.
	ids := supervisorIDs(t, js)
	run := counterOf(t, js, protocol.Heartbeat, func(d *actors.HeartbeatState) uint64 { return d.Run })
	nearBeat := protocol.Beat{Run: run, Beat: counterOf(t, js, protocol.Heartbeat, func(d *actors.HeartbeatState) uint64 { return d.Beats }) + 20}
	nearBeatText := string(protocol.EncodeBeat(nearBeat))
	publish(protocol.SubjectBeats, []byte(nearBeatText), header(protocol.HeaderMsgID, ids.Of(protocol.BeatMsgID(nearBeat))))
	b := protocol.Beat{Run: 1, Beat: 1, Count: 1 << 40}
	publish(protocol.SubjectBeats, protocol.EncodeBeat(b), header(protocol.HeaderMsgID, protocol.BeatMsgID(b)))
	bigText := strings.Repeat("x", 800*1000)
	publish(protocol.SubjectResults, []byte(`{"value":7,"kind":"value","text":"`+bigText+`"}`),
		header(protocol.HeaderMsgID, "r-big", protocol.HeaderSourceSequence, "1"))

	dlq, err := js.Stream(context.Background(), protocol.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			if st, err := js.Stream(context.Background(), protocol.StreamResults); err == nil {
				info, _ := st.Info(context.Background())
				t.Logf("RESULTS: %+v", info.State)
				if c, err := st.Consumer(context.Background(), protocol.LoggerResults.Consumer); err == nil {
					ci, _ := c.Info(context.Background())
					t.Logf("logger-results: delivered %+v acked %+v pending %d ackpending %d", ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending)
				}
			}
		}
	}()
	waitFor(t, 60*time.Second, "eight dead letters", func() bool {
		info, err := dlq.Info(context.Background())
		return err == nil && info.State.Msgs >= 8
	})
	// The beats go on past the one whose place the stray copy took.
	waitFor(t, 60*time.Second, "the worker to take beats past the stray's", func() bool {
		return counterOf(t, js, protocol.Worker, func(d *actors.WorkerState) uint64 { return d.LastBeat }) > nearBeat.Beat+10
	})
	// The real value the stray number named lands and is taken.
	waitFor(t, 60*time.Second, "the worker to go past the stray's value", func() bool { _, v := progress(t, js, protocol.Worker); return v > near+10 })
	// The pipeline goes on past them.
	_, before := progress(t, js, protocol.Worker)
	waitFor(t, 30*time.Second, "the worker to go on", func() bool { _, v := progress(t, js, protocol.Worker); return v > before+10 })
	_, lg := progress(t, js, protocol.Logger)
	waitFor(t, 30*time.Second, "the logger to go on", func() bool { _, v := progress(t, js, protocol.Logger); return v > lg+10 })

	stopped := time.Now()
	s := p.finish(syscall.SIGTERM, time.Minute) // checks the books: nothing skipped
	if took := time.Since(stopped); took > 30*time.Second {
		t.Errorf("the summary took %s", took)
	}
	want := map[string]string{ // payload's start to the reason's
		far:                     "out-of-order: number " + far,
		"777777":                `malformed: number "7777777777`,
		"5":                     "implausible: a replay of dead letter 999999",
		`{"run":1,"beat":1`:     "implausible: a beat message carrying 1099511627776 beats",
		`{"value":7,"kind":"va`: "malformed: result",
		nearText:                "out-of-order: number " + nearText,
		nearBeatText:            fmt.Sprintf("out-of-order: beat %d of run %d", nearBeat.Beat, run),
		`{"value":3,`:           "out-of-order: result 3 from source 1000000000",
	}
	if len(s.DeadLettered) != len(want) {
		t.Fatalf("dead letters %+v, want %d", s.DeadLettered, len(want))
	}
	for _, d := range s.DeadLettered {
		payload := "" // the longest of want's that the dead letter's starts with
		for p := range want {
			if strings.HasPrefix(d.Payload, p) && len(p) > len(payload) {
				payload = p
			}
		}
		if reason := want[payload]; payload == "" {
			t.Errorf("unexpected dead letter %+v", d)
		} else if !strings.HasPrefix(d.Reason, reason) {
			t.Errorf("dead letter %q…: reason %q, want %q…", d.Payload[:min(len(d.Payload), 30)], d.Reason, reason)
		}
		if d.Value != nil {
			t.Errorf("dead letter %q… counted as value %d", d.Payload[:min(len(d.Payload), 30)], *d.Value)
		}
		big := strings.HasPrefix(d.Payload, "777") || strings.HasPrefix(d.Payload, `{"value":7`)
		if big != d.Truncated || big && (len(d.Payload) > 1024 || d.OrigSize < 800*1000 || len(d.OrigSHA256) != 64) {
			t.Errorf("dead letter %q…: truncated %v, %d bytes kept of %d (sha256 %q)", d.Payload[:min(len(d.Payload), 30)], d.Truncated, len(d.Payload), d.OrigSize, d.OrigSHA256)
		}
		if d.Replayable() == "" {
			t.Errorf("dead letter %q… is replayable", d.Payload[:min(len(d.Payload), 30)])
		}
	}
	if s.Logged == 0 || s.Logged != s.Processed {
		t.Fatalf("logged %d of %d processed", s.Logged, s.Processed)
	}
}

// counterOf reads one field of an actor's state.
func counterOf[D any](t testing.TB, js jetstream.JetStream, name string, f func(*D) uint64) uint64 {
	t.Helper()
	_, v := counters(t, js, name, f)
	return v
}

// supervisorIDs reads the pipeline's ID token from the supervisor's state.
func supervisorIDs(t testing.TB, js jetstream.JetStream) protocol.IDs {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := stateBucket(ctx, t, js).Get(ctx, protocol.SupervisorKey)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		IDs protocol.IDs `json:"ids"`
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil || st.IDs == "" {
		t.Fatalf("the supervisor's state holds no ID token: %v", err)
	}
	return st.IDs
}
