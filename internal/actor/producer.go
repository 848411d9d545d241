package actor

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/faults"
	"github.com/robust/robust/pkg/protocol"
)

type producer[D any] struct {
	*core[D]
	p      Producer[D]
	stream jetstream.Stream
}

func newProducer[D any](cfg protocol.ActorConfig, log *slog.Logger, p Producer[D]) (*producer[D], error) {
	c, err := newCore[D](cfg, log, p)
	if err != nil {
		return nil, err
	}
	return &producer[D]{core: c, p: p}, nil
}

func (r *producer[D]) open(ctx context.Context) error {
	if err := r.core.open(ctx); err != nil {
		return err
	}
	s, err := r.js.Stream(ctx, r.p.Stream())
	if err != nil {
		return fmt.Errorf("stream %s: %w", r.p.Stream(), err)
	}
	r.stream = s
	return nil
}

// room is how many more messages the bounded stream takes now, counting
// units: at most the topology's limit of units (values, beats) wait
// unconsumed (the stream's own bound leaves room for replays above it).
// last is the stream's last sequence.
func (r *producer[D]) room(ctx context.Context) (n int, last uint64, err error) {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", r.p.Stream(), err)
	}
	last = info.State.LastSeq
	limit := int64(r.topo.Limit(r.p.Stream()))
	if info.Config.MaxMsgs <= 0 || limit <= 0 {
		return r.env.Config.Batch, last, nil
	}
	per := int64(max(r.p.PerMessage(&r.env), 1))
	free := min(limit, info.Config.MaxMsgs) - int64(info.State.Msgs)*per
	if free >= per {
		return int(free / per), last, nil
	}
	if info.State.Msgs == 0 {
		return 1, last, nil // a queue smaller than one message still moves
	}
	return 0, last, nil
}

// serve sends batches: as many messages as the stream has room for (a full
// stream is the backpressure), publish them, wait for their acks, then save
// the position. A crash before the save republishes the same message IDs,
// which the stream drops as duplicates.
func (r *producer[D]) serve(ctx context.Context) error {
	period := r.p.Period(&r.env)
	var tick <-chan time.Time
	if period > 0 {
		t := time.NewTicker(period)
		defer t.Stop()
		tick = t.C
	}
	full := backoff{min: time.Millisecond, max: 50 * time.Millisecond}
	idle := time.NewTicker(pollWait) // the loop turns while it waits for a slow tick
	defer idle.Stop()
	for ctx.Err() == nil {
		r.turn()
		want := r.env.Config.Batch
		if tick != nil {
			select {
			case <-tick:
			case <-idle.C:
				continue
			case <-ctx.Done():
				return nil
			}
			want = 1
		}
		st := r.state()
		if r.p.Done(&r.env, &st.Data) {
			sleep(ctx, pollWait) // nothing more this run: idle until stopped
			continue
		}
		room, last, err := r.room(ctx)
		if err != nil {
			return err
		}
		if room == 0 {
			sleep(ctx, full.next()) // the queue is full: wait for consumers
			continue
		}
		sent, err := r.send(ctx, st, min(want, room), last)
		if err != nil {
			return err
		}
		if sent {
			full.reset()
		} else {
			sleep(ctx, full.next()) // refused: somebody else's publish, or a store failure
		}
	}
	return nil
}

// send publishes up to n messages, chained on the stream's last sequence so
// that they land in order: a consumer can then tell a republished message
// (after a server restart forgot its ID) by its position alone.
func (r *producer[D]) send(ctx context.Context, st State[D], n int, last uint64) (sent bool, err error) {
	var outs []Out
	var keys []Keys
	for i := range n {
		key, out, ok := r.p.Next(&r.env, &st.Data, i)
		if !ok {
			break
		}
		checkFault(&r.env, r.plan, faults.Before, key)
		outs, keys = append(outs, out), append(keys, key)
	}
	if len(outs) == 0 {
		return false, nil
	}
	sctx, cancel := withTimeout(ctx) // a stop lets the batch finish
	defer cancel()
	k, err := r.publish(sctx, outs, &last)
	if err != nil {
		if !retryable(err) {
			return false, err
		}
		r.env.Log.Debug("publish refused; will retry", "sent", k, "of", len(outs), "reason", err)
	}
	for _, key := range keys[:k] {
		checkFault(&r.env, r.plan, faults.AfterPublish, key)
	}
	if k == 0 {
		return false, nil
	}
	r.p.Advance(&r.env, &st.Data, k)
	if err := r.save(sctx, st); err != nil {
		return false, err
	}
	for _, key := range keys[:k] {
		checkFault(&r.env, r.plan, faults.AfterSave, key)
	}
	return true, nil
}

// backoff doubles from min to max.
type backoff struct{ min, max, cur time.Duration }

func (b *backoff) next() time.Duration {
	b.cur = min(max(b.cur*2, b.min), b.max)
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
