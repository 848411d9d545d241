package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/robust/robust/pkg/protocol"
)

// progress reports an unpaced run's progress every cfg.ProgressEvery until
// ctx is done: a line redrawn in place on a terminal, log lines otherwise.
func (s *Supervisor) progress(ctx context.Context) {
	every := s.cfg.ProgressEvery
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastLogged uint64 // the logger's count (cumulative across runs) at the last sample
	var last time.Time    // zero until the logger has reported once
	drawn := false
	defer func() {
		if drawn {
			fmt.Fprintln(s.cfg.ProgressTTY)
		}
	}()
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
				switch a.Name {
				case protocol.Logger:
					logged, reported = a.Counters["logged"], a.Counters != nil
				case protocol.Heartbeat:
					beats = a.Counters["beats"]
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
				fmt.Fprintf(s.cfg.ProgressTTY, "\r\033[K%8s values/s  logged %d  dead letters %d  restarts %d  beats %d/%d  ETA %s",
					rateText, logged, rep.DeadLetters, restarts, beats, s.cfg.Beats, eta)
				drawn = true
			} else {
				s.log.Info("progress", "values_per_s", rateText, "logged", logged, "dead_letters", rep.DeadLetters,
					"restarts", restarts, "beats", beats, "of", s.cfg.Beats, "eta", eta)
			}
		}
	}
}
