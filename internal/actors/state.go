package actors

import (
	"math/big"
	"slices"

	"github.com/robust/robust/pkg/protocol"
)

// The actors' own state, persisted in the state bucket under the actor's
// state key (inside the runtime's envelope, field "data"). It is private to
// each actor and its reader, the ledger: no other process decodes it.

// GeneratorState: values 0 … Next-1 have been published.
type GeneratorState struct {
	Next uint64 `json:"next"`
}

// HeartbeatState counts beats.
type HeartbeatState struct {
	Run   uint64 `json:"run"`   // the run Beats counts for
	Beats uint64 `json:"beats"` // beats sent in Run
	Total uint64 `json:"total"` // beats sent in all runs
}

// WorkerState: each beat grants one credit; each number taken spends one.
//
// Producers publish in order, so numbers arrive in increasing value and
// beats in increasing (run, beat). A message at or below the marks is a
// republished copy (the stream's duplicate window forgets consumed
// messages' IDs when the server restarts): it is skipped and counted.
type WorkerState struct {
	Credits      uint64 `json:"credits"`
	Beats        uint64 `json:"beats"`
	Processed    uint64 `json:"processed"`
	DeadLettered uint64 `json:"dead_lettered"`
	NextValue    uint64 `json:"next_value"` // numbers below it were taken
	BeatRun      uint64 `json:"beat_run"`   // the last beat counted: run …
	LastBeat     uint64 `json:"last_beat"`  // … and beat number
	Duplicates   uint64 `json:"duplicates"` // republished copies skipped
	// LastResult is the source sequence of the last result published;
	// Chained: it is known (a state from before the chain has published
	// results whose sources it did not keep).
	LastResult uint64 `json:"last_result,omitempty"`
	Chained    bool   `json:"chained,omitempty"`
	// EarlyBeats: beats of BeatRun past LastBeat+1 that were dead-lettered
	// as out of order. A stray copy of a beat with the heartbeat's ID takes
	// the real one's place in the duplicate window, and the real one never
	// comes: once the beat after them comes, they are counted (at most
	// maxEarlyBeats are kept).
	EarlyBeats Seqs `json:"early_beats,omitempty"`
	// Replayed lists the dead letters (DLQ sequences) whose replays the
	// worker took, applied or dead-lettered again: a copy is skipped.
	Replayed Seqs `json:"replayed,omitempty"`
	// Dead tallies the values the worker dead-lettered that stand, so that
	// the books balance by value whatever the DLQ, which is bounded, still
	// holds: a value is added when the worker dead-letters it on its one
	// pass (the pipeline's own number, in order, not yet taken) and
	// removed when the worker takes a replay of it; a replay dead-lettered
	// again leaves it in. nil: a state written before the tally existed;
	// the supervisor counts it from the DLQ (ledger.CountDead) before the
	// actor starts.
	Dead *Tally `json:"dead,omitempty"`
	// Paced holds the times of the beats behind the newest credits
	// (HeaderBeatTime), oldest first, PacedUsed of the first span's
	// credits spent: a number spending a credit carries its beat's time
	// to its result. Credits older than every span have no time (their
	// beats had none). Never written in place (a shallow copy of the
	// state shares it); at most maxPaced spans, the oldest two merged
	// past that under the older time, so a latency is never understated.
	Paced     []Paced `json:"paced,omitempty"`
	PacedUsed uint64  `json:"paced_used,omitempty"`
}

// Paced is n credits granted by beats sent at At (Unix nanoseconds).
type Paced struct {
	At int64  `json:"at"`
	N  uint64 `json:"n"`
}

// maxPaced bounds WorkerState.Paced: credits bank up only when numbers
// lag behind beats, and then their times matter less than the state's
// size.
const maxPaced = 16

