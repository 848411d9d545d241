package actor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/robust/robust/pkg/protocol"
)

// service is what the plugin host drives: a processor or a producer.
type service interface {
	open(ctx context.Context) error
	serve(ctx context.Context) error
	status() (protocol.Status, error)
	close()
}

// openTimeout bounds connecting and loading state on Start.
const openTimeout = 10 * time.Second

// ServeProcessor is the whole main of a processor actor. It serves the
// go-plugin protocol until the supervisor goes away and never returns.
func ServeProcessor[D any](p Processor[D]) {
	serve(func(cfg protocol.ActorConfig, log *slog.Logger) (service, error) {
		return newProcessor(cfg, log, p)
	})
}

// ServeProducer is the whole main of a producer actor.
func ServeProducer[D any](p Producer[D]) {
	serve(func(cfg protocol.ActorConfig, log *slog.Logger) (service, error) {
		return newProducer(cfg, log, p)
	})
}

func serve(newSvc func(protocol.ActorConfig, *slog.Logger) (service, error)) {
	if os.Getenv(protocol.Handshake.MagicCookieKey) != protocol.Handshake.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s is a robust actor process; the supervisor starts it. Run bin/supervisor instead.\n", filepath.Base(os.Args[0]))
		os.Exit(2)
	}
	// plugin.Serve replaces os.Stderr with a pipe of its own; the host parses
	// log lines from the real one, file descriptor 2.
	h := &Host{newSvc: newSvc, stderr: os.Stderr}
	go watchParent(os.Getppid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: protocol.Handshake,
		Plugins:         protocol.PluginMap(h),
	})
	_ = h.Stop() // the supervisor closed the connection
	os.Exit(0)
}

// watchParent ends the process when the supervisor is gone, even if it was
// killed with SIGKILL and could not stop us (the supervisor also asks the
// kernel for that with Pdeathsig; this covers the rest).
func watchParent(ppid int) {
	for range time.Tick(100 * time.Millisecond) {
		if os.Getppid() != ppid {
			fmt.Fprintln(os.Stderr, `{"@level":"error","@message":"supervisor gone; exiting"}`)
			os.Exit(1)
		}
	}
}

// Host implements protocol.Actor in the actor process.
type Host struct {
	newSvc func(protocol.ActorConfig, *slog.Logger) (service, error)
	stderr io.Writer

	mu       sync.Mutex
	svc      service
	log      *slog.Logger
	cancel   context.CancelFunc
	done     chan struct{}
	stopping bool
}

var errNotStarted = errors.New("actor not started")

// Start implements protocol.Actor.
func (h *Host) Start(cfg protocol.ActorConfig) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.svc != nil {
		return errors.New("actor already started")
	}
	log := NewLogger(h.stderr, cfg.LogLevel)
	svc, err := h.newSvc(cfg, log)
	if err != nil {
		return err
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
		err := svc.serve(ctx)
		svc.close()
		h.mu.Lock()
		stopping := h.stopping
		h.mu.Unlock()
		if err != nil || !stopping {
			log.Error("actor failed", "error", err)
			os.Exit(1)
		}
	}()
	return nil
}

// Stop implements protocol.Actor: the current batch finishes, then the loop ends.
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
