package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/faults"
	"github.com/robust/robust/pkg/protocol"
)

// pollWait is how long an idle processor waits on one fetch.
const pollWait = 200 * time.Millisecond

type processor[D any] struct {
	*core[D]
	dlqLast uint64 // the DLQ's last sequence, as last read
	p       Processor[D]
	cons    map[string]*input
	// pend is the last batch's outbox being published, its inputs not yet
	// acked: the next batch is fetched meanwhile, and settles it first.
	pend *pending
}

// pending is a committed batch whose outputs are being published.
type pending struct {
	pub  *publishing
	ds   []delivery
	keys []uint64
}

type input struct {
	in       protocol.Input
	c        jetstream.Consumer
	nextCSeq uint64 // next consumer delivery sequence expected
}

func newProcessor[D any](cfg protocol.ActorConfig, log *slog.Logger, p Processor[D]) (*processor[D], error) {
	c, err := newCore[D](cfg, log, p)
	if err != nil {
		return nil, err
	}
	return &processor[D]{core: c, p: p, cons: map[string]*input{}}, nil
}

func (r *processor[D]) open(ctx context.Context) error {
	if len(r.env.Config.Inputs) == 0 {
		return fmt.Errorf("%w: a processor needs inputs (ActorConfig.Inputs)", ErrConfig)
	}
	if err := r.core.connect(ctx); err != nil {
		return err
	}
	// The inputs' consumers are looked up while the state is loaded and
	// claimed: a replacement waits for this, and the supervisor reset
	// them before the start (nobody else fetches from them meanwhile).
	ins := make([]*input, len(r.env.Config.Inputs))
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for k, in := range r.env.Config.Inputs {
		ins[k] = &input{in: in}
		wg.Go(func() { errs[k] = r.reset(ctx, ins[k]) })
	}
	err := r.core.open(ctx)
	if err == nil {
		err = r.flushOutbox(ctx)
	}
	wg.Wait()
	if err := errors.Join(append(errs, err)...); err != nil {
		return err
	}
	for _, i := range ins {
		r.cons[i.in.Consumer] = i
	}
	return nil
}

// reset binds the consumer, which the supervisor recreated before this
// process started: every message a predecessor had not acked comes back
// at once, in stream order, so the Applied high-water mark stays sound.
func (r *processor[D]) reset(ctx context.Context, i *input) error {
	c, err := r.js.Consumer(ctx, i.in.Stream, i.in.Consumer)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", i.in.Consumer, err)
	}
	info := c.CachedInfo()
	i.c, i.nextCSeq = c, info.Delivered.Consumer+1
	return nil
}

// serve runs until ctx is cancelled (nil) or the actor must die (error).
func (r *processor[D]) serve(ctx context.Context) error {
	for ctx.Err() == nil {
		r.turn()
		st := r.state()
		var waitOn *input
		progressed := false
		for _, in := range r.env.Config.Inputs {
			n := min(r.p.Limit(in, &st.Data), r.env.Config.Batch)
			if n <= 0 {
				continue
			}
			i := r.cons[in.Consumer]
			waitOn = i
			msgs, err := fetch(i.c.FetchNoWait(n))
			if err != nil {
				return err
			}
			if len(msgs) > 0 {
				progressed = true
				if err := r.batch(ctx, i, msgs); err != nil {
					return err
				}
				st = r.state()
			}
		}
		if progressed {
			continue
		}
		// Idle: finish the last batch before waiting.
		if err := r.settle(ctx); err != nil {
			return err
		}
		if waitOn == nil { // nothing may be taken now: wait for state to change
			sleep(ctx, pollWait)
			continue
		}
		// Nothing anywhere: wait for the first message of the input that
		// matters most (a full batch would wait for all of it); the next
		// turn takes whatever followed it without waiting.
		b, err := waitOn.c.Fetch(1, jetstream.FetchMaxWait(pollWait))
		if err != nil {
			return fmt.Errorf("fetch %s: %w", waitOn.in.Consumer, err)
		}
		msgs, err := fetch(b, nil)
		if err != nil {
			return err
		}
		if len(msgs) > 0 {
			if err := r.batch(ctx, waitOn, msgs); err != nil {
				return err
			}
		}
	}
	return r.settle(ctx)
}

