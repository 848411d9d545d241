package natsx

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig is an embedded NATS server with JetStream on file storage.
// Zero fields get defaults:
//
//	Listen:     127.0.0.1:-1 (a random port)
//	Name:       robust
//	Log:        none
//	ReadyWithin 10s
type ServerConfig struct {
	Listen      string // host:port; port -1 picks a free one
	StoreDir    string // JetStream's files; required
	Name        string // the server's name
	Log         *slog.Logger
	ReadyWithin time.Duration
	// Conf is a NATS configuration file with the server's accounts and
	// users (auth.ServerConf); "": no authentication (tests only).
	Conf string
	// Account, with Conf, is the account holding the pipeline's streams.
	// Streams an earlier version kept in the global account ($G) move to
	// it on start (see CarryOver).
	Account string
	// Monitor is the HTTP monitoring listener (varz, jsz), host:port; "": none.
	Monitor string
	// TLSCert and TLSKey are PEM files: the client port speaks TLS.
	TLSCert, TLSKey string
	// NoSpace, if set, hears of every write the server's store failed for
	// lack of space (ENOSPC, EDQUOT): such a stream takes no write again
	// until JetStream restarts (JetStreamRestarter). Called on the server's
	// goroutines: it must not block.
	NoSpace func(error)
}

// Server errors.
var (
	// ErrPortInUse: the listen address is taken.
	ErrPortInUse = errors.New("port in use")
	// ErrStoreDir: JetStream's store directory cannot be used.
	ErrStoreDir = errors.New("JetStream store directory unusable")
)

// RunServer starts an embedded server and waits until it takes connections.
// The supervisor, the tests and the bench all start theirs with it. The
// server owns no signals (the process does); stop it with Shutdown and
// WaitForShutdown.
func RunServer(c ServerConfig) (*server.Server, error) {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:-1"
	}
	if c.Name == "" {
		c.Name = "robust"
	}
	if c.ReadyWithin <= 0 {
		c.ReadyWithin = 10 * time.Second
	}
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: port must be a number", c.Listen)
	}
	if err := checkStoreDir(c.StoreDir); err != nil {
		return nil, err
	}
	if port != -1 {
		l, err := net.Listen("tcp", c.Listen)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("NATS port %s is in use (another supervisor or nats-server?): stop it or pass --nats-listen with a free port: %w", c.Listen, ErrPortInUse)
			}
			return nil, fmt.Errorf("NATS cannot listen on %s: %w", c.Listen, err)
		}
		l.Close()
	}
	opts := &server.Options{}
	if c.Conf != "" {
		if opts, err = server.ProcessConfigFile(c.Conf); err != nil {
			return nil, fmt.Errorf("embedded NATS server: %s: %w", c.Conf, err)
		}
	}
	opts.ServerName, opts.Host, opts.Port = c.Name, host, port
	opts.JetStream, opts.StoreDir = true, c.StoreDir
	opts.NoSigs = true // the process owns signals
	opts.NoLog = c.Log == nil
	if c.Monitor != "" {
		mh, mp, err := net.SplitHostPort(c.Monitor)
		if err != nil {
			return nil, fmt.Errorf("monitor address %q: %w", c.Monitor, err)
		}
		if opts.HTTPPort, err = strconv.Atoi(mp); err != nil {
			return nil, fmt.Errorf("monitor address %q: port must be a number", c.Monitor)
		}
		opts.HTTPHost = mh
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("NATS TLS: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 2
	}
	if c.Account != "" {
		if err := CarryOver(c.StoreDir, c.Account, c.Log); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	log := &serverLog{l: c.Log, noSpace: c.NoSpace}
	if log.l == nil {
		log.l = slog.New(slog.DiscardHandler)
	}
	ns.SetLoggerV2(log, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(c.ReadyWithin) {
		ns.Shutdown()
		if why := log.lastError(); why != "" {
			return nil, fmt.Errorf("embedded NATS server did not start: %s", why)
		}
		return nil, fmt.Errorf("embedded NATS server did not start on %s within %s", c.Listen, c.ReadyWithin)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server started without JetStream: %s", log.lastError())
	}
	return ns, nil
}

// ErrLegacyStore: a store holds streams in both the global account and
// the pipeline's.
var ErrLegacyStore = errors.New("streams in two accounts")

// CarryOver moves the streams an earlier version kept in the server's
// global account ($G, before authentication) to account, once: the store's
// directory of $G becomes account's. If both hold streams, it refuses and
// says what to do: nothing is hidden behind the new account.
func CarryOver(storeDir, account string, log *slog.Logger) error {
	root := filepath.Join(storeDir, "jetstream")
	legacy, dst := filepath.Join(root, "$G"), filepath.Join(root, account)
	if !hasStreams(legacy) {
		return nil
	}
	if hasStreams(dst) {
		return fmt.Errorf("%w: %s holds streams of an earlier version (global account) and %s those of account %s: move one away (nats stream backup/restore with the admin user can merge them), or pass another --data-dir", ErrLegacyStore, legacy, dst, account)
	}
	_ = os.RemoveAll(dst) // an empty account dir
	if err := os.Rename(legacy, dst); err != nil {
		return fmt.Errorf("carry the global account's streams over to %s: %w", account, err)
	}
	if log != nil {
		log.Warn("carried the streams of an earlier version (no authentication, global account) over to account "+account, "from", legacy, "to", dst)
	}
	return nil
}

func hasStreams(accountDir string) bool {
	es, err := os.ReadDir(filepath.Join(accountDir, "streams"))
	return err == nil && len(es) > 0
}

// checkStoreDir fails early, saying why, where JetStream would fail with a
// log line only.
func checkStoreDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("%w: no directory given", ErrStoreDir)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("%w: %v", ErrStoreDir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%w: %v", ErrStoreDir, err)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is a file, not a directory (move it away, or pass another --data-dir)", ErrStoreDir, dir)
	}
	probe := filepath.Join(dir, ".robust-write-test")
	f, err := os.Create(probe)
	if err != nil {
		return fmt.Errorf("%w: %s is not writable: %v", ErrStoreDir, dir, err)
	}
	f.Close()
	return os.Remove(probe)
}

