package lifecycle

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// When the supervisor's pipe ends, the reaper kills every group still
// listed (not one taken off the list) and removes the supervisor's dir.
func TestReap(t *testing.T) {
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	listed, removed := start(), start()
	dir := t.TempDir()
	sub := filepath.Join(dir, "robust-1")
	if err := os.MkdirAll(filepath.Join(sub, "worker"), 0o700); err != nil {
		t.Fatal(err)
	}
	in := strings.NewReader(fmt.Sprintf("+%d\n+%d\n-%d\nnonsense\n+1\n", listed.Process.Pid, removed.Process.Pid, removed.Process.Pid))
	var ready strings.Builder
	if code := Reap(in, &ready, sub); code != 0 || ready.String() != "ready\n" {
		t.Fatalf("Reap = %d, said %q", code, ready.String())
	}
	done := make(chan error, 1)
	go func() { done <- listed.Wait() }()
	select {
	case err := <-done:
		if ws, ok := err.(*exec.ExitError); !ok || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the listed group ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the listed group is still running")
	}
	if err := syscall.Kill(removed.Process.Pid, 0); err != nil {
		t.Fatalf("the group taken off the list was killed: %v", err)
	}
	if _, err := os.Stat(sub); !os.IsNotExist(err) {
		t.Fatalf("the supervisor's dir is still there: %v", err)
	}
}

// waitExit reads how a child ended from waitid without reaping it, as
// reaping would: an exit status, or the signal that killed it.
func TestWaitExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		check  func(syscall.WaitStatus) bool
	}{
		{"exit 0", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 0 }},
		{"exit 66", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 66 }},
		{"kill -9 $$", func(ws syscall.WaitStatus) bool { return ws.Signaled() && ws.Signal() == syscall.SIGKILL }},
		{"exec sleep 60", nil}, // killed below

	} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if tc.check == nil {
			_ = cmd.Process.Kill()
			tc.check = func(ws syscall.WaitStatus) bool { return ws.Signaled() && ws.Signal() == syscall.SIGKILL }
		}
		ws, ok := waitExit(cmd.Process.Pid)
		_ = cmd.Wait() // reaped only now
		reaped, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !tc.check(ws) || ws != reaped {
			t.Errorf("%q: waitid says %#x (known %v), reaping %#x", tc.script, ws, ok, reaped)
		}
	}
}
