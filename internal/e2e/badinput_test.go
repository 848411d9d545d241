package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// runSupervisor runs bin/supervisor to completion and returns its exit code and stderr.
func runSupervisor(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "supervisor"), args...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// Bad flags exit 2 and say what to do; bad surroundings exit 1 with one
// clear line; never a stack trace.
func TestBadInput(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	locked := t.TempDir()
	p := start(t, locked, "--rate", "5", "--beats", "0", "--faults", "none")
	p.connect() // running, so holding its data dir

	dir := t.TempDir()
	common := []string{"--data-dir", dir, "--bin-dir", binDir, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined: -nope"},
		{"negative rate", []string{"--rate", "-5"}, 2, "--rate -5: want 0 (unpaced) or a period in milliseconds"},
		{"rate not a number", []string{"--rate", "fast"}, 2, `invalid value "fast" for flag -rate`},
		{"bad faults", []string{"--faults", "worker:x"}, 2, "want actor:KEY"},
		{"bad log level", []string{"--log-level", "loud"}, 2, "--log-level"},
		{"bad log format", []string{"--log-format", "xml"}, 2, "--log-format"},
		{"zero queue", []string{"--queue", "0"}, 2, "--queue must be at least 1"},
		{"stray argument", []string{"run"}, 2, `unexpected argument "run"`},
		{"missing binaries", append(common, "--bin-dir", t.TempDir()), 1, "not found: run `make build`, or pass --bin-dir"},
		{"port in use", []string{"--data-dir", dir, "--bin-dir", binDir, "--nats-listen", busy.Addr().String()}, 1, "is in use"},
		{"unwritable data dir", []string{"--data-dir", "/proc/robust", "--bin-dir", binDir}, 1, "cannot be created"},
		{"jetstream is a file", []string{"--data-dir", fileStore(t), "--bin-dir", binDir, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))}, 1, "jetstream is a file, not a directory"},
		{"data dir in use", []string{"--data-dir", locked, "--bin-dir", binDir, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))}, 1, "data dir in use by another supervisor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runSupervisor(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Fatalf("stderr has a stack trace:\n%s", stderr)
			}
		})
	}
}

// Running an actor binary by hand explains itself instead of hanging.
func TestActorByHand(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(filepath.Join(binDir, "worker")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "Run bin/supervisor instead") {
		t.Fatalf("err %v, output %q", err, out)
	}
}

// Ctrl-C drains and exits 0 with the summary; a second Ctrl-C stops at once.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	t.Run("once", func(t *testing.T) {
		t.Parallel()
		p := start(t, "", "--rate", "5", "--beats", "0", "--faults", "none")
		p.connect()
		time.Sleep(300 * time.Millisecond) // let some values flow
		p.finish(syscall.SIGINT, time.Minute)
	})
	t.Run("twice", func(t *testing.T) {
		t.Parallel()
		// A drain that cannot finish: the worker dies on value 3 every time.
		p := start(t, "", "--rate", "5", "--beats", "0", "--faults", "worker:3", "--showstopper", "1000", "--max-restarts", "1000", "--drain-timeout", "1m")
		p.connect()
		waitFor(t, 10*time.Second, "a worker restart", func() bool { return strings.Contains(p.stderr.String(), "worker exited") })
		p.signal(syscall.SIGINT)
		waitFor(t, 10*time.Second, "the drain", func() bool { return strings.Contains(p.stderr.String(), "stop requested") })
		p.signal(syscall.SIGINT)
		if code := p.wait(10 * time.Second); code != 130 {
			t.Fatalf("exit %d, want 130", code)
		}
		if s := p.summary(); !s.OK {
			t.Fatalf("an abort must lose nothing either: %v", s.Problems)
		}
		for _, pr := range actorProcesses() {
			if pr.PPID == p.cmd.Process.Pid {
				t.Fatalf("actor %s outlived the abort", pr.Name)
			}
		}
	})
}

// --nats-url runs the pipeline on a server the supervisor did not start.
func TestExternalServer(t *testing.T) {
	t.Parallel()
	ns := natstest.RunJetStream(t)
	code, stderr := runSupervisor(t, "--http", "", "--nats-url", ns.ClientURL(), "--bin-dir", binDir, "--data-dir", t.TempDir(), "--rate", "0", "--beats", "50", "--faults", "none")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	// The pipeline's streams live on the external server.
	_, js, err := natsx.Connect(ns.ClientURL(), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range []string{protocol.StreamNumbers, protocol.StreamBeats, protocol.StreamResults, protocol.StreamDLQ} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s on the external server: %v", name, err)
		}
	}
}

// fileStore is a data dir whose jetstream is a file, not a directory.
func fileStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jetstream"), []byte("not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
