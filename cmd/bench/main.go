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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/robust/robust/internal/bench"
	"github.com/robust/robust/internal/registry"
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
	kills := fs.Int("kills", 60, "SIGKILLs of the worker for the recovery figures (0: skip)")
	growth := fs.String("growth", "10000,100000,1000000", "values for the growth runs (comma-separated; empty: skip)")
	growthRounds := fs.Int("growth-rounds", 3, "rounds of the growth runs: the figures are the medians")
	latency := fs.Uint64("latency", 10000, "values in the paced latency run (0: skip)")
	beatEvery := fs.Duration("rate", time.Millisecond, "the latency run's beat period")
	rounds := fs.Int("rounds", 5, "throughput rounds, each a baseline run then a pipeline run: the figures are the medians")
	_ = fs.Parse(args)
	tmp, err := os.MkdirTemp("", "robust-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := func(name string) string { return filepath.Join(tmp, name) }

	fmt.Printf("== robust bench: %s, %d cores, %s, %s ==\n", cpuModel(), runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	if *rounds < 1 || *growthRounds < 1 {
		return fmt.Errorf("--rounds %d, --growth-rounds %d: want at least 1 each", *rounds, *growthRounds)
	}
	// The machine's speed drifts (a shared VM: the same baseline has ranged
	// from 15k to 45k values/s here), so the two are measured in turns and
	// compared by their medians.
	fmt.Printf("\nthroughput, %d values, batch %d, no faults: first value logged to last; %d rounds, baseline then pipeline\n", *n, *batch, *rounds)
	var rbs, rps, ratios, cbs, cps []float64
	var pipe *bench.Run
	peak := map[string]uint64{}
	for i := range *rounds {
		base, baseCPU, err := bench.Baseline(ctx, dir(fmt.Sprintf("baseline-%d", i)), *n, *batch)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		pipe, err = bench.Pipeline(ctx, *binDir, dir(fmt.Sprintf("pipeline-%d", i)), *n, *batch)
		if err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		for p, b := range pipe.PeakRSS {
			peak[p] = max(peak[p], b)
		}
		rb, rp := rate(*n, base), rate(pipe.Flowed, pipe.Flow)
		rbs, rps, ratios = append(rbs, rb), append(rps, rp), append(ratios, rp/rb)
		cb, cp := perValue(baseCPU, *n), perValue(pipe.CPU, *n)
		cbs, cps = append(cbs, cb), append(cps, cp)
		fmt.Printf("  round %d: baseline %6.0f values/s, pipeline %6.0f values/s (start to exit %6.0f), ratio %.2f; CPU per value %5.1fµs, %5.1fµs (%s)\n",
			i+1, rb, rp, rate(*n, pipe.Wall), rp/rb, cb, cp, cpuShares(pipe))
	}
	mb, mp := median(rbs), median(rps)
	fmt.Printf("  %-44s %9.0f values/s\n", "baseline: one process, same hops (median)", mb)
	fmt.Printf("  %-44s %9.0f values/s\n", "pipeline: supervisor + 4 actor processes", mp)
	fmt.Printf("  %-44s %9.2f  (rounds: %.2f to %.2f)\n", "ratio of the medians, pipeline / baseline", mp/mb, slices.Min(ratios), slices.Max(ratios))
	fmt.Printf("\nCPU per value: user + system time of every process (the server's included), start to exit, over the values\n")
	fmt.Printf("  %-44s %9.1f µs  (rounds %.1f to %.1f)\n", "baseline (median)", median(cbs), slices.Min(cbs), slices.Max(cbs))
	fmt.Printf("  %-44s %9.1f µs  (rounds %.1f to %.1f)\n", "pipeline (median)", median(cps), slices.Min(cps), slices.Max(cps))
	fmt.Printf("  %-44s %9.2f\n", "ratio of the medians, pipeline / baseline", median(cps)/median(cbs))
	pipe.PeakRSS = peak
	fmt.Printf("\npeak RSS during those runs\n")
	for _, p := range append([]string{"supervisor"}, registry.Default().Names()...) {
		note := ""
		if p == "supervisor" {
			note = " (with the embedded NATS server)"
		}
		fmt.Printf("  %-12s %6.1f MiB%s\n", p, float64(pipe.PeakRSS[p])/(1<<20), note)
	}

	if *kills > 0 {
		fmt.Printf("\nrecovery: SIGKILL of the worker to the first value processed by its replacement, %d kills each\n", *kills)
		for _, standby := range []bool{true, false} {
			ds, err := bench.Recovery(ctx, *binDir, dir(fmt.Sprintf("recovery-%v", standby)), *kills, standby)
			if err != nil {
				return fmt.Errorf("recovery (standby %v): %w", standby, err)
			}
			what := "warm spare (--standby, the default)"
			if !standby {
				what = "new process (--standby=false)"
			}
			fmt.Printf("  %-36s min %s  p50 %s  p90 %s  p99 %s  max %s\n", what,
				ms(bench.Percentile(ds, 0)), ms(bench.Percentile(ds, 50)), ms(bench.Percentile(ds, 90)), ms(bench.Percentile(ds, 99)), ms(bench.Percentile(ds, 100)))
		}
	}

	if *latency > 0 {
		ds, err := bench.Latency(ctx, *binDir, dir("latency"), *latency, *beatEvery)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		fmt.Printf("\nlatency, paced (a beat every %s, %d values): a beat's send to the logger's commit of the value it moved, %d values\n", *beatEvery, *latency, len(ds))
		fmt.Printf("  min %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
			ms(bench.Percentile(ds, 0)), ms(bench.Percentile(ds, 50)), ms(bench.Percentile(ds, 90)), ms(bench.Percentile(ds, 99)), ms(bench.Percentile(ds, 99.9)), ms(bench.Percentile(ds, 100)))
		histogram(ds, []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond})
	}

	if *growth != "" {
		var sizes []uint64
		for f := range strings.SplitSeq(*growth, ",") {
			var v uint64
			if _, err := fmt.Sscan(f, &v); err != nil {
				return fmt.Errorf("--growth %q: %w", *growth, err)
			}
			sizes = append(sizes, v)
		}
		fmt.Printf("\ngrowth: pipeline throughput as N grows, median of %d rounds (each round runs every N in turn)\n", *growthRounds)
		rates := make([][]float64, len(sizes))
		walls := make([][]float64, len(sizes))
		rss := make([]uint64, len(sizes))
		for r := range *growthRounds {
			for i, v := range sizes {
				run, err := bench.Pipeline(ctx, *binDir, dir(fmt.Sprintf("growth-%d-%d", r, i)), v, *batch)
				if err != nil {
					return fmt.Errorf("growth %d: %w", v, err)
				}
				rates[i] = append(rates[i], rate(run.Flowed, run.Flow))
				walls[i] = append(walls[i], rate(v, run.Wall))
				rss[i] = max(rss[i], run.PeakRSS["supervisor"])
			}
		}
		for i, v := range sizes {
			fmt.Printf("  N=%-9d %9.0f values/s  (rounds %.0f to %.0f; start to exit %.0f values/s; supervisor peak RSS %.0f MiB)\n",
				v, median(rates[i]), slices.Min(rates[i]), slices.Max(rates[i]), median(walls[i]), float64(rss[i])/(1<<20))
		}
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rate(n uint64, d time.Duration) float64 { return float64(n) / d.Seconds() }

// histogram prints how many of ds fall below each bound, and above the last.
func histogram(ds []time.Duration, bounds []time.Duration) {
	counts := make([]int, len(bounds)+1)
	for _, d := range ds {
		i, _ := slices.BinarySearch(bounds, d+1) // d < bounds[i]
		counts[i]++
	}
	lo := "0"
	for i, c := range counts {
		hi := "∞"
		if i < len(bounds) {
			hi = ms(bounds[i])
		}
		bar := strings.Repeat("#", (50*c+len(ds)-1)/max(len(ds), 1))
		fmt.Printf("  %7s to %-7s %7d  %5.1f%%  %s\n", lo, hi, c, 100*float64(c)/float64(max(len(ds), 1)), bar)
		lo = hi
	}
}

// perValue is CPU time per value in microseconds.
func perValue(cpu time.Duration, n uint64) float64 {
	return float64(cpu) / float64(time.Microsecond) / float64(n)
}

// cpuShares says how a pipeline run's CPU was shared out, by process.
func cpuShares(r *bench.Run) string {
	var parts []string
	for _, p := range append([]string{"supervisor"}, registry.Default().Names()...) {
		if r.CPU > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", p, 100*float64(r.CPUOf[p])/float64(r.CPU)))
		}
	}
	return strings.Join(parts, " ")
}

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
