package lifecycle

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// groupRunner is go-plugin's runner for an actor process: it starts cmd
// (in a process group of its own, see Process.Life) and tells started its
// pid at once, before the handshake, so that the reaper knows the group
// from its first instant; Kill ends the whole group.
type groupRunner struct {
	cmd     *exec.Cmd
	stdout  io.ReadCloser
	stderr  io.ReadCloser
	pid     int
	started func(pid int)
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
	return &groupRunner{cmd: cmd, stdout: stdout, stderr: stderr, started: started}, nil
}

func (r *groupRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.pid = r.cmd.Process.Pid
	r.started(r.pid)
	return nil
}

func (r *groupRunner) Wait(context.Context) error { return r.cmd.Wait() }

func (r *groupRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	killGroup(r.pid)
	if err := r.cmd.Process.Kill(); !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *groupRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *groupRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *groupRunner) Name() string          { return r.cmd.Path }
func (r *groupRunner) ID() string            { return strconv.Itoa(r.pid) }

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
// environment for the handshake) into the command to start.
func runnerFunc(build func(spec *exec.Cmd) *exec.Cmd, started func(pid int)) func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error) {
	return func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
		return newGroupRunner(build(spec), started)
	}
}
