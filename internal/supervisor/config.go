// Package supervisor runs the pipeline: it embeds (or connects to) a NATS
// server with JetStream, creates the streams, consumers and state bucket,
// starts each actor process through go-plugin, restarts any that dies or
// hangs, ends the run gracefully and proves it with a summary.
package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/robust/robust/internal/faults"
	"github.com/robust/robust/internal/lifecycle"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// DefaultDiskMinFree is the free space below which the store is full: a
// state write may take up to the server's 1 MiB payload, and the store
// writes in blocks of a few MiB.
const DefaultDiskMinFree = 16 << 20

// Config is the supervisor's configuration. Zero fields get defaults:
//
//	DataDir:      ./data
//	NATSListen:   127.0.0.1:4222 (when NATSURL is empty: the embedded server)
//	HTTP:         "" (no listener) — the command line's default is DefaultHTTP
//	Rate:         0 (unpaced) — the command line's default is 1s
//	Queue:        1000 (at most MaxQueue)
//	Batch:        256
//	Showstopper:  3
//	DrainTimeout: 10s
//	SummaryTimeout: 30s
//	DiskMinFree:  16 MiB (the embedded server's store)
//	Faults:       "" (none) — the command line's default is "lesson"
//	StallAfter:   5s (an actor whose loop stands still this long is hung)
//	PingEvery:    250ms, PingTimeout: 2s
//	Registry:     registry.Default() (the four actors)
type Config struct {
	// Registry declares the actors to run; a program or a test can run a
	// supervisor with more (registry.Default().With(...)).
	Registry registry.Registry

	DataDir    string
	NATSListen string // host:port, port 0 to 65535
	NATSURL    string // use this server instead of embedding one
	BinDir     string // where the actor binaries are
	HTTP       string // host:port of the status and metrics listener; "": none
	// HTTPHosts are names, besides loopback ones, the HTTP API may be
	// addressed by (DNS rebinding is refused); HTTPEventClients caps the
	// dashboards' open event streams (default 16).
	HTTPHosts        []string
	HTTPEventClients int

	// NATS access. The embedded server authenticates every client with the
	// credentials generated in DataDir/auth (see internal/auth). With
	// NATSURL, the server is someone else's: NATSCreds is the supervisor's
	// credentials file and NATSCredsDir holds one per actor (NAME.creds).
	NATSCreds    string
	NATSCredsDir string
	// NATSCA is a PEM file of roots for the server's TLS certificate;
	// NATSCert and NATSKey a client certificate (NATSURL), or with the
	// embedded server the certificate its client port serves (TLS on).
	NATSCA, NATSCert, NATSKey string
	// NATSMonitor is the embedded server's HTTP monitoring listener
	// (varz, jsz), host:port; "": none.
	NATSMonitor string
	// NATSPlaintextBeyondLoopback allows the embedded server to listen
	// beyond the loopback interface without TLS: credentials and messages
	// then cross the network in the clear.
	NATSPlaintextBeyondLoopback bool

	Rate        time.Duration
	Beats       uint64
	Queue       int
	Batch       int
	Showstopper int
	Faults      string
	// DLQ bounds the DLQ stream (zero fields: natsx.DefaultDLQ).
	DLQ natsx.DLQLimits
	// StartOver deletes the pipeline's streams and state bucket before
	// the run, so that everything begins again (after ErrDataLost).
	StartOver bool
	// Standby keeps a warm spare of each actor, which takes over when the
	// active process ends (lifecycle.Process.Standby).
	Standby bool
	// DiskMinFree: with the embedded server, below this many free bytes on
	// the store's file system (or after a write failed for lack of space)
	// restarts wait, and JetStream is restarted once space is back.
	DiskMinFree uint64

	DrainTimeout time.Duration
	// SummaryTimeout bounds reading the books at the end: past it a
	// partial summary says why.
	SummaryTimeout time.Duration
	Policy         lifecycle.Policy
	StallAfter     time.Duration
	PingEvery      time.Duration
	PingTimeout    time.Duration

	Log      *slog.Logger
	LogLevel string // handed to the actors

	// Unpaced runs report progress every ProgressEvery (0: none): redrawn
	// in place on ProgressTTY if set (a terminal), else as log lines.
	ProgressEvery time.Duration
	ProgressTTY   *Terminal
}

// MaxQueue is the largest Queue: the numbers stream holds Queue values and
// room for replayed dead letters besides, a count that must not overflow.
const MaxQueue = 1_000_000_000

