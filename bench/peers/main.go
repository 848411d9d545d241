// Command peers runs the FizzBuzz job on robust and on its likeliest
// alternative, Watermill over JetStream, side by side on this machine:
// values/s and CPU per value, in turns (the machine's speed drifts), and
// a correctness probe: a SIGKILL of the whole pipeline (its server with
// it) part way through, a restart, and a count of the values logged twice
// or missing. `make bench-peers` runs it; it is its own Go module, so
// that robust's go.mod does not depend on Watermill.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "watermill" { // the peer's process
		fs := flag.NewFlagSet("watermill", flag.ExitOnError)
		dir := fs.String("dir", "", "data dir")
		n := fs.Uint64("values", 100000, "values")
		_ = fs.Parse(os.Args[2:])
		if err := runWatermill(ctx, *dir, *n); err != nil {
			fmt.Fprintln(os.Stderr, "watermill:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("peers", flag.ExitOnError)
	binDir := fs.String("bin-dir", "../../bin", "`dir` of robust's binaries (make build)")
	n := fs.Uint64("values", 100000, "values per throughput run")
	rounds := fs.Int("rounds", 3, "throughput rounds, each robust then Watermill: the figures are the medians")
	probe := fs.Uint64("probe-values", 30000, "values in the SIGKILL-and-restart probe")
	_ = fs.Parse(args)
	bin, err := filepath.Abs(*binDir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "robust-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := func(s string) string { return filepath.Join(tmp, s) }

	fmt.Printf("== robust and Watermill side by side: %d values, %d rounds, %s ==\n", *n, *rounds, time.Now().UTC().Format("2006-01-02 15:04"))
	fmt.Println("each run: start to exit of the whole pipeline, its embedded server included; CPU: user + system of every process")
	var rr, wr, rc, wc []float64
	for i := range *rounds {
		r, err := measure(ctx, robustCmd(bin, dir(fmt.Sprintf("robust-%d", i)), *n, ""))
		if err != nil {
			return fmt.Errorf("robust: %w", err)
		}
		w, err := measure(ctx, exec.Command(self, "watermill", "--dir", dir(fmt.Sprintf("watermill-%d", i)), "--values", strconv.FormatUint(*n, 10)))
		if err != nil {
			return fmt.Errorf("watermill: %w", err)
		}
		rr, wr = append(rr, rate(*n, r.wall)), append(wr, rate(*n, w.wall))
		rc, wc = append(rc, perValue(r.cpu, *n)), append(wc, perValue(w.cpu, *n))
		fmt.Printf("  round %d: robust %6.0f values/s, %5.1f µs CPU per value; Watermill %6.0f values/s, %5.1f µs CPU per value\n",
			i+1, rr[i], rc[i], wr[i], wc[i])
	}
	fmt.Printf("  %-10s %7.0f values/s (rounds %.0f to %.0f), %5.1f µs CPU per value\n", "robust", median(rr), slices.Min(rr), slices.Max(rr), median(rc))
	fmt.Printf("  %-10s %7.0f values/s (rounds %.0f to %.0f), %5.1f µs CPU per value\n", "Watermill", median(wr), slices.Min(wr), slices.Max(wr), median(wc))

	fmt.Printf("\nprobe: %d values, SIGKILL of the whole pipeline (its server with it) once a third are logged, then the same command again\n", *probe)
	res, err := probeRobust(ctx, bin, dir("probe-robust"), *probe)
	if err != nil {
		return fmt.Errorf("robust probe: %w", err)
	}
	fmt.Printf("  %-10s %s\n", "robust", res)
	res, err = probeWatermill(ctx, self, dir("probe-watermill"), *probe)
	if err != nil {
		return fmt.Errorf("watermill probe: %w", err)
	}
	fmt.Printf("  %-10s %s\n", "Watermill", res)
	return nil
}

// robustCmd is an unpaced robust run of n values on its own embedded server.
func robustCmd(bin, dir string, n uint64, summary string) *exec.Cmd {
	args := []string{"--rate", "0", "--beats", strconv.FormatUint(n, 10), "--faults", "none", "--data-dir", dir,
		"--nats-listen", "127.0.0.1:" + strconv.Itoa(freePort()), "--http", "", "--log-level", "warn"}
	if summary != "" {
		args = append(args, "--summary", summary)
	}
	return exec.Command(filepath.Join(bin, "supervisor"), args...)
}

type result struct{ wall, cpu time.Duration }

// measure runs cmd to its end: its wall time, and the CPU of it and of
// every process it reaped.
func measure(ctx context.Context, cmd *exec.Cmd) (result, error) {
	cpu0 := childrenCPU()
	start := time.Now()
	out, err := runCmd(ctx, cmd)
	if err != nil {
		return result{}, fmt.Errorf("%w: %s", err, tail(out))
	}
	return result{wall: time.Since(start), cpu: childrenCPU() - cpu0}, nil
}

func runCmd(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			if cmd.Process != nil {
				_ = cmd.Process.Signal(syscall.SIGINT)
			}
		case <-done:
		}
	}()
	return cmd.CombinedOutput()
}

