// Package chaos drives the pipeline through random SIGKILLs and panics and
// checks, at the end, that nothing was lost and nothing applied twice.
//
// It runs bin/supervisor unpaced on Values values with seeded random panics
// inside the actors (before handling, after publishing, after saving), kills
// a random actor every few hundred milliseconds, and kills the supervisor
// itself SupervisorKills times, each time starting a new one on the same
// data dir. The last supervisor completes the run and writes its summary.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/proc"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/internal/supervisor"
	"github.com/robust/robust/pkg/protocol"
)

// Config of a chaos run. Zero fields get defaults:
//
//	Values:          100000
//	KillEvery:       300ms (each pause is random, between half and one and a half of it)
//	SupervisorKills: 0 (bin/chaos: 3)
//	PanicP:          0, no injected panics (bin/chaos: 0.0001 per actor, point, key and start)
//	Batch:           256
//	Timeout:         15m
//
// DataDir, if given, must be empty or new: the verdict counts every value.
type Config struct {
	BinDir          string // holds supervisor and the actors
	DataDir         string // empty: a new temp dir, removed afterwards
	Values          uint64
	Seed            uint64
	KillEvery       time.Duration
	SupervisorKills int
	PanicP          float64
	Batch           int
	Timeout         time.Duration
	Log             io.Writer // progress lines; nil: none
}

// Verdict is the outcome of a chaos run.
type Verdict struct {
	Seed            uint64            `json:"seed"`
	Values          uint64            `json:"values"`
	Kills           map[string]int    `json:"kills"`
	SupervisorKills int               `json:"supervisor_kills"`
	InjectedPanics  int               `json:"injected_panics"`
	Restarts        map[string]uint64 `json:"restarts"`
	Wall            time.Duration     `json:"wall_ns"`
	Summary         supervisor.Summary
	Lost            uint64   `json:"lost"`
	Duplicated      uint64   `json:"duplicated"`
	Concerned       []uint64 `json:"concerned,omitempty"` // the values lost or doubled, where known
	OK              bool     `json:"ok"`
}

// ErrIncomplete: the run did not reach its end.
var ErrIncomplete = errors.New("chaos run did not complete")

func (c *Config) defaults() {
	if c.Values == 0 {
		c.Values = 100000
	}
	if c.KillEvery <= 0 {
		c.KillEvery = 300 * time.Millisecond
	}
	if c.SupervisorKills < 0 {
		c.SupervisorKills = 0
	}
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Minute
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Run performs one chaos run.
func Run(ctx context.Context, cfg Config) (*Verdict, error) {
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.DataDir != "" {
		if ents, err := os.ReadDir(cfg.DataDir); err == nil && len(ents) > 0 {
			return nil, fmt.Errorf("chaos: data dir %s is not empty: the verdict counts every value, so it needs a fresh one", cfg.DataDir)
		}
	} else {
		dir, err := os.MkdirTemp("", "robust-chaos-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	port, err := natsx.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sumPath := filepath.Join(cfg.DataDir, "chaos-summary.json")
	args := []string{
		"--rate", "0", "--beats", strconv.FormatUint(cfg.Values, 10),
		"--faults", fmt.Sprintf("random:%d:%g", cfg.Seed, cfg.PanicP),
		"--batch", strconv.Itoa(cfg.Batch),
		"--data-dir", cfg.DataDir, "--nats-listen", addr, "--bin-dir", cfg.BinDir,
		"--summary", sumPath, "--http", "",
		// Chaos kills on purpose and often: restart at once, never give up.
		"--max-restarts", "1000000", "--restart-window", "1s", "--restart-stable", "50ms", "--restart-max-delay", "100ms",
		"--drain-timeout", "2m",
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6368616f73))
	// The supervisor dies when this many values are logged.
	var killAt []uint64
	for i := 1; i <= cfg.SupervisorKills; i++ {
		f := (float64(i) + rng.Float64() - 0.5) / float64(cfg.SupervisorKills+1)
		killAt = append(killAt, uint64(f*float64(cfg.Values)))
	}
	slices.Sort(killAt)

	v := &Verdict{Seed: cfg.Seed, Values: cfg.Values, Kills: map[string]int{}}
	begin := time.Now()
	var panics counter
	for {
		sup := exec.Command(filepath.Join(cfg.BinDir, "supervisor"), args...)
		var stderr bytes.Buffer
		sup.Stderr = io.MultiWriter(&panics, &tailBuffer{buf: &stderr})
		sup.Stdout = io.Discard
		if err := sup.Start(); err != nil {
			return nil, fmt.Errorf("start supervisor: %w", err)
		}
		exited := make(chan struct{})
		go func() { _ = sup.Wait(); close(exited) }()
		fmt.Fprintf(cfg.Log, "chaos: supervisor %d started (pid %d)\n", v.SupervisorKills+1, sup.Process.Pid)
		killedSup, err := haunt(ctx, &cfg, rng, addr, sup, exited, v, &killAt)
		if err != nil {
			_ = sup.Process.Kill()
			<-exited
			return nil, err
		}
		if killedSup {
			continue
		}
		if code := sup.ProcessState.ExitCode(); code != 0 && code != 1 {
			return nil, fmt.Errorf("%w: supervisor exited %d: %s", ErrIncomplete, code, lastLine(stderr.String()))
		}
		break
	}
	v.Wall = time.Since(begin)
	v.InjectedPanics = panics.n()
	b, err := os.ReadFile(sumPath)
	if err != nil {
		return nil, fmt.Errorf("%w: no summary: %v", ErrIncomplete, err)
	}
	if err := json.Unmarshal(b, &v.Summary); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	v.Restarts = v.Summary.Restarts
	v.Lost, v.Duplicated, v.Concerned = v.Summary.Discrepancy()
	s := v.Summary
	v.OK = s.OK && v.Lost == 0 && v.Duplicated == 0 && s.Beats == cfg.Values &&
		s.BeatsTaken == s.BeatsSent && s.Logged+s.Dead.Total() == cfg.Values // every beat took one value
	return v, nil
}

// haunt kills random actors of one supervisor until it exits (false) or it
// is its turn to be killed (true).
func haunt(ctx context.Context, cfg *Config, rng *rand.Rand, addr string, sup *exec.Cmd, exited <-chan struct{}, v *Verdict, killAt *[]uint64) (bool, error) {
	var kv jetstream.KeyValue // the supervisor's state bucket, once its server answers
	var closeConn func()
	defer func() {
		if closeConn != nil {
			closeConn()
		}
	}()
	for {
		pause := time.Duration(float64(cfg.KillEvery) * (0.5 + rng.Float64()))
		select {
		case <-exited:
			return false, nil
		case <-ctx.Done():
			return false, fmt.Errorf("%w: %v", ErrIncomplete, ctx.Err())
		case <-time.After(pause):
		}
		if kv == nil { // the supervisor's server is up once it answers
			nc, js, err := auth.Connect("nats://"+addr, cfg.DataDir, auth.Admin, "chaos")
			if err == nil {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				kv, err = js.KeyValue(cctx, protocol.StateBucket)
				cancel()
				if err != nil {
					nc.Close()
					kv = nil
				} else {
					closeConn = nc.Close
				}
			}
		}
		if len(*killAt) > 0 && kv != nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			lg, err := actor.LoadState[actors.LoggerState](cctx, kv, protocol.Logger)
			cancel()
			if err == nil && lg.Data.Tally.Total() >= (*killAt)[0] {
				*killAt = (*killAt)[1:]
				_ = sup.Process.Signal(syscall.SIGKILL)
				<-exited
				v.SupervisorKills++
				fmt.Fprintf(cfg.Log, "chaos: killed the supervisor at %d values logged\n", lg.Data.Tally.Total())
				return true, nil
			}
		}
		name := registry.Default().Names()[rng.IntN(len(registry.Default().Names()))]
		if pid := proc.Child(sup.Process.Pid, name); pid > 0 {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				v.Kills[name]++
			}
		}
	}
}

