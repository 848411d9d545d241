package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// binDirWith is a bin dir holding the real binaries, with some actors
// replaced by shell scripts.
func binDirWith(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range append([]string{"supervisor"}, registry.Default().Names()...) {
		var err error
		if script, ok := scripts[name]; ok {
			err = os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755)
		} else {
			err = os.Symlink(filepath.Join(binDir, name), filepath.Join(dir, name))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// withArg lists the processes whose command line holds arg.
func withArg(arg string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				var pid int
				fmt.Sscan(e.Name(), &pid)
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// An actor that leaves a child behind (a shell script) neither keeps the
// supervisor from stopping nor outlives it: each actor runs in its own
// process group, and the group is killed with it.
func TestActorLeavesAChild(t *testing.T) {
	t.Parallel()
	const marker = "3011"
	dir := binDirWith(t, map[string]string{
		"worker": fmt.Sprintf("sleep %s &\nexec %s", marker, filepath.Join(binDir, "worker")),
	})
	p := start(t, "", "--bin-dir", dir, "--rate", "10", "--beats", "0", "--faults", "none")
	_, js := p.connect()
	pid := p.waitPID(protocol.Worker)
	waitFor(t, 20*time.Second, "the worker to work", func() bool { _, v := progress(t, js, protocol.Worker); return v > 0 })
	// The worker's child is in its process group (its warm spare, a
	// process of the same wrapper, has one of its own in its own group).
	var children []int
	for _, c := range withArg(marker) {
		if g, err := syscall.Getpgid(c); err == nil && g == pid {
			children = append(children, c)
		}
	}
	if len(children) != 1 {
		t.Fatalf("want the worker's one child, got %v of %v", children, withArg(marker))
	}
	kill(t, pid, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "the killed worker's child gone", func() bool {
		for _, c := range withArg(marker) {
			if c == children[0] {
				return false
			}
		}
		return true
	})
	waitFor(t, 20*time.Second, "a new worker", func() bool { n := p.actorPID(protocol.Worker); return n != 0 && n != pid })
	started := time.Now()
	p.finish(syscall.SIGTERM, 30*time.Second)
	t.Logf("stopped in %s", time.Since(started).Round(time.Millisecond))
	waitFor(t, time.Second, "no child of a worker left", func() bool { return len(withArg(marker)) == 0 })
}

// A binary that never completes the handshake is never taken for a running
// actor: the run exits non-zero and names it, and a stop does not wait
// for its handshake to time out.
func TestActorNeverStarts(t *testing.T) {
	t.Parallel()
	const marker = "3012"
	dir := binDirWith(t, map[string]string{"logger": "exec sleep " + marker})
	started := time.Now()
	code, stderr := runSupervisor(t, "--data-dir", t.TempDir(), "--http", "", "--bin-dir", dir,
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--rate", "10", "--beats", "5", "--drain-timeout", "2s", "--faults", "none")
	took := time.Since(started)
	if code != 1 || !strings.Contains(stderr, "never started: logger") {
		t.Fatalf("exit %d after %s, stderr:\n%s\nwant exit 1 naming the logger", code, took, lastBytes(stderr, 4000))
	}
	if left := withArg(marker); len(left) > 0 {
		t.Fatalf("the never-started logger's processes outlived the supervisor: %v", left)
	}
	t.Logf("exit 1 after %s", took.Round(time.Millisecond))
}

// A SIGKILL from outside is reported as killed, whatever the actor logged
// before: here the worker has dead-lettered a message (and said so at
// ERROR) before it is killed. At faecaf9 this kill was reported as
// "dead-lettering showstopper", cause error.
func TestKillAfterDeadLetterIsKilled(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, "", "--http", addr, "--rate", "10", "--beats", "0", "--faults", "worker:3")
	base := "http://" + addr
	waitFor(t, 60*time.Second, "the worker's dead letter", func() bool {
		a, ok := workerReport(t, base)
		return ok && a.State == "running" && a.Counters["dead_lettered"] == 1
	})
	a, _ := workerReport(t, base)
	if a.Causes["panic"] != 3 {
		t.Fatalf("the worker's causes before the kill: %v, want 3 panics", a.Causes)
	}
	kill(t, a.PID, syscall.SIGKILL)
	waitFor(t, 20*time.Second, "the worker back", func() bool {
		b, ok := workerReport(t, base)
		return ok && b.State == "running" && b.PID != a.PID
	})
	b, _ := workerReport(t, base)
	if b.LastExit != "killed: signal: killed" || b.Causes["killed"] != 1 || b.Causes["error"] != 0 {
		t.Fatalf("after a SIGKILL: last exit %q, causes %v; want killed", b.LastExit, b.Causes)
	}
	s := p.finish(syscall.SIGTERM, time.Minute)
	if s.LastCause[protocol.Worker] != "killed: signal: killed" {
		t.Fatalf("summary's last exit %q", s.LastCause[protocol.Worker])
	}
}

// A crashed actor leaves no go-plugin socket behind, and a run leaves
// nothing in the temp dir.
func TestNoSocketsLeft(t *testing.T) {
	t.Parallel()
	// Short: a unix socket's path must fit in 108 bytes.
	tmp, err := os.MkdirTemp("/tmp", "ns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	p := startEnv(t, []string{"TMPDIR=" + tmp}, "", "--rate", "10", "--beats", "0", "--faults", "none")
	_, js := p.connect()
	for range 3 {
		pid := p.waitPID(protocol.Logger)
		waitFor(t, 20*time.Second, "the logger to work", func() bool { _, v := progress(t, js, protocol.Logger); return v > 0 })
		kill(t, pid, syscall.SIGKILL)
		waitFor(t, 20*time.Second, "a new logger", func() bool { n := p.actorPID(protocol.Logger); return n != 0 && n != pid })
	}
	var socks []string
	_ = filepath.WalkDir(tmp, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type()&os.ModeSocket != 0 {
			socks = append(socks, path)
		}
		return nil
	})
	// At most two per actor, the active process's and its warm spare's
	// (--standby), and no fewer than one per actor but one (one may be
	// between two lives); at faecaf9 each of the three killed loggers
	// left its socket behind.
	if n := len(registry.Default().Names()); len(socks) > 2*n || len(socks) < n-1 {
		t.Errorf("sockets while running: %v, want one or two per running actor", socks)
	}
	p.finish(syscall.SIGTERM, time.Minute)
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("left in the temp dir after the run: %v", ents)
	}
}

// A SIGKILL of the supervisor takes down what its actors started: the
// kernel kills the actors (Pdeathsig), the supervisor's reaper process
// their process groups.
func TestSupervisorKilledLeavesNoChild(t *testing.T) {
	t.Parallel()
	const marker = "3013"
	dir := binDirWith(t, map[string]string{
		"worker": fmt.Sprintf("sleep %s &\nexec %s", marker, filepath.Join(binDir, "worker")),
	})
	p := start(t, "", "--bin-dir", dir, "--rate", "10", "--beats", "0", "--faults", "none")
	p.waitPID(protocol.Worker)
	waitFor(t, 20*time.Second, "the worker's child", func() bool { return len(withArg(marker)) == 1 })
	p.signal(syscall.SIGKILL)
	<-p.done
	died := time.Now()
	waitFor(t, 5*time.Second, "the worker's child gone", func() bool { return len(withArg(marker)) == 0 })
	if took := time.Since(died); took > time.Second {
		t.Fatalf("the worker's child outlived the supervisor by %s, want at most 1s", took)
	} else {
		t.Logf("the worker's child outlived the supervisor by %s", took.Round(time.Millisecond))
	}
	for _, a := range actorProcesses() {
		if a.PPID == 1 || a.PPID == p.cmd.Process.Pid {
			t.Errorf("actor process %+v outlived the supervisor", a)
		}
	}
}

// A child that leaves the actor's process group (setsid) keeps the actor's
// pipes open after the actor dies: the supervisor must still see the exit,
// restart the actor and stop. (Such a child is out of reach by design; the
// test kills it.)
func TestEscapedChildDoesNotHoldTheSupervisor(t *testing.T) {
	t.Parallel()
	const marker = "3014"
	dir := binDirWith(t, map[string]string{
		"worker": fmt.Sprintf("setsid sleep %s &\nexec %s", marker, filepath.Join(binDir, "worker")),
	})
	t.Cleanup(func() {
		for _, pid := range withArg(marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	p := start(t, "", "--bin-dir", dir, "--rate", "10", "--beats", "0", "--faults", "none")
	_, js := p.connect()
	pid := p.waitPID(protocol.Worker)
	waitFor(t, 20*time.Second, "the worker to work", func() bool { _, v := progress(t, js, protocol.Worker); return v > 0 })
	kill(t, pid, syscall.SIGKILL)
	waitFor(t, 20*time.Second, "a new worker", func() bool { n := p.actorPID(protocol.Worker); return n != 0 && n != pid })
	_, before := progress(t, js, protocol.Worker)
	waitFor(t, 20*time.Second, "the new worker to work", func() bool { _, v := progress(t, js, protocol.Worker); return v > before })
	p.finish(syscall.SIGTERM, 30*time.Second)
}
