package supervisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/robust/robust/internal/buildinfo"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
)

// runMain runs the supervisor command in-process and returns its exit code,
// stdout and stderr.
func runMain(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = Main(ctx, context.Background(), registry.Default(), args, &out, &errOut)
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

// The DLQ is always bounded: a zero or negative bound is refused, not
// taken as "none".
func TestMainDLQBounds(t *testing.T) {
	const positive = "--dlq-max-msgs, --dlq-max-bytes and --dlq-max-age must be positive"
	checkMain(t, []mainCase{
		{"msgs zero", noActors(t, "--dlq-max-msgs", "0"), ExitUsage, positive},
		{"bytes negative", noActors(t, "--dlq-max-bytes", "-1"), ExitUsage, positive},
		{"age zero", noActors(t, "--dlq-max-age", "0s"), ExitUsage, positive},
		{"bytes under 1 MiB", noActors(t, "--dlq-max-bytes", "1000"), ExitUsage, "--dlq-max-bytes at least 1 MiB"},
		{"small but sound", noActors(t, "--dlq-max-msgs", "1", "--dlq-max-age", "1m"), ExitFailed, notFound},
	})
}

// A malformed --nats-listen or --http is a usage error, found before
// anything starts; ” still turns the HTTP listener off.
func TestMainBadAddress(t *testing.T) {
	checkMain(t, []mainCase{
		{"nats port out of range", noActors(t, "--nats-listen", "127.0.0.1:99999"), ExitUsage, `--nats-listen "127.0.0.1:99999": the port must be a number from 0 to 65535`},
		{"nats no port", noActors(t, "--nats-listen", "nonsense"), ExitUsage, `--nats-listen "nonsense": want host:port`},
		{"nats port not a number", noActors(t, "--nats-listen", "127.0.0.1:abc"), ExitUsage, `--nats-listen "127.0.0.1:abc": the port must be a number`},
		{"nats port -1", noActors(t, "--nats-listen", "127.0.0.1:-1"), ExitUsage, `--nats-listen "127.0.0.1:-1": the port must be a number`},
		{"http port out of range", noActors(t, "--http", "127.0.0.1:99999"), ExitUsage, `--http "127.0.0.1:99999": the port must be a number from 0 to 65535`},
		{"http no port", noActors(t, "--http", "nonsense"), ExitUsage, `--http "nonsense": want host:port, e.g. 127.0.0.1:9900, or '' for none`},
		{"http port not a number", noActors(t, "--http", "localhost:http"), ExitUsage, `--http "localhost:http": the port must be a number`},
		{"http off", noActors(t, "--http", ""), ExitFailed, notFound},
		{"every interface", noActors(t, "--http", ":9900", "--nats-listen", "[::]:4222", "--nats-plaintext-beyond-loopback"), ExitFailed, notFound},
		{"every interface in the clear", noActors(t, "--nats-listen", "0.0.0.0:4222"), ExitUsage, "reaches beyond this machine without TLS"},
		{"loopback by name", noActors(t, "--nats-listen", "localhost:4222"), ExitFailed, notFound},
		{"a cert without its key", noActors(t, "--nats-cert", "c.pem"), ExitUsage, "--nats-cert and --nats-key go together"},
		{"creds without --nats-url", noActors(t, "--nats-creds", "x.creds"), ExitUsage, "for a server given by --nats-url"},
		{"nats-listen unused with --nats-url", noActors(t, "--nats-url", "nats://127.0.0.1:4222", "--nats-listen", "nonsense"), ExitFailed, notFound},
	})
}

// A well-formed address that cannot be listened on fails the run, exit 1,
// when the listener starts.
func TestMainAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	bin := t.TempDir()
	for _, a := range registry.Default().Names() { // Run checks that they exist before it starts anything
		if err := os.WriteFile(filepath.Join(bin, a), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := func(extra ...string) []string {
		return append([]string{"--bin-dir", bin, "--data-dir", t.TempDir(), "--nats-listen", freeAddr(t), "--http", ""}, extra...)
	}
	checkMain(t, []mainCase{
		{"nats", args("--nats-listen", busy.Addr().String()), ExitFailed, "is in use"},
		{"http", args("--http", busy.Addr().String()), ExitFailed, "HTTP listener " + busy.Addr().String()},
	})
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Queue: 1, Batch: 1, Showstopper: 1}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"defaults to come", Config{Queue: 1, Batch: 1, Showstopper: 1}, nil},
		{"queue too large", with(func(c *Config) { c.Queue = MaxQueue + 1 }), ErrConfig},
		{"queue at the maximum", with(func(c *Config) { c.Queue = MaxQueue }), nil},
		{"nats-listen port 65536", with(func(c *Config) { c.NATSListen = "127.0.0.1:65536" }), ErrConfig},
		{"nats-listen port 0", with(func(c *Config) { c.NATSListen = "127.0.0.1:0" }), nil},
		{"nats-listen port 65535", with(func(c *Config) { c.NATSListen = "127.0.0.1:65535" }), nil},
		{"nats-listen ipv6", with(func(c *Config) { c.NATSListen = "[::1]:4222" }), nil},
		{"nats-listen ipv6 unbracketed", with(func(c *Config) { c.NATSListen = "::1:4222" }), ErrConfig},
		{"nats-listen empty port", with(func(c *Config) { c.NATSListen = "127.0.0.1:" }), ErrConfig},
		{"http hostname", with(func(c *Config) { c.HTTP = "localhost:9900" }), nil},
		{"http negative port", with(func(c *Config) { c.HTTP = "127.0.0.1:-1" }), ErrConfig},
		{"http no host:port", with(func(c *Config) { c.HTTP = "9900" }), ErrConfig},
		{"dlq bounded small", with(func(c *Config) { c.DLQ = natsx.DLQLimits{MaxMsgs: 1, MaxBytes: 1 << 20, MaxAge: time.Minute} }), nil},
		{"dlq max bytes under 1 MiB", with(func(c *Config) { c.DLQ.MaxBytes = 1000 }), ErrConfig},
		{"dlq max age under a minute", with(func(c *Config) { c.DLQ.MaxAge = time.Second }), ErrConfig},
		{"dlq max msgs negative", with(func(c *Config) { c.DLQ.MaxMsgs = -1 }), ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A bad flag or value prints what is wrong and where the usage is: two
// lines, so that the error does not scroll away behind the flag list.
func TestMainBadFlagIsShort(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--nope"}, "supervisor: flag provided but not defined: -nope"},
		{"bad number", []string{"--batch", "many"}, `supervisor: invalid value "many" for flag -batch: `},
		{"missing value", []string{"--rate"}, "supervisor: flag needs an argument: -rate"},
		{"bad value", []string{"--log-format", "xml"}, `supervisor: --log-format "xml": want text or json`},
		{"stray argument", []string{"run"}, `supervisor: unexpected argument "run"`},
		{"config", noActors(t, "--http", "nonsense"), `supervisor: --http "nonsense": want host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, tt.args...)
			want := tt.want + "…\n" + seeHelp + "\n"
			if code != ExitUsage || stdout != "" || !matchLines(stderr, want) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and stderr:\n%s", code, stdout, stderr, want)
			}
		})
	}
}

// matchLines reports whether got has the lines of want, where a line of
// want ending in … is a prefix.
func matchLines(got, want string) bool {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(g) != len(w) {
		return false
	}
	for i := range w {
		if p, ok := strings.CutSuffix(w[i], "…"); ok && !strings.HasPrefix(g[i], p) || !ok && g[i] != w[i] {
			return false
		}
	}
	return true
}

// --help prints the whole usage to stdout, with the dashboard's address.
func TestMainHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		t.Run(arg, func(t *testing.T) {
			code, stdout, stderr := runMain(t, "--rate", "5", arg)
			if code != ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
			}
			for _, want := range []string{"Usage: supervisor [flags]", "supervisor status", "http://127.0.0.1:9900/", "-drain-timeout duration", "-rate ms"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("no %q in the usage:\n%s", want, stdout)
				}
			}
		})
	}
}

// The control commands treat a bad flag as Main does, and --help too.
func TestControlUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"status unknown flag", []string{"status", "--nope"}, "supervisor status: flag provided but not defined: -nope"},
		{"kill unknown flag", []string{"kill", "worker", "--nope"}, "supervisor kill: flag provided but not defined: -nope"},
		{"dlq unknown flag", []string{"dlq", "list", "--nope"}, "supervisor dlq: flag provided but not defined: -nope"},
		{"missing value", []string{"status", "--http"}, "supervisor status: flag needs an argument: -http"},
		{"malformed address", []string{"status", "--http", "127.0.0.1:99999"}, `supervisor status: --http "127.0.0.1:99999": the port must be a number from 0 to 65535`},
		{"no address", []string{"status", "--http", ""}, `supervisor status: --http "": want host:port…`},
		{"kill whom", []string{"kill"}, "supervisor kill: which actor?…"},
		{"dlq what", []string{"dlq", "purge"}, "supervisor dlq: want 'dlq list'…"},
		{"stray argument", []string{"status", "now"}, `supervisor status: unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, tt.args...)
			want := tt.want + "\n" + seeHelp + "\n"
			if code != ExitUsage || stdout != "" || !matchLines(stderr, want) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and stderr:\n%s", code, stdout, stderr, want)
			}
		})
	}
	for _, cmd := range []string{"status", "kill", "dlq"} {
		t.Run(cmd+" --help", func(t *testing.T) {
			code, stdout, stderr := runMain(t, cmd, "--help")
			if code != ExitOK || stderr != "" || !strings.Contains(stdout, "supervisor status [--http addr]") || !strings.Contains(stdout, "-http addr") {
				t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant exit 0 and the usage", code, stderr, stdout)
			}
		})
	}
}

