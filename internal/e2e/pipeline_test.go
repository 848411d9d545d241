package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/internal/supervisor"
	"github.com/robust/robust/pkg/protocol"
)

func deadValues(s supervisor.Summary) map[string][]uint64 {
	out := map[string][]uint64{}
	for _, d := range s.DeadLettered {
		if d.Value != nil {
			out[d.Actor] = append(out[d.Actor], *d.Value)
		}
	}
	return out
}

// The demo with the lesson's faults, at a fast rate: exactly 33 (worker) and
// 41 (logger) are dead-lettered, every actor restarted, the books balance.
func TestLessonDemo(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "5", "--beats", "60")
	s := p.finish(0, 2*time.Minute)
	dead := deadValues(s)
	if len(s.DeadLettered) != 2 || !slices.Equal(dead["worker"], []uint64{33}) || !slices.Equal(dead["logger"], []uint64{41}) {
		t.Fatalf("dead letters %+v, want worker 33 and logger 41", s.DeadLettered)
	}
	for _, d := range s.DeadLettered {
		if !strings.HasPrefix(d.Reason, "showstopper: 3 deliveries without ack") || !strings.Contains(d.Reason, "injected fault") {
			t.Errorf("dead letter %d reason %q", d.Seq, d.Reason)
		}
	}
	for _, a := range registry.Default().Names() {
		if s.Restarts[a] < 1 {
			t.Errorf("%s restarted %d times, want at least 1", a, s.Restarts[a])
		}
	}
	// 60 beats take values 0..59: 33 dead at the worker, 41 at the logger.
	if s.Beats != 60 || s.Processed != 59 || s.Logged != 58 {
		t.Fatalf("beats %d processed %d logged %d, want 60, 59, 58", s.Beats, s.Processed, s.Logged)
	}
	for _, want := range []string{"injecting panic (intentional)", "worker exited: panic: injected fault worker:33 (intentional), restart #1", "Fizz (fizz total: "} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// kill -9 of each actor in turn: each is back and working within a second.
func TestKillEachActor(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "5", "--beats", "0", "--faults", "none")
	_, js := p.connect()
	for _, name := range registry.Default().Names() {
		pid := p.waitPID(name)
		waitFor(t, 10*time.Second, name+" to make progress", func() bool { _, v := progress(t, js, name); return v > 0 })
		starts, before := progress(t, js, name)
		kill(t, pid, syscall.SIGKILL)
		killed := time.Now()
		// Correctness, not speed (the bench measures that): 10 s leaves
		// room for a loaded machine.
		waitFor(t, 10*time.Second, name+" to be back", func() bool {
			n := p.actorPID(name)
			s, _ := progress(t, js, name)
			return n != 0 && n != pid && s == starts+1
		})
		waitFor(t, 10*time.Second, name+"'s replacement to make progress", func() bool {
			_, v := progress(t, js, name)
			return v > before
		})
		t.Logf("%s: back and working %s after SIGKILL", name, time.Since(killed).Round(time.Millisecond))
	}
	s := p.finish(syscall.SIGTERM, time.Minute)
	for _, a := range registry.Default().Names() {
		if s.RunRestarts[a] != 1 || s.Restarts[a] != 1 {
			t.Errorf("%s: restarts %d (this run %d), want exactly 1", a, s.Restarts[a], s.RunRestarts[a])
		}
	}
	if len(s.DeadLettered) != 0 {
		t.Errorf("dead letters %+v, want none", s.DeadLettered)
	}
}

