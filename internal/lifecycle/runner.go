package lifecycle

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
	"golang.org/x/sys/unix"
)

// pipeGrace is how long after an actor's exit its pipes may stay open (a
// child that left its process group holds them): go-plugin reaps the
// process only once they close, so then they are closed for it.
const pipeGrace = time.Second

// groupRunner is go-plugin's runner for an actor process: it starts cmd
// (in a process group of its own, see Process.Life) and tells started its
// pid at once, before the handshake, so that the reaper knows the group
// from its first instant.
//
// It is the only one that signals the group, and never once the process
// is reaped: pids wrap (at 32768 here), and the number may be another
// actor's group by then. It learns of the exit without reaping (waitid
// with WNOWAIT: a zombie leader keeps its group ID reserved), kills the
// group, and only then lets go-plugin's Wait reap.
type groupRunner struct {
	cmd     *exec.Cmd
	stdout  io.ReadCloser
	stderr  io.ReadCloser
	pid     int
	started func(pid int)

	exited chan struct{}      // closed once the process has ended and its group is killed
	status syscall.WaitStatus // how it ended, once exited is closed (if known)
	known  bool

	mu     sync.Mutex
	gone   bool // the group was killed after the exit: no more signals
	killed bool // the supervisor signalled the group while the process ran
}

var _ runner.Runner = (*groupRunner)(nil)

func newGroupRunner(cmd *exec.Cmd, started func(pid int)) (*groupRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &groupRunner{cmd: cmd, stdout: stdout, stderr: stderr, started: started, exited: make(chan struct{})}, nil
}

func (r *groupRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	pid := r.cmd.Process.Pid
	r.mu.Lock()
	r.pid = pid
	r.mu.Unlock()
	r.started(pid)
	go r.watch(pid)
	return nil
}

// watch waits for the process to end (the kernel wakes it; nothing polls),
// then kills what is left of its group and closes exited.
func (r *groupRunner) watch(pid int) {
	ws, known := waitExit(pid)
	r.mu.Lock()
	r.status, r.known = ws, known
	killGroup(pid)
	r.gone = true
	r.mu.Unlock()
	close(r.exited)
	time.AfterFunc(pipeGrace, func() {
		_ = r.stdout.Close()
		_ = r.stderr.Close()
	})
}

// kill sends SIGKILL to the process group, unless the process has ended
// (its group was killed then).
func (r *groupRunner) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.gone {
		r.killed = r.killed || running(r.pid)
		killGroup(r.pid)
	}
}

// running reports whether the process has not ended yet (it may be a zombie
// waiting to be reaped: then it has ended).
func running(pid int) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == nil && info.Signo == 0 // the kernel fills in SIGCHLD when it has ended
}

// killedByUs reports whether the supervisor signalled the process while it
// ran (a stop, a health check, go-plugin's handshake timeout): if not, a
// signal that ended it came from outside.
func (r *groupRunner) killedByUs() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killed
}

// killStarted is kill for exec's Cancel, which may run before Start has
// recorded the pid.
func (r *groupRunner) killStarted(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.gone {
		r.killed = r.killed || running(pid)
		killGroup(pid)
	}
}

// Wait reaps the process, never before watch has killed the group.
func (r *groupRunner) Wait(context.Context) error {
	<-r.exited
	return r.cmd.Wait()
}

func (r *groupRunner) Kill(context.Context) error {
	r.kill()
	return nil
}

func (r *groupRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *groupRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *groupRunner) Name() string          { return r.cmd.Path }
func (r *groupRunner) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strconv.Itoa(r.pid)
}

func (r *groupRunner) Diagnose(context.Context) string {
	return "the actor did not complete go-plugin's handshake: is " + r.cmd.Path + " an actor binary of this version, run by its supervisor?"
}

func (r *groupRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *groupRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// runnerFunc is ClientConfig.RunnerFunc: build turns go-plugin's spec (its
// environment for the handshake) into the command to start; made is told
// the runner.
func runnerFunc(build func(spec *exec.Cmd) *exec.Cmd, started func(pid int), made func(*groupRunner)) func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error) {
	return func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
		r, err := newGroupRunner(build(spec), started)
		if err == nil {
			made(r)
		}
		return r, err
	}
}
