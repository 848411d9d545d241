package supervisor

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/robust/robust/internal/registry"
)

// progress reports an unpaced run's progress every cfg.ProgressEvery until
// ctx is done: a line redrawn in place on a terminal, log lines otherwise.
func (s *Supervisor) progress(ctx context.Context) {
	every := s.cfg.ProgressEvery
	// The values that reached the end of the pipeline: the progress of its
	// first sink (a processor that publishes nothing).
	var sink string
	for _, a := range s.reg.All() {
		if a.Kind == registry.Processor && len(a.Outputs) == 0 {
			sink = a.Name
			break
		}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastLogged uint64 // the logger's count (cumulative across runs) at the last sample
	var last time.Time    // zero until the logger has reported once
	if s.cfg.ProgressTTY != nil {
		defer s.cfg.ProgressTTY.Done()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			rep, err := s.Report(rctx)
			cancel()
			if err != nil && ctx.Err() != nil {
				return
			}
			var logged, beats, restarts uint64
			reported := false
			for _, a := range rep.Actors {
				restarts += a.Restarts
				ra, _ := s.reg.Get(a.Name)
				switch {
				case a.Name == sink:
					logged, reported = a.Progress, a.Counters != nil
				case ra.EndsRun:
					beats = a.Counters[ra.RunProgress]
				}
			}
			rate := -1.0 // unknown until two samples of the logger
			if reported && !last.IsZero() && logged >= lastLogged {
				rate = float64(logged-lastLogged) / now.Sub(last).Seconds()
			}
			if reported {
				lastLogged, last = logged, now
			}
			eta, rateText := "-", "-"
			if rate >= 0 {
				rateText = fmt.Sprintf("%.0f", rate)
			}
			if s.cfg.Beats > 0 && rate > 0 {
				eta = (time.Duration(float64(s.cfg.Beats-min(beats, s.cfg.Beats))/rate*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
			}
			if s.cfg.ProgressTTY != nil {
				s.cfg.ProgressTTY.Draw(fmt.Sprintf("%8s values/s  logged %d  dead letters %d  restarts %d  beats %d/%d  ETA %s",
					rateText, logged, rep.DeadLetters, restarts, beats, s.cfg.Beats, eta))
			} else {
				s.log.Info("progress", "values_per_s", rateText, "logged", logged, "dead_letters", rep.DeadLetters,
					"restarts", restarts, "beats", beats, "of", s.cfg.Beats, "eta", eta)
			}
		}
	}
}

// Terminal is a terminal shared by log lines and one progress line redrawn
// in place: each write (a log line) clears the progress line first and
// draws it again after, so the two never run into each other.
type Terminal struct {
	W io.Writer

	mu   sync.Mutex
	line string // the progress line shown, or ""
}

const clearLine = "\r\033[K"

// Write implements io.Writer for log lines.
func (t *Terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		if _, err := io.WriteString(t.W, clearLine); err != nil {
			return 0, err
		}
	}
	n, err := t.W.Write(p)
	if err == nil && t.line != "" {
		_, err = io.WriteString(t.W, t.line)
	}
	return n, err
}

// Draw shows line as the progress line, in place of the last one.
func (t *Terminal) Draw(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.line = line
	_, _ = io.WriteString(t.W, clearLine+line)
}

// Done leaves the progress line as it is and moves below it.
func (t *Terminal) Done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		_, _ = io.WriteString(t.W, "\n")
	}
	t.line = ""
}
