package ledger

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/pkg/protocol"
)

// DeadLetter is one message in the DLQ stream.
type DeadLetter struct {
	Seq        uint64  `json:"seq"` // in the DLQ stream
	Actor      string  `json:"actor"`
	Value      *uint64 `json:"value"` // nil when the payload is no generated value (malformed, or a beat)
	Reason     string  `json:"reason"`
	Subject    string  `json:"subject"` // where it came from
	Stream     string  `json:"stream"`
	OrigSeq    uint64  `json:"orig_seq"`
	Deliveries int     `json:"deliveries"`
	Payload    string  `json:"payload"`
	// Replay is the dead letter this one is a replay of (dead-lettered
	// again), or 0.
	Replay uint64 `json:"replay,omitempty"`
	// Truncated: the payload was cut (too large to keep); OrigSize and
	// OrigSHA256 describe the original.
	Truncated  bool   `json:"truncated,omitempty"`
	OrigSize   int    `json:"orig_size,omitempty"`
	OrigSHA256 string `json:"orig_sha256,omitempty"`
	// Status: "dead"; "replay queued" (put back, not yet taken); "replayed"
	// (taken by its actor again; the value went on from there); or
	// "replayed, dead again as N".
	Status string `json:"status"`
}

// Dead-letter statuses.
const (
	StatusDead         = "dead"
	StatusReplayQueued = "replay queued"
	StatusReplayed     = "replayed"
)

// Replayable says why d cannot be replayed, or "" if it can: only a
// dead letter that still stands and carried a generated value can flow
// again (a malformed or foreign message would be dead-lettered again; a
// beat is not replayed, the heartbeat sends new ones).
func (d DeadLetter) Replayable() string {
	switch {
	case d.Seq == 0:
		return "it is committed by its actor and not yet published to the DLQ: try again in a moment"
	case d.Status == StatusReplayQueued:
		return "it was replayed already, and the replay is queued"
	case strings.HasPrefix(d.Status, StatusReplayed+", dead again as "):
		return "it was replayed already and is dead again as " + strings.TrimPrefix(d.Status, StatusReplayed+", dead again as ") + ": replay that one"
	case d.Status != StatusDead:
		return "it was " + d.Status
	case d.Truncated:
		return fmt.Sprintf("its payload was cut to %d bytes (it came with %d, SHA-256 %s): too large to be a message of the pipeline's", len(d.Payload), d.OrigSize, d.OrigSHA256)
	case d.Value == nil && d.Stream == protocol.StreamBeats:
		return "it is a beat: beats are not replayed, the heartbeat sends new ones"
	case d.Value == nil:
		return "it is not a message of the pipeline's (" + d.Reason + "): it would only be dead-lettered again"
	}
	return ""
}

// Summary is the accounting at the end of a run. It covers everything the
// data dir has seen, across runs.
type Summary struct {
	OK         bool              `json:"ok"`
	Run        uint64            `json:"run"`
	Beats      uint64            `json:"beats"`     // in this run
	Generated  uint64            `json:"generated"` // values 0 … generated-1 were published
	Processed  uint64            `json:"processed"` // by the worker
	Logged     uint64            `json:"logged"`
	BeatsSent  uint64            `json:"beats_sent"`  // by the heartbeat, all runs
	BeatsTaken uint64            `json:"beats_taken"` // by the worker, all runs
	Duplicates map[string]uint64 `json:"duplicates"`  // republished copies skipped, per actor
	Actors     []string          `json:"actors"`      // in the registry's order
	Queued     uint64            `json:"queued"`      // generated values neither logged nor dead-lettered yet
	// Dead is the tally of the values dead-lettered that stand, from the
	// actors' own states (WorkerState.Dead, LoggerState.Dead): it holds
	// whatever the DLQ, which is bounded, still keeps.
	Dead actors.Tally `json:"dead"`
	// DeadLettered lists the dead letters that stand, as far as the DLQ
	// still holds them; DLQDropped is how many its limits (--dlq-max-*)
	// removed, oldest first.
	DeadLettered []DeadLetter `json:"dead_lettered"`
	DLQDropped   uint64       `json:"dlq_dropped,omitempty"`
	// Removed is how many values left the queues (NUMBERS, RESULTS) before
	// they were taken: generated = logged + dead + queued + removed.
	// RemovedMsgs counts the messages gone, per queue.
	Removed     uint64            `json:"removed,omitempty"`
	RemovedMsgs map[string]uint64 `json:"removed_messages,omitempty"`
	// Tampered lists what was done to the pipeline's data from outside it
	// (the last 100; TamperedTotal counts all), as the supervisor saw it
	// happen.
	Tampered      []events.Tampered `json:"tampered,omitempty"`
	TamperedTotal uint64            `json:"tampered_total,omitempty"`
	Replayed      []DeadLetter      `json:"replayed,omitempty"`
	Starts        map[string]uint64 `json:"starts"`
	Restarts      map[string]uint64 `json:"restarts"`     // all runs
	RunRestarts   map[string]uint64 `json:"run_restarts"` // this supervisor's
	LastCause     map[string]string `json:"last_cause,omitempty"`
	Counts        actors.Tally      `json:"counts"`   // the logger's
	Expected      actors.Tally      `json:"expected"` // the FizzBuzz of exactly the values logged
	Problems      []string          `json:"problems,omitempty"`
	// Partial: the books could not be read (Problems says why); the
	// counts are missing.
	Partial bool `json:"partial,omitempty"`
}

