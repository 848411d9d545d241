// Package actor is the runtime shared by the four actor processes:
// connecting, loading and fencing state, fetching, exactly-once batches,
// the showstopper check, dead-lettering, acking, fault injection and the
// go-plugin server. Each actor supplies only a Processor or a Producer.
package actor

import (
	"encoding/json"
	"errors"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/faults"
	"github.com/robust/robust/pkg/protocol"
)

// Sentinel errors.
var (
	// ErrFenced means another copy of this actor started after this one and
	// owns its state now: this copy must stop without acking anything.
	ErrFenced = errors.New("fenced: another copy of this actor owns its state")
	// ErrConfig: the supervisor's configuration cannot be used.
	ErrConfig = errors.New("bad actor configuration")
	// ErrStalled is returned by Status when the actor loop has not turned
	// within ActorConfig.StallAfter.
	ErrStalled = errors.New("actor loop stalled")
	// ErrDeliveryGap: a delivery of a consumer went missing (to an older
	// copy, or lost between server and client). The process exits; the
	// supervisor resets the consumer before the next one starts.
	ErrDeliveryGap = errors.New("delivery gap")
)

// Env is what a behaviour sees of its runtime.
type Env struct {
	Config protocol.ActorConfig
	Log    *slog.Logger
	Starts uint64           // persisted start count, this start included
	Now    func() time.Time // the clock: time.Now unless a test sets another
}

// Msg is one delivery, as a behaviour sees it.
type Msg struct {
	Data   []byte
	Header nats.Header
	Seq    uint64 // stream sequence
	// Gap: the stream sequence jumped since the input's last message, so
	// messages left the stream without reaching this actor (a purge, a
	// deletion, a damaged store). Without a gap, a message ahead of the
	// next expected one is out of order: producers publish in order.
	Gap bool
}

// Out is one message to publish.
type Out struct {
	Subject string
	MsgID   string // stable across redeliveries: the stream drops a republished copy
	Data    []byte
	Header  nats.Header
}

// Behaviour is what every actor supplies.
type Behaviour[D any] interface {
	// Counters reports progress for Status and the logs.
	Counters(d *D) map[string]uint64
}

// Processor is an actor that consumes inputs (worker, logger). Which inputs,
// and in what order it polls them, comes with its configuration
// (ActorConfig.Inputs, from the actor registry).
type Processor[D any] interface {
	Behaviour[D]
	// Limit is how many messages of in the actor may take now; 0 waits.
	Limit(in protocol.Input, d *D) int
	// Decode parses a delivery. An error (protocol.ErrMalformed,
	// protocol.ErrForeign) dead-letters the message with the error as its
	// reason. key is what the fault plan refers to, or NoKey.
	Decode(in protocol.Input, m Msg) (key uint64, v any, err error)
	// Fresh reports whether v is new to d: false for a republished copy,
	// which Apply only counts. Faults fire on fresh messages only: a copy
	// is no new work, and a copy of a poison value must not become a second
	// dead letter.
	Fresh(in protocol.Input, v any, d *D) bool
	// Apply applies a decoded message to d and returns the outputs. It runs
	// on a working copy of the state: nothing is kept unless the batch
	// completes.
	Apply(env *Env, in protocol.Input, v any, d *D) []Out
	// Discard is called instead of Apply when a message is dead-lettered.
	// It must move d's position marks past the message if it is the
	// pipeline's own (and in order: see Checker), so that a republished
	// copy is not taken later.
	Discard(env *Env, in protocol.Input, m Msg, d *D)
}

// Checker is a Processor that checks a decoded message against its state
// before taking it: an error (protocol.ErrOutOfOrder,
// protocol.ErrImplausible) dead-letters the message with the error as its
// reason, and the marks do not move.
type Checker[D any] interface {
	Check(env *Env, in protocol.Input, v any, d *D) error
}

// Producer is an actor that only publishes (generator, heartbeat).
type Producer[D any] interface {
	Behaviour[D]
	// Stream is where outputs go; its free room bounds each batch.
	Stream() string
	// Resume adjusts freshly loaded state to the configuration.
	Resume(env *Env, d *D)
	// Period paces the producer: one message per period. 0: as fast as the
	// stream takes them.
	Period(env *Env) time.Duration
	// PerMessage is how many units (values, beats) one message carries at
	// most. The stream's bound counts units: at most MaxMsgs units wait.
	PerMessage(env *Env) int
	// Next returns the i-th message after d's position; ok is false when
	// there is nothing (more) to send. keys are what the fault plan refers to.
	Next(env *Env, d *D, i int) (keys Keys, out Out, ok bool)
	// Advance moves d past k sent messages.
	Advance(env *Env, d *D, k int)
	// Done reports that the producer has nothing more to send in this run.
	Done(env *Env, d *D) bool
}

// NoKey is the fault key of a message that no fault rule refers to.
const NoKey = ^uint64(0)

// Keys is the range of fault keys a message covers, From to To inclusive.
type Keys struct{ From, To uint64 }

// Key is the range of one key.
func Key(k uint64) Keys { return Keys{k, k} }

func checkFault(env *Env, plan faults.Plan, point faults.Point, k Keys) {
	if k.From == NoKey {
		return
	}
	if r, ok := plan.HitIn(env.Config.Actor, point, k.From, k.To, env.Starts); ok {
		inj := faults.Injected{Rule: r}
		env.Log.Warn("injecting panic (intentional)", "fault", r.String(), "key", r.Key)
		panic(inj)
	}
}

// outJSON is how an Out is kept in the outbox: compact, and readable with
// `nats kv get` when the payload is text.
type outJSON struct {
	Subject string            `json:"s"`
	MsgID   string            `json:"i"`
	Text    *string           `json:"t,omitempty"` // the payload, when it is UTF-8
	Data    []byte            `json:"d,omitempty"` // the payload, otherwise
	Header  map[string]string `json:"h,omitempty"` // single-valued headers
	Multi   nats.Header       `json:"m,omitempty"` // the rest
}

// MarshalJSON implements json.Marshaler.
func (o Out) MarshalJSON() ([]byte, error) {
	j := outJSON{Subject: o.Subject, MsgID: o.MsgID}
	if utf8.Valid(o.Data) {
		s := string(o.Data)
		j.Text = &s
	} else {
		j.Data = o.Data
	}
	for k, v := range o.Header {
		if len(v) == 1 {
			if j.Header == nil {
				j.Header = map[string]string{}
			}
			j.Header[k] = v[0]
		} else {
			if j.Multi == nil {
				j.Multi = nats.Header{}
			}
			j.Multi[k] = v
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler.
func (o *Out) UnmarshalJSON(b []byte) error {
	var j outJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*o = Out{Subject: j.Subject, MsgID: j.MsgID, Data: j.Data, Header: j.Multi}
	if j.Text != nil {
		o.Data = []byte(*j.Text)
	}
	for k, v := range j.Header {
		if o.Header == nil {
			o.Header = nats.Header{}
		}
		o.Header[k] = []string{v}
	}
	return nil
}
