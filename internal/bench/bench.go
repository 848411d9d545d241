// Package bench measures the pipeline: end-to-end throughput against a
// one-process baseline doing the same hops on the same kind of embedded
// server, recovery time after SIGKILL of the worker, peak memory of each
// process, and throughput as the number of values grows.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/proc"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// Baseline pushes n values through the pipeline's hops in one plain
// process: publish a batch of numbers asynchronously with message IDs, save
// a position; fetch them and ack, publish their results the same way, save;
// fetch the results and ack, save. The server is embedded in this process,
// with the pipeline's stream configuration and authentication, on file
// storage in dir. The CPU time is this process's over the whole call,
// server included.
func Baseline(ctx context.Context, dir string, n uint64, batch int) (wall, cpu time.Duration, err error) {
	cpu0 := proc.Rusage(syscall.RUSAGE_SELF)
	wall, err = baseline(ctx, dir, n, batch)
	return wall, proc.Rusage(syscall.RUSAGE_SELF) - cpu0, err
}

func baseline(ctx context.Context, dir string, n uint64, batch int) (time.Duration, error) {
	// Authenticated as the pipeline is: the embedded server's accounts
	// and users, the baseline connecting as the supervisor (an nkey).
	keys, err := auth.Open(dir, registry.Default().Names())
	if err != nil {
		return 0, err
	}
	conf, err := keys.WriteServerConf(dir, registry.Default())
	if err != nil {
		return 0, err
	}
	ns, err := natsx.RunServer(natsx.ServerConfig{StoreDir: dir, Conf: conf, Account: auth.Account})
	if err != nil {
		return 0, err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	opts, err := natsx.Auth(keys.Supervisor())
	if err != nil {
		return 0, err
	}
	nc, js, err := natsx.Connect(ns.ClientURL(), "baseline", opts...)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	topo := natsx.Topology{Queue: max(batch, 1000)}
	if err := natsx.Ensure(ctx, js, topo, registry.Default().Inputs()); err != nil {
		return 0, err
	}
	kv, err := js.KeyValue(ctx, protocol.StateBucket)
	if err != nil {
		return 0, err
	}
	numbers, err := js.Consumer(ctx, protocol.StreamNumbers, protocol.WorkerNumbers.Consumer)
	if err != nil {
		return 0, err
	}
	results, err := js.Consumer(ctx, protocol.StreamResults, protocol.LoggerResults.Consumer)
	if err != nil {
		return 0, err
	}
	publish := func(msgs []*nats.Msg, ids []string) error {
		futs := make([]jetstream.PubAckFuture, len(msgs))
		for i, m := range msgs {
			if futs[i], err = js.PublishMsgAsync(m, jetstream.WithMsgID(ids[i])); err != nil {
				return err
			}
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	fetch := func(c jetstream.Consumer, want int) ([]jetstream.Msg, error) {
		var got []jetstream.Msg
		for len(got) < want {
			b, err := c.Fetch(want-len(got), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return nil, err
			}
			for m := range b.Messages() {
				got = append(got, m)
			}
			if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
				return nil, err
			}
		}
		return got, nil
	}
	var tally actors.Tally
	start := time.Now()
	for v := uint64(0); v < n; {
		b := int(min(uint64(batch), n-v))
		msgs, ids := make([]*nats.Msg, b), make([]string, b)
		for i := range b {
			msgs[i] = &nats.Msg{Subject: protocol.SubjectNumbers, Data: protocol.EncodeNumber(v + uint64(i))}
			ids[i] = protocol.NumberMsgID(v + uint64(i))
		}
		if err := publish(msgs, ids); err != nil {
			return 0, fmt.Errorf("publish numbers: %w", err)
		}
		if _, err := kv.Put(ctx, "baseline-generator", strconv.AppendUint(nil, v+uint64(b), 10)); err != nil {
			return 0, err
		}
		in, err := fetch(numbers, b)
		if err != nil {
			return 0, fmt.Errorf("fetch numbers: %w", err)
		}
		for i, m := range in {
			x, err := protocol.DecodeNumber(m.Data())
			if err != nil {
				return 0, err
			}
			msgs[i] = &nats.Msg{Subject: protocol.SubjectResults, Data: protocol.EncodeResult(protocol.FizzBuzz(x))}
			ids[i] = protocol.ResultMsgID(x)
		}
		if err := publish(msgs, ids); err != nil {
			return 0, fmt.Errorf("publish results: %w", err)
		}
		if _, err := kv.Put(ctx, "baseline-worker", strconv.AppendUint(nil, v+uint64(b), 10)); err != nil {
			return 0, err
		}
		for _, m := range in {
			if err := m.Ack(); err != nil {
				return 0, err
			}
		}
		out, err := fetch(results, b)
		if err != nil {
			return 0, fmt.Errorf("fetch results: %w", err)
		}
		for _, m := range out {
			r, err := protocol.DecodeResult(m.Data())
			if err != nil {
				return 0, err
			}
			tally.Add(r.Value)
		}
		if _, err := kv.Put(ctx, "baseline-logger", strconv.AppendUint(nil, tally.Total(), 10)); err != nil {
			return 0, err
		}
		for _, m := range out {
			if err := m.Ack(); err != nil {
				return 0, err
			}
		}
		v += uint64(b)
	}
	d := time.Since(start)
	if tally.Total() != n {
		return 0, fmt.Errorf("baseline logged %d values, want %d", tally.Total(), n)
	}
	return d, nil
}

// Run is one pipeline run.
type Run struct {
	Wall    time.Duration     // from starting the supervisor to its exit
	Flow    time.Duration     // from the first value logged to the last
	Flowed  uint64            // values logged within Flow
	PeakRSS map[string]uint64 // bytes, per process name
	// CPU is the user and system time of the supervisor (with its embedded
	// server) and of every actor process it ran, start to exit.
	CPU time.Duration
	// CPUOf is each process's share of CPU as last sampled (every 50 ms;
	// a replaced actor's predecessors are not in it).
	CPUOf map[string]time.Duration
}

// Pipeline runs bin/supervisor unpaced without faults on n values, on its
// own embedded server in dir, sampling each process's peak RSS.
func Pipeline(ctx context.Context, binDir, dir string, n uint64, batch int) (*Run, error) {
	cmd, port, out, err := supervisorCmd(ctx, binDir, dir,
		"--rate", "0", "--beats", strconv.FormatUint(n, 10), "--batch", strconv.Itoa(batch))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cpu0 := proc.Rusage(syscall.RUSAGE_CHILDREN)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	run := &Run{PeakRSS: map[string]uint64{}, CPUOf: map[string]time.Duration{}}
	var mu sync.Mutex
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // VmHWM is the peak so far: the last sample of each process is its peak
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			mu.Lock()
			run.PeakRSS["supervisor"] = max(run.PeakRSS["supervisor"], proc.PeakRSS(cmd.Process.Pid))
			run.CPUOf["supervisor"] = max(run.CPUOf["supervisor"], proc.CPU(cmd.Process.Pid))
			for _, a := range registry.Default().Names() {
				if pid := proc.Child(cmd.Process.Pid, a); pid > 0 {
					run.PeakRSS[a] = max(run.PeakRSS[a], proc.PeakRSS(pid))
					run.CPUOf[a] = max(run.CPUOf[a], proc.CPU(pid))
				}
			}
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	flow := make(chan struct{})
	go func() { // the logger's state, as it is saved: first and last value logged
		defer close(flow)
		kv, closeConn, err := stateBucket(ctx, dir, port)
		if err != nil {
			return
		}
		defer closeConn()
		w, err := kv.Watch(ctx, protocol.Logger)
		if err != nil {
			return
		}
		defer w.Stop()
		var first time.Time
		var firstN uint64
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var st actor.State[actors.LoggerState]
			if unmarshal(e.Value(), &st) != nil {
				continue
			}
			logged := st.Data.Tally.Total()
			if first.IsZero() && logged > 0 {
				first, firstN = time.Now(), logged
			}
			if logged >= n {
				run.Flow, run.Flowed = time.Since(first), n-firstN
				return
			}
		}
	}()
	err = cmd.Wait()
	run.Wall = time.Since(start)
	run.CPU = proc.Rusage(syscall.RUSAGE_CHILDREN) - cpu0
	close(done)
	<-sampled
	select {
	case <-flow:
	case <-time.After(5 * time.Second): // the watch missed the end: no flow figure
	}
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w (log in %s)", err, out.Name())
	}
	return run, nil
}

