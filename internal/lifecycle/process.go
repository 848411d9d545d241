package lifecycle

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/pkg/protocol"
)

// Process runs actor processes, one life per call of Life. Zero durations
// get defaults:
//
//	HandshakeTimeout: 10s  go-plugin's handshake
//	StartTimeout:     15s  the Start call: connecting, loading state
//	StopTimeout:      10s  a graceful Stop: the batch in hand finishes
//	PingEvery:        250ms, PingTimeout: 2s
type Process struct {
	Name string
	Path string // the executable
	// Checksum is the executable's SHA-256 when the supervisor started:
	// a binary changed since is refused at its next spawn (go-plugin's
	// SecureConfig). nil: not checked.
	Checksum []byte
	verifyMu sync.Mutex           // a spare's launch and a life may verify at once
	verified fileStamp            // the executable as last verified against Checksum
	Env      []string             // added to the supervisor's environment
	Config   protocol.ActorConfig // handed to the actor's Start
	Log      *slog.Logger         // the actor's own log lines, and go-plugin's
	// TempDir holds a directory per life (TempDir/Name) for go-plugin's
	// socket and the crash channel, removed when the life ends. "": the
	// system's.
	TempDir string
	Emit    func(events.Event) // Started and Health; nil: dropped
	Live    *Live              // where a running process can be found to kill; may be nil
	Reaper  *Reaper            // kills the process group should the supervisor die; may be nil
	// Abort, once closed, makes a stop kill at once instead of asking the
	// actor to finish its batch.
	Abort <-chan struct{}

	HandshakeTimeout, StartTimeout, StopTimeout time.Duration
	PingEvery, PingTimeout                      time.Duration

	// Standby keeps a warm spare: a second process of the actor,
	// launched, connected and waiting (protocol.Actor's Prepare), which
	// the next life starts instead of launching one. It takes over only
	// once the active process has ended (its exit is an event), and it
	// claims the state, which fences any older copy, as every start does.
	Standby bool
	spares  spareSlot
	bg      sync.WaitGroup // releases of ended processes under way
}

func (p *Process) defaults() {
	if p.HandshakeTimeout <= 0 {
		p.HandshakeTimeout = 10 * time.Second
	}
	if p.StartTimeout <= 0 {
		p.StartTimeout = 15 * time.Second
	}
	if p.StopTimeout <= 0 {
		p.StopTimeout = 10 * time.Second
	}
	if p.PingEvery <= 0 {
		p.PingEvery = 250 * time.Millisecond
	}
	if p.PingTimeout <= 0 {
		p.PingTimeout = 2 * time.Second
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	if p.Emit == nil {
		p.Emit = func(events.Event) {}
	}
}

// ErrBinaryChanged: an actor's executable is not the one the supervisor
// started with.
var ErrBinaryChanged = errors.New("actor binary changed since the supervisor started")

// verify checks the executable against Checksum with go-plugin's
// SecureConfig. (go-plugin checks it itself only for a ClientConfig.Cmd;
// ours is started by our runner.) Hashing a 20 MB binary took some 60 ms
// of each respawn here, so a file whose identity (device, inode, size,
// modification and change times) is the one last verified is not hashed
// again: any write to it, or a new file in its place, changes one of them
// (the change time cannot be set back), and is hashed.
func (p *Process) verify() error {
	p.verifyMu.Lock()
	defer p.verifyMu.Unlock()
	st, err := stampOf(p.Path)
	if err == nil && st != (fileStamp{}) && st == p.verified {
		return nil
	}
	sc := &plugin.SecureConfig{Checksum: p.Checksum, Hash: sha256.New()}
	ok, err := sc.Check(p.Path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBinaryChanged, p.Path, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s no longer has SHA-256 %x; refused: restart the supervisor to run the new binary", ErrBinaryChanged, p.Path, p.Checksum)
	}
	p.verified = st
	return nil
}

// fileStamp is a file's identity as stat sees it.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func stampOf(path string) (fileStamp, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileStamp{}, err
	}
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, nil
}

