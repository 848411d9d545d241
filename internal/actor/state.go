package actor

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// State is what an actor persists under its key in the state bucket.
type State[D any] struct {
	Starts  uint64             `json:"starts"`            // how many times the actor has started
	Cursors map[string]*Cursor `json:"cursors,omitempty"` // per consumer
	Data    D                  `json:"data"`              // the behaviour's own state
	// Outbox holds the outputs of the last commit until the next one: they
	// are published after the state that produced them is saved, and again
	// on start in case the actor died before they all were.
	Outbox []Out `json:"outbox,omitempty"`
	// OutboxS2 is a large Outbox as it is stored: in a compact binary form
	// (encodeOuts), compressed with S2. A batch's outputs are alike, and
	// written once more in the state they would double the bytes the server
	// stores per value; and JSON-encoding them took 40% of the worker's CPU
	// (measured with perf).
	OutboxS2 []byte `json:"outbox_s2,omitempty"`
}

// compressAbove is the outbox size from which it is stored compressed.
const compressAbove = 8

// pack returns st as stored: a large outbox compressed.
func (st State[D]) pack() (State[D], error) {
	if len(st.Outbox) <= compressAbove {
		return st, nil
	}
	st.OutboxS2, st.Outbox = s2.Encode(nil, encodeOuts(st.Outbox)), nil
	return st, nil
}

// outsFormat is the first byte of encodeOuts' output.
const outsFormat = 1

// encodeOuts writes outs as: the format byte, the count, then per out its
// subject, message ID and payload, its header's key count, and per key
// the key, its value count and the values; strings and counts as uvarint
// lengths and uvarints.
func encodeOuts(outs []Out) []byte {
	b := []byte{outsFormat}
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	b = binary.AppendUvarint(b, uint64(len(outs)))
	for _, o := range outs {
		str(o.Subject)
		str(o.MsgID)
		str(string(o.Data))
		b = binary.AppendUvarint(b, uint64(len(o.Header)))
		for _, k := range slices.Sorted(maps.Keys(o.Header)) {
			str(k)
			b = binary.AppendUvarint(b, uint64(len(o.Header[k])))
			for _, v := range o.Header[k] {
				str(v)
			}
		}
	}
	return b
}

var errOutsFormat = errors.New("outbox: malformed")

// decodeOuts reads what encodeOuts wrote.
func decodeOuts(b []byte) ([]Out, error) {
	if len(b) == 0 || b[0] != outsFormat {
		return nil, errOutsFormat
	}
	b = b[1:]
	bad := false
	num := func() uint64 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) { // no count exceeds the bytes left
			bad = true
			return 0
		}
		b = b[k:]
		return n
	}
	str := func() string {
		n := num()
		if bad || n > uint64(len(b)) {
			bad = true
			return ""
		}
		s := string(b[:n])
		b = b[n:]
		return s
	}
	outs := make([]Out, num())
	for i := range outs {
		o := &outs[i]
		o.Subject, o.MsgID, o.Data = str(), str(), []byte(str())
		if keys := num(); keys > 0 {
			o.Header = make(nats.Header, keys)
			for range keys {
				k := str()
				for range num() {
					o.Header[k] = append(o.Header[k], str())
				}
			}
		}
		if bad {
			return nil, errOutsFormat
		}
	}
	if bad || len(b) != 0 {
		return nil, errOutsFormat
	}
	return outs, nil
}

// maxOutbox bounds an outbox unpacked: a batch of outputs (a value each,
// or dead letters of at most MaxDeadBatch) is far smaller; a state that
// claims more was written by someone else, and must not make the actor
// allocate gigabytes (S2's header may claim up to 4 GiB).
const maxOutbox = 32 << 20

// unpack undoes pack.
func (st *State[D]) unpack() error {
	if st.OutboxS2 == nil {
		return nil
	}
	n, err := s2.DecodedLen(st.OutboxS2)
	if err == nil && n > maxOutbox {
		err = fmt.Errorf("%d bytes unpacked, over %d: no actor wrote it", n, maxOutbox)
	}
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	b, err := s2.Decode(nil, st.OutboxS2)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	st.OutboxS2 = nil
	st.Outbox, err = decodeOuts(b)
	return err
}

