package actor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/faults"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// core is the part of the runtime shared by processors and producers.
type core[D any] struct {
	env   Env
	plan  faults.Plan
	topo  natsx.Topology
	nc    *nats.Conn
	js    jetstream.JetStream
	store store[D]
	beh   Behaviour[D]

	mu sync.Mutex
	st State[D] // last saved state

	lastTurn atomic.Int64 // unix nanoseconds
}

func newCore[D any](cfg protocol.ActorConfig, log *slog.Logger, beh Behaviour[D]) (*core[D], error) {
	plan, err := faults.Parse(cfg.Faults)
	if err != nil {
		return nil, err
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.Showstopper <= 0 {
		cfg.Showstopper = 3
	}
	if cfg.StateKey == "" {
		cfg.StateKey = cfg.Actor
	}
	c := &core[D]{
		env:  Env{Config: cfg, Log: log, Now: time.Now},
		plan: plan,
		topo: natsx.Topology{Queue: cfg.Queue},
		beh:  beh,
	}
	c.turn()
	return c, nil
}

// connect connects to NATS and finds the state bucket: all a warm spare
// does before it is started. It reads no state and writes nothing.
func (c *core[D]) connect(ctx context.Context) error {
	if c.nc != nil {
		return nil
	}
	opts, err := natsx.Auth(c.env.Config.NATSCreds)
	if err != nil {
		return err
	}
	nc, js, err := natsx.Connect(c.env.Config.NATSURL, c.env.Config.Actor, append(opts, natsx.LogErrors(c.env.Log))...)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, protocol.StateBucket)
	if err != nil {
		nc.Close()
		return fmt.Errorf("state bucket %s: %w", protocol.StateBucket, err)
	}
	c.nc, c.js = nc, js
	c.store = store[D]{kv: kv, key: c.env.Config.StateKey}
	return nil
}

// open connects (unless connect did), loads the state and claims it: the
// start count goes up by one with a compare-and-set, fencing any older
// copy.
func (c *core[D]) open(ctx context.Context) error {
	if err := c.connect(ctx); err != nil {
		return err
	}
	st, err := c.store.load(ctx)
	if err != nil {
		return err
	}
	st.Starts++
	if p, ok := c.beh.(Producer[D]); ok {
		p.Resume(&c.env, &st.Data)
	}
	c.env.Starts = st.Starts
	if err := c.store.save(ctx, st); err != nil {
		return err
	}
	c.setState(st)
	// go-plugin re-logs attributes in random order: what was recovered goes
	// into the message, readable at a glance.
	var rec []string
	counters := c.beh.Counters(&st.Data)
	for _, k := range slices.Sorted(maps.Keys(counters)) {
		rec = append(rec, fmt.Sprintf("%s=%d", k, counters[k]))
	}
	for _, name := range slices.Sorted(maps.Keys(st.Cursors)) {
		cur := st.Cursors[name]
		r := fmt.Sprintf("%s applied through seq %d", name, cur.Applied)
		if inf := cur.Inflight; inf != nil {
			r += fmt.Sprintf(", seq %d..%d unfinished after %d attempt(s)", inf.From, inf.To, inf.Attempts)
		}
		rec = append(rec, r)
	}
	msg := fmt.Sprintf("started (start #%d)", st.Starts)
	if len(rec) > 0 {
		msg += "; recovered " + strings.Join(rec, ", ")
	}
	c.env.Log.Info(msg, "pid", os.Getpid(), "faults", c.plan.String())
	return nil
}

func (c *core[D]) close() {
	if c.nc != nil {
		// Flush pending acks before closing; a lost ack only means a
		// redelivery that is skipped.
		if err := c.nc.FlushTimeout(time.Second); err != nil {
			c.env.Log.Debug("flush on close", "error", err)
		}
		c.nc.Close()
	}
}

func (c *core[D]) turn() { c.lastTurn.Store(time.Now().UnixNano()) }

func (c *core[D]) setState(st State[D]) {
	c.mu.Lock()
	c.st = st
	c.mu.Unlock()
}

