package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/supervisor"
)

// The data dir's disk fills while the pipeline runs (a tmpfs, filled to
// the last byte): the supervisor says so (ERROR log, /status, the
// robust_storage_full metric), holds restarts instead of looping, and once
// space is back restarts JetStream (its streams take no write after a
// failed one) and goes on: the run ends with the books balanced, nothing
// acknowledged lost, nothing counted twice.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	mnt := natstest.Tmpfs(t, 96<<20)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + addr
	p := start(t, filepath.Join(mnt, "data"), "--rate", "20", "--beats", "300", "--faults", "none", "--http", addr,
		"--disk-min-free", strconv.Itoa(2<<20), "--dlq-max-bytes", strconv.Itoa(4<<20)) // JetStream reserves a stream's max bytes: 1 GiB does not fit
	waitFor(t, 30*time.Second, "values through the worker", func() bool {
		w, ok := workerReport(t, base)
		return ok && w.Progress >= 20
	})

	filler := natstest.Fill(t, mnt, 0)
	restarts := func() (n uint64) {
		var r supervisor.StatusReport
		waitFor(t, 10*time.Second, "/status", func() bool {
			var ok bool
			r, ok = statusReport(t, base)
			return ok
		})
		for _, a := range r.Actors {
			n += a.Restarts
		}
		return n
	}
	waitFor(t, 10*time.Second, "the full store in /status", func() bool {
		r, ok := statusReport(t, base)
		return ok && r.StorageFull != nil
	})
	before := restarts()
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "\nrobust_storage_full 1\n") {
		t.Errorf("/metrics while full lacks robust_storage_full 1")
	}
	// Held: whatever exits now (writes fail) waits, once per actor at most.
	time.Sleep(8 * time.Second)
	if r, ok := statusReport(t, base); !ok || r.StorageFull == nil {
		t.Fatal("/status no longer says the store is full while it is")
	}
	if n := restarts() - before; n > 4 {
		t.Fatalf("%d restarts in 8 s while the store was full: restarts are not held", n)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the store back in /status", func() bool {
		r, ok := statusReport(t, base)
		return ok && r.StorageFull == nil
	})
	s := p.finish(0, 3*time.Minute)
	log := p.stderr.String()
	for _, want := range []string{"the NATS store is full", "jetstream_restarted=true"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	if s.Logged == 0 {
		t.Fatalf("logged %d of %d generated", s.Logged, s.Generated)
	}
}

// The disk of a NATS server the supervisor does not run (--nats-url) fills
// while the pipeline runs: the supervisor cannot read that disk, but sees
// the store take no writes, says so (ERROR log, /status), holds restarts,
// and waits; once the server's operator has freed space and restarted the
// server, it goes on, and the run ends with the books balanced.
func TestDiskFullExternal(t *testing.T) {
	t.Parallel()
	mnt := natstest.Tmpfs(t, 96<<20)
	cfg := natsx.ServerConfig{StoreDir: filepath.Join(mnt, "nats"), Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	ns, err := natsx.RunServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + addr
	p := start(t, "", "--nats-url", ns.ClientURL(), "--rate", "20", "--beats", "300", "--faults", "none", "--http", addr,
		"--dlq-max-bytes", strconv.Itoa(4<<20)) // JetStream reserves a stream's max bytes: 1 GiB does not fit
	waitFor(t, 30*time.Second, "values through the worker", func() bool {
		w, ok := workerReport(t, base)
		return ok && w.Progress >= 20
	})

	filler := natstest.Fill(t, mnt, 0)
	var full supervisor.StatusReport
	waitFor(t, 20*time.Second, "the store taking no writes in /status", func() bool {
		var ok bool
		full, ok = statusReport(t, base)
		return ok && full.StorageFull != nil
	})
	if why := full.StorageFull.Why; !strings.Contains(why, "took no write") && !strings.Contains(why, "JetStream is off") && !strings.Contains(why, "insufficient") {
		t.Errorf("why the store is full: %q", why)
	}
	restarts := func() (n uint64) {
		r, _ := statusReport(t, base)
		for _, a := range r.Actors {
			n += a.Restarts
		}
		return n
	}
	before := restarts()
	time.Sleep(8 * time.Second)
	if n := restarts() - before; n > 4 {
		t.Fatalf("%d restarts in 8 s while the store took no writes: restarts are not held", n)
	}
	if r, ok := statusReport(t, base); !ok || r.StorageFull == nil {
		t.Fatal("/status no longer says the store takes no writes while it takes none")
	}

	// The server's operator frees space and restarts the server (in this
	// process: restarting only its JetStream races with its API calls, which
	// the race detector would report here).
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	if ns, err = natsx.RunServer(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the store back in /status", func() bool {
		r, ok := statusReport(t, base)
		return ok && r.StorageFull == nil
	})
	s := p.finish(0, 3*time.Minute)
	log := p.stderr.String()
	for _, want := range []string{"the NATS server's store takes no writes", "the NATS server's store takes writes again"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	if s.Logged == 0 {
		t.Fatalf("logged %d of %d generated", s.Logged, s.Generated)
	}
}
