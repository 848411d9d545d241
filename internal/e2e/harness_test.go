package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/proc"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/internal/supervisor"
	"github.com/robust/robust/pkg/protocol"
)

// binDir holds the supervisor and actor binaries, built once for the package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "robust-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-race", "-o", dir+string(filepath.Separator),
		"github.com/robust/robust/cmd/...", "github.com/robust/robust/internal/e2e/testdata/dlqcount")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	// An actor that races exits at once; the supervisor reports it as the exit cause.
	os.Setenv("GORACE", "halt_on_error=1")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pipeline is one supervisor process.
type pipeline struct {
	t       testing.TB
	dataDir string
	url     string
	cmd     *exec.Cmd
	stdout  syncBuffer
	stderr  syncBuffer
	sumPath string
	done    chan struct{}
	code    int
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := natsx.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// start runs bin/supervisor on dataDir (a new temp dir if empty) with args.
func start(t testing.TB, dataDir string, args ...string) *pipeline {
	t.Helper()
	return startEnv(t, nil, dataDir, args...)
}

// startEnv is start with more environment variables.
func startEnv(t testing.TB, env []string, dataDir string, args ...string) *pipeline {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	port := freePort(t)
	p := &pipeline{t: t, dataDir: dataDir, url: fmt.Sprintf("nats://127.0.0.1:%d", port), done: make(chan struct{})}
	p.sumPath = filepath.Join(t.TempDir(), "summary.json")
	all := append([]string{
		"--http", "", // parallel supervisors: tests that want it pass their own
		"--data-dir", dataDir,
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--bin-dir", binDir,
		"--summary", p.sumPath,
	}, args...)
	p.cmd = exec.Command(filepath.Join(binDir, "supervisor"), all...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			if t.Failed() {
				// Where it stood: a goroutine dump on its stderr.
				_ = p.cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-p.done:
				case <-time.After(3 * time.Second):
				}
			}
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			if dir := os.Getenv("ROBUST_E2E_LOGS"); dir != "" {
				name := filepath.Join(dir, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), p.cmd.Process.Pid))
				_ = os.WriteFile(name, []byte(p.stderr.String()), 0o644)
			}
			logs, dump := splitDump(p.stderr.String())
			t.Logf("supervisor stdout:\n%s\nsupervisor stderr (last 24k):\n%s\n%s", p.stdout.String(), lastBytes(logs, 24<<10), dump)
		}
	})
	return p
}

// splitDump splits a process's stderr into its log and, if it was sent
// SIGQUIT, the goroutines of the dump that run robust's own code (the
// embedded server's hundreds would push them out of a CI log).
func splitDump(stderr string) (logs, dump string) {
	i := strings.Index(stderr, "SIGQUIT: quit")
	if i < 0 {
		return stderr, ""
	}
	logs = stderr[:i]
	var kept []string
	for _, g := range strings.Split(stderr[i:], "\n\n") {
		if strings.HasPrefix(g, "goroutine ") && strings.Contains(g, "robust/robust/") {
			kept = append(kept, g)
		}
	}
	return logs, "goroutines running robust's code at SIGQUIT:\n" + strings.Join(kept, "\n\n")
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// wait waits for the supervisor to exit and returns its exit code.
func (p *pipeline) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		// A goroutine dump says where it is stuck (in the stderr logged
		// when the test fails).
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		p.t.Fatalf("supervisor still running after %s (goroutines dumped to its stderr)", timeout)
		return -1
	}
}

func (p *pipeline) signal(sig syscall.Signal) {
	p.t.Helper()
	kill(p.t, p.cmd.Process.Pid, sig)
}

func (p *pipeline) summary() supervisor.Summary {
	p.t.Helper()
	b, err := os.ReadFile(p.sumPath)
	if err != nil {
		p.t.Fatalf("summary: %v", err)
	}
	var s supervisor.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		p.t.Fatalf("summary: %v", err)
	}
	return s
}