// child is one running process.
type child struct {
	name   string
	pid    int
	run    *groupRunner  // signals its group; exited closes when it has ended
	exited chan struct{} // run.exited

	mu     sync.Mutex
	reason *events.Exit // set when the supervisor ends it on purpose
}

// end sends SIGKILL to the child's whole process group, recording why
// first (nil: a stop, no cause). Once the child has ended it only records.
func (c *child) end(why *events.Exit) {
	c.mu.Lock()
	if c.reason == nil {
		c.reason = why
	}
	c.mu.Unlock()
	c.run.kill()
}

func (c *child) why() *events.Exit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// killGroup kills every process of the group led by pid: the actor and
// anything it started.
func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// launched is an actor process that is up: handshake done, its plugin
// dispensed; a spare has also been prepared.
type launched struct {
	c         *child
	client    *plugin.Client
	cmd       *exec.Cmd
	act       protocol.Actor
	dir       string   // its own: go-plugin's socket and the crash channel
	crash     *os.File // the crash channel's file
	crashPath string
	cancel    context.CancelFunc // the launch's context: kills the process
}

// release ends the process (its whole group) if it still runs, reaps it
// and removes what it left.
func (l *launched) release(p *Process) {
	l.c.end(nil)
	l.client.Kill()
	l.cancel()
	p.Reaper.Remove(l.c.pid)
	_ = l.crash.Close()
	_ = os.RemoveAll(l.dir)
}

// launch starts a process of the actor and completes go-plugin's
// handshake; a spare (started under protocol.SpareName) is then
// prepared. It fails with an *ExitError of cause start-failed, or the
// cause the process ended with.
func (p *Process) launch(ctx context.Context, spare bool) (*launched, error) {
	startFailed := func(err error) error {
		return &ExitError{Exit: events.Exit{Cause: events.CauseStartFailed, Detail: err.Error()}}
	}
	// A directory of its own (a unix socket's path must fit in 108 bytes:
	// the name stays short).
	dir, err := os.MkdirTemp(p.TempDir, p.Name+"-")
	if err != nil {
		return nil, startFailed(err)
	}
	crashPath := filepath.Join(dir, "crash.json")
	crash, err := os.Create(crashPath)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, startFailed(err)
	}
	cleanup := func() {
		_ = crash.Close()
		_ = os.RemoveAll(dir)
	}
	if p.Checksum != nil {
		if err := p.verify(); err != nil {
			cleanup()
			return nil, startFailed(err)
		}
	}
	// A spare runs the same executable under another name: the kernel
	// names a process after the file it was started from, so a spare is
	// started from a link named SpareName in its own directory, and is
	// never taken for the active process (pgrep -x worker), not even for
	// an instant.
	path := p.Path
	if spare {
		path = filepath.Join(dir, protocol.SpareName(p.Name))
		abs, err := filepath.Abs(p.Path)
		if err == nil {
			err = os.Symlink(abs, path)
		}
		if err != nil {
			cleanup()
			return nil, startFailed(err)
		}
	}
	// Until the handshake is done, a stop kills the process: a binary that
	// never answers must not hold up the supervisor's stop.
	// (Cancelling it kills the process: that is release's, once it has
	// ended, or a failed launch's.)
	handshake, cancelHandshake := context.WithCancel(context.Background())
	stopHandshake := context.AfterFunc(ctx, cancelHandshake)
	defer stopHandshake()
	// go-plugin hands our runner its command line (its environment: the
	// handshake's cookie and settings); the runner starts ours from it.
	var cmd *exec.Cmd
	var gr *groupRunner
	build := func(spec *exec.Cmd) *exec.Cmd {
		cmd = exec.CommandContext(handshake, path)
		cmd.Cancel = func() error { gr.killStarted(cmd.Process.Pid); return nil }
		cmd.Env = append(append(spec.Env, p.Env...), protocol.EnvCrashFD+"=3")
		cmd.ExtraFiles = []*os.File{crash} // fd 3
		// Its own process group, so that a stop or a kill reaches whatever
		// it started; and if the supervisor dies, even by SIGKILL, the
		// kernel kills the actor (and the reaper its group).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  protocol.Handshake,
		Plugins:          protocol.PluginMap(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolNetRPC},
		// The RPC line (the actor's credentials cross it at Start) is
		// mutual TLS with certificates made for this life.
		AutoMTLS:     true,
		Logger:       NewPluginLogger(p.Log),
		Stderr:       io.Discard, // its lines reach Logger, parsed
		StartTimeout: p.HandshakeTimeout,
		// go-plugin's socket dir goes inside ours.
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: dir},
		RunnerFunc:       runnerFunc(build, p.Reaper.Add, func(r *groupRunner) { gr = r }),
	})
	rpc, err := client.Client()
	stopHandshake() // from here on a stop asks the actor to finish its batch (p.stop)
	if gr == nil || cmd.Process == nil {
		client.Kill()
		cancelHandshake()
		cleanup()
		return nil, startFailed(err)
	}
	l := &launched{
		c:      &child{name: p.Name, pid: cmd.Process.Pid, run: gr, exited: gr.exited},
		client: client, cmd: cmd, dir: dir, crash: crash, crashPath: crashPath, cancel: cancelHandshake,
	}
	fail := func(err error) error {
		exit := p.ended(l, &events.Exit{Cause: events.CauseStartFailed, Detail: err.Error()})
		l.release(p)
		return exit
	}
	if err != nil {
		return nil, fail(fmt.Errorf("handshake: %w", err))
	}
	raw, err := rpc.Dispense(protocol.PluginName)
	if err != nil {
		return nil, fail(fmt.Errorf("dispense: %w", err))
	}
	l.act = raw.(protocol.Actor)
	if spare {
		_, err := call(p.StartTimeout, l.c.exited, ctx.Done(), func() (struct{}, error) { return struct{}{}, l.act.Prepare(p.Config) })
		if err != nil {
			return nil, fail(fmt.Errorf("prepare: %w", err))
		}
	}
	return l, nil
}