// ActorCounts is what the supervisor counted of one actor, for the summary.
type ActorCounts struct {
	Name        string
	StateKey    string
	Restarts    uint64 // all runs, persisted
	RunRestarts uint64 // under this supervisor
	LastExit    string
}

// Summarize reads the pipeline's state and streams and reconciles them.
// run is the run number; actors are listed in their order.
func (s *Ledger) Summarize(ctx context.Context, run uint64, actorCounts []ActorCounts) (*Summary, error) {
	gen, err := actor.LoadState[actors.GeneratorState](ctx, s.KV, protocol.Generator)
	if err != nil {
		return nil, err
	}
	hb, err := actor.LoadState[actors.HeartbeatState](ctx, s.KV, protocol.Heartbeat)
	if err != nil {
		return nil, err
	}
	led, err := s.Read(ctx)
	if err != nil {
		return nil, err
	}
	dlq, queued, wk, lg := led.Standing, led.queued, led.wk, led.lg
	dead, problems := led.deadTally()
	// The generator may have died after publishing values and before saving
	// its position: those values exist (it republishes the same ones, which
	// are then dropped or skipped). Generated is what the evidence shows.
	generated := max(gen.Data.Next, wk.Data.NextValue)
	for _, v := range queued {
		generated = max(generated, v+1)
	}
	for _, d := range dlq {
		if d.Value != nil {
			generated = max(generated, *d.Value+1)
		}
	}
	sum := &Summary{
		Run:          run,
		Beats:        hb.Data.Beats,
		Generated:    generated,
		Processed:    wk.Data.Processed,
		Logged:       lg.Data.Tally.Total(),
		BeatsSent:    hb.Data.Total,
		BeatsTaken:   wk.Data.Beats,
		Duplicates:   map[string]uint64{protocol.Worker: wk.Data.Duplicates, protocol.Logger: lg.Data.Duplicates},
		Dead:         dead,
		DeadLettered: dlq,
		DLQDropped:   led.dlqDropped,
		Replayed:     led.Replayed,
		Starts:       map[string]uint64{},
		Restarts:     map[string]uint64{},
		RunRestarts:  map[string]uint64{},
		LastCause:    map[string]string{},
		Counts:       lg.Data.Tally,
	}
	for _, a := range actorCounts {
		st, err := actor.LoadState[json.RawMessage](ctx, s.KV, a.StateKey)
		if err != nil {
			return nil, err
		}
		sum.Actors = append(sum.Actors, a.Name)
		sum.Starts[a.Name] = st.Starts
		sum.Restarts[a.Name] = a.Restarts
		sum.RunRestarts[a.Name] = a.RunRestarts
		if a.LastExit != "" {
			sum.LastCause[a.Name] = a.LastExit
		}
	}
	sum.RemovedMsgs = led.removed
	sum.Expected, sum.Queued, sum.Removed, sum.Problems = reconcile(sum.Generated, dead, queued, sum.Counts, led.removed)
	sum.Problems = append(problems, sum.Problems...)
	sum.OK = len(sum.Problems) == 0
	return sum, nil
}

