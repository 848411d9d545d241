package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// supState is the supervisor's persisted state (key SupervisorKey).
type supState struct {
	Run       uint64            `json:"run"`       // the current or last run
	Completed bool              `json:"completed"` // the run reached its last beat and drained
	Restarts  map[string]uint64 `json:"restarts"`  // per actor, all runs
	LastCause map[string]string `json:"last_cause,omitempty"`
	// Causes counts restarts per actor by kind of exit (panic, killed, hang, error).
	Causes map[string]map[string]uint64 `json:"causes,omitempty"`
}

// ActorState is what the supervisor knows of one actor right now.
type ActorState struct {
	Name      string
	PID       int
	State     string // starting, running, backing off, given up, stopped
	Since     time.Time
	Restarts  uint64 // this run
	LastCause string
	Status    protocol.Status // the last health check's answer
}

// Supervisor runs one pipeline.
type Supervisor struct {
	cfg Config
	log *slog.Logger

	url string
	run uint64
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue

	aborted  atomic.Bool
	supMu    sync.Mutex // serialises writes of the supervisor's state
	replayMu sync.Mutex // serialises dead-letter replays

	mu       sync.Mutex
	sup      supState
	actors   map[string]*ActorState
	children map[string]*child

	dash dashState // the dashboard's recent events (under mu) and dead letters
}

// New checks cfg and returns a Supervisor.
func New(cfg Config) (*Supervisor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if cfg.Policy.Jitter == nil {
		cfg.Policy.Jitter = rand.Float64
	}
	s := &Supervisor{cfg: cfg, log: cfg.Log.With("actor", "supervisor"), actors: map[string]*ActorState{}, children: map[string]*child{}}
	for _, a := range protocol.Actors {
		s.actors[a] = &ActorState{Name: a, State: "starting"}
	}
	return s, nil
}

func (s *Supervisor) binPath(name string) string {
	dir := s.cfg.BinDir
	if dir == "" {
		if exe, err := os.Executable(); err == nil {
			dir = filepath.Dir(exe)
		}
	}
	return filepath.Join(dir, name)
}

// URL is the NATS URL the pipeline runs on, once Run has started it.
func (s *Supervisor) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Actors returns a snapshot of every actor's state.
func (s *Supervisor) Actors() []ActorState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ActorState
	for _, a := range protocol.Actors {
		out = append(out, *s.actors[a])
	}
	return out
}