// WriteText prints the verdict block.
func (v *Verdict) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	join := func(m map[string]int) string {
		var parts []string
		total := 0
		for _, a := range registry.Default().Names() {
			parts = append(parts, fmt.Sprintf("%s %d", a, m[a]))
			total += m[a]
		}
		return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
	}
	restarts := map[string]int{}
	for a, n := range v.Restarts {
		restarts[a] = int(n)
	}
	s := v.Summary
	p("\n== chaos verdict (seed %d) ==\n", v.Seed)
	p("values            %d\n", v.Values)
	p("actor kills       %s\n", join(v.Kills))
	p("supervisor kills  %d\n", v.SupervisorKills)
	p("injected panics   %d\n", v.InjectedPanics)
	p("restarts          %s\n", join(restarts))
	p("wall time         %s (%.0f values/s)\n", v.Wall.Round(time.Millisecond), float64(v.Values)/v.Wall.Seconds())
	p("generated %d = logged %d + dead-lettered %d + queued %d; republished copies skipped: worker %d, logger %d\n",
		s.Generated, s.Logged, s.Dead.Total(), s.Queued, s.Duplicates[protocol.Worker], s.Duplicates[protocol.Logger])
	for _, d := range s.DeadLettered {
		val := "(no value)"
		if d.Value != nil {
			val = strconv.FormatUint(*d.Value, 10)
		}
		p("  dead letter: %s %s: %s\n", d.Actor, val, d.Reason)
	}
	p("lost = %d, duplicated = %d\n", v.Lost, v.Duplicated)
	if len(v.Concerned) > 0 {
		p("values concerned: %v\n", v.Concerned)
	}
	for _, pr := range s.Problems {
		p("PROBLEM: %s\n", pr)
	}
	if s.Beats != v.Values || s.BeatsTaken != s.BeatsSent {
		p("PROBLEM: the run ended after %d beats, not %d (beats sent %d, taken %d)\n", s.Beats, v.Values, s.BeatsSent, s.BeatsTaken)
	}
	if got := s.Logged + s.Dead.Total(); got != v.Values {
		p("PROBLEM: %d values logged or dead-lettered, not %d\n", got, v.Values)
	}
	if v.OK {
		p("PASS: no loss, no duplicates\n")
	} else {
		p("FAIL\n")
	}
}

// counter counts injected panics in supervisor logs.
type counter struct {
	mu      sync.Mutex
	count   int
	partial []byte
}

func (c *counter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		if bytes.Contains(c.partial[:i], []byte("injecting panic (intentional)")) {
			c.count++
		}
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

func (c *counter) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// tailBuffer keeps the last 64 KiB written.
type tailBuffer struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if t.buf.Len() > 64<<10 {
		rest := t.buf.Bytes()[t.buf.Len()-32<<10:]
		t.buf.Reset()
		t.buf.Write(rest)
	}
	return len(p), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
