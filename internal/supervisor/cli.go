package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/robust/robust/internal/faults"
)

// Exit codes of the supervisor command.
const (
	ExitOK      = 0
	ExitFailed  = 1 // the run failed, or its summary does not add up
	ExitUsage   = 2 // a bad flag or value
	ExitAborted = 130
)

// Main is the supervisor command: it parses args, runs the pipeline and
// prints the summary to stdout. Cancelling ctx stops gracefully; cancelling
// abort stops at once. It returns the exit code.
func Main(ctx, abort context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("supervisor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		rate       = fs.Int("rate", 1000, "heartbeat period in `ms`; 0: unpaced")
		beats      = fs.Uint64("beats", 60, "beats in the run; 0: run until stopped")
		faultPlan  = fs.String("faults", "lesson", "fault `plan`: lesson, none, or rules like worker:33,generator:13/once (see README)")
		queue      = fs.Int("queue", 1000, "at most this many numbers (and beats) wait unconsumed")
		batch      = fs.Int("batch", 256, "messages per batch (fetch, publish, state save)")
		show       = fs.Int("showstopper", 3, "failed deliveries after which a message is dead-lettered")
		dataDir    = fs.String("data-dir", "./data", "`dir` for JetStream's files")
		listen     = fs.String("nats-listen", "127.0.0.1:4222", "`host:port` of the embedded NATS server")
		natsURL    = fs.String("nats-url", "", "use the NATS server at `url` instead of embedding one")
		binDir     = fs.String("bin-dir", "", "`dir` holding the actor binaries (default: beside this executable)")
		drain      = fs.Duration("drain-timeout", 10*time.Second, "how long a stop waits for in-flight work")
		maxRest    = fs.Int("max-restarts", 10, "give up when an actor restarts more than `N` times …")
		window     = fs.Duration("restart-window", 60*time.Second, "… within this window")
		maxDelay   = fs.Duration("restart-max-delay", 5*time.Second, "cap on the restart backoff")
		stable     = fs.Duration("restart-stable", 30*time.Second, "an actor up this long restarts without delay again")
		summary    = fs.String("summary", "", "also write the summary as JSON to `file`")
		logFormat  = fs.String("log-format", "text", "text or json")
		logLevelDf = os.Getenv("LOG_LEVEL")
	)
	if logLevelDf == "" {
		logLevelDf = "info"
	}
	logLevel := fs.String("log-level", logLevelDf, "debug, info, warn or error (env LOG_LEVEL)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: supervisor [flags]\n\nRuns the robust pipeline: heartbeat and generator feed the worker, the worker feeds the logger.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "supervisor: "+format+"\nRun 'supervisor -h' for the flags.\n", a...)
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage // flag has printed the error and the usage
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usage("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	case "json":
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		return usage("--log-format %q: want text or json", *logFormat)
	}
	if *rate < 0 {
		return usage("--rate %d: want 0 (unpaced) or a period in milliseconds", *rate)
	}
	if *maxRest < 1 || *window <= 0 || *maxDelay <= 0 || *stable <= 0 {
		return usage("--max-restarts must be at least 1; --restart-window, --restart-max-delay and --restart-stable positive")
	}
	if *drain <= 0 {
		return usage("--drain-timeout must be positive, e.g. 10s")
	}
	if _, err := faults.Parse(*faultPlan); err != nil {
		return usage("--faults: %v", err)
	}
	log := slog.New(handler)
	s, err := New(Config{
		DataDir:      *dataDir,
		NATSListen:   *listen,
		NATSURL:      *natsURL,
		BinDir:       *binDir,
		Rate:         time.Duration(*rate) * time.Millisecond,
		Beats:        *beats,
		Queue:        *queue,
		Batch:        *batch,
		Showstopper:  *show,
		Faults:       *faultPlan,
		DrainTimeout: *drain,
		Policy:       Policy{Intensity: *maxRest, Window: *window, Max: *maxDelay, StableAfter: *stable},
		Log:          log,
		LogLevel:     strings.ToLower(level.String()),
	})
	if err != nil {
		return usage("%v", strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "))
	}
	sum, runErr := s.Run(ctx, abort)
	code := ExitOK
	if sum != nil {
		sum.WriteText(stdout)
		if *summary != "" {
			if err := writeJSON(*summary, sum); err != nil {
				log.Error("could not write the summary", "file", *summary, "error", err)
				code = ExitFailed
			}
		}
		if !sum.OK {
			code = ExitFailed
		}
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "supervisor: %v\n", runErr)
		code = ExitFailed
	}
	if abort.Err() != nil && code == ExitOK {
		code = ExitAborted
	}
	return code
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
