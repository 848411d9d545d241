// Command chaos runs the pipeline under random SIGKILLs and panics and
// prints a verdict: lost = 0, duplicated = 0, or exit 1 with the values
// concerned. See the README's "Chaos" section.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/robust/robust/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var cfg chaos.Config
	exe, _ := os.Executable()
	fs.Uint64Var(&cfg.Values, "values", 100000, "values to push through the pipeline")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed for every random choice: which actor dies when, where panics fire")
	fs.DurationVar(&cfg.KillEvery, "kill-every", 300*time.Millisecond, "mean pause between actor kills")
	fs.IntVar(&cfg.SupervisorKills, "supervisor-kills", 3, "times the supervisor itself is killed and restarted")
	fs.Float64Var(&cfg.PanicP, "panic-p", 0.0001, "probability of an injected panic per actor, point, key and start")
	fs.IntVar(&cfg.Batch, "batch", 256, "the pipeline's --batch")
	fs.StringVar(&cfg.BinDir, "bin-dir", filepath.Dir(exe), "`dir` holding supervisor and the actor binaries")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "`dir` for the run (default: a temp dir, removed afterwards)")
	fs.DurationVar(&cfg.Timeout, "timeout", 15*time.Minute, "give up after this long")
	jsonOut := fs.String("json", "", "also write the verdict as JSON to `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.Values == 0 || cfg.KillEvery <= 0 || cfg.PanicP < 0 || cfg.PanicP > 1 || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "chaos: --values and --kill-every must be positive, --panic-p between 0 and 1; run 'chaos -h' for the flags")
		return 2
	}
	cfg.Log = os.Stderr
	v, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 1
	}
	v.WriteText(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
			return 1
		}
	}
	if !v.OK {
		return 1
	}
	return 0
}
