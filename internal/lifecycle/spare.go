package lifecycle

import (
	"context"
	"errors"
	"net/rpc"
	"sync"
	"time"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/pkg/protocol"
)

// spareRetry is how long after a failed or lost spare the next is
// launched, doubling up to spareRetryMax while they keep failing (a
// binary that cannot start must not be launched in a loop: the next
// life's own launch reports why); a spare that waited spareLived or more
// before it ended starts the doubling over.
const (
	spareRetry    = time.Second
	spareRetryMax = 30 * time.Second
	spareLived    = 10 * time.Second
	// spareAnswer bounds the check of a spare as a life takes it: one
	// that does not answer (stopped) is ended, and the life launches a
	// process instead of waiting out StartTimeout.
	spareAnswer = 500 * time.Millisecond
)

// spareSlot holds an actor's warm spare: at most one, launched in the
// background while the active process runs.
type spareSlot struct {
	mu      sync.Mutex
	ready   *launched     // prepared and waiting
	taken   chan struct{} // closed when ready is taken or dropped
	running bool          // a launch, or the watch of a spare, is under way
	gen     uint64        // of the background work that running is about
	closed  bool
	cancel  context.CancelFunc // the latest background work's (close ends it; an earlier one has ended or is ending)
	wg      sync.WaitGroup
}

// take hands over the ready spare, or nil if there is none, it has
// ended, or it does not answer (then it is ended).
func (s *spareSlot) take(p *Process) *launched {
	s.mu.Lock()
	l := s.ready
	if l == nil {
		s.mu.Unlock()
		return nil
	}
	s.ready = nil
	close(s.taken)
	// Its background work is done once it sees taken: the next fill
	// must not wait for that goroutine to notice.
	s.running = false
	s.gen++
	s.mu.Unlock()
	p.Emit(events.Spare{Base: events.Base{At: time.Now(), Actor: p.Name}})
	if err := answers(l, min(spareAnswer, p.PingTimeout)); err != nil {
		p.Log.Warn("the warm spare does not answer; launching a process instead", "pid", l.c.pid, "error", err)
		l.release(p)
		return nil
	}
	return l
}

// answers checks that l is alive and answers an RPC within timeout (a
// spare answers Status with "not started" at once).
func answers(l *launched, timeout time.Duration) error {
	_, err := call(timeout, l.c.exited, nil, func() (protocol.Status, error) {
		st, err := l.act.Status()
		var answered rpc.ServerError
		if errors.As(err, &answered) {
			err = nil // its answer, whatever it says
		}
		return st, err
	})
	return err
}

// fill launches a spare in the background unless one is ready or on its
// way. The spare is watched while it waits: if it ends or stops
// answering, another is launched (after spareRetry).
func (s *spareSlot) fill(ctx context.Context, p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.ready != nil || s.closed {
		return
	}
	s.running = true
	s.gen++
	gen := s.gen
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.keep(ctx, p, gen)
	}()
}

func (s *spareSlot) keep(ctx context.Context, p *Process, gen uint64) {
	defer func() {
		s.mu.Lock()
		if s.gen == gen {
			s.running = false
		}
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
			readyAt := time.Now()
			if !s.wait(ctx, p, l, taken) {
				return // taken, or stopping
			}
			if time.Since(readyAt) >= spareLived {
				retry.reset()
				wait = retry.next()
			}
			p.Log.Warn("the warm spare ended or stopped answering while it waited; launching another", "pid", l.c.pid, "in", wait)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// wait watches the ready spare l until a life takes it (false), ctx is
// done (false: it is ended), or it ends or stops answering the health
// checks (true: it is ended, and another is wanted).
func (s *spareSlot) wait(ctx context.Context, p *Process, l *launched, taken <-chan struct{}) bool {
	ping := time.NewTicker(p.PingEvery)
	defer ping.Stop()
	for {
		select {
		case <-taken: // a life has it now; the life launches the next
			return false
		case <-ctx.Done():
			s.drop(p, l)
			return false
		case <-l.c.exited:
			return s.drop(p, l) // false: taken just as it ended, the life sees the exit
		case <-ping.C:
			if err := answers(l, p.PingTimeout); err != nil {
				select {
				case <-taken:
					return false
				default:
				}
				return s.drop(p, l)
			}
		}
	}
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

// backoff doubles from min to max.
type backoff struct{ min, max, cur time.Duration }

func (b *backoff) next() time.Duration {
	b.cur = min(max(b.cur*2, b.min), b.max)
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
