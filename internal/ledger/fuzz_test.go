package ledger

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/pkg/protocol"
)

// FuzzDeadLetterOf reads arbitrary dead letters (any subject, headers and
// payload, as a DLQ written by hand may hold): never a panic; a value only
// for a payload that decodes as one with the pipeline's own ID or a
// replay; none for a cut payload or one refused as out of order or
// implausible.
func FuzzDeadLetterOf(f *testing.F) {
	f.Add(protocol.SubjectNumbers, "n-33", "", "showstopper: 3 deliveries", "", []byte("33"))
	f.Add(protocol.SubjectNumbers, "n-18446744073709551000", "", "out-of-order: number 18446744073709551000", "", []byte("18446744073709551000"))
	f.Add(protocol.SubjectResults, "r-41", "", "showstopper", "", []byte(`{"value":41,"kind":"value","text":"41"}`))
	f.Add(protocol.SubjectNumbers, "replay-4", "4", "malformed", "", []byte("12"))
	f.Add(protocol.SubjectNumbers, "n-7", "", "malformed", "true", []byte("7"))
	f.Fuzz(func(t *testing.T, subject, id, replay, reason, truncated string, data []byte) {
		h := nats.Header{}
		h.Set(protocol.HeaderOrigSubject, subject)
		h.Set(protocol.HeaderOrigMsgID, id)
		h.Set(protocol.HeaderReason, reason)
		if replay != "" {
			h.Set(protocol.HeaderReplay, replay)
		}
		if truncated != "" {
			h.Set(protocol.HeaderTruncated, truncated)
			h.Set(protocol.HeaderOrigSize, "x")
		}
		d := DeadLetterOf(1, h, data)
		_ = d.Replayable()
		if d.Value == nil {
			return
		}
		switch {
		case d.Truncated:
			t.Fatalf("a cut payload counted as value %d", *d.Value)
		case strings.HasPrefix(reason, "out-of-order") || strings.HasPrefix(reason, "implausible"):
			t.Fatalf("a refused message counted as value %d", *d.Value)
		case subject == protocol.SubjectNumbers:
			if n, err := protocol.DecodeNumber(data); err != nil || n != *d.Value {
				t.Fatalf("number %q counted as value %d", data, *d.Value)
			}
		case subject == protocol.SubjectResults:
			if r, err := protocol.DecodeResult(data); err != nil || r.Value != *d.Value {
				t.Fatalf("result %q counted as value %d", data, *d.Value)
			}
		default:
			t.Fatalf("a message of %q counted as value %d", subject, *d.Value)
		}
	})
}