// Book is what the streams and the consumers' states say of every value
// not yet logged: the dead letters that stand and those replayed, and the
// values still queued.
type Book struct {
	Standing []DeadLetter
	Replayed []DeadLetter
	queued   []uint64
	// replaysQueued: the values of replays waiting in a stream (in queued
	// too); their dead letters are still in their actor's tally.
	replaysQueued []uint64
	dlqDropped    uint64 // dead letters the DLQ's limits removed
	// removed: per queue (NUMBERS, RESULTS), the messages that left it
	// before its consumer took them.
	removed map[string]uint64
	wk      actor.State[actors.WorkerState]
	lg      actor.State[actors.LoggerState]
}

// deadTally is the tally of the values dead-lettered that stand: the
// worker's and logger's, less the replays waiting (counted as queued). A
// state from before the tallies (nil) counts from the DLQ instead. While
// the DLQ holds every dead letter it ever took, its values must agree with
// the tallies: problems says where they do not.
func (l Book) deadTally() (dead actors.Tally, problems []string) {
	fromDLQ := l.dlqTallies()
	for _, a := range []struct {
		name string
		t    *actors.Tally
	}{{protocol.Worker, l.wk.Data.Dead}, {protocol.Logger, l.lg.Data.Dead}} {
		t := fromDLQ[a.name]
		if a.t != nil {
			if l.dlqDropped == 0 && *a.t != t {
				problems = append(problems, fmt.Sprintf("the %s's tally of its dead letters (%d values) and the DLQ's (%d) disagree: dead letters were removed or forged", a.name, a.t.Total(), t.Total()))
			}
			t = *a.t
		}
		dead.Merge(t)
	}
	for _, v := range l.replaysQueued {
		dead.Remove(v)
	}
	return dead, problems
}

// dlqTallies is, per actor, the tally of the values of its dead letters
// the DLQ holds that have not flowed again: those that stand and those
// whose replay is queued.
func (l Book) dlqTallies() map[string]actors.Tally {
	out := map[string]actors.Tally{}
	for _, ds := range [][]DeadLetter{l.Standing, l.Replayed} {
		for _, d := range ds {
			if d.Value == nil || (d.Status != StatusDead && d.Status != StatusReplayQueued) {
				continue
			}
			t := out[d.Actor]
			t.Add(*d.Value)
			out[d.Actor] = t
		}
	}
	return out
}

// deadLetters reads the DLQ and what became of replayed dead letters.
func (s *Ledger) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	l, err := s.Read(ctx)
	if err != nil {
		return nil, err
	}
	all := append(l.Standing, l.Replayed...)
	slices.SortFunc(all, func(a, b DeadLetter) int { return cmp.Compare(a.Seq, b.Seq) })
	return all, nil
}

// queuedMsg is a message waiting in NUMBERS or RESULTS, as far as the
// ledger cares.
type queuedMsg struct {
	seq     uint64
	subject string
	header  nats.Header
	data    []byte
}

