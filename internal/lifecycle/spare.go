package lifecycle

import (
	"context"
	"sync"
	"time"

	"github.com/robust/robust/internal/events"
)

// spareRetry is how long after a failed or lost spare the next is
// launched, doubling up to spareRetryMax while they keep failing: a
// binary that cannot start must not be launched in a loop (the next
// life's own launch reports why).
const (
	spareRetry    = time.Second
	spareRetryMax = 30 * time.Second
)

// spareSlot holds an actor's warm spare: at most one, launched in the
// background while the active process runs.
type spareSlot struct {
	mu      sync.Mutex
	ready   *launched     // prepared and waiting
	taken   chan struct{} // closed when ready is taken or dropped
	running bool          // a launch, or the watch of a spare, is under way
	closed  bool
	cancel  context.CancelFunc // ends the background work (close)
	wg      sync.WaitGroup
}

// take hands over the ready spare, or nil if there is none or it has
// ended meanwhile.
func (s *spareSlot) take(p *Process) *launched {
	s.mu.Lock()
	l := s.ready
	if l == nil {
		s.mu.Unlock()
		return nil
	}
	s.ready = nil
	close(s.taken)
	s.mu.Unlock()
	select {
	case <-l.c.exited:
		l.release(p)
		return nil
	default:
		return l
	}
}

// fill launches a spare in the background unless one is ready or on its
// way. The spare is watched while it waits: if it ends, another is
// launched (after spareRetry).
func (s *spareSlot) fill(ctx context.Context, p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.ready != nil || s.closed {
		return
	}
	s.running = true
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.keep(ctx, p)
	}()
}

func (s *spareSlot) keep(ctx context.Context, p *Process) {
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	retry := backoff{min: spareRetry, max: spareRetryMax}
	for ctx.Err() == nil {
		l, err := p.launch(ctx, true)
		wait := retry.next()
		if err != nil {
			if ctx.Err() == nil {
				p.Log.Warn("could not launch a warm spare; trying again", "error", err, "in", wait)
			}
		} else {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				l.release(p)
				return
			}
			taken := make(chan struct{})
			s.ready, s.taken = l, taken
			s.mu.Unlock()
			p.Emit(events.Spare{Base: events.Base{At: time.Now(), Actor: p.Name}, PID: l.c.pid})
			select {
			case <-taken: // a life has it now; the life launches the next
				return
			case <-ctx.Done():
				s.drop(p, l)
				return
			case <-l.c.exited:
				if !s.drop(p, l) {
					return // taken just as it ended: the life sees the exit
				}
				p.Log.Warn("the warm spare ended while it waited; launching another", "pid", l.c.pid, "in", wait)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// backoff doubles from min to max.
type backoff struct{ min, max, cur time.Duration }

func (b *backoff) next() time.Duration {
	b.cur = min(max(b.cur*2, b.min), b.max)
	return b.cur
}

// drop ends l if it is still the ready spare; false if a life took it.
func (s *spareSlot) drop(p *Process, l *launched) bool {
	s.mu.Lock()
	if s.ready != l {
		s.mu.Unlock()
		return false
	}
	s.ready = nil
	close(s.taken)
	s.mu.Unlock()
	l.release(p)
	p.Emit(events.Spare{Base: events.Base{At: time.Now(), Actor: p.Name}})
	return true
}

// close ends the ready spare and waits for the background work to end;
// no spare is launched after it.
func (s *spareSlot) close(p *Process) {
	s.mu.Lock()
	s.closed = true
	l, cancel := s.ready, s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if l != nil {
		s.drop(p, l)
	}
	s.wg.Wait()
}
