package api

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// hub builds the dashboard's snapshot once per tick, whatever the number
// of GET /events clients, and hands each client the latest. It runs while
// at least one client is connected.
type hub struct {
	build func(context.Context) Snapshot

	mu      sync.Mutex
	clients int
	last    []byte        // the latest snapshot as JSON; nil before the first
	fresh   chan struct{} // closed when last is replaced
	stop    context.CancelFunc
	gen     uint64 // the running loop's; a stopped loop's writes are dropped
}

// join adds a client, up to max; ok is false past it. leave must be
// called once the client is gone.
func (h *hub) join(max int) (ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients >= max {
		return false
	}
	h.clients++
	if h.clients == 1 {
		ctx, stop := context.WithCancel(context.Background())
		h.gen++
		h.stop, h.last, h.fresh = stop, nil, make(chan struct{})
		go h.loop(ctx, h.gen)
	}
	return true
}

func (h *hub) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients--
	if h.clients == 0 {
		h.stop()
	}
}

// next returns the latest snapshot and a channel closed when a newer one
// is in (last is nil until the first is).
func (h *hub) next() (last []byte, fresh <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.fresh
}

func (h *hub) loop(ctx context.Context, gen uint64) {
	tick := time.NewTicker(snapshotEvery)
	defer tick.Stop()
	for {
		b, err := json.Marshal(h.build(ctx))
		if err == nil {
			h.mu.Lock()
			if h.gen != gen { // stopped; another loop serves the clients now
				h.mu.Unlock()
				return
			}
			h.last = b
			close(h.fresh)
			h.fresh = make(chan struct{})
			h.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
