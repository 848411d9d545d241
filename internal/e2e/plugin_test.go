package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// unixSockets lists the paths of the unix sockets pid holds open.
func unixSockets(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Skipf("skipped: no /proc/net/unix: %v", err)
	}
	var paths []string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 8 && inodes[f[6]] {
			paths = append(paths, f[7])
		}
	}
	return paths
}

// The go-plugin line is mutual TLS: the worker's socket refuses a client
// without the supervisor's certificate, and a plain (non-TLS) one gets
// nothing out of it. A worker binary replaced while the supervisor runs is
// refused at its next spawn, saying why, and the supervisor gives up on it
// after three refusals in a row.
func TestPluginChannelAndBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range append([]string{"supervisor"}, registry.Default().Names()...) {
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, "", "--bin-dir", dir, "--rate", "10", "--beats", "0", "--faults", "none")
	pid := p.waitPID(protocol.Worker)

	// go-plugin hands an actor the supervisor's certificate only with
	// AutoMTLS; the actor then serves its socket with TLS and requires it.
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	if !strings.Contains(string(env), "PLUGIN_CLIENT_CERT=-----BEGIN CERTIFICATE-----") {
		t.Fatal("the worker was started without go-plugin's AutoMTLS client certificate")
	}
	var sock string
	waitFor(t, 10*time.Second, "the worker's plugin socket", func() bool {
		for _, s := range unixSockets(t, pid) {
			if strings.Contains(s, "/worker-") && strings.Contains(s, "/plugin") && !strings.Contains(s, "/worker-spare") {
				sock = s
				return true
			}
		}
		return false
	})
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "unix", sock, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("hello"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("the worker's plugin socket took a TLS client without a certificate")
	}
	t.Logf("a TLS client without the certificate: %v", err)
	if plain, err := net.DialTimeout("unix", sock, 5*time.Second); err == nil {
		_ = plain.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = plain.Write([]byte("\x00\x00\x00\x00plain net/rpc, no TLS\n"))
		got, _ := io.ReadAll(plain)
		plain.Close()
		if strings.Contains(string(got), "rpc") {
			t.Fatalf("a plain client got an RPC answer: %q", got)
		}
	}

	// Replace the worker's binary (another valid actor binary: only the
	// checksum tells them apart), then kill the running worker.
	b, err := os.ReadFile(filepath.Join(binDir, protocol.Logger))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".worker.new")
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, protocol.Worker)); err != nil {
		t.Fatal(err)
	}
	kill(t, pid, syscall.SIGKILL)
	code := p.wait(2 * time.Minute)
	stderr := p.stderr.String()
	if code != 1 || !strings.Contains(stderr, "actor binary changed since the supervisor started") || !strings.Contains(stderr, "restart the supervisor to run the new binary") {
		t.Fatalf("exit %d; want 1, the refusal and its reason in the log:\n%s", code, lastBytes(stderr, 4000))
	}
	if !strings.Contains(stderr, "giving up: worker failed to start") {
		t.Errorf("no give-up in the log:\n%s", lastBytes(stderr, 3000))
	}
	if pid := p.actorPID(protocol.Worker); pid != 0 {
		t.Fatalf("a worker runs (pid %d) from the replaced binary", pid)
	}
}