// settle waits until the pending batch's outputs are stored, then acks its
// inputs.
func (r *processor[D]) settle(ctx context.Context) error {
	p := r.pend
	if p == nil {
		return nil
	}
	r.pend = nil
	sctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := p.pub.wait(sctx); err != nil {
		return err // the outbox goes out again on start
	}
	r.checkFaults(faults.AfterPublish, p.keys)
	for _, d := range p.ds {
		if err := d.m.Ack(); err != nil {
			r.env.Log.Warn("ack failed; the message will be skipped when redelivered", "seq", d.seq, "error", err)
		}
	}
	return nil
}

func fetch(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
		return msgs, fmt.Errorf("fetch: %w", err)
	}
	return msgs, nil
}

// delivery is a fetched message with its metadata.
type delivery struct {
	m   jetstream.Msg
	seq uint64
}

// batch handles fetched messages: redeliveries of applied ones are acked and
// skipped; a range an earlier attempt died in is retried one message at a
// time (so that only the culprit accumulates attempts); the rest go as one
// batch.
func (r *processor[D]) batch(ctx context.Context, i *input, msgs []jetstream.Msg) error {
	st := r.state()
	cur := st.cursor(i.in.Consumer)
	var todo []delivery
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		if md.Sequence.Consumer > i.nextCSeq {
			// A delivery went missing between server and client (or to an
			// older copy of this actor): later messages must not be applied
			// ahead of it. The supervisor resets the consumer when it
			// starts the next process: every unacked message comes back.
			if err := r.settle(ctx); err != nil {
				return err
			}
			return fmt.Errorf("%w on %s: expected delivery %d, got %d", ErrDeliveryGap, i.in.Consumer, i.nextCSeq, md.Sequence.Consumer)
		}
		i.nextCSeq = max(i.nextCSeq, md.Sequence.Consumer+1)
		if md.Sequence.Stream <= cur.Applied {
			r.env.Log.Debug("redelivery of an applied message; acking", "consumer", i.in.Consumer, "seq", md.Sequence.Stream)
			if err := m.Ack(); err != nil {
				r.env.Log.Warn("ack failed; the message will be skipped again", "seq", md.Sequence.Stream, "error", err)
			}
			continue
		}
		todo = append(todo, delivery{m: m, seq: md.Sequence.Stream})
	}
	for len(todo) > 0 {
		r.turn() // one message at a time can take a while: show progress
		st := r.state()
		inf := st.cursor(i.in.Consumer).Inflight
		if inf == nil || todo[0].seq > inf.To {
			return r.run(ctx, i.in, todo, 1, "", nil)
		}
		// Retry the unfinished range one message at a time, keeping the
		// rest of the range on record until each has gone through.
		attempts, lastErr := 1, ""
		var rest *Inflight
		if todo[0].seq >= inf.From {
			attempts, lastErr = inf.Attempts+1, inf.LastError
		}
		if todo[0].seq < inf.To {
			rest = &Inflight{From: todo[0].seq + 1, To: inf.To, Attempts: inf.Attempts, LastError: inf.LastError}
		}
		if err := r.run(ctx, i.in, todo[:1], attempts, lastErr, rest); err != nil {
			return err
		}
		todo = todo[1:]
	}
	return nil
}

