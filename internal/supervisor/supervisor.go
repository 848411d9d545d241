package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"

	"github.com/robust/robust/internal/api"
	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/ledger"
	"github.com/robust/robust/internal/lifecycle"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/internal/storage"
	"github.com/robust/robust/internal/tamper"
	"github.com/robust/robust/pkg/protocol"
)

// supState is the supervisor's persisted state (key SupervisorKey).
type supState struct {
	Run uint64 `json:"run"` // the current or last run
	// IDs is the pipeline's ID token, made at its first start
	// (protocol.IDs): every actor is handed it.
	IDs       protocol.IDs      `json:"ids,omitempty"`
	Completed bool              `json:"completed"` // the run reached its last beat and drained
	Restarts  map[string]uint64 `json:"restarts"`  // per actor, all runs
	LastCause map[string]string `json:"last_cause,omitempty"`
	// Causes counts restarts per actor by kind of exit (events.Cause).
	Causes map[string]map[string]uint64 `json:"causes,omitempty"`
	// Tampered: what was done to the pipeline's data from outside it, all
	// runs, the last maxTampered; TamperedTotal counts them all.
	Tampered      []events.Tampered `json:"tampered,omitempty"`
	TamperedTotal uint64            `json:"tampered_total,omitempty"`
	// Streams: when each of the pipeline's streams was made, as the
	// supervisor last saw them (checkData).
	Streams map[string]time.Time `json:"streams,omitempty"`
	// Started: the actors that have run (and so saved a state): a state
	// key of theirs that is missing was removed.
	Started map[string]bool `json:"started,omitempty"`
}

// maxTampered bounds the tamperings the supervisor's state keeps.
const maxTampered = 100

// NeverStartedError: a run ended with actors that never got running.
type NeverStartedError struct {
	Actors []string
}

func (e *NeverStartedError) Error() string {
	return fmt.Sprintf("never started: %s (see the log for why; is the binary an actor?)", strings.Join(e.Actors, ", "))
}

// Supervisor runs one pipeline: its parts (the actors' keepers, the HTTP
// API, the dead-letter watcher, the progress line, persistence) report
// typed events to one Bus, and run as one oklog/run group.
type Supervisor struct {
	cfg  Config
	reg  registry.Registry
	log  *slog.Logger
	bus  events.Bus
	tab  *table
	live lifecycle.Live

	aborted atomic.Bool
	supMu   sync.Mutex // serialises writes of the supervisor's state

	mu  sync.Mutex
	url string
	run uint64
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	led *ledger.Ledger
	sup supState

	api    *api.Server
	gate   lifecycle.Gate      // held while the store is full: no actor starts
	disk   *events.StorageFull // the store is full since; nil: it takes writes
	reaper *lifecycle.Reaper   // nil: none
	acc    access              // how the supervisor and the actors connect
	sums   map[string][]byte   // each actor binary's SHA-256, taken at start
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
	s := &Supervisor{cfg: cfg, reg: cfg.Registry, log: cfg.Log.With("actor", "supervisor")}
	s.tab = newTable(s.reg)
	s.bus.Subscribe(s.tab.on)
	s.bus.Subscribe(s.logEvent)
	s.bus.Subscribe(s.onStorage)
	s.api = api.New(s, s.reg, api.Access{Hosts: cfg.HTTPHosts, EventClients: cfg.HTTPEventClients})
	s.bus.Subscribe(s.api.On)
	return s, nil
}

