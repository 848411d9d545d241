// Package natsx holds, in one place, how every process of the pipeline
// connects to NATS and what the pipeline's streams, consumers and state
// bucket look like. Credentials and replica counts arrive here, not in mains.
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/pkg/protocol"
)

// Topology sizes the pipeline's JetStream assets. Zero fields get defaults:
//
//	Queue:     1000 (unconsumed numbers, and unconsumed beats)
//	Replicas:  1
//	DupWindow: DefaultDupWindow
//	AckWait:   30 seconds
//	DLQ:       DefaultDLQ
type Topology struct {
	Queue     int
	Replicas  int
	DupWindow time.Duration
	AckWait   time.Duration
	DLQ       DLQLimits
}

// DLQLimits bound the DLQ stream: past any of them the oldest dead letters
// go. The books do not need them (each dead-lettering actor tallies its
// dead letters in its state); what goes is their payload and reason, and
// the chance to replay them.
type DLQLimits struct {
	MaxMsgs  int64
	MaxBytes int64
	MaxAge   time.Duration
}

// DefaultDLQ: a million dead letters, 1 GiB, 30 days, whichever comes
// first. A dead letter keeps at most MaxDeadPayload bytes of payload (see
// internal/actor), so 1 GiB holds 65,000 of the largest.
var DefaultDLQ = DLQLimits{MaxMsgs: 1_000_000, MaxBytes: 1 << 30, MaxAge: 30 * 24 * time.Hour}

// ReplayRoom is room in the numbers stream beyond Queue that only replayed
// dead letters take: the generator keeps the stream at Queue, so a replay
// is not refused because the generator filled it.
const ReplayRoom = 1000

// Limit is how many units (values, beats) the producer of a bounded stream
// may keep waiting in it, or 0 if the stream is not bounded.
func (t Topology) Limit(stream string) int {
	switch stream {
	case protocol.StreamNumbers, protocol.StreamBeats:
		return t.withDefaults().Queue
	}
	return 0
}

// ErrCodeStreamFull is the server's answer to a publish that a full
// DiscardNew stream refuses ("maximum messages exceeded").
const ErrCodeStreamFull jetstream.ErrorCode = 10077

// ErrCodeInsufficientResources is the server's answer to a request its
// store has no room for (JSInsufficientResourcesErr).
const ErrCodeInsufficientResources jetstream.ErrorCode = 10023

// DefaultDupWindow is the streams' duplicate window. While the server runs,
// a message republished soon after an actor restart (the outbox of its
// last commit, a producer's unsaved batch: within some tens of
// milliseconds) is dropped before any consumer sees it.
//
// It is short on purpose. The server keeps every ID of the window in
// memory: at 30,000 values/s a 10-second window took the supervisor to
// 310-390 MiB over a million values, 2 seconds to 130 MiB (measured), and
// ten minutes to 545 MiB and a slowdown. And a window cannot be relied on
// anyway: on restart the server forgets the IDs of consumed messages, so
// the consumers recognise copies by position (see README).
const DefaultDupWindow = 2 * time.Second

func (t Topology) withDefaults() Topology {
	if t.Queue <= 0 {
		t.Queue = 1000
	}
	if t.Replicas <= 0 {
		t.Replicas = 1
	}
	if t.DupWindow <= 0 {
		t.DupWindow = DefaultDupWindow
	}
	if t.AckWait <= 0 {
		t.AckWait = 30 * time.Second
	}
	if t.DLQ.MaxMsgs <= 0 {
		t.DLQ.MaxMsgs = DefaultDLQ.MaxMsgs
	}
	if t.DLQ.MaxBytes <= 0 {
		t.DLQ.MaxBytes = DefaultDLQ.MaxBytes
	}
	if t.DLQ.MaxAge <= 0 {
		t.DLQ.MaxAge = DefaultDLQ.MaxAge
	}
	return t
}

