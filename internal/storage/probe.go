package storage

import (
	"context"
	"errors"
	"time"

	"github.com/robust/robust/internal/events"
)

// ErrFull: a server's store takes no writes (Prober.Try).
var ErrFull = errors.New("the NATS store takes no writes")

// Prober watches the store of a server someone else runs (--nats-url):
// its disk cannot be read from here, only tried. nats-server turns
// JetStream off when it runs out of resources, and a stream whose write
// failed for want of space takes none again until JetStream restarts:
// neither comes back by itself, and only the server's operator can bring
// it back. So the Prober says when the store takes no writes
// (events.StorageFull: the supervisor holds restarts), and when it takes
// them again (events.StorageBack, never Restarted).
type Prober struct {
	// Try tries the store once: nil, it takes writes; an error wrapping
	// ErrFull, it does not (its text says why); any other error, it
	// cannot tell (Failed hears it; nothing changes).
	Try   func(ctx context.Context) error
	Every time.Duration // how often; 0: a second
	// Confirm: tries in a row that say full before the store is full (a
	// server briefly without JetStream while it starts, a slow answer);
	// 0: 2.
	Confirm int
	Emit    func(events.Event)
	Clock   Clock       // nil: the real one
	Failed  func(error) // nil: ignored
}

// Run tries the store every Every until ctx is done.
func (p *Prober) Run(ctx context.Context) {
	clock := p.Clock
	if clock == nil {
		clock = realClock{}
	}
	every := p.Every
	if every <= 0 {
		every = time.Second
	}
	confirm := p.Confirm
	if confirm <= 0 {
		confirm = 2
	}
	full, inRow := false, 0
	for {
		err := p.Try(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrFull):
			if inRow++; !full && inRow >= confirm {
				full = true
				p.Emit(events.StorageFull{Base: events.Base{At: clock.Now()}, Why: err.Error()})
			}
		case err != nil:
			if p.Failed != nil {
				p.Failed(err)
			}
		default:
			inRow = 0
			if full {
				full = false
				p.Emit(events.StorageBack{Base: events.Base{At: clock.Now()}})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-clock.After(every):
		}
	}
}
