package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/robust/robust/pkg/protocol"
)

// child is one running actor process.
type child struct {
	name    string
	client  *plugin.Client
	cmd     *exec.Cmd
	actor   protocol.Actor
	stderr  *tail
	started time.Time
}

// startTimeout bounds an actor's Start: connecting and loading its state.
const startTimeout = 15 * time.Second

// launch starts an actor binary through go-plugin.
func (s *Supervisor) launch(name string) (*child, error) {
	path := s.binPath(name)
	cmd := exec.Command(path)
	cmd.Env = os.Environ()
	if os.Getenv("GOMAXPROCS") == "" {
		// An actor is one loop: a single P leaves the cores to the server
		// and the other actors instead of idle GC workers.
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	if os.Getenv("GOGC") == "" {
		// An actor's live heap is a few MiB and it allocates per message:
		// collecting at 3x the live heap instead of 2x cut the worker's GC
		// CPU, with peak RSS still under 25 MiB (measured with make bench).
		cmd.Env = append(cmd.Env, "GOGC=200")
	}
	// If the supervisor dies, even by SIGKILL, the kernel kills its actors.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t := &tail{}
	c := &child{name: name, cmd: cmd, stderr: t, started: time.Now()}
	c.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  protocol.Handshake,
		Plugins:          protocol.PluginMap(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolNetRPC},
		Logger:           newPluginLogger(s.cfg.Log.With("actor", name)),
		Stderr:           t,
		StartTimeout:     10 * time.Second,
	})
	rpc, err := c.client.Client()
	if err != nil {
		return nil, c.fail(fmt.Errorf("start %s: %w", path, err))
	}
	raw, err := rpc.Dispense(protocol.PluginName)
	if err != nil {
		return nil, c.fail(fmt.Errorf("dispense %s: %w", name, err))
	}
	c.actor = raw.(protocol.Actor)
	return c, nil
}

// begin hands the actor its config; it fails if the actor does not start
// within timeout.
func (c *child) begin(cfg protocol.ActorConfig, timeout time.Duration) error {
	done := make(chan error, 1) // the call returns once the process is killed
	go func() { done <- c.actor.Start(cfg) }()
	select {
	case err := <-done:
		if err != nil {
			return c.fail(fmt.Errorf("%s did not start: %w", c.name, err))
		}
		return nil
	case <-time.After(timeout):
		return c.fail(fmt.Errorf("%s did not start within %s", c.name, timeout))
	}
}

// fail kills the process and adds what it said about its end to err.
func (c *child) fail(err error) error {
	c.kill()
	if cause := c.stderr.cause(); cause != "" {
		return fmt.Errorf("%w (%s)", err, cause)
	}
	return err
}

func (c *child) pid() int {
	if c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// status asks the actor for its status, giving up after timeout: an actor
// that does not answer is hung.
func (c *child) status(timeout time.Duration) (protocol.Status, error) {
	type res struct {
		st  protocol.Status
		err error
	}
	ch := make(chan res, 1) // the call returns once the process is killed
	go func() {
		st, err := c.actor.Status()
		ch <- res{st, err}
	}()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-time.After(timeout):
		return protocol.Status{}, fmt.Errorf("no answer to a health check within %s", timeout)
	}
}

// exitCause explains why the process ended: the panic or error it reported,
// else how it ended.
func (c *child) exitCause() string {
	if cause := c.stderr.cause(); cause != "" {
		return cause
	}
	if ps := c.cmd.ProcessState; ps != nil {
		return ps.String()
	}
	return "exited"
}

// stop asks the actor to finish its batch and stop, then ends the process.
func (c *child) stop(timeout time.Duration) {
	done := make(chan error, 1)
	go func() { done <- c.actor.Stop() }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	c.client.Kill()
}

// kill ends the process at once.
func (c *child) kill() {
	if p := c.cmd.Process; p != nil {
		_ = p.Kill()
	}
	c.client.Kill()
}

// tail keeps what an actor wrote to stderr that explains its exit: the
// first panic line, or the last error it logged.
type tail struct {
	mu    sync.Mutex
	buf   []byte
	panic string
	err   string
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		t.line(string(t.buf[:i]))
		t.buf = t.buf[i+1:]
	}
	if len(t.buf) > 64<<10 {
		t.buf = t.buf[:0]
	}
	return len(p), nil
}

func (t *tail) line(l string) {
	switch {
	case strings.HasPrefix(l, "WARNING: DATA RACE"): // an actor built with -race
		if t.panic == "" {
			t.panic = "data race detected (build with -race; run with --log-level debug for the report)"
		}
	case strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: "):
		if t.panic == "" {
			t.panic = strings.TrimSuffix(strings.TrimSuffix(l, " [recovered, repanicked]"), " [recovered]")
		}
	case strings.HasPrefix(l, "{"):
		var e struct {
			Level   string `json:"@level"`
			Message string `json:"@message"`
			Error   string `json:"error"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Level == "error" {
			t.err = e.Message
			if e.Error != "" {
				t.err += ": " + e.Error
			}
		}
	}
}

func (t *tail) cause() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.panic != "" {
		return t.panic
	}
	return t.err
}

var errStopped = errors.New("stopped")

// watch blocks until the process exits (its cause), hangs (killed; the
// cause says so) or ctx is done (errStopped). onStatus receives every
// health check's answer.
func (c *child) watch(ctx context.Context, every, timeout time.Duration, onStatus func(protocol.Status)) (string, error) {
	exit := time.NewTicker(20 * time.Millisecond)
	defer exit.Stop()
	ping := time.NewTicker(every)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", errStopped
		case <-exit.C:
			if c.client.Exited() {
				c.client.Kill() // reap and wait for the stderr reader
				return c.exitCause(), nil
			}
		case <-ping.C:
			st, err := c.status(timeout)
			if err != nil {
				// A process that is dying (a panic) breaks the RPC line
				// before go-plugin sees it exit: give it a moment to be
				// reported with its real cause.
				for range 25 {
					if c.client.Exited() {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if c.client.Exited() {
				c.client.Kill()
				return c.exitCause(), nil
			}
			if err != nil {
				c.kill()
				return "hung: " + err.Error(), nil
			}
			onStatus(st)
		}
	}
}