// Life runs one life of the actor: launch (or take the warm spare), Start,
// then health checks until the process exits (an *ExitError), the checks
// fail (it is killed: cause hang) or ctx is done (it is stopped; nil).
// With Standby, a new spare is launched once the life has started.
func (p *Process) Life(ctx context.Context) error {
	p.defaults()
	l := p.spares.take(p)
	if l != nil && p.Checksum != nil {
		// A spare is a spawn too: the binary changed since it was
		// launched is refused now, as a new launch would be.
		if err := p.verify(); err != nil {
			l.release(p)
			return &ExitError{Exit: events.Exit{Cause: events.CauseStartFailed, Detail: err.Error()}}
		}
	}
	if l == nil {
		var err error
		if l, err = p.launch(ctx, false); err != nil {
			return err
		}
	}
	// The process is reaped, and its group ended, whatever happens below:
	// once it has ended by itself, in the background (go-plugin's reaping
	// and cleanup take a few milliseconds, up to tens: the next life need
	// not wait); Close waits for that.
	ended := false
	defer func() {
		if !ended {
			l.release(p)
			return
		}
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			l.release(p)
		}()
	}()
	c := l.c
	if p.Live != nil {
		p.Live.add(c)
		defer p.Live.remove(c)
	}
	if err := p.start(ctx, c, l.act); err != nil {
		return p.ended(l, &events.Exit{Cause: events.CauseStartFailed, Detail: err.Error()})
	}
	p.Emit(events.Started{Base: events.Base{At: time.Now(), Actor: p.Name}, PID: c.pid})
	if p.Standby {
		p.spares.fill(ctx, p)
	}

	ping := time.NewTicker(p.PingEvery)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			p.stop(c, l.act)
			return nil
		case <-c.exited:
			ended = true
			return p.ended(l, nil)
		case <-ping.C:
			st, err := call(p.PingTimeout, c.exited, nil, l.act.Status)
			if err == nil {
				p.Emit(events.Health{Base: events.Base{At: time.Now(), Actor: p.Name}, Counters: st.Counters, Done: st.Done})
				continue
			}
			// A dying process (a panic) breaks the RPC line before it is
			// gone: give it a moment to be reported with its own cause.
			select {
			case <-c.exited:
			case <-time.After(500 * time.Millisecond):
			}
			var hang *events.Exit
			select {
			case <-c.exited:
			default:
				hang = &events.Exit{Cause: events.CauseHang, Detail: "health check failed: " + err.Error()}
			}
			return p.ended(l, hang)
		}
	}
}

