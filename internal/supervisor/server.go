package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// lockDataDir creates dir and takes an exclusive lock on it for the life of
// the process. The kernel drops the lock when the process dies, even by
// SIGKILL, so a new supervisor can take over a dead one's data dir.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir %s cannot be created: %w (pass --data-dir with a writable path)", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "supervisor.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir %s is not writable: %w (pass --data-dir with a writable path)", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s (stop the other supervisor, or pass another --data-dir)", ErrLocked, dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return f, nil
}

// startServer runs the embedded NATS server with JetStream on file storage.
func startServer(listen, dataDir string, log *slog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: port must be a number", listen)
	}
	if port != -1 { // -1: a random port (tests)
		l, err := net.Listen("tcp", listen)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("NATS port %s is in use (another supervisor or nats-server?): stop it or pass --nats-listen with a free port", listen)
			}
			return nil, fmt.Errorf("cannot listen on %s: %w (pass --nats-listen)", listen, err)
		}
		l.Close()
	}
	opts := &server.Options{
		ServerName: "robust",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "jetstream"),
		NoSigs:     true, // the supervisor owns signals
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start on %s within 10s", listen)
	}
	return ns, nil
}