// connect returns a JetStream context on the pipeline's server, once it answers.
func (p *pipeline) connect() (*nats.Conn, jetstream.JetStream) {
	p.t.Helper()
	var nc *nats.Conn
	var js jetstream.JetStream
	waitFor(p.t, 20*time.Second, "the NATS server to answer", func() bool {
		if nc == nil {
			var err error
			if nc, js, err = auth.Connect(p.url, p.dataDir, auth.Admin, "e2e"); err != nil {
				nc = nil
				return false
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.KeyValue(ctx, protocol.StateBucket)
		return err == nil
	})
	p.t.Cleanup(nc.Close)
	return nc, js
}

// counters reads an actor's persisted start count and counters.
func counters[D any](t testing.TB, js jetstream.JetStream, name string, f func(*D) uint64) (starts, value uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := actor.LoadState[D](ctx, stateBucket(ctx, t, js), name)
	if err != nil {
		t.Fatal(err)
	}
	return st.Starts, f(&st.Data)
}

// stateBucket opens the state bucket.
func stateBucket(ctx context.Context, t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(ctx, protocol.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// progress reads the counter that grows while an actor works.
func progress(t testing.TB, js jetstream.JetStream, name string) (starts, value uint64) {
	switch name {
	case protocol.Generator:
		return counters(t, js, name, func(d *actors.GeneratorState) uint64 { return d.Next })
	case protocol.Heartbeat:
		return counters(t, js, name, func(d *actors.HeartbeatState) uint64 { return d.Total })
	case protocol.Worker:
		return counters(t, js, name, func(d *actors.WorkerState) uint64 { return d.Processed })
	default:
		return counters(t, js, name, func(d *actors.LoggerState) uint64 { return d.Tally.Total() })
	}
}

// kill sends sig to one process; it refuses pid 0 and below, which would
// signal the test's own process group.
func kill(t testing.TB, pid int, sig syscall.Signal) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("refusing to send %v to pid %d", sig, pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%v %d: %v", sig, pid, err)
	}
}

// waitPID waits for the supervisor's child called name and returns its pid.
func (p *pipeline) waitPID(name string) int {
	p.t.Helper()
	var pid int
	waitFor(p.t, 20*time.Second, name+" to run", func() bool { pid = p.actorPID(name); return pid != 0 })
	return pid
}

// actorPID is the pid of the supervisor's child called name, or 0.
func (p *pipeline) actorPID(name string) int { return proc.Child(p.cmd.Process.Pid, name) }

// actorProcesses lists live actor processes started from binDir.
func actorProcesses() []proc.Process {
	var out []proc.Process
	for _, p := range proc.List() {
		for _, a := range registry.Default().Names() {
			if p.Exe == filepath.Join(binDir, a) {
				out = append(out, p)
			}
		}
	}
	return out
}

// waitFor polls f until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish sends sig (none if 0), expects the supervisor to exit 0 within
// timeout with a good summary, and returns the summary.
func (p *pipeline) finish(sig syscall.Signal, timeout time.Duration) supervisor.Summary {
	p.t.Helper()
	if sig != 0 {
		p.signal(sig)
	}
	if code := p.wait(timeout); code != 0 {
		p.t.Fatalf("supervisor exit %d, want 0", code)
	}
	s := p.summary()
	checkSummary(p.t, p, s)
	return s
}

// checkSummary asserts what every good run shows.
func checkSummary(t testing.TB, p *pipeline, s supervisor.Summary) {
	t.Helper()
	if !s.OK || len(s.Problems) > 0 {
		t.Fatalf("summary not ok: %v", s.Problems)
	}
	values := uint64(0)
	for _, d := range s.DeadLettered {
		if d.Value != nil {
			values++
		}
	}
	if s.DLQDropped == 0 && values != s.Dead.Total() {
		t.Fatalf("the DLQ holds %d dead values, the actors' tallies %d", values, s.Dead.Total())
	}
	if s.Generated != s.Logged+s.Dead.Total()+s.Queued {
		t.Fatalf("generated %d != logged %d + dead-lettered %d + queued %d", s.Generated, s.Logged, s.Dead.Total(), s.Queued)
	}
	if s.Counts != s.Expected {
		t.Fatalf("logger tally %+v, expected %+v", s.Counts, s.Expected)
	}
	if !strings.Contains(p.stdout.String(), "no loss, no duplicates") {
		t.Fatalf("stdout lacks the verdict:\n%s", p.stdout.String())
	}
	if strings.Contains(p.stderr.String(), "data race") {
		t.Fatal("an actor reported a data race")
	}
}