// serverLog adapts the embedded server's logger to slog and keeps its last
// error, to say why it did not start. Notices go to debug: an operator
// wants the pipeline's story, not the server's banner.
type serverLog struct {
	l       *slog.Logger
	noSpace func(error)
	mu      sync.Mutex
	last    string
}

// spaceErr: an argument of a server log line that is a write failed for
// lack of space (the server logs the error value itself).
func (n *serverLog) spaceErr(v []any) {
	if n.noSpace == nil {
		return
	}
	for _, a := range v {
		if err, ok := a.(error); ok && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
			n.noSpace(err)
			return
		}
	}
}

func (n *serverLog) keep(s string) string {
	n.mu.Lock()
	n.last = s
	n.mu.Unlock()
	return s
}

func (n *serverLog) lastError() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last
}

func (n *serverLog) Noticef(f string, v ...any) { n.l.Debug(strings.TrimSpace(fmt.Sprintf(f, v...))) }
func (n *serverLog) Warnf(f string, v ...any)   { n.spaceErr(v); n.l.Warn(fmt.Sprintf(f, v...)) }
func (n *serverLog) Fatalf(f string, v ...any)  { n.l.Error(n.keep(fmt.Sprintf(f, v...))) }
func (n *serverLog) Errorf(f string, v ...any) {
	n.spaceErr(v)
	n.l.Error(n.keep(fmt.Sprintf(f, v...)))
}
func (n *serverLog) Debugf(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n *serverLog) Tracef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }

// JetStreamRestarter returns what stops and starts the server's
// JetStream with the configuration it has now: its streams are loaded
// again from the store, without the write error a full disk left them
// with (a stream that failed a write takes none until then). Clients stay
// connected; their requests in flight fail. The configuration is taken
// now, while JetStream runs: a start that failed can be tried again.
func JetStreamRestarter(ns *server.Server) (func() error, error) {
	c := ns.JetStreamConfig()
	if c == nil {
		return nil, errors.New("JetStream is not running")
	}
	cfg := *c
	// The running config names the store's jetstream directory; Enable
	// takes the directory above it, as the options give it.
	if filepath.Base(cfg.StoreDir) == server.JetStreamStoreDir {
		cfg.StoreDir = filepath.Dir(cfg.StoreDir)
	}
	return func() error {
		if ns.JetStreamEnabled() {
			if err := ns.ShutdownJetStream(); err != nil {
				return fmt.Errorf("restart JetStream: stop: %w", err)
			}
		}
		c := cfg // Enable may change what it is given
		if err := ns.EnableJetStream(&c); err != nil {
			return fmt.Errorf("restart JetStream: start: %w", err)
		}
		return nil
	}, nil
}