// Read reads the DLQ, then NUMBERS and RESULTS, then the worker's and
// logger's states: in that order, a replay or a value the consumers take
// while it reads shows as taken, never as nowhere.
func (s *Ledger) Read(ctx context.Context) (Book, error) {
	var l Book
	dlq, dropped, err := readDLQ(ctx, s.JS)
	if err != nil {
		return l, err
	}
	l.dlqDropped = dropped
	var numbers, results []queuedMsg
	lastSeq := map[string]uint64{} // each queue's last sequence, read before its messages
	for name, into := range map[string]*[]queuedMsg{protocol.StreamNumbers: &numbers, protocol.StreamResults: &results} {
		last, err := eachMsg(ctx, s.JS, name, 1, func(m *jetstream.RawStreamMsg) {
			*into = append(*into, queuedMsg{m.Sequence, m.Subject, m.Header, m.Data})
		})
		if err != nil {
			return l, err
		}
		lastSeq[name] = last
	}
	if l.wk, err = actor.LoadState[actors.WorkerState](ctx, s.KV, protocol.Worker); err != nil {
		return l, err
	}
	if l.lg, err = actor.LoadState[actors.LoggerState](ctx, s.KV, protocol.Logger); err != nil {
		return l, err
	}
	wk, lg := l.wk, l.lg
	applied := func(st map[string]*actor.Cursor, in protocol.Input) uint64 {
		if c := st[in.Consumer]; c != nil {
			return c.Applied
		}
		return 0
	}
	l.removed = removedMsgs(map[protocol.Input]*actor.Cursor{
		protocol.WorkerNumbers: wk.Cursors[protocol.WorkerNumbers.Consumer],
		protocol.LoggerResults: lg.Cursors[protocol.LoggerResults.Consumer],
	}, lastSeq, map[string][]queuedMsg{protocol.StreamNumbers: numbers, protocol.StreamResults: results})
	// Queued: the pipeline's own messages that their consumer will still
	// take (republished copies at or below its marks it will skip), and
	// results committed by the worker but not yet published.
	replaying := map[uint64]bool{} // dead letters whose replay waits in a stream
	waiting := func(h nats.Header, taken actors.Seqs, value uint64) bool {
		d, ok, err := protocol.ParseReplay(h)
		if !ok || err != nil || taken.Has(d) {
			return false
		}
		replaying[d] = true
		l.queued = append(l.queued, value)
		l.replaysQueued = append(l.replaysQueued, value)
		return true
	}
	for _, m := range numbers {
		n, err := protocol.DecodeNumber(m.data)
		if m.seq <= applied(wk.Cursors, protocol.WorkerNumbers) || err != nil || waiting(m.header, wk.Data.Replayed, n) {
			continue
		}
		if protocol.BaseMsgID(m.header.Get(protocol.HeaderMsgID)) == protocol.NumberMsgID(n) && n >= wk.Data.NextValue {
			l.queued = append(l.queued, n)
		}
	}
	pendingResult := func(subject, msgID string, h nats.Header, data []byte) {
		if v, ok := unloggedResult(subject, msgID, h, data, lg.Data.LastSource); ok {
			l.queued = append(l.queued, v)
		}
	}
	for _, m := range results {
		if m.seq <= applied(lg.Cursors, protocol.LoggerResults) {
			continue
		}
		if r, err := protocol.DecodeResult(m.data); err == nil && waiting(m.header, lg.Data.Replayed, r.Value) {
			continue
		}
		pendingResult(m.subject, m.header.Get(protocol.HeaderMsgID), m.header, m.data)
	}
	// An outbox entry carries its message ID beside its headers, not in
	// them: it is set on the publish.
	for _, o := range wk.Outbox {
		pendingResult(o.Subject, o.MsgID, o.Header, o.Data)
	}
	// Dead letters committed but not yet published count as dead letters.
	for _, box := range [][]actor.Out{wk.Outbox, lg.Outbox} {
		for _, o := range box {
			if strings.HasPrefix(o.Subject, protocol.SubjectDLQ+".") {
				dlq = append(dlq, DeadLetterOf(0, o.Header, o.Data))
			}
		}
	}
	dlq = uniqueDeadLetters(dlq)

	taken := map[uint64]bool{}
	for _, q := range append(slices.Clone(wk.Data.Replayed), lg.Data.Replayed...) {
		taken[q] = true
	}
	sorted := sortDeadLetters(dlq, taken, replaying)
	l.Standing, l.Replayed = sorted.Standing, sorted.Replayed
	return l, nil
}

// removedMsgs counts, per queue, the messages that left it before its
// consumer took them: the sequences its consumer jumped over (its cursor's
// Skipped), and those above its cursor, up to the queue's last sequence,
// that the queue no longer holds. A work queue loses a message only when
// its consumer acks it, after saving its effects (and its cursor): any
// other way out is a removal. States are read after the queues, so a
// message taken meanwhile shows as taken.
func removedMsgs(cursors map[protocol.Input]*actor.Cursor, lastSeq map[string]uint64, held map[string][]queuedMsg) map[string]uint64 {
	out := map[string]uint64{}
	for in, c := range cursors {
		var applied, skipped uint64
		if c != nil {
			applied, skipped = c.Applied, c.Skipped
		}
		n := skipped
		if last := lastSeq[in.Stream]; last > applied {
			n += last - applied
			for _, m := range held[in.Stream] {
				if m.seq > applied && m.seq <= last {
					n--
				}
			}
		}
		if n > 0 {
			out[in.Stream] = n
		}
	}
	return out
}

