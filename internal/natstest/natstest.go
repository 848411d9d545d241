// Package natstest starts real, embedded NATS servers for tests.
package natstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robust/robust/internal/natsx"
)

// RunJetStream starts an embedded server with JetStream on a random port,
// storing in a temp dir, and shuts it down when the test ends.
func RunJetStream(t testing.TB) *server.Server {
	t.Helper()
	ns, err := natsx.RunServer(natsx.ServerConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Tmpfs mounts a tmpfs of size bytes on a new temp dir, unmounted when the
// test ends: a disk that fills. Where it cannot be mounted (not root, no
// mount privilege) the test is skipped, saying so.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "robust-test", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes a file in dir until its file system is full, leaving free
// bytes at most (0: none); removing the file frees the space.
func Fill(t testing.TB, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Statfs_t
	for _, chunk := range []int{1 << 20, 64 << 10, 4 << 10, 512} {
		buf := make([]byte, chunk)
		for {
			if err := syscall.Statfs(dir, &st); err != nil {
				t.Fatal(err)
			}
			if int64(st.Bavail)*int64(st.Bsize) <= leave {
				return path
			}
			if _, err := f.Write(buf); err != nil {
				break // full at this chunk size: smaller ones
			}
		}
	}
	return path
}