// kill -9 of the supervisor: its actors die with it; a new supervisor on the
// same data dir resumes the run and completes it, with nothing lost or doubled.
func TestKillSupervisor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"--rate", "2", "--beats", "400", "--faults", "none"}
	p := start(t, dir, args...)
	_, js := p.connect()
	waitFor(t, 30*time.Second, "50 values logged", func() bool { _, v := progress(t, js, protocol.Logger); return v >= 50 })
	var children []int
	for _, a := range registry.Default().Names() {
		children = append(children, p.actorPID(a))
	}
	p.signal(syscall.SIGKILL)
	p.wait(5 * time.Second)
	waitFor(t, time.Second, "the actors to exit with their supervisor", func() bool {
		for _, pr := range actorProcesses() {
			if slices.Contains(children, pr.PID) {
				return false
			}
		}
		return true
	})

	q := start(t, dir, args...)
	s := q.finish(0, 2*time.Minute)
	if s.Run != 1 || s.Beats != 400 {
		t.Fatalf("run %d with %d beats, want run 1 resumed to 400 beats", s.Run, s.Beats)
	}
	// One number per beat, none dead: exactly 400 logged, across the kill.
	if s.Logged != 400 || s.Processed != 400 {
		t.Fatalf("logged %d, processed %d, want exactly 400", s.Logged, s.Processed)
	}
	if !strings.Contains(q.stderr.String(), "resuming an unfinished run") {
		t.Error("the second supervisor did not say it resumed the run")
	}
}

// A run that completed leaves the next one to start afresh, counting on.
// The DLQ keeps one dead letter: the first run's 33 goes when 41 comes,
// and the books still balance on both runs, by the actors' tallies.
func TestSecondRunContinues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for run := uint64(1); run <= 2; run++ {
		args := []string{"--rate", "5", "--beats", "60", "--faults", "lesson", "--dlq-max-msgs", "1", "--drain-timeout", "1m"}
		if run == 2 {
			args = []string{"--rate", "0", "--beats", "60", "--faults", "none", "--dlq-max-msgs", "1"}
		}
		p := start(t, dir, args...)
		s := p.finish(0, 2*time.Minute)
		if s.Run != run || s.Logged != 60*run-2 {
			t.Fatalf("run %d: summary says run %d, logged %d; want %d logged in all", run, s.Run, s.Logged, 60*run-2)
		}
		if d := deadValues(s); s.Dead.Total() != 2 || s.DLQDropped != 1 || len(s.DeadLettered) != 1 || !slices.Equal(d["logger"], []uint64{41}) {
			t.Fatalf("run %d: dead %+v, DLQ dropped %d, listed %+v; want 33 and 41 dead, 33 dropped", run, s.Dead, s.DLQDropped, s.DeadLettered)
		}
		if !strings.Contains(p.stdout.String(), "the DLQ's limits removed its 1 oldest dead letters") {
			t.Fatalf("run %d: the summary does not say the DLQ dropped a dead letter:\n%s", run, p.stdout.String())
		}
	}
}

// Malformed payloads, and well-formed messages the pipeline did not publish
// (foreign: no matching Nats-Msg-Id), are dead-lettered at once on every
// input, with their origin in the headers; the pipeline moves on.
func TestBadMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "5", "--beats", "0", "--faults", "none", "--queue", "20")
	_, js := p.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := nats.Header{}
	src.Set(protocol.HeaderSourceSequence, "1")
	bad := []struct {
		subj, data, reason string
		h                  nats.Header
	}{
		{protocol.SubjectNumbers, "forty-two", "malformed: number", nil},
		{protocol.SubjectNumbers, "999999", "foreign: number", nil},
		{protocol.SubjectResults, `{"value":3,"kind":"buzz","text":"Buzz"}`, "malformed: result", nil},
		{protocol.SubjectResults, `{"value":3,"kind":"fizz","text":"Fizz"}`, "foreign: result", src},
		{protocol.SubjectBeats, "{", "malformed: beat", nil},
		{protocol.SubjectBeats, `{"run":1,"beat":99999}`, "foreign: beat", nil},
	}
	// The generator keeps NUMBERS full: pause it while the bad numbers go in.
	gen := p.waitPID(protocol.Generator)
	kill(t, gen, syscall.SIGSTOP)
	for _, b := range bad {
		waitFor(t, 5*time.Second, "room in "+b.subj, func() bool {
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: b.subj, Data: []byte(b.data), Header: b.h})
			return err == nil
		})
	}
	kill(t, gen, syscall.SIGCONT)
	stream, err := js.Stream(ctx, protocol.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "6 dead letters", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 6
	})
	for seq := uint64(1); seq <= 6; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(bad, func(b struct {
			subj, data, reason string
			h                  nats.Header
		}) bool {
			return b.subj == m.Header.Get(protocol.HeaderOrigSubject) && b.data == string(m.Data)
		})
		if i < 0 {
			t.Fatalf("dead letter %d: unexpected %q from %q", seq, m.Data, m.Header.Get(protocol.HeaderOrigSubject))
		}
		if r := m.Header.Get(protocol.HeaderReason); !strings.HasPrefix(r, bad[i].reason) {
			t.Errorf("dead letter %q: reason %q, want %s…", m.Data, r, bad[i].reason)
		}
		if m.Header.Get(protocol.HeaderOrigSequence) == "" || m.Header.Get(protocol.HeaderDeliveries) != "1" {
			t.Errorf("dead letter %d headers %v", seq, m.Header)
		}
	}
	s := p.finish(syscall.SIGTERM, time.Minute)
	for _, a := range registry.Default().Names() {
		if s.Restarts[a] != 0 && a != protocol.Generator { // the paused generator may be taken for hung
			t.Errorf("%s restarted %d times: bad input must not crash it", a, s.Restarts[a])
		}
	}
	if s.BeatsSent != s.BeatsTaken {
		t.Errorf("beats sent %d, taken %d: a foreign beat was counted", s.BeatsSent, s.BeatsTaken)
	}
}