// Run runs the pipeline until the heartbeat's last beat has been processed,
// ctx is cancelled (a graceful stop: producers stop, the rest drains), or
// an actor exhausts its restarts. abort ends everything at once. The
// summary is returned whenever the pipeline's state could be read.
func (s *Supervisor) Run(ctx, abort context.Context) (*Summary, error) {
	for _, a := range protocol.Actors {
		if _, err := os.Stat(s.binPath(a)); err != nil {
			return nil, fmt.Errorf("actor binary %s not found: run `make build`, or pass --bin-dir with the directory holding generator, heartbeat, worker and logger", s.binPath(a))
		}
	}
	url := s.cfg.NATSURL
	if url == "" {
		lock, err := lockDataDir(s.cfg.DataDir)
		if err != nil {
			return nil, err
		}
		defer lock.Close()
		ns, err := natsx.RunServer(natsx.ServerConfig{Listen: s.cfg.NATSListen, StoreDir: filepath.Join(s.cfg.DataDir, "jetstream"), Log: s.cfg.Log.With("actor", "nats")})
		if err != nil {
			return nil, err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		url = ns.ClientURL()
	}
	nc, js, err := natsx.Connect(url, "supervisor")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	s.mu.Lock()
	s.url, s.nc, s.js = url, nc, js
	s.mu.Unlock()

	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	topo := natsx.Topology{Queue: s.cfg.Queue}
	if err := natsx.Ensure(setup, js, topo); err != nil {
		return nil, fmt.Errorf("set up JetStream: %w", err)
	}
	if s.kv, err = js.KeyValue(setup, protocol.StateBucket); err != nil {
		return nil, fmt.Errorf("state bucket: %w", err)
	}
	if err := s.beginRun(setup); err != nil {
		return nil, err
	}
	if s.cfg.HTTP != "" {
		stopHTTP, err := s.serveHTTP(ctx, s.cfg.HTTP)
		if err != nil {
			return nil, err
		}
		defer stopHTTP()
	}
	s.log.Info("pipeline starting", "run", s.run, "nats", url, "data_dir", s.cfg.DataDir, "rate", s.cfg.Rate, "beats", s.cfg.Beats, "faults", s.cfg.Faults)

	finished := make(chan struct{})
	defer close(finished)
	go func() { // a second signal: kill everything now
		select {
		case <-abort.Done():
			s.aborted.Store(true)
			s.killAll()
		case <-finished:
		}
	}()
	runErr, completed := s.supervise(ctx, abort)

	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer scancel()
	if completed {
		if err := s.updateSup(sctx, func(st *supState) { st.Completed = true }); err != nil {
			s.log.Warn("could not mark the run completed", "error", err)
		}
	}
	sum, err := s.Summarize(sctx)
	if err != nil {
		return nil, errors.Join(runErr, err)
	}
	return sum, runErr
}

// beginRun continues an unfinished run, or starts the next.
func (s *Supervisor) beginRun(ctx context.Context) error {
	st, err := s.loadSup(ctx)
	if err != nil {
		return err
	}
	if st.Run == 0 || st.Completed {
		st.Run++
		st.Completed = false
	} else {
		s.log.Info("resuming an unfinished run", "run", st.Run)
	}
	if st.Restarts == nil {
		st.Restarts = map[string]uint64{}
	}
	if _, err := s.kv.Put(ctx, protocol.SupervisorKey, mustJSON(st)); err != nil {
		return fmt.Errorf("save supervisor state: %w", err)
	}
	s.mu.Lock()
	s.sup, s.run = st, st.Run
	s.mu.Unlock()
	return nil
}

func (s *Supervisor) loadSup(ctx context.Context) (supState, error) {
	var st supState
	e, err := s.kv.Get(ctx, protocol.SupervisorKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("load supervisor state: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, fmt.Errorf("load supervisor state: %w", err)
	}
	return st, nil
}

func (s *Supervisor) updateSup(ctx context.Context, f func(*supState)) error {
	s.supMu.Lock() // writes land in the order they were made
	defer s.supMu.Unlock()
	s.mu.Lock()
	f(&s.sup)
	b := mustJSON(s.sup)
	s.mu.Unlock()
	_, err := s.kv.Put(ctx, protocol.SupervisorKey, b)
	return err
}

// supervise starts the actors, waits for the end of the run, stops the
// producers, drains and stops the rest. completed: the run reached its last
// beat and drained.
//
// After the last beat only the heartbeat stops: the generator keeps the
// queue full until the worker has spent every beat. On a stop request both
// producers stop at once, and the worker spends what beats it can.
func (s *Supervisor) supervise(ctx, abort context.Context) (runErr error, completed bool) {
	type running struct {
		stop context.CancelFunc
		done chan struct{}
	}
	errc := make(chan error, len(protocol.Actors))
	actors := map[string]running{}
	for _, a := range protocol.Actors {
		actx, stop := context.WithCancel(context.Background())
		r := running{stop: stop, done: make(chan struct{})}
		actors[a] = r
		go func() {
			defer close(r.done)
			if err := s.superviseActor(actx, a); err != nil {
				errc <- err
			}
		}()
	}
	stop := func(names ...string) {
		for _, n := range names {
			actors[n].stop()
		}
		for _, n := range names {
			<-actors[n].done
		}
	}
	defer stop(protocol.Actors...) // every actor goroutine has ended when supervise returns
	if s.cfg.Rate == 0 && s.cfg.ProgressEvery > 0 {
		pctx, stopProgress := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.progress(pctx) }()
		defer func() { stopProgress(); <-done }()
	}

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	generatorRuns := false
wait:
	for {
		select {
		case <-ctx.Done():
			s.log.Info("stop requested: stopping the producers, draining the rest (again to stop at once)")
			stop(protocol.Heartbeat, protocol.Generator)
			break wait
		case <-abort.Done():
			break wait
		case runErr = <-errc:
			s.log.Error(runErr.Error())
			break wait
		case <-tick.C:
			if s.heartbeatDone() {
				completed, generatorRuns = true, true
				s.log.Info("last beat sent; draining", "beats", s.cfg.Beats)
				stop(protocol.Heartbeat)
				break wait
			}
		}
	}
	if runErr == nil && !s.aborted.Load() {
		if err := s.drain(abort, errc, generatorRuns); err != nil {
			s.log.Warn(err.Error())
			completed = false
			var giveUp *GiveUpError
			if errors.As(err, &giveUp) {
				runErr = err
			}
		}
	}
	stop(protocol.Actors...)
	select {
	case err := <-errc:
		if runErr == nil {
			runErr = err
		}
	default:
	}
	if runErr != nil || s.aborted.Load() {
		completed = false
	}
	return runErr, completed
}

func (s *Supervisor) heartbeatDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actors[protocol.Heartbeat]
	return a.State == "running" && a.Status.Done
}