// Errors.
var (
	// ErrConfig is wrapped by every configuration error.
	ErrConfig = errors.New("bad configuration")
	// ErrLocked means another supervisor runs on the same data dir.
	ErrLocked = errors.New("data dir in use by another supervisor")
)

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.NATSListen == "" {
		c.NATSListen = "127.0.0.1:4222"
	}
	if c.Queue <= 0 {
		c.Queue = 1000
	}
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.DLQ.MaxMsgs <= 0 {
		c.DLQ.MaxMsgs = natsx.DefaultDLQ.MaxMsgs
	}
	if c.DLQ.MaxBytes <= 0 {
		c.DLQ.MaxBytes = natsx.DefaultDLQ.MaxBytes
	}
	if c.DLQ.MaxAge <= 0 {
		c.DLQ.MaxAge = natsx.DefaultDLQ.MaxAge
	}
	if c.Showstopper <= 0 {
		c.Showstopper = 3
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.SummaryTimeout <= 0 {
		c.SummaryTimeout = 30 * time.Second
	}
	if c.DiskMinFree == 0 {
		c.DiskMinFree = DefaultDiskMinFree
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 5 * time.Second
	}
	if c.PingEvery <= 0 {
		c.PingEvery = 250 * time.Millisecond
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Policy = c.Policy.WithDefaults()
	if len(c.Registry.All()) == 0 {
		c.Registry = registry.Default()
	}
}

// Validate checks what can be checked without touching the machine.
func (c *Config) Validate() error {
	if c.Rate < 0 {
		return fmt.Errorf("%w: --rate must be 0 (unpaced) or more milliseconds", ErrConfig)
	}
	if c.Queue < 1 {
		return fmt.Errorf("%w: --queue must be at least 1", ErrConfig)
	}
	if c.Queue > MaxQueue {
		return fmt.Errorf("%w: --queue %d: too large; the maximum is %d", ErrConfig, c.Queue, MaxQueue)
	}
	if c.Batch < 1 || c.Batch > 4096 {
		return fmt.Errorf("%w: --batch must be between 1 and 4096", ErrConfig)
	}
	if c.Showstopper < 1 {
		return fmt.Errorf("%w: --showstopper must be at least 1", ErrConfig)
	}
	if d := c.DLQ; d.MaxMsgs < 0 || d.MaxBytes < 0 || d.MaxAge < 0 || (d.MaxBytes > 0 && d.MaxBytes < 1<<20) || (d.MaxAge > 0 && d.MaxAge < time.Minute) {
		return fmt.Errorf("%w: --dlq-max-msgs must be at least 1, --dlq-max-bytes at least 1 MiB (%d), --dlq-max-age at least 1m", ErrConfig, 1<<20)
	}
	reg := c.Registry
	if len(reg.All()) == 0 {
		reg = registry.Default()
	}
	// Every stream an actor names must be one the topology creates (a new
	// stream goes into natsx.Topology).
	streams := map[string]bool{}
	for _, sc := range (natsx.Topology{}).Streams() {
		streams[sc.Name] = true
	}
	for _, a := range reg.All() {
		for _, in := range a.Inputs {
			if !streams[in.Stream] {
				return fmt.Errorf("%w: actor %s reads stream %s, which the topology does not create (add it to natsx.Topology)", ErrConfig, a.Name, in.Stream)
			}
		}
		for _, o := range a.Outputs {
			if !streams[o.Stream] {
				return fmt.Errorf("%w: actor %s publishes to stream %s, which the topology does not create (add it to natsx.Topology)", ErrConfig, a.Name, o.Stream)
			}
		}
	}
	plan, err := faults.Parse(c.Faults)
	if err == nil {
		err = plan.Check(reg.Names())
	}
	if err != nil {
		return fmt.Errorf("%w: --faults: %v", ErrConfig, err)
	}
	if c.NATSURL == "" && c.NATSListen != "" {
		if err := checkAddr("--nats-listen", c.NATSListen, "127.0.0.1:4222"); err != nil {
			return err
		}
		tls := c.NATSCert != "" && c.NATSKey != ""
		if !tls && !c.NATSPlaintextBeyondLoopback && !loopback(c.NATSListen) {
			return fmt.Errorf("%w: --nats-listen %s reaches beyond this machine without TLS: credentials and messages would cross the network in the clear; give --nats-cert and --nats-key, listen on 127.0.0.1, or pass --nats-plaintext-beyond-loopback to take that risk", ErrConfig, c.NATSListen)
		}
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		return fmt.Errorf("%w: --nats-cert and --nats-key go together", ErrConfig)
	}
	if c.NATSURL == "" && (c.NATSCreds != "" || c.NATSCredsDir != "") {
		return fmt.Errorf("%w: --nats-creds and --nats-creds-dir are for a server given by --nats-url; the embedded server's credentials are generated in the data dir", ErrConfig)
	}
	if c.NATSURL != "" && c.NATSMonitor != "" {
		return fmt.Errorf("%w: --nats-monitor is the embedded server's; a server given by --nats-url has its own", ErrConfig)
	}
	if c.NATSMonitor != "" {
		if err := checkAddr("--nats-monitor", c.NATSMonitor, "127.0.0.1:8222"); err != nil {
			return err
		}
	}
	if c.HTTP != "" {
		if err := checkAddr("--http", c.HTTP, DefaultHTTP+", or '' for none"); err != nil {
			return err
		}
	}
	return nil
}

// checkAddr checks that addr is a listen address: host:port, the port a
// number from 0 to 65535, the host possibly empty (every interface).
// Whether it can be listened on is found out when it is.
func checkAddr(flag, addr, example string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %s %q: want host:port, e.g. %s", ErrConfig, flag, addr, example)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%w: %s %q: the port must be a number from 0 to 65535", ErrConfig, flag, addr)
	}
	return nil
}

// loopback reports whether a listen address stays on this machine: a
// loopback address or localhost (an empty host is every interface).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// actorConfig is what the actor a is handed on Start.
func (c *Config) actorConfig(a registry.Actor, url string, creds protocol.Credentials, run uint64, ids protocol.IDs) protocol.ActorConfig {
	return protocol.ActorConfig{
		Actor:       a.Name,
		StateKey:    a.StateKey,
		Inputs:      a.Inputs,
		NATSURL:     url,
		NATSCreds:   creds,
		Run:         run,
		IDs:         ids,
		Rate:        c.Rate,
		Beats:       c.Beats,
		Queue:       c.Queue,
		Batch:       c.Batch,
		Showstopper: c.Showstopper,
		Faults:      c.Faults,
		LogLevel:    c.LogLevel,
		StallAfter:  c.StallAfter,
	}
}
