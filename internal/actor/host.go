package actor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/robust/robust/pkg/protocol"
)

// service is what the plugin host drives: a processor or a producer.
type service interface {
	connect(ctx context.Context) error // a warm spare's part of open
	open(ctx context.Context) error
	serve(ctx context.Context) error
	status() (protocol.Status, error)
	close()
}

// openTimeout bounds connecting and loading state on Start.
const openTimeout = 10 * time.Second

// Errors of Serve.
var (
	// ErrNotSupervised: the binary was run by hand, not by the supervisor.
	ErrNotSupervised = errors.New("this is a robust actor process, started by the supervisor. Run bin/supervisor instead")
	// ErrSupervisorGone: the supervisor died without stopping the actor.
	ErrSupervisorGone = errors.New("supervisor gone")
)

// ServeProcessor is the whole of a processor actor's main: it serves the
// go-plugin protocol until the supervisor closes the connection (nil) or
// the actor fails (its error; main exits non-zero). A panic is reported on
// the crash channel and ends the process as a panic does.
func ServeProcessor[D any](p Processor[D]) error {
	return serve(func(cfg protocol.ActorConfig, log *slog.Logger) (service, error) {
		return newProcessor(cfg, log, p)
	})
}

// ServeProducer is the whole of a producer actor's main.
func ServeProducer[D any](p Producer[D]) error {
	return serve(func(cfg protocol.ActorConfig, log *slog.Logger) (service, error) {
		return newProducer(cfg, log, p)
	})
}

// ExitCode is the exit code for Serve's error.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNotSupervised):
		return 2
	}
	return 1
}

func serve(newSvc func(protocol.ActorConfig, *slog.Logger) (service, error)) error {
	if os.Getenv(protocol.Handshake.MagicCookieKey) != protocol.Handshake.MagicCookieValue {
		return ErrNotSupervised
	}
	// plugin.Serve replaces os.Stderr with a pipe of its own; the host parses
	// log lines from the real one, file descriptor 2.
	h := &Host{newSvc: newSvc, stderr: os.Stderr, crash: openCrash(), failed: make(chan error, 1)}
	served := make(chan struct{})
	go func() {
		defer close(served)
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: protocol.Handshake,
			Plugins:         protocol.PluginMap(h),
		})
	}()
	gone := make(chan struct{})
	go watchParent(os.Getppid(), gone)
	select {
	case <-served: // the supervisor closed the connection
		return h.Stop()
	case err := <-h.failed:
		h.report(protocol.CrashError, err.Error())
		return err
	case <-gone:
		return ErrSupervisorGone
	}
}

// openCrash is the crash channel the supervisor handed this process, or nil.
func openCrash() *os.File {
	fd, err := strconv.Atoi(os.Getenv(protocol.EnvCrashFD))
	if err != nil || fd < 3 {
		return nil
	}
	return os.NewFile(uintptr(fd), "crash")
}

// watchParent closes gone when the supervisor is gone, even if it was
// killed with SIGKILL and could not stop us (the supervisor also asks the
// kernel for that with Pdeathsig; this covers the rest).
func watchParent(ppid int, gone chan<- struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			close(gone)
			return
		}
	}
}

// Host implements protocol.Actor in the actor process.
type Host struct {
	newSvc func(protocol.ActorConfig, *slog.Logger) (service, error)
	stderr io.Writer
	crash  *os.File   // the crash channel, or nil
	failed chan error // the work loop's error, when the actor must die

	mu       sync.Mutex
	svc      service
	log      *slog.Logger
	cancel   context.CancelFunc
	done     chan struct{}
	stopping bool
	// spare is the service Prepare connected, with its config and
	// logger, until Start takes it.
	spare    service
	spareCfg protocol.ActorConfig
	spareLog *slog.Logger
}

var errNotStarted = errors.New("actor not started")