// sortDeadLetters sets each dead letter's status: replayed (its ID is in
// taken: the worker or logger took its replay), replay queued (in
// replaying), or dead. A replay that was dead-lettered again is a new dead
// letter; the one it replayed counts no more.
func sortDeadLetters(dlq []DeadLetter, taken, replaying map[uint64]bool) Book {
	// (A dead letter whose replay is dead again was taken, whatever the
	// state said when it was read.)
	again := map[uint64]uint64{}
	for _, d := range dlq {
		if d.Replay != 0 && d.Seq != 0 {
			again[d.Replay] = d.Seq
		}
	}
	var l Book
	for _, d := range dlq {
		switch {
		case d.Seq != 0 && again[d.Seq] != 0:
			d.Status = fmt.Sprintf("%s, dead again as %d", StatusReplayed, again[d.Seq])
		case d.Seq != 0 && taken[d.Seq]:
			d.Status = StatusReplayed
		case d.Seq != 0 && replaying[d.Seq]:
			d.Status = StatusReplayQueued
		default:
			d.Status = StatusDead
			l.Standing = append(l.Standing, d)
			continue
		}
		l.Replayed = append(l.Replayed, d)
	}
	return l
}

// reconcile checks the promise: every generated value is logged exactly
// once, dead-lettered exactly once, or still queued. dead is the tally of
// the values dead-lettered that stand. It returns the tally the logger
// should have (of exactly the values neither dead-lettered nor queued),
// how many values are queued, and what does not add up. A value
// dead-lettered twice, or dead-lettered and logged, shows as a tally that
// does not match.
//
// removedMsgs are the messages, per queue, that left it before their
// consumer took them (each held one value). Their values are known only as
// what is missing: when exactly that many values of no kind logged in
// excess are missing, they are counted as removed; the check is then
// weaker (a value logged twice could hide behind one removed), and a
// removal is always a problem.
func reconcile(generated uint64, dead actors.Tally, queuedValues []uint64, logged actors.Tally, removedMsgs map[string]uint64) (expected actors.Tally, queued, removed uint64, problems []string) {
	q := map[uint64]bool{}
	for _, v := range queuedValues {
		if v >= generated {
			problems = append(problems, fmt.Sprintf("value %d is queued but was never generated", v))
			continue
		}
		q[v] = true
	}
	// The values 0 … generated-1 in closed form, less those dead-lettered
	// or queued: time and memory in proportion to the messages read, never
	// to the values claimed.
	expected = actors.TallyOfRange(generated)
	expected.Subtract(dead)
	for v := range q {
		expected.Remove(v)
	}
	queued = uint64(len(q))
	var msgs uint64
	var where []string
	for _, name := range slices.Sorted(maps.Keys(removedMsgs)) {
		msgs += removedMsgs[name]
		where = append(where, fmt.Sprintf("%d from %s", removedMsgs[name], name))
	}
	if msgs > 0 {
		problems = append(problems, fmt.Sprintf("%d messages left their queues before they were taken (%s): removed from outside the pipeline (a purge, a deletion, a damaged store)", msgs, strings.Join(where, ", ")))
		fits := expected.Total()-logged.Total() == msgs
		for _, k := range protocol.Kinds {
			fits = fits && logged.Count(k) <= expected.Count(k)
		}
		if fits {
			removed = msgs
			expected = logged
		}
	}
	if logged != expected {
		var diffs []string
		for _, k := range protocol.Kinds {
			if g, w := logged.Count(k), expected.Count(k); g != w {
				diffs = append(diffs, fmt.Sprintf("%s %d, expected %d", k, g, w))
			}
		}
		if logged.Sum != expected.Sum || logged.SumSq != expected.SumSq {
			diffs = append(diffs, "checksums of the logged values differ")
		}
		problems = append(problems, fmt.Sprintf("logged %d values, expected %d (%s): values were lost or applied twice",
			logged.Total(), expected.Total(), strings.Join(diffs, "; ")))
	}
	return expected, queued, removed, problems
}