// probeRobust kills the supervisor (with its server and actors) after
// killAt, runs it again on the same data dir, and reads the books.
func probeRobust(ctx context.Context, bin, dir string, n uint64) (string, error) {
	first := robustCmd(bin, dir, n, "")
	// Its progress lines (JSON) say how many values are logged.
	first.Args = append(first.Args, "--log-level", "info", "--log-format", "json", "--progress-every", "50ms")
	stderr, err := first.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := first.Start(); err != nil {
		return "", err
	}
	var logged uint64
	lines := bufio.NewScanner(stderr)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() && logged < n/3 {
		var l struct {
			Msg    string `json:"msg"`
			Logged uint64 `json:"logged"`
		}
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "progress" {
			logged = l.Logged
		}
	}
	_ = first.Process.Signal(syscall.SIGKILL)
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	_ = first.Wait()
	if logged < n/3 {
		return "", fmt.Errorf("the first run ended before a third was logged (%d)", logged)
	}
	sum := filepath.Join(dir, "summary.json")
	start := time.Now()
	if out, err := runCmd(ctx, robustCmd(bin, dir, n, sum)); err != nil {
		return "", fmt.Errorf("%w: %s", err, tail(out))
	}
	took := time.Since(start)
	b, err := os.ReadFile(sum)
	if err != nil {
		return "", err
	}
	var s struct {
		OK        bool     `json:"ok"`
		Generated uint64   `json:"generated"`
		Logged    uint64   `json:"logged"`
		Problems  []string `json:"problems"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return "", err
	}
	verdict := "0 counted twice, 0 missing (the books balance: no loss, no duplicates)"
	if !s.OK {
		verdict = fmt.Sprintf("the books do not balance: %v", s.Problems)
	}
	return fmt.Sprintf("killed at %d logged; the restarted run logged %d of %d values in %s: %s",
		logged, s.Logged, n, took.Round(time.Millisecond), verdict), nil
}

// probeWatermill kills the peer's process (with its server) once about a
// third of the values are logged, runs it again on the same dir, and
// counts the values its books hold twice or not at all.
func probeWatermill(ctx context.Context, self, dir string, n uint64) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := func() *exec.Cmd {
		return exec.Command(self, "watermill", "--dir", dir, "--values", strconv.FormatUint(n, 10))
	}
	first := cmd()
	if err := first.Start(); err != nil {
		return "", err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = first.Process.Kill()
			_ = first.Wait()
			return "", fmt.Errorf("a third of the values not logged in 5 minutes (%v)", ctx.Err())
		}
		time.Sleep(20 * time.Millisecond)
		_, lines, err := readBooks(dir)
		if err != nil {
			return "", err
		}
		if lines >= n/3 {
			break
		}
	}
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	_, before, err := readBooks(dir)
	if err != nil {
		return "", err
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := runCmd(cctx, cmd())
	took := time.Since(start)
	seen, lines, rerr := readBooks(dir)
	if rerr != nil {
		return "", rerr
	}
	missing := n - min(n, uint64(len(seen)))
	twice := lines - min(lines, uint64(len(seen)))
	s := fmt.Sprintf("killed at %d logged; the restarted run took %s: %d counted twice, %d missing",
		before, took.Round(time.Millisecond), twice, missing)
	if err != nil {
		s += fmt.Sprintf(" (it ended with %v: %s)", err, tail(out))
	}
	return s, nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 4222
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rate(n uint64, d time.Duration) float64 { return float64(n) / d.Seconds() }

func perValue(cpu time.Duration, n uint64) float64 {
	return float64(cpu) / float64(time.Microsecond) / float64(n)
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