func (s *Supervisor) binPath(a registry.Actor) string {
	dir := s.cfg.BinDir
	if dir == "" {
		if exe, err := os.Executable(); err == nil {
			dir = filepath.Dir(exe)
		}
	}
	return filepath.Join(dir, a.Binary)
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// URL is the NATS URL the pipeline runs on, once Run has started it.
func (s *Supervisor) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Actors returns a snapshot of every actor's state.
func (s *Supervisor) Actors() []ActorState { return s.tab.all() }

// Subscribe adds f to the subscribers of the supervisor's events.
func (s *Supervisor) Subscribe(f func(events.Event)) { s.bus.Subscribe(f) }

// Run runs the pipeline until the run-ending actor (the heartbeat) has sent
// its last beat and the rest has drained, ctx is cancelled (a graceful stop:
// producers stop, the rest drains), or an actor exhausts its restarts.
// abort ends everything at once. The summary is returned whenever the
// pipeline's state could be read.
func (s *Supervisor) Run(ctx, abort context.Context) (*Summary, error) {
	var missing []string
	for _, a := range s.reg.All() {
		if _, err := os.Stat(s.binPath(a)); err != nil {
			missing = append(missing, s.binPath(a))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("actor binary %s not found: run `make build`, or pass --bin-dir with the directory holding %s",
			strings.Join(missing, ", "), strings.Join(s.reg.Names(), ", "))
	}
	sums, err := s.checksums()
	if err != nil {
		return nil, err
	}
	s.sums = sums
	url := s.cfg.NATSURL
	var acc access
	var disk *storage.Watcher // nil: a server of someone else's
	if url == "" {
		lock, err := lockDataDir(s.cfg.DataDir)
		if err != nil {
			return nil, err
		}
		defer lock.Close()
		disk = storage.New(storage.Watcher{Dir: s.storeDir(), MinFree: s.cfg.DiskMinFree, Emit: s.bus.Emit,
			Failed: func(err error) {
				s.log.Error("the NATS store: cannot read its free space or restart JetStream (tried again in a second)", "error", err)
			}})
		ns, a, err := s.embed(disk.NoSpace)
		if err != nil {
			return nil, err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		if disk.Restart, err = natsx.JetStreamRestarter(ns); err != nil {
			ns.Shutdown()
			return nil, err
		}
		url, acc = ns.ClientURL(), a
	} else {
		var err error
		if acc, err = s.external(); err != nil {
			return nil, err
		}
	}
	s.acc = acc
	opts, err := natsx.Auth(acc.sup)
	if err != nil {
		return nil, err
	}
	nc, js, err := natsx.Connect(url, "supervisor", append(opts, natsx.LogErrors(s.log))...)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	s.mu.Lock()
	s.url, s.nc, s.js = url, nc, js
	s.mu.Unlock()

	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.checkData(setup, js); err != nil {
		return nil, err
	}
	if err := natsx.Ensure(setup, js, s.topo(), s.reg.Inputs()); err != nil {
		return nil, fmt.Errorf("set up JetStream: %w", err)
	}
	if s.kv, err = js.KeyValue(setup, protocol.StateBucket); err != nil {
		return nil, fmt.Errorf("state bucket: %w", err)
	}
	s.mu.Lock()
	s.led = &ledger.Ledger{JS: js, KV: s.kv}
	s.mu.Unlock()
	if counted, err := s.led.CountDead(setup); err != nil {
		return nil, fmt.Errorf("count the dead letters of a data dir from before the tallies: %w", err)
	} else if len(counted) > 0 {
		s.log.Info("counted the dead letters that stand into the actors' tallies (a data dir from an earlier version)", "actors", counted)
	}
	if err := s.beginRun(setup); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "robust-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// `supervisor reap`, from the bin dir, kills the actors' process groups
	// should this process die, even by SIGKILL (the kernel kills the actors
	// themselves; what they started would live on). Never os.Executable():
	// Run may be inside a program (a test) that knows nothing of reaping.
	if exe := s.binPath(registry.Actor{Binary: "supervisor"}); fileExists(exe) {
		if s.reaper, err = lifecycle.StartReaper(exe, tmp, func(err error) {
			s.log.Error("the reaper died: what an actor starts may outlive a killed supervisor", "error", err)
		}); err != nil {
			s.log.Warn("no reaper: what an actor starts may outlive a killed supervisor", "error", err)
		}
	} else {
		s.log.Warn("no reaper: what an actor starts may outlive a killed supervisor", "missing", exe)
	}
	defer s.reaper.Close()

	// The parts, in one group: the first to return ends the others. The
	// pipeline returns when the run is over; the rest serve it meanwhile.
	var g run.Group
	var runErr error
	completed := false
	{
		sctx, stop := context.WithCancel(ctx) // another part failing stops the run too
		g.Add(func() error {
			runErr, completed = s.supervise(sctx, abort, tmp)
			return nil
		}, func(error) { stop() })
	}
	if s.cfg.HTTP != "" {
		l, err := net.Listen("tcp", s.cfg.HTTP)
		if err != nil {
			return nil, fmt.Errorf("HTTP listener %s: %w (pass --http with a free address, or --http '' to turn it off)", s.cfg.HTTP, err)
		}
		tok, err := auth.HTTPToken(s.cfg.DataDir)
		if err != nil {
			l.Close()
			return nil, err
		}
		s.api.SetToken(tok)
		srv := s.api.HTTPServer()
		s.log.Info("HTTP status, metrics and dashboard (read-only; `supervisor dashboard` prints a link that may kill and replay)", "addr", "http://"+l.Addr().String()+"/")
		g.Add(func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func(error) {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
	}
	{
		pctx, stop := context.WithCancel(context.Background())
		// Subscribed before any actor starts: no exit goes unrecorded.
		exits := &exitQueue{wake: make(chan struct{}, 1)}
		s.bus.Subscribe(exits.on)
		g.Add(func() error { return s.persist(pctx, exits) }, func(error) { stop() })
	}
	{
		wctx, stop := context.WithCancel(context.Background())
		g.Add(func() error { s.watchDLQ(wctx); return nil }, func(error) { stop() })
	}
	if disk != nil {
		wctx, stop := context.WithCancel(context.Background())
		g.Add(func() error { disk.Run(wctx); return nil }, func(error) { stop() })
	} else {
		// A server of someone else's: its store is tried, not read.
		p := &storage.Prober{Try: s.tryStore, Emit: s.bus.Emit, Failed: func(err error) {
			s.log.Debug("cannot tell whether the NATS store takes writes (tried again in a second)", "error", err)
		}}
		wctx, stop := context.WithCancel(context.Background())
		g.Add(func() error { p.Run(wctx); return nil }, func(error) { stop() })
	}
	{
		// Started before any actor: a tampering from the first moment on
		// is seen. Without it, tampering is found at the end of the run
		// only: the run goes on.
		var consumers []string
		for _, in := range s.reg.Inputs() {
			consumers = append(consumers, in.Stream+"/"+in.Consumer)
		}
		w := &tamper.Watcher{NC: nc, KV: s.kv, Streams: s.topo().Names(), Consumers: consumers, Emit: s.bus.Emit}
		wctx, stop := context.WithCancel(context.Background())
		if err := w.Start(wctx); err != nil {
			s.log.Error("cannot watch for tampering", "error", err)
			stop()
		} else {
			g.Add(func() error { w.Run(wctx); return nil }, func(error) { stop() })
		}
	}
	if s.cfg.Rate == 0 && s.cfg.ProgressEvery > 0 {
		pctx, stop := context.WithCancel(context.Background())
		g.Add(func() error { s.progress(pctx); return nil }, func(error) { stop() })
	}
	s.log.Info("pipeline starting", "run", s.run, "nats", url, "data_dir", s.cfg.DataDir, "rate", s.cfg.Rate, "beats", s.cfg.Beats, "faults", s.cfg.Faults)
	if err := g.Run(); err != nil {
		runErr = errors.Join(runErr, err)
	}

	if completed {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := s.updateSup(mctx, func(st *supState) { st.Completed = true }); err != nil {
			s.log.Warn("could not mark the run completed", "error", err)
		}
		cancel()
	}
	sum := s.summary(context.WithoutCancel(ctx))
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
	if st.IDs == "" || !st.IDs.Valid() {
		if st.IDs != "" {
			// Messages still in the streams with the old token are taken
			// as before: the consumers check an ID's shape, not its token.
			s.log.Warn("the supervisor's state held an ID token no supervisor made: made another", "token", fmt.Sprintf("%.40q", st.IDs))
		}
		st.IDs = protocol.NewIDs()
	}
	if err := s.recordStreams(ctx, s.js, &st); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, protocol.SupervisorKey, b); err != nil {
		return fmt.Errorf("save supervisor state: %w", err)
	}
	s.mu.Lock()
	s.sup, s.run = st, st.Run
	s.mu.Unlock()
	return nil
}

func (s *Supervisor) loadSup(ctx context.Context) (supState, error) {
	return loadSupFrom(ctx, s.kv)
}

func loadSupFrom(ctx context.Context, kv jetstream.KeyValue) (supState, error) {
	var st supState
	e, err := kv.Get(ctx, protocol.SupervisorKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("load supervisor state: %w", err)
	}
	if st, err = decodeSup(e.Value()); err != nil {
		return st, fmt.Errorf("%w: the supervisor's state (key %s) is unreadable (%v): start over with --start-over (it deletes the pipeline's streams and state), or restore the data dir from a backup", ErrDataLost, protocol.SupervisorKey, err)
	}
	return st, nil
}

// maxRun bounds a run number: a supervisor adds one per run; one near
// 2^64 was written by someone else, and would wrap to 0 (no run yet).
const maxRun = 1 << 62

// decodeSup reads the supervisor's state as the bucket holds it: whoever
// may write the key may have written it, so what it claims is bounded.
func decodeSup(b []byte) (supState, error) {
	var st supState
	if err := json.Unmarshal(b, &st); err != nil {
		return supState{}, err
	}
	if st.Run > maxRun {
		return supState{}, fmt.Errorf("run %d: no supervisor counted that far", st.Run)
	}
	if n := len(st.Tampered); n > maxTampered {
		st.Tampered = st.Tampered[n-maxTampered:]
	}
	return st, nil
}

func (s *Supervisor) updateSup(ctx context.Context, f func(*supState)) error {
	s.supMu.Lock() // writes land in the order they were made
	defer s.supMu.Unlock()
	s.mu.Lock()
	f(&s.sup)
	b, err := json.Marshal(s.sup)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, protocol.SupervisorKey, b)
	return err
}

// supervise starts the actors, waits for the end of the run, stops the
// producers, drains and stops the rest. completed: the run reached its last
// beat and drained.
//
// After the last beat only the run-ending producer stops: the generator
// keeps the queue full until the worker has spent every beat. On a stop
// request every producer stops at once, and the worker spends what beats
// it can.
func (s *Supervisor) supervise(ctx, abort context.Context, tmp string) (runErr error, completed bool) {
	type running struct {
		stop context.CancelFunc
		done chan struct{}
	}
	actors := map[string]running{}
	errc := make(chan error, len(s.reg.All()))
	done := make(chan struct{}, 1) // the run-ending actor has sent everything
	var endsRun []string
	var producers []string
	for _, a := range s.reg.All() {
		if a.EndsRun {
			endsRun = append(endsRun, a.Name)
		}
		if a.Kind == registry.Producer {
			producers = append(producers, a.Name)
		}
	}
	s.bus.Subscribe(func(e events.Event) {
		if h, ok := e.(events.Health); ok && h.Done && len(endsRun) > 0 && h.Actor == endsRun[0] {
			select {
			case done <- struct{}{}:
			default:
			}
		}
	})
	for _, a := range s.reg.StartOrder() {
		actx, stop := context.WithCancel(context.Background())
		r := running{stop: stop, done: make(chan struct{})}
		actors[a.Name] = r
		k := s.keeper(a, abort, tmp)
		go func() {
			defer close(r.done)
			if err := k.Serve(actx); err != nil {
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
	all := s.reg.Names()
	defer stop(all...) // every keeper has ended when supervise returns

	generatorRuns := false
wait:
	for {
		select {
		case <-ctx.Done():
			s.log.Info("stop requested: stopping the producers, draining the rest (again to stop at once)")
			stop(producers...)
		case <-abort.Done():
			s.aborted.Store(true)
		case runErr = <-errc:
			var giveUp *lifecycle.GiveUpError
			if !errors.As(runErr, &giveUp) { // a give-up is logged with its event
				s.log.Error(runErr.Error())
			}
		case <-done:
			if a, _ := s.tab.get(endsRun[0]); a.State != StateRunning || !a.Done {
				continue // a stale answer of a process that has gone since
			}
			completed, generatorRuns = true, true
			s.log.Info("last beat sent; draining", "beats", s.cfg.Beats)
			stop(endsRun...)
		}
		break wait
	}
	if runErr == nil && !s.aborted.Load() {
		if err := s.drain(abort, errc, generatorRuns); err != nil {
			s.log.Warn(err.Error())
			completed = false
			var giveUp *lifecycle.GiveUpError
			if errors.As(err, &giveUp) {
				runErr = err
			}
		}
	}
	if abort.Err() != nil {
		s.aborted.Store(true)
	}
	stop(all...)
	select {
	case err := <-errc:
		if runErr == nil {
			runErr = err
		}
	default:
	}
	// An actor that never got running fails the run, unless the run was
	// stopped on request before it had its chance (a handshake and a Start
	// take up to lifecycle's timeouts; a failed attempt is a chance used).
	var never []string
	for _, a := range s.tab.all() {
		if !a.Started && (ctx.Err() == nil || a.Restarts > 0 || time.Since(a.FirstTry) > neverStartedAfter) {
			never = append(never, a.Name)
		}
	}
	if len(never) > 0 && !s.aborted.Load() {
		runErr = errors.Join(runErr, &NeverStartedError{Actors: never})
	}
	if runErr != nil || s.aborted.Load() {
		completed = false
	}
	return runErr, completed
}

// neverStartedAfter: an actor still not running this long after its first
// try counts as never started even when the run was stopped on request.
const neverStartedAfter = 10 * time.Second

// keeper is the lifecycle of one actor: its process, restarted by the
// policy, reporting to the bus.
func (s *Supervisor) keeper(a registry.Actor, abort context.Context, tmp string) *lifecycle.Keeper {
	s.mu.Lock()
	ids := s.sup.IDs
	s.mu.Unlock()
	var env []string
	if os.Getenv("GOMAXPROCS") == "" {
		// An actor is one loop: a single P leaves the cores to the server
		// and the other actors instead of idle GC workers.
		env = append(env, "GOMAXPROCS=1")
	}
	if os.Getenv("GOGC") == "" {
		// An actor's live heap is a few MiB and it allocates per message:
		// collecting at 3x the live heap instead of 2x cut the worker's GC
		// CPU, with peak RSS still under 25 MiB (measured with make bench).
		env = append(env, "GOGC=200")
	}
	p := &lifecycle.Process{
		Name:        a.Name,
		Path:        s.binPath(a),
		Checksum:    s.sums[a.Name],
		Env:         env,
		Config:      s.cfg.actorConfig(a, s.URL(), s.acc.actors[a.Name], s.run, ids),
		Log:         s.cfg.Log.With("actor", a.Name),
		TempDir:     tmp,
		Emit:        s.bus.Emit,
		Live:        &s.live,
		Reaper:      s.reaper,
		Abort:       abort.Done(),
		PingEvery:   s.cfg.PingEvery,
		PingTimeout: s.cfg.PingTimeout,
		Standby:     s.cfg.Standby,
	}
	child := guarded{Child: p, before: s.beforeLife(a)}
	return &lifecycle.Keeper{Name: a.Name, Policy: s.cfg.Policy, Emit: s.bus.Emit, Child: child, Hold: &s.gate}
}

func (s *Supervisor) topo() natsx.Topology {
	return natsx.Topology{Queue: s.cfg.Queue, DLQ: s.cfg.DLQ}
}

// logEvent writes the events an operator wants to read.
func (s *Supervisor) logEvent(e events.Event) {
	switch e := e.(type) {
	case events.Exited:
		s.log.Warn(e.String())
	case events.GaveUp:
		s.log.Error((&lifecycle.GiveUpError{Actor: e.Actor, Restarts: e.Restarts, Window: e.Window, Last: e.Last}).Error())
	case events.Started:
		s.log.Debug("actor running", "name", e.Actor, "pid", e.PID)
	case events.StorageFull:
		if s.cfg.NATSURL != "" {
			s.log.Error("the NATS server's store takes no writes: restarts wait until it does (it is the server's operator's to free space and restart JetStream or the server)", "why", e.Why, "nats", s.cfg.NATSURL)
			break
		}
		s.log.Error("the NATS store is full: nothing can be written; restarts wait until space is back (free some, or grow the disk)", "why", e.Why, "free_bytes", e.Free, "dir", s.storeDir(), "min_free", s.cfg.DiskMinFree)
	case events.StorageBack:
		if s.cfg.NATSURL != "" {
			s.log.Warn("the NATS server's store takes writes again: restarts resume", "nats", s.cfg.NATSURL)
			break
		}
		s.log.Warn("the NATS store takes writes again: restarts resume", "free_bytes", e.Free, "jetstream_restarted", e.Restarted)
	case events.Tampered:
		s.log.Error("the pipeline's data was changed from outside it: values may be gone, the summary will say", "what", e.What, "op", e.Op, "by", e.By, "messages", e.Messages)
	}
}

// onStorage holds restarts while the store is full.
func (s *Supervisor) onStorage(e events.Event) {
	switch e := e.(type) {
	case events.StorageFull:
		s.gate.Hold()
		s.mu.Lock()
		s.disk = &e
		s.mu.Unlock()
	case events.StorageBack:
		s.mu.Lock()
		s.disk = nil
		s.mu.Unlock()
		s.gate.Release()
	}
}

// persist writes restart counts and causes to the state bucket as actors
// exit (the Exited and GaveUp events on exits), until ctx is done; then it
// writes what is left.
func (s *Supervisor) persist(ctx context.Context, exits *exitQueue) error {
	write := func(e events.Event) {
		switch e := e.(type) {
		case events.Tampered:
			s.recordTampered(e)
			return
		case events.Started:
			s.recordStarted(e.Actor)
			return
		}
		var exit events.Exit
		switch e := e.(type) {
		case events.Exited:
			exit = e.Exit
		case events.GaveUp:
			exit = e.Last
		}
		name := e.Of()
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := s.updateSup(wctx, func(st *supState) {
			if st.Restarts == nil {
				st.Restarts = map[string]uint64{}
			}
			if st.LastCause == nil {
				st.LastCause = map[string]string{}
			}
			if st.Causes == nil {
				st.Causes = map[string]map[string]uint64{}
			}
			if st.Causes[name] == nil {
				st.Causes[name] = map[string]uint64{}
			}
			st.Restarts[name]++
			st.LastCause[name] = exit.String()
			st.Causes[name][string(exit.Cause)]++
		})
		if err != nil {
			s.log.Warn("could not persist the restart count", "actor", name, "error", err)
		}
	}
	for {
		select {
		case <-exits.wake:
			for _, e := range exits.take() {
				write(e)
			}
		case <-ctx.Done():
			for _, e := range exits.take() {
				write(e)
			}
			return nil
		}
	}
}

// recordTampered adds t to the supervisor's state, where the summary and
// /status find it (in this run and every later one).
func (s *Supervisor) recordTampered(t events.Tampered) {
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.updateSup(wctx, func(st *supState) {
		st.TamperedTotal++
		st.Tampered = append(st.Tampered, t)
		if n := len(st.Tampered); n > maxTampered {
			st.Tampered = slices.Clone(st.Tampered[n-maxTampered:])
		}
	})
	if err != nil {
		s.log.Error("could not record a tampering in the supervisor's state", "tampering", t.String(), "error", err)
	}
}

// recordStarted notes, once, that the actor has run.
func (s *Supervisor) recordStarted(name string) {
	s.mu.Lock()
	known := s.sup.Started[name]
	s.mu.Unlock()
	if known {
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.updateSup(wctx, func(st *supState) {
		if st.Started == nil {
			st.Started = map[string]bool{}
		}
		st.Started[name] = true
	}); err != nil {
		s.log.Warn("could not note that the actor has run", "actor", name, "error", err)
	}
}

// exitQueue holds the exits (and tamperings, first starts) not yet persisted: the bus never waits on
// the state bucket, and no exit is dropped.
type exitQueue struct {
	mu   sync.Mutex
	list []events.Event
	wake chan struct{} // one slot: there is something to take
}

func (q *exitQueue) on(e events.Event) {
	switch e.(type) {
	case events.Exited, events.GaveUp, events.Tampered, events.Started:
		q.mu.Lock()
		q.list = append(q.list, e)
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (q *exitQueue) take() []events.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.list
	q.list = nil
	return l
}

// watchDLQ reports every message stored in the DLQ stream from now on as
// a DeadLettered event, until ctx is done. It reads the stream, not the
// subject: a republished copy that the stream drops is no new dead letter.
func (s *Supervisor) watchDLQ(ctx context.Context) {
	// A failure here costs the dead-letter count, never the run: this part
	// returns only when ctx is done (returning ends the whole group).
	defer func() { <-ctx.Done() }()
	c, err := s.js.OrderedConsumer(ctx, protocol.StreamDLQ, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		s.log.Error("cannot watch the dead-letter stream: robust_dead_letters_total stays behind", "error", err)
		return
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		h := m.Headers()
		s.bus.Emit(events.DeadLettered{Base: events.Base{At: time.Now(), Actor: h.Get(protocol.HeaderActor)}, Reason: h.Get(protocol.HeaderReason)})
	})
	if err != nil {
		s.log.Error("cannot watch the dead-letter stream: robust_dead_letters_total stays behind", "error", err)
		return
	}
	<-ctx.Done()
	cc.Stop()
}

// Kill sends SIGKILL to an actor's process, to watch it come back.
func (s *Supervisor) Kill(name string) (pid int, err error) {
	if _, ok := s.reg.Get(name); !ok {
		return 0, fmt.Errorf("%w %q: want one of %s", ErrUnknownActor, name, strings.Join(s.reg.Names(), ", "))
	}
	return s.live.Kill(name)
}