func (c *core[D]) state() State[D] {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.clone()
}

func (c *core[D]) status() (protocol.Status, error) {
	st := c.state()
	s := protocol.Status{
		Actor:    c.env.Config.Actor,
		PID:      os.Getpid(),
		Starts:   st.Starts,
		Counters: copyCounters(c.beh.Counters(&st.Data)),
	}
	if p, ok := c.beh.(Producer[D]); ok {
		s.Done = p.Done(&c.env, &st.Data)
	}
	if since := time.Since(time.Unix(0, c.lastTurn.Load())); c.env.Config.StallAfter > 0 && since > c.env.Config.StallAfter {
		return s, fmt.Errorf("%w: no progress for %s", ErrStalled, since.Round(time.Millisecond))
	}
	return s, nil
}

// publish stores outs in JetStream, asynchronously with message IDs, and
// waits for every publish ack. It returns how many outs, from the first,
// were stored, and the first error.
//
// With chain, the outs land in order and next to each other, or not at all
// from the first refused one on: the first is stored only if the stream's
// last sequence is *chain, and each later one only if the stream's last
// message is the out before it (its Nats-Msg-Id). Chaining every out on a
// sequence would not do: a message of somebody else's (a replayed dead
// letter, one published by hand) stored after the first out was refused
// shifts the sequences by one, and the second out, expecting one more than
// the first, would be stored ahead of it.
func (c *core[D]) publish(ctx context.Context, outs []Out, chain *uint64) (int, error) {
	return c.startPublish(outs, chain).wait(ctx)
}

// publishing is an asynchronous publish of outs under way.
type publishing struct {
	outs []Out
	futs []jetstream.PubAckFuture
	err  error // from starting it
}

// startPublish sends outs without waiting for their acks (see publish).
func (c *core[D]) startPublish(outs []Out, chain *uint64) *publishing {
	p := &publishing{outs: outs, futs: make([]jetstream.PubAckFuture, 0, len(outs))}
	for i, o := range outs {
		m := &nats.Msg{Subject: o.Subject, Data: o.Data, Header: o.Header}
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(o.MsgID)}
		switch {
		case chain != nil && i == 0:
			opts = append(opts, jetstream.WithExpectLastSequence(*chain))
		case chain != nil:
			opts = append(opts, jetstream.WithExpectLastMsgID(outs[i-1].MsgID))
		}
		f, err := c.js.PublishMsgAsync(m, opts...)
		if err != nil {
			p.err = err
			break
		}
		p.futs = append(p.futs, f)
	}
	return p
}