// credit notes n credits granted by beats sent at at (0: no time).
func (d *WorkerState) credit(at int64, n uint64) {
	if n == 0 {
		return
	}
	d.trimPaced()
	if at == 0 { // beats without a time: what came before is no longer the newest
		d.Paced, d.PacedUsed = nil, 0
		return
	}
	p := append(slices.Clip(d.Paced), Paced{At: at, N: n})
	if len(p) > maxPaced {
		merged := Paced{At: p[0].At, N: p[0].N - d.PacedUsed + p[1].N}
		p = append([]Paced{merged}, p[2:]...)
		d.PacedUsed = 0
	}
	d.Paced = p
}

// spend takes the oldest credit's beat time (0 if it has none), before
// Credits goes down by one.
func (d *WorkerState) spend() int64 {
	d.trimPaced()
	var timed uint64
	for _, p := range d.Paced {
		timed += p.N
	}
	timed -= min(d.PacedUsed, timed)
	if len(d.Paced) == 0 || timed < d.Credits {
		return 0 // the oldest credit is older than the times kept
	}
	// More timed credits than credits (a state edited by hand): the
	// oldest times are of credits spent already.
	for timed > d.Credits && len(d.Paced) > 0 {
		drop := min(d.Paced[0].N-d.PacedUsed, timed-d.Credits)
		timed -= drop
		d.PacedUsed += drop
		d.trimPaced()
	}
	if len(d.Paced) == 0 || d.Credits == 0 {
		return 0
	}
	at := d.Paced[0].At
	d.PacedUsed++
	d.trimPaced()
	return at
}

// trimPaced drops spans whose credits are all spent.
func (d *WorkerState) trimPaced() {
	for len(d.Paced) > 0 && d.PacedUsed >= d.Paced[0].N {
		d.Paced, d.PacedUsed = d.Paced[1:], d.PacedUsed-d.Paced[0].N
	}
	if len(d.Paced) == 0 {
		d.Paced, d.PacedUsed = nil, 0
	}
}

// LoggerState is the logger's tally of every result it logged.
type LoggerState struct {
	Tally      Tally  `json:"tally"`
	LastSource uint64 `json:"last_source"` // HeaderSourceSequence of the last result logged
	// Chained: a result taken carried HeaderAfterSource, so every later
	// result of the worker's does.
	Chained    bool   `json:"chained,omitempty"`
	Duplicates uint64 `json:"duplicates"`         // republished copies skipped
	Replayed   Seqs   `json:"replayed,omitempty"` // as WorkerState.Replayed
	Dead       *Tally `json:"dead,omitempty"`     // as WorkerState.Dead
}

// deadAdd and deadRemove count a value in and out of a Dead tally,
// never writing to the tally a shallow copy of the state shares.
func deadAdd(t **Tally, v uint64) {
	if *t == nil {
		*t = &Tally{}
	}
	n := **t
	n.Add(v)
	*t = &n
}

func deadRemove(t **Tally, v uint64) {
	if *t == nil {
		*t = &Tally{}
	}
	n := **t
	n.Remove(v)
	*t = &n
}

// Tally counts results by kind, with checksums of the values: two tallies
// of different sets of values almost never agree on all of Sum and SumSq,
// so a value logged twice and another lost still shows.
type Tally struct {
	Fizz     uint64 `json:"fizz"`
	Buzz     uint64 `json:"buzz"`
	FizzBuzz uint64 `json:"fizzbuzz"`
	Value    uint64 `json:"value"`
	Sum      uint64 `json:"sum"`    // of the values, wrapping
	SumSq    uint64 `json:"sum_sq"` // of the squares, wrapping
}

// Add counts one value. It returns the new count of the value's kind.
func (t *Tally) Add(n uint64) uint64 {
	t.Sum += n
	t.SumSq += n * n
	p := t.count(protocol.Classify(n))
	*p++
	return *p
}

// Total is the number of values counted.
func (t Tally) Total() uint64 { return t.Fizz + t.Buzz + t.FizzBuzz + t.Value }

// Count is the number of values of kind k.
func (t Tally) Count(k protocol.Kind) uint64 { return *t.count(k) }

