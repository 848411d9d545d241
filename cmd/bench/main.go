// Command bench prints the pipeline's figures: throughput against a
// one-process baseline measured in the same run, recovery after SIGKILL,
// peak memory per process and throughput as N grows. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/robust/robust/internal/bench"
	"github.com/robust/robust/pkg/protocol"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	exe, _ := os.Executable()
	binDir := fs.String("bin-dir", filepath.Dir(exe), "`dir` holding supervisor and the actor binaries")
	n := fs.Uint64("values", 100000, "values in the throughput run")
	batch := fs.Int("batch", 256, "batch size, for both")
	kills := fs.Int("kills", 60, "SIGKILLs of the worker for the recovery figures")
	growth := fs.String("growth", "10000,100000,1000000", "values for the growth runs (comma-separated; empty: skip)")
	_ = fs.Parse(args)
	tmp, err := os.MkdirTemp("", "robust-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := func(name string) string { return filepath.Join(tmp, name) }

	fmt.Printf("== robust bench: %s, %d cores, %s, %s ==\n", cpuModel(), runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	base, err := bench.Baseline(ctx, dir("baseline"), *n, *batch)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	pipe, err := bench.Pipeline(ctx, *binDir, dir("pipeline"), *n, *batch)
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	rb, rp, rw := rate(*n, base), rate(pipe.Flowed, pipe.Flow), rate(*n, pipe.Wall)
	fmt.Printf("\nthroughput, %d values, batch %d, no faults: first value logged to last\n", *n, *batch)
	fmt.Printf("  %-44s %9.0f values/s  (%s)\n", "baseline: one process, same hops", rb, base.Round(time.Millisecond))
	fmt.Printf("  %-44s %9.0f values/s  (%s)\n", "pipeline: supervisor + 4 actor processes", rp, pipe.Flow.Round(time.Millisecond))
	fmt.Printf("  %-44s %9.2f\n", "ratio pipeline / baseline", rp/rb)
	fmt.Printf("  %-44s %9.0f values/s  (%s, with process starts, drain, summary)\n", "pipeline, supervisor start to exit", rw, pipe.Wall.Round(time.Millisecond))

	fmt.Printf("\npeak RSS during that run\n")
	for _, p := range append([]string{"supervisor"}, protocol.Actors...) {
		note := ""
		if p == "supervisor" {
			note = " (with the embedded NATS server)"
		}
		fmt.Printf("  %-12s %6.1f MiB%s\n", p, float64(pipe.PeakRSS[p])/(1<<20), note)
	}

	ds, err := bench.Recovery(ctx, *binDir, dir("recovery"), *kills)
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	fmt.Printf("\nrecovery: SIGKILL of the worker to the first value processed by its replacement, %d kills\n", len(ds))
	fmt.Printf("  min %s  p50 %s  p90 %s  p99 %s  max %s\n",
		ms(bench.Percentile(ds, 0)), ms(bench.Percentile(ds, 50)), ms(bench.Percentile(ds, 90)), ms(bench.Percentile(ds, 99)), ms(bench.Percentile(ds, 100)))

	if *growth != "" {
		fmt.Printf("\ngrowth: pipeline throughput as N grows\n")
		for i, f := range strings.Split(*growth, ",") {
			var v uint64
			if _, err := fmt.Sscan(f, &v); err != nil {
				return fmt.Errorf("--growth %q: %w", *growth, err)
			}
			r, err := bench.Pipeline(ctx, *binDir, dir(fmt.Sprintf("growth-%d", i)), v, *batch)
			if err != nil {
				return fmt.Errorf("growth %d: %w", v, err)
			}
			fmt.Printf("  N=%-9d %9.0f values/s  (%s start to exit: %.0f values/s; supervisor peak RSS %.0f MiB)\n",
				v, rate(r.Flowed, r.Flow), r.Flow.Round(time.Millisecond), rate(v, r.Wall), float64(r.PeakRSS["supervisor"])/(1<<20))
		}
	}
	return nil
}

func rate(n uint64, d time.Duration) float64 { return float64(n) / d.Seconds() }

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}