// unloggedResult is the value of a result of the worker's that the logger
// has not logged yet (its source is above the logger's mark). msgID is the
// message's Nats-Msg-Id.
func unloggedResult(subject, msgID string, h nats.Header, data []byte, lastSource uint64) (uint64, bool) {
	if subject != protocol.SubjectResults {
		return 0, false
	}
	r, err := protocol.DecodeResult(data)
	if err != nil || protocol.BaseMsgID(msgID) != protocol.ResultMsgID(r.Value) {
		return 0, false
	}
	src, err := strconv.ParseUint(h.Get(protocol.HeaderSourceSequence), 10, 64)
	return r.Value, err == nil && src > lastSource
}

// readDLQ lists the dead letters in the DLQ stream, and how many its
// limits removed (those below its first sequence).
func readDLQ(ctx context.Context, js jetstream.JetStream) (out []DeadLetter, dropped uint64, err error) {
	st, err := js.Stream(ctx, protocol.StreamDLQ)
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", protocol.StreamDLQ, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", protocol.StreamDLQ, err)
	}
	if info.State.FirstSeq > 1 {
		dropped = info.State.FirstSeq - 1
	}
	if info.State.Msgs == 0 {
		if info.State.LastSeq > 0 {
			dropped = info.State.LastSeq
		}
		return nil, dropped, nil
	}
	out = make([]DeadLetter, 0, info.State.Msgs)
	each := func(m *jetstream.RawStreamMsg) { out = append(out, DeadLetterOf(m.Sequence, m.Header, m.Data)) }
	// An ordered consumer: 200,000 dead letters in 1.5 s here, batched
	// direct gets took twice as long (BenchmarkDeadLetters200k).
	err = eachByConsumer(ctx, st, info.State.FirstSeq, info.State.LastSeq, each)
	return out, dropped, err
}

// DeadLetterOf reads one dead letter. Its value counts only if the message
// was the pipeline's own: a foreign one (published by hand) is no
// generated value.
func DeadLetterOf(seq uint64, h nats.Header, data []byte) DeadLetter {
	d := DeadLetter{
		Seq:     seq,
		Actor:   h.Get(protocol.HeaderActor),
		Reason:  h.Get(protocol.HeaderReason),
		Subject: h.Get(protocol.HeaderOrigSubject),
		Stream:  h.Get(protocol.HeaderOrigStream),
		Payload: string(data),
	}
	d.OrigSeq, _ = strconv.ParseUint(h.Get(protocol.HeaderOrigSequence), 10, 64)
	d.Deliveries, _ = strconv.Atoi(h.Get(protocol.HeaderDeliveries))
	if h.Get(protocol.HeaderTruncated) == "true" {
		d.Truncated, d.OrigSHA256 = true, h.Get(protocol.HeaderOrigSHA256)
		d.OrigSize, _ = strconv.Atoi(h.Get(protocol.HeaderOrigSize))
		return d // a cut payload is no value, whatever it starts with
	}
	id := h.Get(protocol.HeaderOrigMsgID)
	replayed := nats.Header{protocol.HeaderMsgID: {id}, protocol.HeaderReplay: h[protocol.HeaderReplay]}
	if r, ok, err := protocol.ParseReplay(replayed); ok && err == nil {
		// A replay dead-lettered again: its ID is the replay's.
		d.Replay = r
		id = ""
	}
	for _, e := range []error{protocol.ErrOutOfOrder, protocol.ErrImplausible, protocol.ErrForeign} {
		if strings.HasPrefix(d.Reason, e.Error()) {
			return d // refused as no producer's: whatever it claims, no value
		}
	}
	// The ID's shape, whatever its token (protocol.IDs), as the consumers.
	own := func(want string) bool { return protocol.BaseMsgID(id) == want || d.Replay != 0 }
	switch d.Subject {
	case protocol.SubjectNumbers:
		if n, err := protocol.DecodeNumber(data); err == nil && own(protocol.NumberMsgID(n)) {
			d.Value = &n
		}
	case protocol.SubjectResults:
		if r, err := protocol.DecodeResult(data); err == nil && own(protocol.ResultMsgID(r.Value)) {
			d.Value = &r.Value
		}
	}
	return d
}

