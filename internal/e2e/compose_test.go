package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// The compose stack on the local Docker engine: the image as `make image`
// makes it (every cmd/*, static and stripped); its healthcheck command
// fails with no supervisor; up; kill the worker with the control command
// inside the container, see it restart; the container has restart:
// unless-stopped, reaches healthy, and all its processes run as the
// non-root user; read the dead letters through the published NATS port,
// stop gracefully (the summary in the logs), down.
func TestComposeStack(t *testing.T) {
	t.Parallel()
	compose := []string{"docker-compose"}
	if exec.Command("docker", "compose", "version").Run() == nil {
		compose = []string{"docker", "compose"}
	} else if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("skipped: neither docker compose nor docker-compose is installed")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("skipped: no Docker engine answers (docker info: %v: %s)", err, firstLine(string(out)))
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = root, append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The image as `make image` makes it: every command, static and
	// stripped, in bin/ beside Dockerfile.scratch and .dockerignore.
	ctxDir := t.TempDir()
	run([]string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", "-s -w",
		"-o", filepath.Join(ctxDir, "bin")+"/", "./cmd/...")
	for from, to := range map[string]string{"Dockerfile.scratch": "Dockerfile", ".dockerignore": ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctxDir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	image := fmt.Sprintf("robust:e2e-%d", os.Getpid())
	run(nil, "docker", "build", "-q", "-t", image, ctxDir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })

	// The healthcheck's command fails when no supervisor answers.
	if out, err := exec.Command("docker", "run", "--rm", "--entrypoint", "/supervisor", image,
		"status", "--http", "127.0.0.1:1").CombinedOutput(); err == nil {
		t.Fatalf("supervisor status with no supervisor: exit 0, want non-zero\n%s", out)
	}

	natsPort, httpPort := freePort(t), freePort(t)
	env := []string{"ROBUST_IMAGE=" + image, "ROBUST_RATE=50",
		fmt.Sprintf("ROBUST_NATS_PORT=%d", natsPort), fmt.Sprintf("ROBUST_HTTP_PORT=%d", httpPort)}
	project := fmt.Sprintf("robuste2e%d", os.Getpid())
	dc := func(args ...string) string {
		t.Helper()
		return run(env, compose[0], append(append(compose[1:], "-p", project), args...)...)
	}
	t.Cleanup(func() {
		cmd := exec.Command(compose[0], append(append(compose[1:], "-p", project), "down", "-v")...)
		cmd.Dir, cmd.Env = root, append(os.Environ(), env...)
		_ = cmd.Run()
	})
	dc("up", "-d", "--no-build")
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitFor(t, 30*time.Second, "the stack's /healthz", func() bool { code, _ := get(t, base+"/healthz"); return code == 200 })

	// The container by its compose label, and docker exec rather than
	// compose exec: docker-compose v1 takes some 5 s a command on 2 cores.
	id := strings.TrimSpace(run(nil, "docker", "ps", "-q", "--filter", "label=com.docker.compose.project="+project))
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("want one container in project %s, got %q", project, id)
	}
	// The lesson's faults restart the worker early in the run: a kill in
	// its backoff is refused ("not running right now"), rightly; kill it
	// once it runs.
	var killOut string
	waitFor(t, 30*time.Second, "the worker killed inside the container", func() bool {
		out, err := exec.Command("docker", "exec", id, "/supervisor", "kill", "worker", "--data-dir", "/data").CombinedOutput()
		killOut = string(out)
		if err != nil && !strings.Contains(killOut, "not running right now") {
			t.Fatalf("kill inside the container: %v: %s", err, killOut)
		}
		return err == nil && strings.Contains(killOut, "killed worker")
	})
	waitFor(t, 10*time.Second, "the worker restarted", func() bool {
		a, ok := workerReport(t, base)
		return ok && a.State == "running" && a.Causes["killed"] >= 1
	})

	inspect := func(format string) string {
		t.Helper()
		return strings.TrimSpace(run(nil, "docker", "inspect", "-f", format, id))
	}
	if got := inspect("{{.HostConfig.RestartPolicy.Name}}"); got != "unless-stopped" {
		t.Errorf("restart policy %q, want unless-stopped", got)
	}
	if got := inspect("{{.Config.User}}"); got != composeUser {
		t.Errorf("container user %q, want %s", got, composeUser)
	}
	// The first check runs an interval (10s) after the start.
	waitFor(t, 60*time.Second, "the healthcheck to report healthy", func() bool {
		if inspect("{{.State.Health.Status}}") == "healthy" {
			return true
		}
		time.Sleep(500 * time.Millisecond)
		return false
	})
	// Every process in the container (the supervisor and the actors it
	// spawned) runs as that uid.
	uid, _, _ := strings.Cut(composeUser, ":")
	top := run(nil, "docker", "top", id, "-o", "pid,uid") // the daemon needs the pid column
	lines := strings.Split(strings.TrimSpace(top), "\n")
	if len(lines) < 3 { // the header, the supervisor, at least one actor
		t.Fatalf("docker top: want the supervisor and its actors, got\n%s", top)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) != 2 || f[1] != uid {
			t.Fatalf("want every process to run as uid %s, docker top says\n%s", uid, top)
		}
	}

	// From the host, as the docs say: the admin's context out of the
	// container; an unauthenticated client is refused.
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	if _, _, err := natsx.Connect(url, "e2e-anonymous"); err == nil {
		t.Fatal("the Compose stack's NATS took a client without credentials")
	}
	natsContext := func(name string) (path, user, password string) {
		t.Helper()
		out := run(nil, "docker", "exec", id, "/supervisor", "nats-context", name, "--data-dir", "/data")
		path = filepath.Join(t.TempDir(), name+".json")
		var c struct{ User, Password string }
		if err := json.Unmarshal([]byte(out), &c); err != nil || c.Password == "" {
			t.Fatalf("supervisor nats-context %s: %v\n%s", name, err, out)
		}
		if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		return path, c.User, c.Password
	}
	_, user, password := natsContext("admin")
	nctx := struct{ User, Password string }{user, password}
	_, js, err := natsx.Connect(url, "e2e", nats.UserInfo(nctx.User, nctx.Password))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dlq, err := js.Stream(ctx, protocol.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 45*time.Second, "33 in the DLQ (lesson faults)", func() bool {
		m, err := dlq.GetMsg(ctx, 1)
		return err == nil && string(m.Data) == "33" && m.Header.Get(protocol.HeaderActor) == protocol.Worker
	})

	// The nats CLI on the host, with the operator's context out of the
	// container: reads work, a purge is refused.
	if nats := natsCLI(t); nats != "" {
		op, _, _ := natsContext("operator")
		out, err := exec.Command(nats, "--context", op, "-s", url, "stream", "info", "DLQ").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Retention: Limits") {
			t.Errorf("nats --context operator.json stream info DLQ: %v\n%s", err, out)
		}
		out, err = exec.Command(nats, "--context", op, "-s", url, "stream", "purge", "DLQ", "-f").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permissions Violation") {
			t.Errorf("the operator purged the DLQ (want a permissions violation): %v\n%s", err, out)
		}
	}

	dc("stop")
	if logs := dc("logs", "--no-color"); !strings.Contains(logs, "no loss, no duplicates") {
		t.Fatalf("no summary in the logs after a graceful stop:\n%s", lastBytes(logs, 4000))
	}
}

// composeUser is the user docker-compose.yml and both Dockerfiles run as.
const composeUser = "65532:65532"

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