// run processes ds as one unit, peek before commit, with an outbox:
//
//  1. record the attempt (the inflight range);
//  2. apply the messages to a working copy of the state;
//  3. commit: save the new state together with the outputs (the outbox);
//  4. publish the outbox;
//  5. once every publish ack is in, ack the inputs.
//
// The acks of 4 come while the next batch is fetched: that batch waits for
// them (settle) and does 5 before it records its own attempt, so that a
// crash in 4 or 5 is never counted against it.
//
// A crash before 3 leaves no trace but the attempt: nothing was published,
// so a message that keeps failing can be dead-lettered without its output
// existing anywhere. A crash after 3 leaves the inputs applied (skipped when
// redelivered) and the outbox to be published again on start. rest is the
// unfinished range left on record once ds has gone through.
func (r *processor[D]) run(ctx context.Context, in protocol.Input, ds []delivery, attempts int, lastErr string, rest *Inflight) error {
	cfg := r.env.Config
	if err := r.settle(ctx); err != nil {
		return err
	}
	work := r.state()
	work.Outbox = nil // the previous batch's outputs are stored
	was := work.cursor(in.Consumer).Inflight
	prevSolo := was != nil && was.Solo && was.From == ds[0].seq && was.To == ds[0].seq
	work.cursor(in.Consumer).Inflight = &Inflight{From: ds[0].seq, To: ds[len(ds)-1].seq, Attempts: attempts, LastError: lastErr, Solo: len(ds) == 1}
	sctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := r.save(sctx, work); err != nil {
		return err
	}
	committed := false
	defer func() {
		if p := recover(); p != nil {
			if !committed {
				r.recordPanic(in.Consumer, p)
			}
			panic(p)
		}
	}()

	work = r.state()
	prev := work.cursor(in.Consumer).Applied // the last stream sequence taken
	msg := func(d delivery) Msg {
		m := Msg{Data: d.m.Data(), Header: d.m.Headers(), Seq: d.seq, Gap: d.seq > prev+1}
		if m.Gap {
			work.cursor(in.Consumer).Skipped += d.seq - prev - 1
			r.env.Log.Error("messages left the stream before this actor took them: removed", "stream", in.Stream, "consumer", in.Consumer, "from_seq", prev+1, "to_seq", d.seq-1)
		}
		prev = d.seq
		return m
	}
	var outs []Out
	var keys []uint64
	deadBytes := 0 // the dead letters' payloads in outs: bounded (MaxDeadBatch)
	// A message is dead-lettered only once it has failed alone: a batch
	// that failed says nothing of which of its messages failed it.
	if len(ds) == 1 && attempts > cfg.Showstopper && prevSolo {
		d := ds[0]
		reason := fmt.Sprintf("showstopper: %d deliveries without ack", attempts-1)
		if lastErr != "" {
			reason += "; last error: " + lastErr
		}
		r.env.Log.Error("dead-lettering showstopper", "consumer", in.Consumer, "seq", d.seq, "payload", string(d.m.Data()), "reason", reason)
		r.p.Discard(&r.env, in, msg(d), &work.Data)
		outs = append(outs, r.deadLetter(in, d, attempts, reason, &deadBytes)...)
	} else {
		for _, d := range ds {
			m := msg(d)
			key, v, err := r.p.Decode(in, m)
			if err == nil {
				var ierr error
				if err, ierr = r.checkReplay(sctx, m); ierr != nil {
					r.uncount(in.Consumer) // the server failed, not the message
					return ierr
				}
			}
			if c, ok := r.p.(Checker[D]); ok && err == nil {
				err = c.Check(&r.env, in, v, &work.Data)
			}
			if err != nil {
				reason := err.Error()
				r.env.Log.Warn("dead-lettering a message it cannot take", "consumer", in.Consumer, "seq", d.seq, "reason", reason)
				r.p.Discard(&r.env, in, m, &work.Data)
				outs = append(outs, r.deadLetter(in, d, attempts, reason, &deadBytes)...)
				continue
			}
			if r.p.Fresh(in, v, &work.Data) {
				checkFault(&r.env, r.plan, faults.Before, Key(key))
				keys = append(keys, key)
			}
			outs = append(outs, r.p.Apply(&r.env, in, v, &work.Data)...)
		}
	}
	cur := work.cursor(in.Consumer)
	cur.Applied, cur.Inflight = max(cur.Applied, ds[len(ds)-1].seq), rest
	work.Outbox = outs
	if err := r.save(sctx, work); err != nil {
		if !errors.Is(err, ErrFenced) {
			r.uncount(in.Consumer) // the server failed, not the messages
		}
		return err
	}
	committed = true
	r.checkFaults(faults.AfterSave, keys)
	r.pend = &pending{pub: r.startPublish(outs, nil), ds: ds, keys: keys}
	return nil
}

