package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/buildinfo"
	"github.com/robust/robust/internal/faults"
	"github.com/robust/robust/internal/ledger"
	"github.com/robust/robust/internal/lifecycle"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
)

// Exit codes of the supervisor command.
const (
	ExitOK      = 0
	ExitFailed  = 1 // the run failed, or its summary does not add up
	ExitUsage   = 2 // a bad flag or value
	ExitAborted = 130
)

// Main is the supervisor command: it parses args, runs the pipeline of the
// actors reg declares (registry.Default() for the project's four) and
// prints the summary to stdout. Cancelling ctx stops gracefully;
// cancelling abort stops at once. It returns the exit code.
func Main(ctx, abort context.Context, reg registry.Registry, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "status" || args[0] == "kill" || args[0] == "dlq" || args[0] == "dashboard") {
		return control(ctx, args, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "nats-context" {
		return natsContext(args[1:], stdout, stderr)
	}
	if len(args) == 2 && args[0] == "reap" {
		// `reap DIR`: started by a running supervisor as its reaper (see
		// internal/lifecycle); not for people.
		return lifecycle.Reap(os.Stdin, stdout, args[1])
	}
	fs := flag.NewFlagSet("supervisor", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed below, the usage on --help only
	rate := &boundedInt{n: 1000, max: maxRate, unit: " ms"}
	fs.Var(rate, "rate", "heartbeat period in `ms`; 0: unpaced")
	var def Config // the flags' defaults are Config's, in one place: setDefaults
	def.setDefaults()
	queue := &boundedInt{n: int64(def.Queue), max: MaxQueue}
	fs.Var(queue, "queue", "at most `N` numbers (and beats) wait unconsumed")
	var (
		beats      = fs.Uint64("beats", 60, "beats in the run; 0: run until stopped")
		faultPlan  = fs.String("faults", "lesson", "fault `plan`: lesson, none, or rules like worker:33,generator:13/once (see README)")
		batch      = fs.Int("batch", def.Batch, "messages per batch (fetch, publish, state save)")
		show       = fs.Int("showstopper", def.Showstopper, "failed deliveries after which a message is dead-lettered")
		dlqMsgs    = fs.Int64("dlq-max-msgs", def.DLQ.MaxMsgs, "the DLQ keeps at most `N` dead letters (the oldest go; the books keep counting them)")
		dlqBytes   = fs.Int64("dlq-max-bytes", def.DLQ.MaxBytes, "… at most `bytes`")
		dlqAge     = fs.Duration("dlq-max-age", def.DLQ.MaxAge, "… none older than this")
		dataDir    = fs.String("data-dir", "./data", "`dir` for JetStream's files")
		diskFree   = fs.Uint64("disk-min-free", def.DiskMinFree, "the embedded server's store is full below this many free `bytes`: restarts wait until space is back")
		listen     = fs.String("nats-listen", "127.0.0.1:4222", "`host:port` of the embedded NATS server")
		natsURL    = fs.String("nats-url", "", "use the NATS server at `url` instead of embedding one")
		natsCreds  = fs.String("nats-creds", "", "with --nats-url: the supervisor's credentials `file` (.creds, or an nkey seed)")
		credsDir   = fs.String("nats-creds-dir", "", "with --nats-url: `dir` of the actors' credentials, one NAME.creds (or NAME.nk) per actor")
		natsCA     = fs.String("nats-ca", "", "PEM `file` of the roots that sign the NATS server's TLS certificate")
		natsCert   = fs.String("nats-cert", "", "PEM `file`: the embedded server's TLS certificate (TLS on); with --nats-url, a client certificate")
		natsKey    = fs.String("nats-key", "", "PEM `file`: the key of --nats-cert")
		natsMon    = fs.String("nats-monitor", "", "`host:port` of the embedded server's HTTP monitoring (varz, jsz); off by default")
		plaintext  = fs.Bool("nats-plaintext-beyond-loopback", false, "let --nats-listen reach beyond this machine without TLS: credentials and messages cross the network in the clear")
		binDir     = fs.String("bin-dir", "", "`dir` holding the actor binaries (default: beside this executable)")
		httpAddr   = fs.String("http", DefaultHTTP, "`addr` of the dashboard (/), status and metrics listener (/healthz, /status, /metrics); '' turns it off")
		httpHosts  = fs.String("http-host", "", "comma-separated `names` the HTTP API may be addressed by besides loopback ones (others are refused: DNS rebinding)")
		evClients  = fs.Int("http-event-clients", 16, "at most `N` open dashboard event streams")
		drain      = fs.Duration("drain-timeout", def.DrainTimeout, "how long a stop waits for in-flight work")
		sumTimeout = fs.Duration("summary-timeout", def.SummaryTimeout, "how long the summary may take to read the books; past it a partial summary says why")
		healthWait = fs.Duration("health-timeout", def.PingTimeout, "an actor that does not answer a health check (every 250ms) within this is hung: it is killed and replaced")
		standby    = fs.Bool("standby", true, "keep a warm spare of each actor (started, connected, waiting; named like worker-spare) that takes over when the active process ends; false: launch a new process instead")
		startOver  = fs.Bool("start-over", false, "when a start is refused because data was removed from outside the pipeline: delete the pipeline's streams, dead letters and state, and begin again (otherwise it does nothing)")
		maxRest    = fs.Int("max-restarts", def.Policy.Intensity, "give up when an actor restarts more than `N` times …")
		window     = fs.Duration("restart-window", def.Policy.Window, "… within this window")
		maxDelay   = fs.Duration("restart-max-delay", def.Policy.Max, "cap on the restart backoff")
		stable     = fs.Duration("restart-stable", def.Policy.StableAfter, "an actor up this long restarts without delay again")
		summary    = fs.String("summary", "", "also write the summary as JSON to `file`")
		progEvery  = fs.Duration("progress-every", 0, "unpaced runs: progress this often (default 1s on a terminal, 10s in logs otherwise)")
		logFormat  = fs.String("log-format", "text", "text or json")
		logLevelDf = os.Getenv("LOG_LEVEL")
	)
	if logLevelDf == "" {
		logLevelDf = "info"
	}
	logLevel := fs.String("log-level", logLevelDf, "debug, info, warn or error (env LOG_LEVEL)")
	version := fs.Bool("version", false, "print the version, the commit and the Go version, and exit")
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "supervisor: "+format+"\n"+seeHelp+"\n", a...)
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // asked for: to stdout, so it can be paged
			fmt.Fprint(stdout, synopsis+"\n"+about+"\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return ExitOK
		}
		return usage("%v", err)
	}
	if *version {
		fmt.Fprintln(stdout, "supervisor", buildinfo.Read())
		return ExitOK
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	if *dlqMsgs < 1 || *dlqBytes < 1 || *dlqAge <= 0 {
		return usage("--dlq-max-msgs, --dlq-max-bytes and --dlq-max-age must be positive: the DLQ is always bounded")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usage("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	// On a terminal the log shares stderr with the progress line: a log
	// line clears it first and draws it again after.
	var tty *Terminal
	logOut := stderr
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = &Terminal{W: f}
			logOut = tty
		}
	}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level})
	case "json":
		handler = slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level})
	default:
		return usage("--log-format %q: want text or json", *logFormat)
	}
	if rate.n < 0 {
		return usage("--rate %d: want 0 (unpaced) or a period in milliseconds", rate.n)
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
	if *progEvery == 0 {
		*progEvery = 10 * time.Second
		if tty != nil {
			*progEvery = time.Second
		}
	}
	s, err := New(Config{
		Registry:      reg,
		ProgressEvery: *progEvery,
		ProgressTTY:   tty,
		DataDir:       *dataDir,
		NATSListen:    *listen,
		NATSURL:       *natsURL,
		NATSCreds:     *natsCreds,
		NATSCredsDir:  *credsDir,
		NATSCA:        *natsCA,
		NATSCert:      *natsCert,
		NATSKey:       *natsKey,
		NATSMonitor:   *natsMon,

		NATSPlaintextBeyondLoopback: *plaintext,
		BinDir:                      *binDir,
		HTTP:                        *httpAddr,
		HTTPHosts:                   splitList(*httpHosts),
		HTTPEventClients:            *evClients,
		Rate:                        time.Duration(rate.n) * time.Millisecond, // rate.n <= maxRate: no overflow
		Beats:                       *beats,
		Queue:                       int(queue.n), // queue.n <= MaxQueue: fits an int
		Batch:                       *batch,
		Showstopper:                 *show,
		DLQ:                         natsx.DLQLimits{MaxMsgs: *dlqMsgs, MaxBytes: *dlqBytes, MaxAge: *dlqAge},
		Faults:                      *faultPlan,
		DrainTimeout:                *drain,
		SummaryTimeout:              *sumTimeout,
		StartOver:                   *startOver,
		Standby:                     *standby,
		PingTimeout:                 *healthWait,
		DiskMinFree:                 *diskFree,
		Policy:                      lifecycle.Policy{Intensity: *maxRest, Window: *window, Max: *maxDelay, StableAfter: *stable},
		Log:                         log,
		LogLevel:                    strings.ToLower(level.String()),
	})
	if errors.Is(err, ErrConfig) {
		return usage("%v", strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "))
	}
	if err != nil {
		fmt.Fprintf(stderr, "supervisor: %v\n", err)
		return ExitFailed
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

// maxRate is the largest --rate in milliseconds: a longer period (about
// 292 years) does not fit a time.Duration.
const maxRate = int64(math.MaxInt64 / time.Millisecond)

// boundedInt is an integer flag with a largest value. A number too large
// for what it is converted or multiplied into is refused, naming the
// bound, instead of wrapping around. Smaller bounds are checked after
// parsing, with the flag's own message.
type boundedInt struct {
	n    int64
	max  int64
	unit string // printed after the bound, e.g. " ms"
}

func (b *boundedInt) String() string {
	if b == nil { // flag.PrintDefaults' zero value
		return "0"
	}
	return strconv.FormatInt(b.n, 10)
}

func (b *boundedInt) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil && n > b.max || errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(s, "-") {
		return fmt.Errorf("too large: the maximum is %d%s", b.max, b.unit)
	}
	if ne := (*strconv.NumError)(nil); errors.As(err, &ne) {
		return ne.Err // flag has already quoted the value
	}
	b.n = n
	return err
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// DefaultHTTP is where the supervisor serves its dashboard and status, and
// where the control commands look for it.
const DefaultHTTP = "127.0.0.1:9900"

// The usage, printed whole on --help. A bad flag or value prints one line
// saying what is wrong and seeHelp, so that the error stays on screen.
const (
	synopsis = `Usage: supervisor [flags]
       supervisor status [--http addr]
       supervisor kill ACTOR [--http addr] [--data-dir dir]
       supervisor dlq list|show ID|replay ID|replay --all [--http addr] [--data-dir dir]
       supervisor dashboard [--http addr] [--data-dir dir]
       supervisor nats-context operator|admin|system [--data-dir dir]
       supervisor --version
`
	about = `Runs the robust pipeline: heartbeat and generator feed the worker, the worker
feeds the logger. While it runs, its dashboard is at http://` + DefaultHTTP + `/
(the --http address), with /status, /metrics and /healthz beside it.
`
	seeHelp = "Run 'supervisor --help' for usage."
)

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// natsContext prints a person's nats CLI context, as the supervisor wrote
// it in the data dir: to take it out of a container, e.g.
//
//	docker-compose exec -T robust /supervisor nats-context operator --data-dir /data > operator.json
//	nats --context ./operator.json stream info DLQ
func natsContext(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("supervisor nats-context", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dataDir := fs.String("data-dir", "./data", "`dir` the supervisor runs on")
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "supervisor nats-context: "+format+"\n"+seeHelp+"\n", a...)
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		return usage("%v", err)
	}
	if !slices.Contains(auth.People, name) || fs.NArg() > 0 {
		return usage("want one of %s", strings.Join(auth.People, ", "))
	}
	b, err := os.ReadFile(filepath.Join(auth.ContextDir(*dataDir), name+".json"))
	if err != nil {
		fmt.Fprintf(stderr, "supervisor nats-context: %v (has a supervisor started on --data-dir %s?)\n", err, *dataDir)
		return ExitFailed
	}
	_, _ = stdout.Write(b)
	return ExitOK
}

// control runs `supervisor status`, `kill ACTOR` and `dlq ...` against a
// running supervisor's HTTP listener. Any failure to get an answer exits
// ExitFailed: `supervisor status` is a container's healthcheck.
func control(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := args[0]
	fs := flag.NewFlagSet("supervisor "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // as in Main: errors below, the usage on --help only
	addr := fs.String("http", DefaultHTTP, "`addr` of the running supervisor's HTTP listener")
	dataDir := fs.String("data-dir", "./data", "the running supervisor's `dir`: kill, replay and dashboard read its token there")
	all := fs.Bool("all", false, "dlq replay: every dead letter that can be replayed")
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "supervisor %s: "+format+"\n"+seeHelp+"\n", append([]any{cmd}, a...)...)
		return ExitUsage
	}
	// positional words (the actor, dlq's verb and ID) may come before or after the flags
	var words []string
	rest := args[1:]
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		words, rest = append(words, rest[0]), rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, synopsis+"\nFlags of status, kill and dlq:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return ExitOK
		}
		return usage("%v", err)
	}
	if err := checkAddr("--http", *addr, DefaultHTTP); err != nil {
		return usage("%v", strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "))
	}
	words = append(words, fs.Args()...)
	var path, method = "/status", http.MethodGet
	switch {
	case cmd == "dashboard" && len(words) == 0:
		tok, err := auth.ReadHTTPToken(*dataDir)
		if err != nil {
			fmt.Fprintf(stderr, "supervisor dashboard: %v (has a supervisor started on --data-dir %s?)\n", err, *dataDir)
			return ExitFailed
		}
		host, port, _ := net.SplitHostPort(*addr)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		fmt.Fprintf(stdout, "http://%s/?token=%s\n", net.JoinHostPort(host, port), url.QueryEscape(tok))
		return ExitOK
	case cmd == "kill" && len(words) == 1:
		path, method = "/actors/"+url.PathEscape(words[0])+"/kill", http.MethodPost
	case cmd == "kill":
		return usage("which actor? e.g. supervisor kill worker")
	case cmd == "dlq" && len(words) == 1 && words[0] == "list":
		path = "/dlq"
	case cmd == "dlq" && len(words) == 2 && words[0] == "show":
		path = "/dlq/" + url.PathEscape(words[1])
	case cmd == "dlq" && len(words) == 2 && words[0] == "replay" && !*all:
		path, method = "/dlq/"+url.PathEscape(words[1])+"/replay", http.MethodPost
	case cmd == "dlq" && len(words) == 1 && words[0] == "replay" && *all:
		path, method = "/dlq/replay", http.MethodPost
	case cmd == "dlq":
		return usage("want 'dlq list', 'dlq show ID', 'dlq replay ID' or 'dlq replay --all'")
	case *all:
		return usage("--all goes with 'dlq replay' only")
	case len(words) > 0:
		return usage("unexpected argument %q", words[0])
	}
	client := &http.Client{Timeout: 5 * time.Second}
	if method == http.MethodPost && cmd == "dlq" {
		client.Timeout = ledger.ReplayWait + 15*time.Second // a full stream is waited on
	}
	base := "http://" + *addr
	fail := func(err error) int {
		fmt.Fprintf(stderr, "supervisor %s: %v (is a supervisor running with --http %s?)\n", cmd, err, *addr)
		return ExitFailed
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return fail(err)
	}
	if method == http.MethodPost {
		tok, err := auth.ReadHTTPToken(*dataDir)
		if err != nil {
			fmt.Fprintf(stderr, "supervisor %s: the token: %v (pass --data-dir with the running supervisor's)\n", cmd, err)
			return ExitFailed
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "supervisor %s: %s", cmd, body)
		return ExitFailed
	}
	switch {
	case cmd == "kill" || path != "/status" && path != "/dlq":
		fmt.Fprint(stdout, string(body))
		return ExitOK
	case path == "/dlq":
		var dls []DeadLetter
		if err := json.Unmarshal(body, &dls); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%-5s %-10s %-8s %-16s %-24s %s\n", "ID", "actor", "value", "from", "status", "reason")
		for _, d := range dls {
			v := "-"
			if d.Value != nil {
				v = strconv.FormatUint(*d.Value, 10)
			}
			fmt.Fprintf(stdout, "%-5d %-10s %-8s %-16s %-24s %s\n", d.Seq, d.Actor, v, d.Subject, d.Status, d.Reason)
		}
		return ExitOK
	}
	var rep StatusReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return fail(err)
	}
	rep.WriteText(stdout)
	return ExitOK
}
