package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/supervisor"
	"github.com/robust/robust/pkg/protocol"
)

// workerReport reads the worker's entry from a supervisor's /status.
func workerReport(t *testing.T, base string) (supervisor.ActorReport, bool) {
	_, body := get(t, base+"/status")
	var r supervisor.StatusReport
	if json.Unmarshal([]byte(body), &r) != nil {
		return supervisor.ActorReport{}, false
	}
	for _, a := range r.Actors {
		if a.Name == protocol.Worker {
			return a, true
		}
	}
	return supervisor.ActorReport{}, false
}

// control runs `supervisor ARGS --http addr --data-dir dataDir` and
// returns its exit code and output.
func control(t testing.TB, addr, dataDir string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "supervisor"), append(args, "--http", addr, "--data-dir", dataDir)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The HTTP listener and the control commands: health, status, metrics, and
// `supervisor kill ACTOR` with the actor coming back.
func TestHTTPAndControl(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, "", "--rate", "10", "--beats", "0", "--faults", "none", "--http", addr)
	base := "http://" + addr
	waitFor(t, 20*time.Second, "/healthz", func() bool { code, _ := get(t, base+"/healthz"); return code == 200 })

	var rep supervisor.StatusReport
	waitFor(t, 20*time.Second, "every actor running", func() bool {
		_, body := get(t, base+"/status")
		if json.Unmarshal([]byte(body), &rep) != nil || len(rep.Actors) != 4 {
			return false
		}
		for _, a := range rep.Actors {
			if a.State != "running" || a.PID == 0 {
				return false
			}
		}
		return true
	})
	var oldPID int
	for _, a := range rep.Actors {
		if a.Name == protocol.Worker {
			oldPID = a.PID
		}
	}

	ctl := func(args ...string) (int, string) { return control(t, addr, p.dataDir, args...) }
	// Kill and replay need the token in the supervisor's data dir.
	if code, out := control(t, addr, t.TempDir(), "kill", "worker"); code != 1 || !strings.Contains(out, "token") {
		t.Fatalf("kill without the token: exit %d: %s", code, out)
	}
	if code, out := ctl("kill", "worker"); code != 0 || !strings.Contains(out, fmt.Sprintf("killed worker (pid %d)", oldPID)) {
		t.Fatalf("supervisor kill worker: exit %d: %s", code, out)
	}
	if code, out := ctl("kill", "robot"); code != 1 || !strings.Contains(out, "unknown actor") {
		t.Fatalf("supervisor kill robot: exit %d: %s", code, out)
	}
	waitFor(t, 5*time.Second, "the worker back", func() bool {
		a, ok := workerReport(t, base)
		return ok && a.State == "running" && a.PID != oldPID && a.Restarts == 1 && a.Causes["killed"] == 1
	})
	code, out := ctl("status")
	if code != 0 || !strings.Contains(out, "worker") || !strings.Contains(out, "running") || !strings.Contains(out, "killed on request") {
		t.Fatalf("supervisor status: exit %d:\n%s", code, out)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`robust_actor_up{actor="worker"} 1`,
		`robust_actor_restarts_total{actor="worker",cause="killed"} 1`,
		`robust_queue_depth{stream="NUMBERS"}`,
		`robust_dead_letters_total 0`,
		`robust_logged_total{result="fizz"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	// dlq list and show, on a dead letter made by hand.
	_, js := p.connect()
	if _, err := js.Publish(t.Context(), protocol.SubjectResults, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	var listed string
	defer func() {
		if t.Failed() {
			t.Logf("supervisor dlq list said:\n%s", listed)
		}
	}()
	waitFor(t, 10*time.Second, "the dead letter listed", func() bool {
		code, out := ctl("dlq", "list")
		listed = out
		return code == 0 && strings.Contains(out, "logger") && strings.Contains(out, "malformed: result")
	})
	if code, out := ctl("dlq", "show", "1"); code != 0 || !strings.Contains(out, "Robust-Orig-Subject: robust.results") || !strings.Contains(out, "\nnot json\n") {
		t.Fatalf("dlq show 1: exit %d:\n%s", code, out)
	}
	if code, out := ctl("dlq", "show", "99"); code != 1 || !strings.Contains(out, "no dead letter 99") {
		t.Fatalf("dlq show 99: exit %d: %s", code, out)
	}
	if code, out := ctl("dlq", "replay", "1"); code != 1 || !strings.Contains(out, "not replayable: it is not a message of the pipeline's") {
		t.Fatalf("dlq replay of a malformed message: exit %d: %s", code, out)
	}

	p.finish(syscall.SIGTERM, time.Minute)
	if code, _ := get(t, base+"/healthz"); code == 200 {
		t.Error("/healthz still answers after the supervisor exited")
	}
	if code, out := ctl("status"); code != 1 || !strings.Contains(out, "is a supervisor running") {
		t.Fatalf("status with no supervisor: exit %d: %s", code, out)
	}
}