// ValueText is the dead letter's value as text, or "(no value)".
func (d DeadLetter) ValueText() string {
	if d.Value == nil {
		return "(no value)"
	}
	return strconv.FormatUint(*d.Value, 10)
}

// uniqueDeadLetters keeps one dead letter per original message: one can be
// recorded twice (its actor died between dead-lettering and clearing its
// outbox, after the server forgot the first copy's ID).
func uniqueDeadLetters(dls []DeadLetter) []DeadLetter {
	type origin struct {
		stream string
		seq    uint64
	}
	seen := map[origin]bool{}
	var out []DeadLetter
	for _, d := range dls {
		if o := (origin{d.Stream, d.OrigSeq}); d.OrigSeq != 0 {
			if seen[o] {
				continue
			}
			seen[o] = true
		}
		out = append(out, d)
	}
	return out
}

// eachMsg calls f for every message of a stream from sequence from on.
func eachMsg(ctx context.Context, js jetstream.JetStream, stream string, from uint64, f func(*jetstream.RawStreamMsg)) (last uint64, err error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	last = info.State.LastSeq
	if info.State.Msgs == 0 || from > info.State.LastSeq {
		return last, nil
	}
	if info.Config.Retention == jetstream.LimitsPolicy {
		return last, eachByConsumer(ctx, st, max(from, info.State.FirstSeq), info.State.LastSeq, f)
	}
	if info.Config.AllowDirect {
		// A work queue refuses a second consumer: batches of direct gets.
		return last, eachByDirectGet(ctx, js.Conn(), stream, max(from, info.State.FirstSeq), info.State.LastSeq, f)
	}
	// One message at a time (a stream made before AllowDirect was set).
	for seq := max(from, info.State.FirstSeq); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return last, fmt.Errorf("stream %s seq %d: %w", stream, seq, err)
		}
		f(m)
	}
	return last, nil
}

// directBatch is how many messages one direct get returns.
const directBatch = 500

// eachByDirectGet reads a stream with direct gets of directBatch messages
// (the server answers each with the messages, then an end-of-batch status)
// from seq from through last: a full queue in one or a few round trips,
// where a get per message took a second with 2,000 queued.
func eachByDirectGet(ctx context.Context, nc *nats.Conn, stream string, from, last uint64, f func(*jetstream.RawStreamMsg)) error {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for seq := from; seq <= last; {
		req := fmt.Sprintf(`{"seq":%d,"batch":%d}`, seq, directBatch)
		if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, []byte(req)); err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return fmt.Errorf("read %s from seq %d: %w", stream, seq, err)
			}
			if st := m.Header.Get("Status"); st != "" {
				if st == "204" || st == "404" { // end of batch; nothing (more) from seq on
					break
				}
				return fmt.Errorf("read %s from seq %d: status %s %s", stream, seq, st, m.Header.Get("Description"))
			}
			n, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			if err != nil {
				return fmt.Errorf("read %s: a direct get without its sequence", stream)
			}
			got++
			seq = n + 1
			if n > last {
				continue
			}
			ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
			f(&jetstream.RawStreamMsg{Subject: m.Header.Get("Nats-Subject"), Sequence: n, Header: m.Header, Data: m.Data, Time: ts})
		}
		if got == 0 {
			return nil // the rest left the stream meanwhile
		}
	}
	return nil
}

// eachByConsumer reads a stream of limits retention (the DLQ) from seq
// from through last in batches, with an ordered consumer: 200,000 dead
// letters in a second or two, where a get per message took minutes.
func eachByConsumer(ctx context.Context, st jetstream.Stream, from, last uint64, f func(*jetstream.RawStreamMsg)) error {
	name := st.CachedInfo().Config.Name
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if md.Sequence.Stream > last {
			return nil
		}
		f(&jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: md.Timestamp})
		if md.Sequence.Stream == last || md.NumPending == 0 {
			return nil // the last one, or the rest was deleted meanwhile
		}
	}
}

// maxListed is how many dead letters the printed summary lists (the JSON
// summary and `supervisor dlq list` have them all).
const maxListed = 20

