package lifecycle

import (
	"context"
	"sync"
)

// Gate holds the keepers' restarts while something outside the actors
// (a full disk) would make every new life fail at once. The zero value is
// open.
type Gate struct {
	mu   sync.Mutex
	held bool
	open chan struct{} // closed when the gate opens; nil while open
}

// Hold closes the gate: keepers wait before their next start.
func (g *Gate) Hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held {
		g.held, g.open = true, make(chan struct{})
	}
}

// Release opens the gate: waiting keepers start their children.
func (g *Gate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		close(g.open)
		g.held, g.open = false, nil
	}
}

// Held reports whether the gate is closed.
func (g *Gate) Held() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// Wait returns once the gate is open (at once if it is), or ctx's error.
func (g *Gate) Wait(ctx context.Context) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if open == nil {
		return nil
	}
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