// Crashes injected between publish and state save, and between state save
// and ack, in every actor: nothing is lost and nothing counted twice. A beat
// sent twice would make the worker take a 301st number; a result sent or
// applied twice would break the logger's tally.
func TestCrashPointsDoubleNothing(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"after-publish", "after-save"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			plan := fmt.Sprintf("generator:50@%[1]s/once,heartbeat:30@%[1]s/once,worker:20@%[1]s/once,logger:25@%[1]s/once", point)
			p := start(t, "", "--rate", "0", "--beats", "300", "--batch", "16", "--faults", plan)
			s := p.finish(0, 2*time.Minute)
			if s.Logged != 300 || s.Processed != 300 || len(s.DeadLettered) != 0 {
				t.Fatalf("logged %d, processed %d, dead letters %d; want 300, 300, 0", s.Logged, s.Processed, len(s.DeadLettered))
			}
			for _, a := range registry.Default().Names() {
				if s.Restarts[a] != 1 {
					t.Errorf("%s restarted %d times, want 1 (its injected crash)", a, s.Restarts[a])
				}
			}
		})
	}
}

// A hung actor (SIGSTOP) fails its health checks and is replaced.
func TestHungActorIsReplaced(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "5", "--beats", "0", "--faults", "none")
	_, js := p.connect()
	pid := p.waitPID(protocol.Worker)
	waitFor(t, 10*time.Second, "the worker to work", func() bool { _, v := progress(t, js, protocol.Worker); return v > 0 })
	kill(t, pid, syscall.SIGSTOP)
	waitFor(t, 10*time.Second, "a new worker", func() bool { n := p.actorPID(protocol.Worker); return n != 0 && n != pid })
	_, before := progress(t, js, protocol.Worker)
	waitFor(t, 5*time.Second, "the new worker to work", func() bool { _, v := progress(t, js, protocol.Worker); return v > before })
	s := p.finish(syscall.SIGTERM, time.Minute)
	if !strings.HasPrefix(s.LastCause[protocol.Worker], "hang: health check failed") {
		t.Fatalf("worker's last exit %q, want hang: …", s.LastCause[protocol.Worker])
	}
}

// An actor that keeps dying exhausts the restart intensity: the supervisor
// stops the pipeline and exits 1 naming the actor and its last error.
func TestGiveUp(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "0", "--beats", "50", "--faults", "worker:5", "--showstopper", "1000", "--max-restarts", "3")
	if code := p.wait(time.Minute); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := "giving up: worker restarted more than 3 times within 1m0s; last exit: panic: injected fault worker:5 (intentional)"
	if !strings.Contains(p.stderr.String(), want) {
		t.Fatalf("stderr lacks %q", want)
	}
	s := p.summary()
	if !s.OK { // giving up loses nothing either: value 5 is still queued
		t.Fatalf("summary problems: %v", s.Problems)
	}
	if len(actorProcesses()) > 0 {
		for _, pr := range actorProcesses() {
			if pr.PPID == p.cmd.Process.Pid {
				t.Fatalf("actor %s (pid %d) outlived its supervisor", pr.Name, pr.PID)
			}
		}
	}
}

