package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/supervisor"
	"github.com/robust/robust/pkg/protocol"
)

// dlqStatus reads `GET /dlq`: each dead letter's status by its ID.
func dlqStatus(t *testing.T, base string) map[uint64]string {
	_, body := get(t, base+"/dlq")
	var dls []supervisor.DeadLetter
	if json.Unmarshal([]byte(body), &dls) != nil {
		return nil
	}
	out := map[uint64]string{}
	for _, d := range dls {
		out[d.Seq] = d.Status
	}
	return out
}

// `supervisor dlq replay` puts dead letters back exactly once. The lesson
// dead-letters 33 (worker) and 41 (logger). Replayed while the worker's
// fault is still on, 41 is logged and 33 is dead-lettered again, as a new
// dead letter; replayed once more with no faults, 33 is logged. A copy of
// a replay published after the server's duplicate window is skipped. Each
// run's books balance with the replayed values logged once.
func TestReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A short queue in every paced run: a replay lands behind what waits
	// in NUMBERS, and 1,000 values queued by the first run took the worker
	// over 30 s to go through on a loaded machine (a flaky timeout).
	first := start(t, dir, "--rate", "5", "--beats", "60", "--queue", "20")
	s := first.finish(0, 2*time.Minute)
	if d := deadValues(s); !slices.Equal(d["worker"], []uint64{33}) || !slices.Equal(d["logger"], []uint64{41}) {
		t.Fatalf("dead letters %+v, want worker 33 and logger 41", s.DeadLettered)
	}
	ids := map[uint64]uint64{} // value to dead letter ID
	for _, d := range s.DeadLettered {
		ids[*d.Value] = d.Seq
	}

	// Replay both with the worker's fault still on.
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + addr
	second := start(t, dir, "--rate", "5", "--beats", "0", "--queue", "20", "--faults", "worker:33", "--http", addr)
	waitFor(t, 20*time.Second, "/healthz", func() bool { code, _ := get(t, base+"/healthz"); return code == 200 })
	code, out := control(t, addr, dir, "dlq", "replay", "--all")
	if code != 0 || !strings.Contains(out, "2 replayed, 0 skipped") || !strings.Contains(out, fmt.Sprintf("replayed dead letter %d (worker 33) onto robust.numbers", ids[33])) {
		t.Fatalf("dlq replay --all: exit %d:\n%s", code, out)
	}
	var again uint64 // the dead letter of 33's replay
	var seen string  // the statuses last seen, logged as they change
	waitFor(t, 30*time.Second, "41 logged and 33 dead again", func() bool {
		st := dlqStatus(t, base)
		if now := fmt.Sprint(st); now != seen {
			t.Logf("dead letters: %s", now)
			seen = now
		}
		for id, status := range st {
			if status == fmt.Sprintf("replayed, dead again as %d", id) {
				continue
			}
			if id != ids[33] && id != ids[41] && status == supervisor.StatusDead {
				again = id
			}
		}
		return st[ids[41]] == supervisor.StatusReplayed && again != 0 && st[ids[33]] == fmt.Sprintf("replayed, dead again as %d", again)
	})
	if code, out := control(t, addr, dir, "dlq", "replay", fmt.Sprint(ids[41])); code != 1 || !strings.Contains(out, "not replayable: it was replayed") {
		t.Fatalf("dlq replay of a replayed dead letter: exit %d: %s", code, out)
	}
	s = second.finish(syscall.SIGINT, time.Minute)
	if d := deadValues(s); len(s.DeadLettered) != 1 || !slices.Equal(d["worker"], []uint64{33}) || s.DeadLettered[0].Seq != again || s.DeadLettered[0].Replay != ids[33] {
		t.Fatalf("second run: dead letters %+v, want only 33's replay, as %d", s.DeadLettered, again)
	}
	if len(s.Replayed) != 2 {
		t.Fatalf("second run: replayed %+v, want 2", s.Replayed)
	}

	// Replay 33 again, now that nothing fails, into a pipeline running
	// unpaced: the replay lands amid the generator's chained batches.
	third := start(t, dir, "--rate", "0", "--beats", "0", "--faults", "none", "--http", addr)
	waitFor(t, 20*time.Second, "/healthz", func() bool { code, _ := get(t, base+"/healthz"); return code == 200 })
	if code, out := control(t, addr, dir, "dlq", "replay", fmt.Sprint(again)); code != 0 || !strings.Contains(out, "1 replayed, 0 skipped") {
		t.Fatalf("dlq replay %d: exit %d:\n%s", again, code, out)
	}
	waitFor(t, 30*time.Second, "33's replay taken", func() bool { return dlqStatus(t, base)[again] == supervisor.StatusReplayed })
	if code, out := control(t, addr, dir, "dlq", "replay", "--all"); code != 0 || !strings.Contains(out, "0 replayed, 0 skipped") {
		t.Fatalf("dlq replay --all with nothing left: exit %d:\n%s", code, out)
	}

	// A copy of the replay, after the server has forgotten its ID: skipped.
	_, js := third.connect()
	_, dupsBefore := counters(t, js, protocol.Worker, func(d *actors.WorkerState) uint64 { return d.Duplicates })
	time.Sleep(natsx.DefaultDupWindow + time.Second)
	copyMsg := &nats.Msg{Subject: protocol.SubjectNumbers, Data: []byte("33"), Header: nats.Header{}}
	copyMsg.Header.Set(protocol.HeaderMsgID, protocol.ReplayMsgID(again))
	copyMsg.Header.Set(protocol.HeaderReplay, fmt.Sprint(again))
	if ack, err := js.PublishMsg(t.Context(), copyMsg); err != nil || ack.Duplicate {
		t.Fatalf("publishing a copy of the replay: %+v, %v", ack, err)
	}
	waitFor(t, 30*time.Second, "the copy skipped", func() bool {
		_, dups := counters(t, js, protocol.Worker, func(d *actors.WorkerState) uint64 { return d.Duplicates })
		return dups > dupsBefore
	})
	s = third.finish(syscall.SIGINT, time.Minute)
	if len(s.DeadLettered) != 0 || len(s.Replayed) != 3 {
		t.Fatalf("third run: dead %+v, replayed %+v; want none and 3", s.DeadLettered, s.Replayed)
	}
	// Every generated value was logged once, 33 and 41 included (the
	// checksums in checkSummary), or is still queued.
	if s.Logged+s.Queued != s.Generated {
		t.Fatalf("generated %d, logged %d, queued %d", s.Generated, s.Logged, s.Queued)
	}
	if !strings.Contains(third.stdout.String(), "replayed") {
		t.Errorf("the summary does not show the replayed dead letters:\n%s", third.stdout.String())
	}
}