// wait waits for every publish ack. It returns how many outs, from the
// first, were stored (a duplicate was stored before), and the first error.
func (p *publishing) wait(ctx context.Context) (int, error) {
	futs := p.futs
	for i, f := range futs {
		select {
		case <-f.Ok():
		case e := <-f.Err():
			waitAll(ctx, futs[i+1:]) // no publish may still be in flight
			return i, fmt.Errorf("publish %s: %w", p.outs[i].Subject, e)
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	if p.err != nil {
		return len(futs), fmt.Errorf("publish: %w", p.err)
	}
	return len(p.outs), nil
}

// waitAll waits for the outcome of every future.
func waitAll(ctx context.Context, futs []jetstream.PubAckFuture) {
	for _, g := range futs {
		select {
		case <-g.Ok():
		case <-g.Err():
		case <-ctx.Done():
			return
		}
	}
}

// save persists st (compare-and-set) and makes it the current state.
func (c *core[D]) save(ctx context.Context, st State[D]) error {
	if err := c.store.save(ctx, st); err != nil {
		return err
	}
	c.setState(st)
	return nil
}

// saveTimeout bounds a state write so that a lost server fails fast.
const saveTimeout = 5 * time.Second

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
}

// deadLetter builds the DLQ message for a delivery.
func deadLetter(actor string, in protocol.Input, m jetstream.Msg, seq uint64, deliveries int, reason string, cut bool) (out Out, kept int) {
	h := nats.Header{}
	size, dropped := 0, 0
	for _, k := range slices.Sorted(maps.Keys(m.Headers())) {
		// Nats-* headers are instructions to the server (message ID,
		// expected sequences): copied, they would be enforced again.
		if strings.HasPrefix(k, "Nats-") || deadLetterHeaders[k] {
			continue // set below, or would claim what is not so
		}
		v := m.Headers()[k]
		n := len(k)
		for _, x := range v {
			n += len(x) + 4
		}
		if cut || size+n > MaxDeadHeaders {
			dropped++
			continue
		}
		size += n
		h[k] = v
	}
	if dropped > 0 {
		h.Set(protocol.HeaderDroppedHeaders, strconv.Itoa(dropped))
	}
	data := m.Data()
	if (cut || len(data) > MaxDeadPayload) && len(data) > DeadExcerpt {
		sum := sha256.Sum256(data)
		h.Set(protocol.HeaderTruncated, "true")
		h.Set(protocol.HeaderOrigSize, strconv.Itoa(len(data)))
		h.Set(protocol.HeaderOrigSHA256, hex.EncodeToString(sum[:]))
		data = data[:min(len(data), DeadExcerpt)]
	}
	h.Set(protocol.HeaderActor, actor)
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "") + "…"
	}
	h.Set(protocol.HeaderReason, reason)
	h.Set(protocol.HeaderOrigSubject, m.Subject())
	h.Set(protocol.HeaderOrigStream, in.Stream)
	h.Set(protocol.HeaderOrigSequence, strconv.FormatUint(seq, 10))
	h.Set(protocol.HeaderDeliveries, strconv.Itoa(deliveries))
	h.Del(protocol.HeaderOrigMsgID) // only the server-kept ID counts, never a copied header
	if id := m.Headers().Get(protocol.HeaderMsgID); id != "" {
		h.Set(protocol.HeaderOrigMsgID, id)
	}
	return Out{Subject: protocol.DLQSubject(actor), MsgID: protocol.DLQMsgID(in.Stream, seq), Data: data, Header: h}, len(data) + size
}

// deadLetterHeaders are the dead letter's own: never copied from the
// message dead-lettered.
var deadLetterHeaders = map[string]bool{
	protocol.HeaderActor: true, protocol.HeaderReason: true, protocol.HeaderOrigSubject: true,
	protocol.HeaderOrigStream: true, protocol.HeaderOrigSequence: true, protocol.HeaderDeliveries: true,
	protocol.HeaderOrigMsgID: true, protocol.HeaderTruncated: true, protocol.HeaderOrigSize: true,
	protocol.HeaderOrigSHA256: true, protocol.HeaderDroppedHeaders: true,
}

// What a dead letter may keep. Its outbox, state included, must stay well
// under the server's maximum payload (1 MiB by default), whatever arrives:
// a payload larger than MaxDeadPayload (no message of the pipeline's comes
// near it) keeps its first DeadExcerpt bytes, its size and its SHA-256,
// and is not replayable; so does any payload over DeadExcerpt of a batch
// whose dead letters already hold MaxDeadBatch bytes (those keep none of
// the original's headers either). Headers of the original beyond
// MaxDeadHeaders bytes are left out (and counted). At most: MaxDeadBatch
// plus a batch (256) of excerpts with the dead letter's own headers, some
// 350 KiB.
const (
	maxReason      = 1 << 10
	MaxDeadPayload = 16 << 10
	DeadExcerpt    = 512
	MaxDeadBatch   = 128 << 10
	MaxDeadHeaders = 4 << 10
)

// errCodeWrongLastMsgID: the stream's last message is not the one expected
// (Nats-Expected-Last-Msg-Id).
const errCodeWrongLastMsgID jetstream.ErrorCode = 10070

// retryable reports a publish refusal that a producer retries: a full
// stream, or a chain broken by somebody else's publish.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case natsx.ErrCodeStreamFull, jetstream.JSErrCodeStreamWrongLastSequence, errCodeWrongLastMsgID:
			return true
		}
	}
	return false
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
