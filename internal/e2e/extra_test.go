package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/internal/supervisor"
	"github.com/robust/robust/pkg/protocol"
)

// dlqCounter is the registry entry of the extra actor in
// testdata/dlqcount: it reads the DLQ stream on its own durable consumer.
var dlqCounter = registry.Actor{
	Name:     "dlqcount",
	Kind:     registry.Processor,
	Inputs:   []protocol.Input{{Stream: protocol.StreamDLQ, Subject: protocol.SubjectDLQ + ".>", Consumer: "dlqcount"}},
	Progress: "counted",
	Metrics: []registry.Metric{{
		Name: "robust_dlqcount_counted_total", Help: "Dead letters the extra actor counted.", Counter: "counted",
	}},
}

// statusOf reads one actor's entry and the graph from /status.
func statusOf(t *testing.T, base, name string) (supervisor.ActorReport, registry.Graph, bool) {
	_, body := get(t, base+"/status")
	var r supervisor.StatusReport
	if json.Unmarshal([]byte(body), &r) != nil {
		return supervisor.ActorReport{}, registry.Graph{}, false
	}
	for _, a := range r.Actors {
		if a.Name == name {
			return a, r.Graph, true
		}
	}
	return supervisor.ActorReport{}, r.Graph, false
}

// A supervisor built with one more registry entry runs that actor like the
// four: it is started, its injected panic and a SIGKILL are restarts with
// their causes, and it shows in /status, the graph and /metrics. The actor
// is only the entry above and testdata/dlqcount/main.go.
func TestExtraActor(t *testing.T) {
	t.Parallel()
	reg, err := registry.Default().With(dlqCounter)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + httpAddr
	sumPath := filepath.Join(t.TempDir(), "summary.json")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- supervisor.Main(ctx, context.Background(), reg, []string{
			"--data-dir", t.TempDir(), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"--http", httpAddr, "--bin-dir", binDir, "--summary", sumPath,
			"--rate", "20", "--beats", "0",
			// 5 dies in the worker, the result for 8 in the logger; the
			// counter panics on the second dead letter, once.
			"--faults", "worker:5,logger:8,dlqcount:2/once",
		}, &stdout, &stderr)
	}()
	defer func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr (last 16k):\n%s", stdout.String(), lastBytes(stderr.String(), 16<<10))
		}
	}()

	// It counts both dead letters, after one restart for its own panic.
	var a supervisor.ActorReport
	var g registry.Graph
	waitFor(t, 90*time.Second, "dlqcount to count 2 dead letters", func() bool {
		var ok bool
		a, g, ok = statusOf(t, base, "dlqcount")
		return ok && a.State == "running" && a.Progress == 2
	})
	if a.Kind != registry.Processor || a.ProgressCounter != "counted" || a.Counters["from_worker"] != 1 || a.Counters["from_logger"] != 1 {
		t.Fatalf("dlqcount's status: %+v", a)
	}
	if a.Causes["panic"] != 1 || !strings.Contains(a.LastExit, "injected fault dlqcount:2/once") {
		t.Fatalf("dlqcount's panic: causes %v, last exit %q", a.Causes, a.LastExit)
	}
	dlq := g.Streams[slices.IndexFunc(g.Streams, func(s registry.Stream) bool { return s.Name == protocol.StreamDLQ })]
	if len(g.Nodes) != 5 || !slices.Equal(dlq.To, []string{"dlqcount"}) || !slices.Contains(dlq.From, "worker") {
		t.Fatalf("graph: %+v", g)
	}

	// SIGKILL it from outside: back, with a new pid, the kill counted.
	old := a.PID
	kill(t, old, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "dlqcount back after SIGKILL", func() bool {
		var ok bool
		a, _, ok = statusOf(t, base, "dlqcount")
		return ok && a.State == "running" && a.PID != old && a.Causes["killed"] == 1
	})
	if a.Progress != 2 {
		t.Fatalf("after the restart dlqcount counted %d, want still 2 (nothing counted twice)", a.Progress)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`robust_actor_up{actor="dlqcount"} 1`,
		`robust_actor_restarts_total{actor="dlqcount",cause="killed"} 1`,
		`robust_actor_restarts_total{actor="dlqcount",cause="panic"} 1`,
		`robust_actor_restarts_total{actor="dlqcount",cause="hang"} 0`,
		`robust_actor_processed_total{actor="dlqcount"} 2`,
		`robust_dlqcount_counted_total 2`,
		`robust_dead_letters_total 2`,
		`robust_dlq_messages 2`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	stop() // Ctrl-C
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d", c)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the supervisor did not stop")
	}
	var s supervisor.Summary
	if err := json.Unmarshal(readFile(t, sumPath), &s); err != nil {
		t.Fatal(err)
	}
	if !s.OK || s.Starts["dlqcount"] != 3 || s.Restarts["dlqcount"] != 2 || !slices.Contains(s.Actors, "dlqcount") {
		t.Fatalf("summary: ok %v, dlqcount starts %d restarts %d, actors %v; problems %v", s.OK, s.Starts["dlqcount"], s.Restarts["dlqcount"], s.Actors, s.Problems)
	}
	if !strings.Contains(stdout.String(), "dlqcount") {
		t.Fatalf("the printed summary does not list dlqcount:\n%s", stdout.String())
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