// The server forgets the IDs of consumed messages when it restarts, so a
// republish after a supervisor kill is stored again; the logger must skip it
// by its source sequence. The worker dies right after publishing the result
// for 20 (the logger logs it), then the supervisor is killed and restarted:
// the worker redoes 20 and republishes its result.
func TestSupervisorKillAfterPublish(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// No warm spare: its replacement would publish the outbox again
	// within the server's duplicate window, before the supervisor is
	// killed, and the scenario would not happen.
	p := start(t, dir, "--rate", "20", "--beats", "100", "--faults", "worker:20@after-publish", "--showstopper", "1000", "--max-restarts", "1000", "--standby=false")
	_, js := p.connect()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := js.Stream(ctx, protocol.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	// Logged and acked: only then is r-20 gone from the stream, its ID
	// remembered by nothing the restarted server reads.
	waitFor(t, 30*time.Second, "the result for 20 logged and acked", func() bool {
		_, v := progress(t, js, protocol.Logger)
		info, err := results.Info(ctx)
		return v >= 21 && err == nil && info.State.Msgs == 0
	})
	p.signal(syscall.SIGKILL)
	p.wait(5 * time.Second)

	q := start(t, dir, "--rate", "20", "--beats", "100", "--faults", "none")
	s := q.finish(0, 2*time.Minute)
	if s.Logged != 100 || len(s.DeadLettered) != 0 {
		t.Fatalf("logged %d, dead letters %d; want exactly 100 and none", s.Logged, len(s.DeadLettered))
	}
	if s.Duplicates[protocol.Logger] == 0 {
		t.Fatal("the logger skipped no republished result: the scenario did not happen")
	}
}

// A dead letter moves its consumer's mark past it. Run 1 dead-letters the
// result for 9, the worker's last output; run 2 starts by publishing the
// worker's last outbox again ([r-9]), which the restarted server no longer
// recognises: the logger must not log it.
func TestDeadLetterIsNotTakenLater(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := start(t, dir, "--rate", "50", "--beats", "10", "--faults", "logger:9", "--showstopper", "1")
	if s := p.finish(0, time.Minute); s.Logged != 9 || len(s.DeadLettered) != 1 {
		t.Fatalf("run 1: logged %d, dead letters %+v; want 9 and the result for 9", s.Logged, s.DeadLettered)
	}
	q := start(t, dir, "--rate", "50", "--beats", "10", "--faults", "none")
	s := q.finish(0, time.Minute)
	if s.Logged != 19 || len(s.DeadLettered) != 1 {
		t.Fatalf("run 2: logged %d, dead letters %d; want 19 (0…19 but 9) and 1", s.Logged, len(s.DeadLettered))
	}
}

// A copy of a poison value (a producer's late republish; here published by
// hand with the generator's ID after the server restarted and forgot it)
// is skipped as a copy: faults do not fire on copies, so the value is not
// dead-lettered a second time.
func TestCopyOfPoisonIsSkipped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := start(t, dir, "--rate", "20", "--beats", "10", "--queue", "5", "--faults", "worker:5")
	if s := p.finish(0, time.Minute); len(s.DeadLettered) != 1 {
		t.Fatalf("run 1: dead letters %+v, want 5", s.DeadLettered)
	}
	q := start(t, dir, "--rate", "20", "--beats", "10", "--queue", "5", "--faults", "worker:5")
	_, js := q.connect()
	m := &nats.Msg{Subject: protocol.SubjectNumbers, Data: []byte("5"), Header: nats.Header{}}
	m.Header.Set(protocol.HeaderMsgID, protocol.NumberMsgID(5))
	if ack, err := js.PublishMsg(t.Context(), m); err != nil || ack.Duplicate {
		t.Fatalf("publishing a copy of 5: %+v, %v", ack, err)
	}
	s := q.finish(0, time.Minute)
	if len(s.DeadLettered) != 1 || s.Duplicates[protocol.Worker] < 1 {
		t.Fatalf("run 2: dead letters %+v, worker skipped %d copies; want 5 dead once and the copy skipped", s.DeadLettered, s.Duplicates[protocol.Worker])
	}
}