// `supervisor status` is a container's healthcheck: it exits 0 only when
// a supervisor answers.
func TestControlStatus(t *testing.T) {
	answer := func(code int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/status" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(code)
			io.WriteString(w, body)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	const report = `{"run":7,"actors":[{"name":"worker","pid":42,"state":"running","uptime_seconds":3,"restarts":1}],"queues":{},"dead_letters":2}`
	tests := []struct {
		name string
		addr string
		code int
		want string // in stdout if code is 0, else in stderr
	}{
		{"answers", answer(http.StatusOK, report), ExitOK, "run 7"},
		{"unreachable", freeAddr(t), ExitFailed, "connection refused (is a supervisor running with --http"},
		{"error status", answer(http.StatusServiceUnavailable, "not ready\n"), ExitFailed, "supervisor status: not ready"},
		{"not a report", answer(http.StatusOK, "<html>"), ExitFailed, "supervisor status: invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, "status", "--http", tt.addr)
			out := stderr
			if tt.code == ExitOK {
				out = stdout
			}
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d and %q", code, stdout, stderr, tt.code, tt.want)
			}
		})
	}
	t.Run("kill unreachable", func(t *testing.T) {
		if code, _, stderr := runMain(t, "kill", "worker", "--http", freeAddr(t)); code != ExitFailed {
			t.Fatalf("exit %d, stderr:\n%s\nwant 1", code, stderr)
		}
	})
}

// --version prints the build's version line, exit 0, whatever else is on
// the command line.
func TestMainVersion(t *testing.T) {
	want := "supervisor " + buildinfo.Read().String() + "\n"
	for _, args := range [][]string{{"--version"}, {"-version", "--rate", "5"}} {
		code, stdout, stderr := runMain(t, args...)
		if code != ExitOK || stdout != want || stderr != "" {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q; want 0 and %q", args, code, stdout, stderr, want)
		}
		if !strings.Contains(stdout, runtime.Version()) {
			t.Fatalf("%v: no Go version in %q", args, stdout)
		}
	}
}

// An actor naming a stream the topology does not create is refused before
// anything starts.
func TestConfigRefusesUnknownStream(t *testing.T) {
	reg, err := registry.Default().With(registry.Actor{Name: "extra", Kind: registry.Producer, Progress: "n",
		Outputs: []registry.Output{{Stream: "NOPE", Subject: "robust.nope"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Registry: reg, Queue: 10, Batch: 10, Showstopper: 1}
	if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "stream NOPE") {
		t.Fatalf("Validate = %v, want a configuration error naming NOPE", err)
	}
}