// drain waits until every beat is spent and every result logged, or the
// drain timeout passes, or an actor gives up.
func (s *Supervisor) drain(abort context.Context, errc <-chan error, generatorRuns bool) error {
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		left, err := s.inFlight(ctx, generatorRuns)
		cancel()
		if err == nil && left == "" {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				left = err.Error()
			}
			return fmt.Errorf("drain timeout (%s) passed with work left: %s", s.cfg.DrainTimeout, left)
		}
		select {
		case <-abort.Done():
			return errors.New("aborted while draining")
		case err := <-errc:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// inFlight says what work is left, or "" when the pipeline is drained.
func (s *Supervisor) inFlight(ctx context.Context, generatorRuns bool) (string, error) {
	// Read the worker's state before and after the streams: if it moved, a
	// result may have been published after RESULTS was read.
	_, before, err := actor.LoadStateRev[actors.WorkerState](ctx, s.kv, protocol.Worker)
	if err != nil {
		return "", err
	}
	msgs := map[string]uint64{}
	for _, name := range []string{protocol.StreamNumbers, protocol.StreamBeats, protocol.StreamResults} {
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return "", err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return "", err
		}
		msgs[name] = info.State.Msgs
	}
	w, rev, err := actor.LoadStateRev[actors.WorkerState](ctx, s.kv, protocol.Worker)
	if err != nil {
		return "", err
	}
	lg, err := actor.LoadState[actors.LoggerState](ctx, s.kv, protocol.Logger)
	if err != nil {
		return "", err
	}
	unpublished := 0
	for _, o := range w.Outbox {
		if _, ok := unloggedResult(o.Subject, o.Header, o.Data, lg.Data.LastSource); ok {
			unpublished++
		}
	}
	switch {
	case rev != before:
		return "the worker is busy", nil
	case unpublished > 0:
		return fmt.Sprintf("%d results committed by the worker, not yet logged", unpublished), nil
	case msgs[protocol.StreamBeats] > 0:
		return fmt.Sprintf("%d beat messages not yet taken by the worker", msgs[protocol.StreamBeats]), nil
	case w.Data.Credits > 0 && (generatorRuns || msgs[protocol.StreamNumbers] > 0):
		return fmt.Sprintf("worker has %d beats to spend", w.Data.Credits), nil
	case msgs[protocol.StreamResults] > 0:
		return fmt.Sprintf("%d results not yet logged", msgs[protocol.StreamResults]), nil
	}
	return "", nil
}

// superviseActor keeps one actor running until ctx is done (nil) or its
// restarts exceed the intensity (a *GiveUpError).
func (s *Supervisor) superviseActor(ctx context.Context, name string) error {
	tracker := NewTracker(s.cfg.Policy)
	for {
		started := time.Now()
		s.setState(name, "starting", 0)
		cause, err := s.runChild(ctx, name)
		if errors.Is(err, errStopped) || ctx.Err() != nil || s.aborted.Load() {
			s.setState(name, "stopped", 0)
			return nil // stopping: an exit now is no failure to restart
		}
		delay, giveUp := tracker.Failed(started, time.Now())
		n := s.recordRestart(name, cause)
		if giveUp {
			s.setState(name, "given up", 0)
			return &GiveUpError{Actor: name, Restarts: s.cfg.Policy.Intensity, Window: s.cfg.Policy.Window, Cause: cause}
		}
		s.log.Warn(fmt.Sprintf("%s exited: %s, restart #%d in %s", name, cause, n, delay.Round(time.Millisecond)))
		s.setState(name, "backing off", 0)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			s.setState(name, "stopped", 0)
			return nil
		}
	}
}

// runChild starts one process of the actor and watches it until it exits
// (its cause), hangs, or ctx is done (errStopped, after stopping it).
func (s *Supervisor) runChild(ctx context.Context, name string) (string, error) {
	c, err := s.launch(name)
	if err != nil {
		return err.Error(), nil
	}
	s.setChild(name, c) // from here on an abort can kill it
	defer s.setChild(name, nil)
	if err := c.begin(s.cfg.actorConfig(name, s.url, s.run), startTimeout); err != nil {
		c.kill()
		return err.Error(), nil
	}
	s.setState(name, "running", c.pid())
	cause, err := c.watch(ctx, s.cfg.PingEvery, s.cfg.PingTimeout, func(st protocol.Status) { s.setStatus(name, st) })
	if errors.Is(err, errStopped) {
		if s.aborted.Load() {
			c.kill()
		} else {
			c.stop(10 * time.Second)
		}
	}
	return cause, err
}

// recordRestart counts a restart (persisted) and returns the actor's total.
func (s *Supervisor) recordRestart(name, cause string) uint64 {
	s.mu.Lock()
	s.actors[name].Restarts++
	s.actors[name].LastCause = cause
	s.dash.addEvent(restartEvent(name, cause, s.actors[name].Restarts))
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n uint64
	err := s.updateSup(ctx, func(st *supState) {
		if st.LastCause == nil {
			st.LastCause = map[string]string{}
		}
		st.Restarts[name]++
		st.LastCause[name] = cause
		if st.Causes == nil {
			st.Causes = map[string]map[string]uint64{}
		}
		if st.Causes[name] == nil {
			st.Causes[name] = map[string]uint64{}
		}
		st.Causes[name][causeKind(cause)]++
		n = st.Restarts[name]
	})
	if err != nil {
		s.log.Warn("could not persist the restart count", "actor", name, "error", err)
	}
	return n
}

func (s *Supervisor) setState(name, state string, pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actors[name]
	a.State, a.Since, a.PID = state, time.Now(), pid
}

func (s *Supervisor) setChild(name string, c *child) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == nil {
		delete(s.children, name)
		return
	}
	s.children[name] = c
}

func (s *Supervisor) setStatus(name string, st protocol.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actors[name].Status = st
}

func (s *Supervisor) killAll() {
	s.mu.Lock()
	cs := make([]*child, 0, len(s.children))
	for _, c := range s.children {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		if p := c.cmd.Process; p != nil {
			_ = p.Kill()
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