// Cursor is an actor's progress through one input.
type Cursor struct {
	// Applied is the last stream sequence whose effects are saved. A delivery
	// at or below it is a redelivery: it is acked and skipped.
	Applied uint64 `json:"applied"`
	// Skipped counts the stream sequences the input jumped over: messages
	// that left the stream before this consumer took them (a purge, a
	// deletion, a damaged store). The ledger counts them as removed.
	Skipped uint64 `json:"skipped,omitempty"`
	// Inflight is the batch begun and not finished. Its presence on start
	// means the predecessor died inside it.
	Inflight *Inflight `json:"inflight,omitempty"`
}

// Inflight records a batch of deliveries being processed.
type Inflight struct {
	From      uint64 `json:"from"`
	To        uint64 `json:"to"`
	Attempts  int    `json:"attempts"`             // deliveries of this range begun, this one included
	Solo      bool   `json:"solo,omitempty"`       // the range was attempted as one message alone
	LastError string `json:"last_error,omitempty"` // the panic that ended the last attempt, if known
}

func (s State[D]) clone() State[D] {
	c := s
	c.Outbox = slices.Clone(s.Outbox)
	c.Cursors = make(map[string]*Cursor, len(s.Cursors))
	for k, v := range s.Cursors {
		cv := *v
		if v.Inflight != nil {
			inf := *v.Inflight
			cv.Inflight = &inf
		}
		c.Cursors[k] = &cv
	}
	return c
}

func (s *State[D]) cursor(consumer string) *Cursor {
	if s.Cursors == nil {
		s.Cursors = map[string]*Cursor{}
	}
	c := s.Cursors[consumer]
	if c == nil {
		c = &Cursor{}
		s.Cursors[consumer] = c
	}
	return c
}

// store reads and writes one actor's state with compare-and-set on the KV
// revision: the revision is the fencing token. A second copy of the actor
// that started later has moved the revision on, so every write of the first
// fails with ErrFenced.
type store[D any] struct {
	kv  jetstream.KeyValue
	key string
	rev uint64
}

func (s *store[D]) load(ctx context.Context) (State[D], error) {
	var st State[D]
	e, err := s.kv.Get(ctx, s.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		s.rev = 0
		return st, nil
	case err != nil:
		return st, fmt.Errorf("load state %q: %w", s.key, err)
	}
	if st, err = DecodeState[D](e.Value()); err != nil {
		return st, fmt.Errorf("load state %q: %w", s.key, err)
	}
	s.rev = e.Revision()
	return st, nil
}

// DecodeState reads a state as the bucket holds it (JSON, the outbox
// packed). Anyone allowed to write the key may have written it: what it
// claims is bounded (maxOutbox).
func DecodeState[D any](b []byte) (State[D], error) {
	var st State[D]
	if err := json.Unmarshal(b, &st); err != nil {
		return State[D]{}, err
	}
	if err := st.unpack(); err != nil {
		return State[D]{}, err
	}
	return st, nil
}

func (s *store[D]) save(ctx context.Context, st State[D]) error {
	st, err := st.pack()
	if err != nil {
		return fmt.Errorf("save state %q: %w", s.key, err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save state %q: %w", s.key, err)
	}
	var rev uint64
	if s.rev == 0 {
		rev, err = s.kv.Create(ctx, s.key, b)
	} else {
		rev, err = s.kv.Update(ctx, s.key, b, s.rev)
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: state %q moved past revision %d", ErrFenced, s.key, s.rev)
	}
	if err != nil {
		return fmt.Errorf("save state %q: %w", s.key, err)
	}
	s.rev = rev
	return nil
}

// LoadState reads an actor's persisted state without fencing anybody: for
// the supervisor's summary and for tests.
func LoadState[D any](ctx context.Context, kv jetstream.KeyValue, key string) (State[D], error) {
	st, _, err := LoadStateRev[D](ctx, kv, key)
	return st, err
}

// LoadStateRev is LoadState with the state's KV revision (0: none yet).
func LoadStateRev[D any](ctx context.Context, kv jetstream.KeyValue, key string) (State[D], uint64, error) {
	s := store[D]{kv: kv, key: key}
	st, err := s.load(ctx)
	return st, s.rev, err
}

func copyCounters(m map[string]uint64) map[string]uint64 { return maps.Clone(m) }

// SaveStateRev writes an actor's state if it is still at revision rev
// (0: not yet written), for the supervisor's repairs while the actor is
// not running; ErrFenced if it moved on.
func SaveStateRev[D any](ctx context.Context, kv jetstream.KeyValue, key string, st State[D], rev uint64) error {
	s := store[D]{kv: kv, key: key, rev: rev}
	return s.save(ctx, st)
}