// Close ends the warm spare, if any, and waits for a launch of one under
// way: the keeper calls it when it stops keeping the actor.
func (p *Process) Close() {
	p.spares.close(p)
	p.bg.Wait()
}

// start calls the actor's Start, bounded by StartTimeout and by its exit.
func (p *Process) start(ctx context.Context, c *child, act protocol.Actor) error {
	_, err := call(p.StartTimeout, c.exited, ctx.Done(), func() (struct{}, error) { return struct{}{}, act.Start(p.Config) })
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("did not start within %s", p.StartTimeout)
	}
	return err
}

// stop asks the actor to finish its batch and stop, bounded by
// StopTimeout; on Abort it is killed at once.
func (p *Process) stop(c *child, act protocol.Actor) {
	select {
	case <-p.Abort:
		c.end(nil)
		return
	default:
	}
	done := make(chan struct{})
	go func() { // returns once the process is killed, at the latest
		_ = act.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-c.exited:
	case <-p.Abort:
	case <-time.After(p.StopTimeout):
		p.Log.Warn("did not stop within the stop timeout; killing it", "timeout", p.StopTimeout)
	}
	c.end(nil)
}

// ended waits for the process to be reaped and says how it ended: why
// (when the supervisor ended it, or it failed to start), else the panic or
// error it reported on its crash channel, else its exit status.
//
// It reads the exit status as the kernel reports the exit (waitid, not
// yet reaped), so that it need not wait for go-plugin to reap the process
// and close its client: release does that, and the next life (a warm
// spare) need not wait for it.
func (p *Process) ended(l *launched, why *events.Exit) error {
	c := l.c
	c.end(why) // the group: whatever the actor left behind goes with it
	ws, known := l.status()
	report := readCrashReport(l.crashPath, p.Log)
	why = c.why()
	if why != nil && why.Cause == events.CauseStartFailed && !c.run.killedByUs() {
		// Killed from outside while it started: that is a kill, not a
		// binary that cannot start (which the keeper gives up on).
		if known && ws.Signaled() {
			why = &events.Exit{Cause: events.CauseKilled, Detail: "signal: " + ws.Signal().String() + " (while it started)"}
		}
	}
	return &ExitError{Exit: classify(why, report, ws, known), PID: c.pid}
}

// exitWait bounds how long ended waits for a process it has sent SIGKILL
// to; past it, go-plugin is asked to reap it.
const exitWait = 5 * time.Second

// status is how the process ended, once it has: from waitid when the
// process ended, else (after exitWait) from reaping it.
func (l *launched) status() (syscall.WaitStatus, bool) {
	select {
	case <-l.c.exited:
		if l.c.run.known {
			return l.c.run.status, true
		}
	case <-time.After(exitWait):
	}
	// go-plugin waits for the process in a goroutine that Kill waits for:
	// cmd.ProcessState is set, and safe to read, once Kill returns.
	l.client.Kill()
	if l.cmd.ProcessState == nil {
		return 0, false
	}
	ws, ok := l.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws, ok
}

