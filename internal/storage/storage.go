// Package storage watches the embedded NATS server's store for a full
// disk. nats-server stops a stream's writes at its first failed one and
// never takes them up again by itself; actors restarted meanwhile fail at
// their first write, again and again. The Watcher says when the store is
// full (events.StorageFull: the supervisor then holds restarts), and once
// space is back restarts JetStream if a write had failed and says so
// (events.StorageBack).
package storage

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/robust/robust/internal/events"
)

// Clock is the time the Watcher reads.
type Clock interface {
	Now() time.Time
	After(time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Watcher watches one store directory.
type Watcher struct {
	Dir string
	// MinFree: below this many free bytes the store is full. Writes fail
	// only at zero, but a message, a state (up to the server's 1 MiB
	// payload) or a block of the store may need that much at once.
	MinFree uint64
	Every   time.Duration // how often free space is read; 0: a second
	// Restart restarts JetStream after a failed write, once space is back.
	Restart func() error
	Emit    func(events.Event)
	Clock   Clock                            // nil: the real one
	Free    func(dir string) (uint64, error) // nil: statfs
	// Failed, if set, hears that a restart could not be done (it is tried
	// again at the next look).
	Failed func(error)

	failed chan error
}

// New returns a Watcher ready for NoSpace before Run.
func New(w Watcher) *Watcher {
	w.failed = make(chan error, 1)
	return &w
}

// NoSpace tells the Watcher a write failed for lack of space. It never
// blocks.
func (w *Watcher) NoSpace(err error) {
	select {
	case w.failed <- err:
	default: // one is enough until Run takes it
	}
}

// Free is the space left to an unprivileged writer on dir's file system
// (0 when it has no inode left). A quota is not seen.
func Free(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	if st.Files > 0 && st.Ffree == 0 {
		return 0, nil // no inode left: no new file either
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Run looks at the store every Every, and at once when a write failed,
// until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	clock := w.Clock
	if clock == nil {
		clock = realClock{}
	}
	free := w.Free
	if free == nil {
		free = Free
	}
	every := w.Every
	if every <= 0 {
		every = time.Second
	}
	var full, wrote bool // wrote: a write failed, JetStream needs a restart
	look := func(why string) {
		n, err := free(w.Dir)
		if err != nil {
			if w.Failed != nil {
				w.Failed(err)
			}
			return
		}
		switch {
		case !full && (n < w.MinFree || why != ""):
			if why == "" {
				why = fmt.Sprintf("less than %d bytes free on the store's file system (%s)", w.MinFree, w.Dir)
			}
			full = true
			w.Emit(events.StorageFull{Base: events.Base{At: clock.Now()}, Free: n, Why: why})
		case full && n >= w.MinFree:
			if wrote {
				if err := w.Restart(); err != nil {
					if w.Failed != nil {
						w.Failed(err)
					}
					return
				}
			}
			full = false
			w.Emit(events.StorageBack{Base: events.Base{At: clock.Now()}, Free: n, Restarted: wrote})
			wrote = false
		}
	}
	look("")
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-w.failed:
			wrote = true
			look("a write failed: " + err.Error())
		case <-clock.After(every):
			look("")
		}
	}
}
