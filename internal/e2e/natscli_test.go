package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/pkg/protocol"
)

// natsCLI installs the real nats CLI, the version the README names, once
// per machine (kept in the user's cache dir), and returns its path.
func natsCLI(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "robust-natscli-v0.5.0")
	bin := filepath.Join(dir, "nats")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", "github.com/nats-io/natscli/nats@v0.5.0")
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("skipped: could not install the nats CLI (go install github.com/nats-io/natscli/nats@v0.5.0: %v): %s", err, lastBytes(string(out), 500))
	}
	return bin
}

// The README's nats CLI commands work as written against the embedded
// server: the kept dead letters (33 and 41, with their headers), the
// stream, and a live subscription seeing a new one.
func TestNatsCLI(t *testing.T) {
	t.Parallel()
	nats := natsCLI(t)
	p := start(t, "", "--rate", "5", "--beats", "0") // the lesson's faults
	_, js := p.connect()
	waitFor(t, 60*time.Second, "33 and 41 dead-lettered", func() bool {
		st, err := js.Stream(t.Context(), protocol.StreamDLQ)
		if err != nil {
			return false
		}
		info, err := st.Info(t.Context())
		return err == nil && info.State.Msgs >= 2
	})
	// As the README says: the operator's context for everyday reads.
	operator := filepath.Join(auth.ContextDir(p.dataDir), "operator.json")
	admin := filepath.Join(auth.ContextDir(p.dataDir), "admin.json")
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(nats, args...)
		cmd.Env = append(os.Environ(), "NATS_CONTEXT="+operator)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := cli("sub", "--all", "robust.dlq.>", "--count", "2")
	for _, want := range []string{
		"subject: robust.dlq.worker", "Robust-Actor: worker", "Robust-Orig-Subject: robust.numbers", "\n33\n",
		"subject: robust.dlq.logger", "Robust-Actor: logger", `{"value":41,"kind":"value","text":"41"}`,
		"Robust-Reason: showstopper: 3 deliveries without ack; last error: panic: injected fault",
		"Robust-Deliveries: 4", "Robust-Orig-Sequence: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nats sub --all 'robust.dlq.>' lacks %q:\n%s", want, out)
		}
	}
	if out := cli("stream", "info", "DLQ"); !strings.Contains(out, "Retention: Limits") || !strings.Contains(out, "Messages: 2") {
		t.Errorf("nats stream info DLQ:\n%s", out)
	}
	if out := cli("kv", "get", "robust_state", "worker"); !strings.Contains(out, `"starts"`) {
		t.Errorf("nats kv get robust_state worker:\n%s", out)
	}

	// A live subscriber sees a new dead letter arrive.
	var live bytes.Buffer
	sub := exec.Command(nats, "sub", "robust.dlq.>", "--count", "1")
	sub.Env = append(os.Environ(), "NATS_CONTEXT="+operator)
	sub.Stdout, sub.Stderr = &live, &live
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Process.Kill() }()
	time.Sleep(500 * time.Millisecond) // let it subscribe
	// Publishing by hand is the admin's; the operator is refused.
	if out, err := exec.Command(nats, "--context", operator, "pub", "robust.results", "x").CombinedOutput(); err == nil || !strings.Contains(string(out), "Permissions Violation") {
		t.Errorf("the operator published (want a permissions violation): %v\n%s", err, out)
	}
	cli("--context", admin, "pub", "-J", "robust.results", "not json")
	done := make(chan error, 1)
	go func() { done <- sub.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("nats sub 'robust.dlq.>' saw nothing:\n%s", live.String())
	}
	if !strings.Contains(live.String(), "Robust-Reason: malformed: result") || !strings.Contains(live.String(), "not json") {
		t.Errorf("live dead letter:\n%s", live.String())
	}
	p.finish(syscall.SIGTERM, time.Minute)
}
