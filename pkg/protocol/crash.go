package protocol

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Bounds on a crash report: the supervisor reads at most MaxCrashReport
// bytes of the crash channel (an actor with a bug may write anything
// there), and keeps at most MaxCrashMessage bytes of its message.
const (
	MaxCrashReport  = 64 << 10
	MaxCrashMessage = 4 << 10
)

// DecodeCrashReport reads what an actor wrote to its crash channel: one
// CrashReport, of a known kind, its message cut to MaxCrashMessage.
func DecodeCrashReport(b []byte) (CrashReport, error) {
	var r CrashReport
	if len(b) > MaxCrashReport {
		return CrashReport{}, fmt.Errorf("%w: crash report of over %d bytes", ErrMalformed, MaxCrashReport)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return CrashReport{}, fmt.Errorf("%w: crash report: %v", ErrMalformed, err)
	}
	if r.Kind != CrashPanic && r.Kind != CrashError {
		return CrashReport{}, fmt.Errorf("%w: crash report of kind %.40q", ErrMalformed, r.Kind)
	}
	r.Message = CutCrashMessage(r.Message)
	return r, nil
}

// CutCrashMessage cuts msg to MaxCrashMessage bytes of valid UTF-8.
func CutCrashMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) <= MaxCrashMessage {
		return msg
	}
	return strings.ToValidUTF8(msg[:MaxCrashMessage-len("…")], "") + "…"
}