// Streams returns the configuration of every stream.
func (t Topology) Streams() []jetstream.StreamConfig {
	t = t.withDefaults()
	work := func(name, subject string, max int) jetstream.StreamConfig {
		c := jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{subject},
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   t.Replicas,
			Duplicates: t.DupWindow,
			MaxMsgs:    -1,
			// The supervisor's books read a queue with batched direct
			// gets: a work queue takes no second consumer.
			AllowDirect: true,
		}
		if max > 0 { // a bounded queue refuses publishes when full: backpressure, not loss
			c.MaxMsgs, c.Discard = int64(max), jetstream.DiscardNew
		}
		return c
	}
	return []jetstream.StreamConfig{
		work(protocol.StreamNumbers, protocol.SubjectNumbers, t.Queue+ReplayRoom),
		work(protocol.StreamBeats, protocol.SubjectBeats, t.Queue),
		work(protocol.StreamResults, protocol.SubjectResults, 0),
		{ // Limits retention: inspectors such as `nats stream view` may add consumers.
			Name:       protocol.StreamDLQ,
			Subjects:   []string{protocol.SubjectDLQ + ".>"},
			Retention:  jetstream.LimitsPolicy,
			Discard:    jetstream.DiscardOld, // a dead letter is always taken; the oldest go
			MaxMsgs:    t.DLQ.MaxMsgs,
			MaxBytes:   t.DLQ.MaxBytes,
			MaxAge:     t.DLQ.MaxAge,
			Storage:    jetstream.FileStorage,
			Replicas:   t.Replicas,
			Duplicates: t.DupWindow,
		},
	}
}

// Names are the streams of the pipeline's data: every stream and the
// state bucket's.
func (t Topology) Names() []string {
	var names []string
	for _, sc := range t.Streams() {
		names = append(names, sc.Name)
	}
	return append(names, "KV_"+protocol.StateBucket)
}

// Consumer returns the durable consumer configuration of one input.
func (t Topology) Consumer(in protocol.Input) jetstream.ConsumerConfig {
	t = t.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       in.Consumer,
		FilterSubject: in.Subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    -1, // the actors count failed deliveries themselves, in their state
		MaxAckPending: 10000,
		Replicas:      t.Replicas,
	}
}

// Bucket returns the state bucket's configuration.
func (t Topology) Bucket() jetstream.KeyValueConfig {
	t = t.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      protocol.StateBucket,
		Description: "robust actor and supervisor state",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}
}

// Ensure creates or updates every stream, the consumers of inputs (every
// actor's, from the registry) and the state bucket. It is idempotent and
// runs on every supervisor start.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology, inputs []protocol.Input) error {
	for _, sc := range t.Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	for _, in := range inputs {
		if _, err := js.CreateOrUpdateConsumer(ctx, in.Stream, t.Consumer(in)); err != nil {
			return fmt.Errorf("consumer %s: %w", in.Consumer, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, t.Bucket()); err != nil {
		return fmt.Errorf("bucket %s: %w", protocol.StateBucket, err)
	}
	return nil
}

// ResetConsumer deletes and recreates an input's durable consumer. On a
// work-queue stream that hands every unacknowledged message back at once, in
// stream order: an actor calls it when it starts, so that a predecessor's
// unfinished deliveries need not wait out AckWait.
func ResetConsumer(ctx context.Context, js jetstream.JetStream, t Topology, in protocol.Input) (jetstream.Consumer, error) {
	if err := js.DeleteConsumer(ctx, in.Stream, in.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("reset consumer %s: %w", in.Consumer, err)
	}
	c, err := js.CreateConsumer(ctx, in.Stream, t.Consumer(in))
	if err != nil {
		return nil, fmt.Errorf("reset consumer %s: %w", in.Consumer, err)
	}
	return c, nil
}

// Connect dials url with the pipeline's connection settings. name shows in
// the server's connection list. opts come after the pipeline's own and may
// override them: credentials (nats.UserCredentials, nats.UserInfo), TLS
// (nats.RootCAs, nats.ClientCert) and the like enter here, in one place.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name("robust-" + name),
		nats.Timeout(2 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		// No reconnect buffer: a publish made while reconnecting fails at
		// once instead of landing after later ones; the actor restarts and
		// publishes its outbox again, in order.
		nats.ReconnectBufSize(-1),
	}, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// FreePort returns a TCP port free on the loopback interface now: for a
// server started by a test, the chaos driver or the benchmarks.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LogErrors logs what the server reports asynchronously on a connection,
// such as a permissions violation, at error level: such a refusal is
// otherwise invisible to the publisher.
func LogErrors(log *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Error("NATS", "subject", sub.Subject, "error", err)
			return
		}
		log.Error("NATS", "error", err)
	})
}