// WriteText prints the summary for people.
func (s *Summary) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n== summary: run %d, %d beats ==\n", s.Run, s.Beats)
	p("%-10s %7s %9s %9s  %s\n", "actor", "starts", "restarts", "this run", "last exit")
	for _, a := range s.Actors {
		p("%-10s %7d %9d %9d  %s\n", a, s.Starts[a], s.Restarts[a], s.RunRestarts[a], s.LastCause[a])
	}
	p("generated %d, processed %d, logged %d, dead-lettered %d (%d dead letters stand), queued %d\n",
		s.Generated, s.Processed, s.Logged, s.Dead.Total(), len(s.DeadLettered), s.Queued)
	p("beats sent %d, taken %d; republished copies skipped: worker %d, logger %d\n",
		s.BeatsSent, s.BeatsTaken, s.Duplicates[protocol.Worker], s.Duplicates[protocol.Logger])
	if s.DLQDropped > 0 {
		p("the DLQ's limits removed its %d oldest dead letters (still counted by their actors)\n", s.DLQDropped)
	}
	listed := 0
	for _, d := range s.DeadLettered {
		if listed++; listed > maxListed {
			p("  … and %d more dead letters: supervisor dlq list\n", len(s.DeadLettered)-maxListed)
			break
		}
		p("  dead letter %d: %s %s after %d deliveries: %s\n", d.Seq, d.Actor, d.ValueText(), d.Deliveries, d.Reason)
	}
	for i, d := range s.Replayed {
		if i == maxListed {
			p("  … and %d more replayed\n", len(s.Replayed)-maxListed)
			break
		}
		p("  dead letter %d (%s %s): %s\n", d.Seq, d.Actor, d.ValueText(), d.Status)
	}
	if s.Partial {
		for _, pr := range s.Problems {
			p("PROBLEM: %s\n", pr)
		}
		return
	}
	t := s.Counts
	p("counts: fizz %d, buzz %d, fizzbuzz %d, value %d\n", t.Fizz, t.Buzz, t.FizzBuzz, t.Value)
	eq := "="
	if s.Generated != s.Logged+s.Dead.Total()+s.Queued+s.Removed {
		eq = "!=" // the problems below say why
	}
	if s.Removed > 0 {
		p("check: generated %d %s logged %d + dead-lettered %d + queued %d + removed %d\n", s.Generated, eq, s.Logged, s.Dead.Total(), s.Queued, s.Removed)
	} else {
		p("check: generated %d %s logged %d + dead-lettered %d + queued %d\n", s.Generated, eq, s.Logged, s.Dead.Total(), s.Queued)
	}
	if s.OK {
		p("no loss, no duplicates\n")
		return
	}
	for _, pr := range s.Problems {
		p("PROBLEM: %s\n", pr)
	}
}

// Discrepancy reads the logger's tally against the expected one: how many
// values were lost and how many logged twice (per kind, so a loss and a
// duplicate of different kinds both show; of the same kind, the checksums
// still show one of each), and, where the sums pin them down (one value
// off, or one lost and one doubled), which values.
func (s *Summary) Discrepancy() (lost, duplicated uint64, values []uint64) {
	got, want := s.Counts, s.Expected
	for _, k := range protocol.Kinds {
		switch g, w := got.Count(k), want.Count(k); {
		case g < w:
			lost += w - g
		case g > w:
			duplicated += g - w
		}
	}
	ds := int64(got.Sum - want.Sum) // wrapping difference, read as signed
	dq := int64(got.SumSq - want.SumSq)
	if lost == 0 && duplicated == 0 && (ds != 0 || dq != 0) {
		lost, duplicated = 1, 1
	}
	switch {
	case lost == 1 && duplicated == 0 && ds < 0:
		values = []uint64{uint64(-ds)}
	case lost == 0 && duplicated == 1 && ds > 0:
		values = []uint64{uint64(ds)}
	case lost == 1 && duplicated == 1 && ds != 0 && dq%ds == 0:
		// doubled x, lost y: x - y = ds and x² - y² = dq, so x + y = dq/ds
		if sum := dq / ds; (sum+ds)%2 == 0 && sum+ds >= 0 && sum-ds >= 0 {
			values = []uint64{uint64((sum + ds) / 2), uint64((sum - ds) / 2)}
		}
	}
	return lost, duplicated, values
}