// Recovery kills the worker of a running pipeline kills times and measures,
// each time, from the SIGKILL to the first value processed by the
// replacement (its state saved with more values processed). With
// standby, the replacement is the warm spare (--standby); without, a
// process launched after the kill.
func Recovery(ctx context.Context, binDir, dir string, kills int, standby bool) ([]time.Duration, error) {
	port, err := natsx.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "supervisor"),
		"--rate", "0", "--beats", "0", "--faults", "none",
		"--data-dir", dir, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", port), "--bin-dir", binDir, "--log-level", "warn", "--http", "",
		// each kill after a stable run is a first restart: immediate, as the policy says
		"--restart-stable", "100ms", "--max-restarts", "1000000", "--standby="+strconv.FormatBool(standby))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	}()
	kv, closeConn, err := stateBucket(ctx, dir, port)
	if err != nil {
		return nil, err
	}
	defer closeConn()
	w, err := kv.Watch(ctx, protocol.Worker)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	updates := make(chan actor.State[actors.WorkerState], 1024)
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var st actor.State[actors.WorkerState]
			if err := unmarshal(e.Value(), &st); err == nil {
				updates <- st
			}
		}
		close(updates)
	}()
	var last actor.State[actors.WorkerState]
	drainTo := func(until time.Time) {
		for time.Now().Before(until) {
			select {
			case st, ok := <-updates:
				if !ok {
					return
				}
				last = st
			case <-time.After(time.Until(until)):
			}
		}
	}
	var out []time.Duration
	for len(out) < kills {
		drainTo(time.Now().Add(300 * time.Millisecond)) // run past the stable period
		pid := proc.Child(cmd.Process.Pid, protocol.Worker)
		if pid == 0 || last.Data.Processed == 0 {
			continue
		}
		if standby && proc.Child(cmd.Process.Pid, protocol.SpareName(protocol.Worker)) == 0 {
			continue // its spare is not ready yet
		}
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			continue
		}
		// The dead worker's last saved state, read after the kill (the
		// watch may lag): its replacement must process beyond it.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		dead, err := actor.LoadState[actors.WorkerState](cctx, kv, protocol.Worker)
		cancel()
		if err != nil {
			return out, err
		}
		starts, processed := dead.Starts, dead.Data.Processed
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case st, ok := <-updates:
				if !ok {
					return out, errors.New("watch ended")
				}
				last = st
				if st.Starts > starts && st.Data.Processed > processed {
					out = append(out, time.Since(killed))
					break wait
				}
			case <-timeout:
				return out, fmt.Errorf("worker not back 10s after kill %d", len(out)+1)
			}
		}
	}
	return out, nil
}

