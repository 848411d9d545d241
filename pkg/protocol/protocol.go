// Package protocol is the contract between the supervisor and the four actor
// processes: subjects, stream, consumer and bucket names, message headers,
// payload encodings, the go-plugin handshake and the actor RPC interface.
//
// Anything two processes must agree on lives here and nowhere else.
package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The four actors' names, as they appear on the wire: the suffix of each
// one's dead-letter subject (and, by default, its state key). Which actors
// run, and what each consumes and publishes, is internal/registry's.
const (
	Generator = "generator"
	Heartbeat = "heartbeat"
	Worker    = "worker"
	Logger    = "logger"
)

// Subjects.
const (
	SubjectNumbers = "robust.numbers" // generator -> worker: a decimal number
	SubjectBeats   = "robust.beats"   // heartbeat -> worker: a Beat as JSON
	SubjectResults = "robust.results" // worker -> logger: a Result as JSON
	SubjectDLQ     = "robust.dlq"     // prefix; dead letters go to robust.dlq.<actor>
)

// DLQSubject is the dead-letter subject of one actor.
func DLQSubject(actor string) string { return SubjectDLQ + "." + actor }

// Streams.
const (
	StreamNumbers = "NUMBERS" // work queue, bounded by --queue, DiscardNew
	StreamBeats   = "BEATS"   // work queue, bounded by --queue, DiscardNew
	StreamResults = "RESULTS" // work queue
	StreamDLQ     = "DLQ"     // limits retention: kept for inspection and replay
)

// StateBucket is the JetStream KV bucket holding every actor's state (key:
// the actor name) and the supervisor's (key: SupervisorKey). With
// --nats-url the supervisor also writes ProbeKey, once a second, to try the
// server's store; no state is kept there.
const (
	StateBucket   = "robust_state"
	SupervisorKey = "supervisor"
	ProbeKey      = SupervisorKey + ".probe"
)

// Input names one stream an actor consumes, through its own durable consumer.
type Input struct {
	Stream   string
	Subject  string
	Consumer string
}

// The consumers, one per input.
var (
	WorkerNumbers = Input{Stream: StreamNumbers, Subject: SubjectNumbers, Consumer: "worker-numbers"}
	WorkerBeats   = Input{Stream: StreamBeats, Subject: SubjectBeats, Consumer: "worker-beats"}
	LoggerResults = Input{Stream: StreamResults, Subject: SubjectResults, Consumer: "logger-results"}
)

// Headers. JetStream's own Nats-Msg-Id deduplicates republished outputs.
const (
	HeaderMsgID        = "Nats-Msg-Id"
	HeaderActor        = "Robust-Actor"         // DLQ: the actor that gave up
	HeaderReason       = "Robust-Reason"        // DLQ: why ("malformed: …", "showstopper: …")
	HeaderOrigSubject  = "Robust-Orig-Subject"  // DLQ: where the message came from
	HeaderOrigStream   = "Robust-Orig-Stream"   // DLQ: its stream
	HeaderOrigSequence = "Robust-Orig-Sequence" // DLQ: its stream sequence
	HeaderDeliveries   = "Robust-Deliveries"    // DLQ: deliveries, this one included
	HeaderOrigMsgID    = "Robust-Orig-Msg-Id"   // DLQ: its Nats-Msg-Id, if it had one
	// HeaderTruncated is on a dead letter whose payload was cut (too large
	// to keep: see actor.MaxDeadPayload); HeaderOrigSize and
	// HeaderOrigSHA256 then describe the payload it came with. Such a dead
	// letter is not replayable.
	HeaderTruncated  = "Robust-Truncated"
	HeaderOrigSize   = "Robust-Orig-Size"
	HeaderOrigSHA256 = "Robust-Orig-Sha256"
	// HeaderDroppedHeaders counts headers of the original message left out
	// of its dead letter (past actor.MaxDeadHeaders bytes of them).
	HeaderDroppedHeaders = "Robust-Dropped-Headers"
	// HeaderSourceSequence is on each result: the NUMBERS stream sequence it
	// was computed from. Results arrive in that order, so the logger tells a
	// republished result by it.
	HeaderSourceSequence = "Robust-Source-Sequence"
	// HeaderAfterSource is on each result: the source sequence of the
	// worker's result before it (0 before its first). Results follow one
	// another, so the logger takes as next only the result that follows the
	// last it took, and refuses a stray that claims a source far ahead.
	HeaderAfterSource = "Robust-After-Source"
	// HeaderReplay is on a dead letter put back on its original subject by
	// `supervisor dlq replay`: the DLQ stream sequence of the dead letter it
	// replays. Its Nats-Msg-Id is ReplayMsgID of that sequence. The message
	// is below its consumer's position marks, so the consumer takes it by
	// this ID instead, once: it keeps the replays it took in its state.
	HeaderReplay = "Robust-Replay"
	// HeaderBeatTime is on each beat message: when the heartbeat sent it,
	// in nanoseconds since 1970 (UTC). The worker copies it onto the
	// result of each number the beat moved, so the time from a beat to
	// the logger's commit of its value can be measured (`make bench`'s
	// latency figures). Informational: it decides nothing, but a beat
	// whose time is not such a number is malformed.
	HeaderBeatTime = "Robust-Beat-Time"
)