// report writes a crash report, once: the supervisor reads the exit's cause
// from it.
func (h *Host) report(kind, msg string) {
	if h.crash == nil {
		return
	}
	b, _ := json.Marshal(protocol.CrashReport{Kind: kind, Message: protocol.CutCrashMessage(msg)})
	_, _ = h.crash.Write(b)
	_ = h.crash.Close()
	h.crash = nil
}

// Prepare implements protocol.Actor: the process becomes a warm spare.
func (h *Host) Prepare(cfg protocol.ActorConfig) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.svc != nil || h.spare != nil {
		return errors.New("actor already prepared or started")
	}
	log := NewLogger(h.stderr, cfg.LogLevel)
	svc, err := h.newSvc(cfg, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	if err := svc.connect(ctx); err != nil {
		svc.close()
		return err
	}
	h.spare, h.spareCfg, h.spareLog = svc, cfg, log
	// Started from a link named so, a spare has its name already; one
	// started by a wrapper that execs the actor takes it here.
	if err := setProcessName(protocol.SpareName(cfg.Actor)); err != nil {
		log.Warn("could not take the spare's process name", "error", err)
	}
	log.Debug("ready as a spare", "pid", os.Getpid())
	return nil
}

// Start implements protocol.Actor.
func (h *Host) Start(cfg protocol.ActorConfig) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.svc != nil {
		return errors.New("actor already started")
	}
	var svc service
	var log *slog.Logger
	if h.spare != nil {
		if reflect.DeepEqual(cfg, h.spareCfg) {
			svc, log = h.spare, h.spareLog
		} else {
			h.spare.close() // prepared for another config: start afresh
		}
		h.spare = nil
		// The active process goes by the actor's name (pgrep -x worker).
		if err := setProcessName(cfg.Actor); err != nil {
			NewLogger(h.stderr, cfg.LogLevel).Warn("could not take the actor's process name", "error", err)
		}
	}
	if svc == nil {
		log = NewLogger(h.stderr, cfg.LogLevel)
		var err error
		if svc, err = h.newSvc(cfg, log); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	octx, ocancel := context.WithTimeout(ctx, openTimeout)
	defer ocancel()
	if err := svc.open(octx); err != nil {
		cancel()
		svc.close()
		return err
	}
	h.svc, h.log, h.cancel, h.done = svc, log, cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		defer func() {
			if p := recover(); p != nil {
				h.report(protocol.CrashPanic, fmt.Sprint(p))
				panic(p) // the process dies as a panic does, its trace on stderr
			}
		}()
		err := svc.serve(ctx)
		svc.close()
		h.mu.Lock()
		stopping := h.stopping
		h.mu.Unlock()
		if err == nil && !stopping {
			err = errors.New("work loop ended by itself")
		}
		if stopping && errors.Is(err, context.Canceled) {
			err = nil // stopped in the middle of a call: a stop, not a failure
		}
		if err != nil {
			log.Error("actor failed", "error", err)
			h.failed <- err
		}
	}()
	return nil
}

// Stop implements protocol.Actor: the current batch finishes, then the loop
// ends.
func (h *Host) Stop() error {
	h.mu.Lock()
	if h.svc == nil {
		h.mu.Unlock()
		return nil
	}
	h.stopping = true
	cancel, done := h.cancel, h.done
	h.mu.Unlock()
	cancel()
	<-done
	return nil
}

// Status implements protocol.Actor.
func (h *Host) Status() (protocol.Status, error) {
	h.mu.Lock()
	svc := h.svc
	h.mu.Unlock()
	if svc == nil {
		return protocol.Status{}, errNotStarted
	}
	return svc.status()
}

// NewLogger returns the logger of an actor process: JSON lines on w with
// hclog's field names, which go-plugin's host parses and re-logs under the
// actor's name. level is debug, info, warn or error (default info).
func NewLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: lv,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}

// setProcessName sets this process's name, its comm (what ps and pgrep
// show): a spare is started under protocol.SpareName and takes the
// actor's name when it becomes the active process. /proc/self/comm names
// the main thread, whichever thread writes it.
func setProcessName(name string) error {
	return os.WriteFile("/proc/self/comm", []byte(name), 0)
}
