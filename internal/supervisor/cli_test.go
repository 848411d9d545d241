package supervisor

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// runMain runs the supervisor command in-process and returns its exit code,
// stdout and stderr.
func runMain(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = Main(ctx, context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// noActors is the start of a command line that passes every check on flags
// and then fails at once, exit 1: its bin dir holds no actor binaries.
func noActors(t testing.TB, args ...string) []string {
	t.Helper()
	return append([]string{"--bin-dir", t.TempDir(), "--data-dir", t.TempDir(), "--http", ""}, args...)
}

const notFound = "not found: run `make build`"

type mainCase struct {
	name string
	args []string
	code int
	want string // in stderr
}

func checkMain(t *testing.T, tests []mainCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

// A --rate too large for a time.Duration is refused, naming the maximum,
// instead of wrapping around to a short period or a negative one.
func TestMainRateBound(t *testing.T) {
	const tooLarge = "for flag -rate: too large: the maximum is 9223372036854 ms"
	checkMain(t, []mainCase{
		{"wraps to 448µs", noActors(t, "--rate", "18446744073710"), ExitUsage, tooLarge},
		{"wraps negative", noActors(t, "--rate", "9223372036855"), ExitUsage, tooLarge},
		{"beyond int64", noActors(t, "--rate", "99999999999999999999"), ExitUsage, tooLarge},
		{"the maximum", noActors(t, "--rate", "9223372036854"), ExitFailed, notFound},
		{"negative", noActors(t, "--rate", "-5"), ExitUsage, "--rate -5: want 0 (unpaced) or a period in milliseconds"},
		{"not a number", noActors(t, "--rate", "fast"), ExitUsage, `invalid value "fast" for flag -rate`},
	})
}

// --queue is bounded too: the numbers stream holds Queue plus room for
// replays, which must not overflow into "unbounded".
func TestMainQueueBound(t *testing.T) {
	const tooLarge = "for flag -queue: too large: the maximum is 1000000000"
	checkMain(t, []mainCase{
		{"max int64", noActors(t, "--queue", "9223372036854775807"), ExitUsage, tooLarge},
		{"beyond int64", noActors(t, "--queue", "99999999999999999999"), ExitUsage, tooLarge},
		{"the maximum", noActors(t, "--queue", "1000000000"), ExitFailed, notFound},
		{"zero", noActors(t, "--queue", "0"), ExitUsage, "--queue must be at least 1"},
	})
}