// FormatBeatTime is t as HeaderBeatTime carries it.
func FormatBeatTime(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// ParseBeatTime reads HeaderBeatTime from h: ok is false without one; an
// error (ErrMalformed) for more than one, or one that is not a positive
// decimal of at most 19 digits.
func ParseBeatTime(h map[string][]string) (t int64, ok bool, err error) {
	vs := h[HeaderBeatTime]
	switch {
	case len(vs) == 0:
		return 0, false, nil
	case len(vs) > 1:
		return 0, true, fmt.Errorf("%w: %d %s headers: want one", ErrMalformed, len(vs), HeaderBeatTime)
	}
	v := vs[0]
	if len(v) > 19 {
		return 0, true, fmt.Errorf("%w: header %s: %d digits: want at most 19", ErrMalformed, HeaderBeatTime, len(v))
	}
	t, err = strconv.ParseInt(v, 10, 64)
	if err != nil || t <= 0 || v[0] == '+' {
		return 0, true, fmt.Errorf("%w: header %s %q: want nanoseconds since 1970", ErrMalformed, HeaderBeatTime, v)
	}
	return t, true, nil
}

// Message IDs: stable for one logical message, so that a republish after a
// crash is dropped by the stream's duplicate window. These are the IDs'
// bases; the pipeline's producers add its token to them (IDs.Of).
func NumberMsgID(n uint64) string { return "n-" + strconv.FormatUint(n, 10) }
func BeatMsgID(b Beat) string {
	if b.Count > 1 { // a batch of beats cut differently is another message
		return fmt.Sprintf("b-%d-%d+%d", b.Run, b.Beat, b.Count)
	}
	return fmt.Sprintf("b-%d-%d", b.Run, b.Beat)
}
func ResultMsgID(n uint64) string               { return "r-" + strconv.FormatUint(n, 10) }
func DLQMsgID(stream string, seq uint64) string { return fmt.Sprintf("dlq-%s-%d", stream, seq) }
func ReplayMsgID(dlqSeq uint64) string          { return "replay-" + strconv.FormatUint(dlqSeq, 10) }

// ParseReplay reads a message's HeaderReplay: ok is false when there is
// none. A replay must carry its own ID (ReplayMsgID), like every message
// the pipeline takes.
func ParseReplay(h map[string][]string) (dlqSeq uint64, ok bool, err error) {
	vs := h[HeaderReplay]
	if len(vs) == 0 {
		return 0, false, nil
	}
	dlqSeq, perr := strconv.ParseUint(vs[0], 10, 64)
	if perr != nil || dlqSeq == 0 || len(vs) > 1 {
		return 0, true, fmt.Errorf("%w: header %s %q: want the DLQ sequence of the dead letter replayed", ErrMalformed, HeaderReplay, vs)
	}
	var id string
	if ids := h[HeaderMsgID]; len(ids) > 0 {
		id = ids[0]
	}
	return dlqSeq, true, CheckMsgID("replay", id, ReplayMsgID(dlqSeq))
}

// Decoding errors: such a message is dead-lettered at once with the error
// as its reason.
var (
	// ErrMalformed: the payload is not what the subject carries.
	ErrMalformed = errors.New("malformed")
	// ErrForeign: a well-formed message that its actor did not publish (no
	// matching Nats-Msg-Id), e.g. one published by hand. Taking it would
	// break the accounting, and the consumers' position checks.
	ErrForeign = errors.New("foreign")
	// ErrOutOfOrder: a well-formed message ahead of the next one expected,
	// though nothing is missing before it in its stream: producers publish
	// in order, so it is not theirs. Taking it would skip every real
	// message below it.
	ErrOutOfOrder = errors.New("out-of-order")
	// ErrImplausible: a claim the pipeline could not have made (a beat
	// count above --batch, a beat of a later run, a replay of a dead letter
	// that does not exist yet).
	ErrImplausible = errors.New("implausible")
)

// CheckMsgID returns an ErrForeign error unless got is want.
func CheckMsgID(what, got, want string) error {
	if got != want {
		return fmt.Errorf("%w: %s was not published by the pipeline (Nats-Msg-Id %q, want %q)", ErrForeign, what, got, want)
	}
	return nil
}

// EncodeNumber is the payload on SubjectNumbers: the number in decimal.
func EncodeNumber(n uint64) []byte { return strconv.AppendUint(nil, n, 10) }

// DecodeNumber parses a payload from SubjectNumbers.
func DecodeNumber(b []byte) (uint64, error) {
	s := string(b)
	// One value, one payload: no sign, no spaces, no leading zeros.
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%w: number %q: want a decimal integer", ErrMalformed, truncate(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s[0] == '+' {
		return 0, fmt.Errorf("%w: number %q: want a decimal integer", ErrMalformed, truncate(s))
	}
	return n, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