// readCrashReport reads what the actor wrote to its crash channel, if
// anything: no more than protocol.MaxCrashReport bytes of it.
func readCrashReport(path string, log *slog.Logger) protocol.CrashReport {
	f, err := os.Open(path)
	if err != nil {
		return protocol.CrashReport{}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, protocol.MaxCrashReport+1))
	if err != nil || len(b) == 0 {
		return protocol.CrashReport{}
	}
	report, err := protocol.DecodeCrashReport(b)
	if err != nil {
		log.Warn("its crash report cannot be read", "error", err)
	}
	return report
}

// classify turns how a process ended into an Exit.
func classify(why *events.Exit, report protocol.CrashReport, ws syscall.WaitStatus, known bool) events.Exit {
	switch {
	case why != nil && why.Cause != events.CauseStartFailed:
		return *why
	case report.Kind == protocol.CrashPanic:
		return events.Exit{Cause: events.CausePanic, Detail: report.Message}
	case why != nil: // did not start; a panic while starting says more
		if report.Kind == protocol.CrashError {
			why.Detail += ": " + report.Message
		}
		return *why
	case report.Kind == protocol.CrashError:
		return events.Exit{Cause: events.CauseError, Detail: report.Message}
	case !known:
		return events.Exit{Cause: events.CauseExited, Detail: "exit status unknown"}
	}
	switch {
	case ws.Signaled():
		return events.Exit{Cause: events.CauseKilled, Detail: "signal: " + ws.Signal().String()}
	case ws.ExitStatus() == 0:
		return events.Exit{Cause: events.CauseExited, Detail: "exit status 0"}
	case ws.ExitStatus() == 66:
		return events.Exit{Cause: events.CauseError, Detail: "exit status 66: the race detector found a data race (GORACE exitcode; run with --log-level debug for the report)"}
	}
	return events.Exit{Cause: events.CauseError, Detail: "exit status " + strconv.Itoa(ws.ExitStatus())}
}

var errTimeout = errors.New("timed out")

// call runs f, giving up after timeout, when the process exits, or when
// stop is closed: an RPC to a stopped (SIGSTOP) process never returns by
// itself.
func call[T any](timeout time.Duration, exited, stop <-chan struct{}, f func() (T, error)) (T, error) {
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := f()
		ch <- res{v, err}
	}()
	var zero T
	select {
	case r := <-ch:
		return r.v, r.err
	case <-exited:
		return zero, errors.New("the process exited")
	case <-stop:
		return zero, errors.New("stopped while it started")
	case <-time.After(timeout):
		return zero, fmt.Errorf("%w: no answer within %s", errTimeout, timeout)
	}
}

// waitExit blocks until the process pid has ended, without reaping it:
// go-plugin reaps it. The kernel wakes us; nothing polls. It returns how
// the process ended (ok false: reaped already, unknown).
func waitExit(pid int) (ws syscall.WaitStatus, ok bool) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, false
		}
		return waitStatus(&info)
	}
}

// Live is the set of running actor processes, by name.
type Live struct {
	mu    sync.Mutex
	procs map[string]*child
}

func (l *Live) add(c *child) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.procs == nil {
		l.procs = map[string]*child{}
	}
	l.procs[c.name] = c
}

func (l *Live) remove(c *child) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.procs[c.name] == c {
		delete(l.procs, c.name)
	}
}

// ErrNotRunning: the actor has no running process right now.
var ErrNotRunning = errors.New("not running right now")

// Kill sends SIGKILL to the named actor's process group on an operator's
// request; the exit is reported as killed.
func (l *Live) Kill(name string) (pid int, err error) {
	l.mu.Lock()
	c := l.procs[name]
	l.mu.Unlock()
	if c == nil {
		return 0, fmt.Errorf("%s is %w", name, ErrNotRunning)
	}
	c.end(&events.Exit{Cause: events.CauseKilled, Detail: "killed on request (supervisor kill)"})
	return c.pid, nil
}

// processStatus is how a reaped process ended, if known.
func processStatus(cmd *exec.Cmd) (syscall.WaitStatus, bool) {
	if cmd.ProcessState == nil {
		return 0, false
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws, ok
}