// uncount takes back the attempt just recorded for consumer: it failed
// because the server did, which says nothing against the messages. Best
// effort: the actor is about to exit.
func (r *processor[D]) uncount(consumer string) {
	st := r.state()
	if inf := st.cursor(consumer).Inflight; inf != nil && inf.Attempts > 0 {
		inf.Attempts--
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = r.store.save(ctx, st)
	}
}

// flushOutbox publishes what the last commit left unpublished.
func (r *processor[D]) flushOutbox(ctx context.Context) error {
	st := r.state()
	if len(st.Outbox) == 0 {
		return nil
	}
	r.env.Log.Info("publishing the outbox of the last commit again", "messages", len(st.Outbox))
	if _, err := r.publish(ctx, st.Outbox, nil); err != nil {
		return err
	}
	st.Outbox = nil
	return r.save(ctx, st)
}

func (r *processor[D]) checkFaults(point faults.Point, keys []uint64) {
	for _, k := range keys {
		checkFault(&r.env, r.plan, point, Key(k))
	}
}

// recordPanic writes the panic into the unfinished batch's record, so that
// the dead letter can say what killed its deliveries. Best effort: the
// process is about to die.
func (r *processor[D]) recordPanic(consumer string, p any) {
	st := r.state()
	inf := st.cursor(consumer).Inflight
	if inf == nil {
		return
	}
	inf.LastError = fmt.Sprintf("panic: %v", p)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.store.save(ctx, st); err != nil {
		r.env.Log.Warn("could not record the panic in state", "error", err)
	}
}

// deadLetter is the DLQ message for a delivery; none for a message that
// came from this actor's own dead-letter subject (an actor that reads the
// DLQ): that would feed it back to itself forever. Such a message stays in
// the DLQ stream, and the error log says so.
func (r *processor[D]) deadLetter(in protocol.Input, d delivery, attempts int, reason string, batchBytes *int) []Out {
	if d.m.Subject() == protocol.DLQSubject(r.env.Config.Actor) {
		r.env.Log.Error("not dead-lettering a dead letter of its own again; it stays in the DLQ", "seq", d.seq, "reason", reason)
		return nil
	}
	out, kept := deadLetter(r.env.Config.Actor, in, d.m, d.seq, attempts, reason, *batchBytes >= MaxDeadBatch)
	*batchBytes += kept
	return []Out{out}
}

// checkReplay refuses a replay of a dead letter the DLQ has not stored yet:
// only `supervisor dlq replay` replays, and only what is there.
// refused is the reason to dead-letter; failed, a failure to find out.
func (r *processor[D]) checkReplay(ctx context.Context, m Msg) (refused, failed error) {
	seq, ok, err := protocol.ParseReplay(m.Header)
	if !ok || err != nil || seq <= r.dlqLast {
		return nil, nil // not a replay, or malformed (Decode's to say), or plausible
	}
	s, err := r.js.Stream(ctx, protocol.StreamDLQ)
	if err == nil {
		var info *jetstream.StreamInfo
		if info, err = s.Info(ctx); err == nil {
			r.dlqLast = info.State.LastSeq
		}
	}
	if err != nil {
		return nil, fmt.Errorf("DLQ stream info: %w", err)
	}
	if seq > r.dlqLast {
		return fmt.Errorf("%w: a replay of dead letter %d: the DLQ's last is %d", protocol.ErrImplausible, seq, r.dlqLast), nil
	}
	return nil, nil
}