// Percentile returns the p-th percentile (0-100) of ds, nearest rank.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// supervisorCmd is bin/supervisor with args, without faults, on its own
// embedded server (on a free port) in dir, its output in a log file there
// (the caller closes it).
func supervisorCmd(ctx context.Context, binDir, dir string, args ...string) (cmd *exec.Cmd, port int, out *os.File, err error) {
	if port, err = natsx.FreePort(); err != nil {
		return nil, 0, nil, err
	}
	cmd = exec.CommandContext(ctx, filepath.Join(binDir, "supervisor"), append(args, "--faults", "none",
		"--data-dir", dir, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", port), "--bin-dir", binDir, "--log-level", "warn", "--http", "")...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, nil, err
	}
	if out, err = os.CreateTemp(dir, "supervisor-*.log"); err != nil {
		return nil, 0, nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, port, out, nil
}

// stateBucket connects to the pipeline on port once it is up.
func stateBucket(ctx context.Context, dir string, port int) (jetstream.KeyValue, func(), error) {
	nc, kv, err := connect(ctx, dir, port)
	if err != nil {
		return nil, nil, err
	}
	return kv, nc.Close, nil
}

// connect connects as the admin to the pipeline on port once its state
// bucket is there.
func connect(ctx context.Context, dir string, port int) (*nats.Conn, jetstream.KeyValue, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, js, err := auth.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), dir, auth.Admin, "bench")
		if err == nil {
			kv, err := js.KeyValue(ctx, protocol.StateBucket)
			if err == nil {
				return nc, kv, nil
			}
			nc.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, nil, fmt.Errorf("pipeline did not come up: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Latency runs the pipeline paced, a beat every rate, for beats beats and
// returns, for each value, the time from its beat's send to the logger's
// commit of its result: the send time is the result's HeaderBeatTime (the
// worker carries it from the beat that moved the value), the commit is
// the first update of the logger's state whose LastSource covers the
// result, as a watch of the state bucket sees it (so the figure includes
// the watch's own delivery, well under a millisecond on one machine).
// Values whose beat was sent before the logger's first commit are left
// out: they waited for the pipeline to start, not for each other.
func Latency(ctx context.Context, binDir, dir string, beats uint64, rate time.Duration) ([]time.Duration, error) {
	if rate < time.Millisecond {
		return nil, fmt.Errorf("a beat every %s: the supervisor's --rate counts whole milliseconds", rate)
	}
	cmd, port, out, err := supervisorCmd(ctx, binDir, dir,
		"--rate", strconv.FormatInt(rate.Milliseconds(), 10), "--beats", strconv.FormatUint(beats, 10))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		<-exited
	}
	nc, kv, err := connect(ctx, dir, port)
	if err != nil {
		stop()
		return nil, err
	}
	defer nc.Close()

	// Each result as the worker publishes it: its source and beat time.
	type sent struct{ source, at uint64 }
	results := make(chan sent, 1<<16)
	malformed := make(chan string, 1)
	sub, err := nc.Subscribe(protocol.SubjectResults, func(m *nats.Msg) {
		src, err1 := strconv.ParseUint(m.Header.Get(protocol.HeaderSourceSequence), 10, 64)
		at, ok, err2 := protocol.ParseBeatTime(m.Header)
		if err1 != nil || err2 != nil || !ok {
			select {
			case malformed <- fmt.Sprintf("a result without a source or beat time: headers %v", m.Header):
			default:
			}
			return
		}
		results <- sent{src, uint64(at)}
	})
	if err != nil {
		stop()
		return nil, err
	}
	defer sub.Unsubscribe()
	w, err := kv.Watch(ctx, protocol.Logger, jetstream.UpdatesOnly())
	if err != nil {
		stop()
		return nil, err
	}
	defer w.Stop()

	var lat []time.Duration
	var waiting []sent // published, not yet seen committed, in source order
	var first int64    // the logger's first commit
	logged := uint64(0)
	timeout := time.After(time.Duration(beats)*rate + time.Minute)
	running := exited // nil once the supervisor has exited
	for logged < beats {
		select {
		case r := <-results:
			waiting = append(waiting, r)
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			now := time.Now().UnixNano()
			var st actor.State[actors.LoggerState]
			if err := unmarshal(e.Value(), &st); err != nil {
				continue
			}
			// Results published before this commit but not yet received
			// here are taken first: the subscription may trail the watch.
			for drained := false; !drained; {
				select {
				case r := <-results:
					waiting = append(waiting, r)
				default:
					drained = true
				}
			}
			if first == 0 && st.Data.Tally.Total() > 0 {
				first = now
			}
			i := 0
			for ; i < len(waiting) && waiting[i].source <= st.Data.LastSource; i++ {
				if int64(waiting[i].at) >= first {
					lat = append(lat, time.Duration(now-int64(waiting[i].at)))
				}
			}
			waiting = waiting[i:]
			logged = st.Data.Tally.Total()
		case m := <-malformed:
			stop()
			return nil, errors.New(m)
		case err := <-running:
			exited <- err // for stop
			// The run is over: the watch may trail the exit a little.
			timeout, running = time.After(2*time.Second), nil
			if err != nil {
				return lat, fmt.Errorf("supervisor: %w (log in %s)", err, out.Name())
			}
		case <-timeout:
			stop()
			return lat, fmt.Errorf("%d of %d values logged in time", logged, beats)
		}
	}
	if err := <-exited; err != nil {
		return lat, fmt.Errorf("supervisor: %w (log in %s)", err, out.Name())
	}
	return lat, nil
}

func unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