func (t *Tally) count(k protocol.Kind) *uint64 {
	switch k {
	case protocol.KindFizz:
		return &t.Fizz
	case protocol.KindBuzz:
		return &t.Buzz
	case protocol.KindFizzBuzz:
		return &t.FizzBuzz
	default:
		return &t.Value
	}
}

// Seqs is a sorted set of sequence numbers.
type Seqs []uint64

// maxEarlyBeats bounds WorkerState.EarlyBeats.
const maxEarlyBeats = 1024

// covers reports whether s holds every q in [from, to).
func (s Seqs) covers(from, to uint64) bool {
	if to <= from {
		return true
	}
	if to-from > uint64(len(s)) {
		return false
	}
	for q := from; q < to; q++ {
		if !s.Has(q) {
			return false
		}
	}
	return true
}

// above is s without the values up to q (a new slice, or nil).
func (s Seqs) above(q uint64) Seqs {
	i, ok := slices.BinarySearch(s, q)
	if ok {
		i++
	}
	if i >= len(s) {
		return nil
	}
	if i == 0 {
		return s
	}
	return slices.Clone(s[i:])
}

// Has reports whether s holds q.
func (s Seqs) Has(q uint64) bool {
	_, ok := slices.BinarySearch(s, q)
	return ok
}

// Add puts q into s; it returns false if q was there already. It never
// writes to s's old array (a shallow copy of a state shares it).
func (s *Seqs) Add(q uint64) bool {
	i, ok := slices.BinarySearch(*s, q)
	if ok {
		return false
	}
	*s = slices.Insert(slices.Clip(*s), i, q)
	return true
}

// Remove takes one value out of the tally (the inverse of Add).
func (t *Tally) Remove(n uint64) {
	t.Sum -= n
	t.SumSq -= n * n
	*t.count(protocol.Classify(n))--
}

// Merge adds the values counted in o.
func (t *Tally) Merge(o Tally) {
	t.Fizz += o.Fizz
	t.Buzz += o.Buzz
	t.FizzBuzz += o.FizzBuzz
	t.Value += o.Value
	t.Sum += o.Sum
	t.SumSq += o.SumSq
}

// Subtract takes the values counted in o out of t (the inverse of Merge).
func (t *Tally) Subtract(o Tally) {
	t.Fizz -= o.Fizz
	t.Buzz -= o.Buzz
	t.FizzBuzz -= o.FizzBuzz
	t.Value -= o.Value
	t.Sum -= o.Sum
	t.SumSq -= o.SumSq
}

// TallyOfRange is the tally of the values 0 … n-1, computed in constant
// time: the reconciliation costs what it reads, never what a state claims.
func TallyOfRange(n uint64) Tally {
	ceil := func(d uint64) uint64 { // multiples of d in [0, n)
		m := n / d
		if n%d != 0 {
			m++
		}
		return m
	}
	m3, m5, m15 := ceil(3), ceil(5), ceil(15)
	t := Tally{FizzBuzz: m15, Fizz: m3 - m15, Buzz: m5 - m15, Value: n - m3 - m5 + m15}
	// Σ i and Σ i² over [0, n), modulo 2^64 like Add's.
	bn := new(big.Int).SetUint64(n)
	nm1 := new(big.Int).Sub(bn, big.NewInt(1))
	mod := new(big.Int).Lsh(big.NewInt(1), 64)
	sum := new(big.Int).Mul(bn, nm1)
	sum.Rsh(sum, 1)
	sq := new(big.Int).Mul(nm1, bn)
	sq.Mul(sq, new(big.Int).Sub(new(big.Int).Lsh(bn, 1), big.NewInt(1)))
	sq.Quo(sq, big.NewInt(6))
	if n == 0 {
		sum.SetInt64(0)
		sq.SetInt64(0)
	}
	t.Sum = new(big.Int).Mod(sum, mod).Uint64()
	t.SumSq = new(big.Int).Mod(sq, mod).Uint64()
	return t
}
