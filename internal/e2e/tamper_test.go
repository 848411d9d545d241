package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/supervisor"
	"github.com/robust/robust/pkg/protocol"
)

// statusReport reads a supervisor's /status (false while it does not answer).
func statusReport(t *testing.T, base string) (supervisor.StatusReport, bool) {
	_, body := get(t, base+"/status")
	var r supervisor.StatusReport
	return r, json.Unmarshal([]byte(body), &r) == nil
}

// tamperedWithin waits for /status to list want tamperings and returns
// them.
func tamperedWithin(t *testing.T, base string, want int) []events.Tampered {
	t.Helper()
	var got []events.Tampered
	waitFor(t, 10*time.Second, fmt.Sprintf("%d tamperings in /status", want), func() bool {
		r, ok := statusReport(t, base)
		got = r.Tampered
		return ok && len(got) >= want
	})
	return got
}

// An admin purges NUMBERS while values wait there: the supervisor sees it
// within a second (ERROR log, /status, metric), the worker goes on past
// the gap, and the summary counts exactly the purged values as removed,
// names the purge and is not ok. Then the logger's state is deleted while
// it runs: seen at once, and the logger is not started afresh (it would
// log every value again); a deleted stream is refused at start; and
// --start-over begins again.
func TestTampering(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + addr
	p := start(t, dir, "--rate", "20", "--beats", "0", "--queue", "200", "--faults", "none", "--http", addr)
	nc, js := p.connect()
	waitFor(t, 30*time.Second, "values queued in NUMBERS and taken by the worker", func() bool {
		r, ok := statusReport(t, base)
		w, _ := workerReport(t, base)
		return ok && r.Queues[protocol.StreamNumbers] >= 100 && w.Progress >= 5
	})

	purgedAt := time.Now()
	resp, err := nc.Request("$JS.API.STREAM.PURGE."+protocol.StreamNumbers, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Success bool   `json:"success"`
		Purged  uint64 `json:"purged"`
	}
	if err := json.Unmarshal(resp.Data, &pr); err != nil || !pr.Success || pr.Purged == 0 {
		t.Fatalf("purge: %s (%v)", resp.Data, err)
	}
	tam := tamperedWithin(t, base, 1)
	if e := tam[0]; e.Op != events.OpPurged || e.What != protocol.StreamNumbers || e.Messages != pr.Purged || !strings.HasPrefix(e.By, "admin") {
		t.Fatalf("tampering %+v, want NUMBERS purged of %d messages by admin", e, pr.Purged)
	}
	if lag := tam[0].At.Sub(purgedAt); lag > time.Second {
		t.Errorf("the purge was seen %s after it was made, want within a second", lag)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "robust_tampered_total 1\n") {
		t.Error("/metrics does not count the tampering")
	}
	// The worker goes on past the gap (its cursor counts what it jumped).
	_, before := progress(t, js, protocol.Worker)
	waitFor(t, 30*time.Second, "the worker past the purge", func() bool {
		_, now := progress(t, js, protocol.Worker)
		return now >= before+10
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(2 * time.Minute); code != supervisor.ExitFailed {
		t.Fatalf("exit %d after a purge, want %d (the summary is not ok)", code, supervisor.ExitFailed)
	}
	s := p.summary()
	// The purge also took the messages the worker had fetched but not yet
	// acked: it processes those anyway. What it never saw is the gap in
	// the stream sequence its cursor jumped, which it logs: the summary
	// must count exactly that as removed.
	gap := gapLogged(t, p.stderr.String())
	if gap == 0 || gap > pr.Purged || pr.Purged-gap > 256 /* --batch: at most a batch in hand */ {
		t.Fatalf("the worker jumped %d sequences, %d were purged", gap, pr.Purged)
	}
	if s.OK || s.Removed != gap || s.RemovedMsgs[protocol.StreamNumbers] != gap {
		t.Fatalf("summary ok %v, removed %d (%v); want not ok and %d removed from NUMBERS (%d purged); problems %q", s.OK, s.Removed, s.RemovedMsgs, gap, pr.Purged, s.Problems)
	}
	if s.Generated != s.Logged+s.Dead.Total()+s.Queued+s.Removed || s.Counts != s.Expected {
		t.Fatalf("generated %d != logged %d + dead %d + queued %d + removed %d, or counts %+v != expected %+v",
			s.Generated, s.Logged, s.Dead.Total(), s.Queued, s.Removed, s.Counts, s.Expected)
	}
	if len(s.Tampered) != 1 || len(s.Problems) != 2 || !strings.Contains(strings.Join(s.Problems, "\n"), "NUMBERS purged ("+fmt.Sprint(pr.Purged)+" messages) by admin") {
		t.Fatalf("tampered %+v, problems %q: want the purge named", s.Tampered, s.Problems)
	}
	if out := p.stdout.String(); !strings.Contains(out, fmt.Sprintf("+ removed %d", gap)) {
		t.Fatalf("stdout does not count the removed values:\n%s", out)
	}
	if !strings.Contains(p.stderr.String(), "level=ERROR msg=\"the pipeline's data was changed from outside it") {
		t.Fatalf("no ERROR log of the tampering:\n%s", lastBytes(p.stderr.String(), 4000))
	}

	// The logger's state deleted while it runs.
	p = start(t, dir, "--rate", "20", "--beats", "0", "--faults", "none", "--http", addr)
	_, js = p.connect()
	waitFor(t, 30*time.Second, "the logger running", func() bool {
		r, ok := statusReport(t, base)
		for _, a := range r.Actors {
			if a.Name == protocol.Logger {
				return ok && a.State == "running"
			}
		}
		return false
	})
	kv, err := js.KeyValue(context.Background(), protocol.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	deletedAt := time.Now()
	if err := kv.Delete(context.Background(), protocol.Logger); err != nil {
		t.Fatal(err)
	}
	tam = tamperedWithin(t, base, 2)
	if e := tam[1]; e.Op != events.OpKeyDeleted || e.What != "state key "+protocol.Logger || e.At.Sub(deletedAt) > time.Second {
		t.Fatalf("tampering %+v (%s after the delete), want the logger's state deleted, within a second", e, e.At.Sub(deletedAt))
	}
	if code := p.wait(2 * time.Minute); code != supervisor.ExitFailed {
		t.Fatalf("exit %d with the logger's state deleted, want %d", code, supervisor.ExitFailed)
	}
	if e := p.stderr.String(); !strings.Contains(e, "the logger's state (key logger) was deleted (DEL)") || !strings.Contains(e, "--start-over") {
		t.Fatalf("the logger was not refused with the reason:\n%s", lastBytes(e, 4000))
	}

	// Starting over: everything begins again, and balances.
	p = start(t, dir, "--rate", "0", "--beats", "20", "--faults", "none", "--start-over")
	s = p.finish(0, 2*time.Minute)
	if s.Run != 1 || s.Logged == 0 || len(s.Tampered) != 0 || s.Removed != 0 {
		t.Fatalf("after --start-over: run %d, logged %d, tampered %v", s.Run, s.Logged, s.Tampered)
	}

	// RESULTS deleted while the pipeline runs: seen, and the next start
	// is refused before anything starts. (--start-over on a data dir
	// nothing was removed from does nothing: run 2 follows run 1.)
	p = start(t, dir, "--rate", "20", "--beats", "0", "--faults", "none", "--http", addr, "--start-over")
	_, js = p.connect()
	waitFor(t, 30*time.Second, "the supervisor's HTTP API", func() bool { _, ok := statusReport(t, base); return ok })
	if err := js.DeleteStream(context.Background(), protocol.StreamResults); err != nil {
		t.Fatal(err)
	}
	// The run ends at once (the logger has no stream to read): its
	// summary, partial, names the deletion.
	if code := p.wait(2 * time.Minute); code != supervisor.ExitFailed {
		t.Fatalf("exit %d with RESULTS deleted, want %d", code, supervisor.ExitFailed)
	}
	if s := p.summary(); s.OK || s.Run != 2 || len(s.Tampered) != 1 || s.Tampered[0].Op != events.OpStreamDeleted || s.Tampered[0].What != protocol.StreamResults {
		t.Fatalf("summary ok %v, run %d, tampered %+v: want run 2 and RESULTS deleted", s.OK, s.Run, s.Tampered)
	}
	p = start(t, dir, "--rate", "20", "--beats", "10", "--faults", "none")
	if code := p.wait(time.Minute); code != supervisor.ExitFailed || !strings.Contains(p.stderr.String(), "RESULTS is gone") || !strings.Contains(p.stderr.String(), "--start-over") {
		t.Fatalf("exit %d, want %d and RESULTS named:\n%s", code, supervisor.ExitFailed, lastBytes(p.stderr.String(), 4000))
	}
}

// gapLogged sums the stream sequences the worker logged it jumped
// ("messages left the stream before this actor took them", from_seq to
// to_seq).
var (
	fromSeqField = regexp.MustCompile(`\bfrom_seq=(\d+)`)
	toSeqField   = regexp.MustCompile(`\bto_seq=(\d+)`)
)

func gapLogged(t *testing.T, log string) uint64 {
	t.Helper()
	var n uint64
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "messages left the stream before this actor took them") || !strings.Contains(line, "actor=worker") {
			continue
		}
		// The supervisor relays an actor's attributes in no set order.
		f, t1 := fromSeqField.FindStringSubmatch(line), toSeqField.FindStringSubmatch(line)
		if f == nil || t1 == nil {
			t.Fatalf("cannot read the gap in %q", line)
		}
		from, err1 := strconv.ParseUint(f[1], 10, 64)
		to, err2 := strconv.ParseUint(t1[1], 10, 64)
		if err1 != nil || err2 != nil || to < from {
			t.Fatalf("cannot read the gap in %q", line)
		}
		n += to - from + 1
	}
	return n
}
