package protocol

import (
	"net/rpc"
	"time"

	"github.com/hashicorp/go-plugin"
)

// Handshake is shared by the supervisor and every actor binary. Bump
// ProtocolVersion when Actor or ActorConfig change incompatibly.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  3,
	MagicCookieKey:   "ROBUST_ACTOR",
	MagicCookieValue: "b0c4e8f1-robust-actor",
}

// EnvCrashFD names the environment variable that tells an actor process
// which file descriptor its crash channel is: the supervisor opens a file
// there, and the actor writes one CrashReport as JSON to it when it panics
// or fails, just before it dies. The supervisor reads the exit's cause from
// it, never from log text.
const EnvCrashFD = "ROBUST_CRASH_FD"

// CrashReport is what an actor writes to its crash channel.
type CrashReport struct {
	Kind    string `json:"kind"`    // CrashPanic or CrashError
	Message string `json:"message"` // the panic value or the error
}

// Crash report kinds.
const (
	CrashPanic = "panic"
	CrashError = "error"
)

// PluginName is the single plugin every actor binary serves.
const PluginName = "actor"

// ActorConfig is what the supervisor hands an actor when it starts it.
type ActorConfig struct {
	Actor       string        // which actor this process is
	StateKey    string        // its key in the state bucket (default: Actor)
	Inputs      []Input       // processors: the consumers to read, in poll order
	NATSURL     string        // where the pipeline's JetStream is
	NATSCreds   Credentials   // how to connect there: never on a command line or in the environment
	Run         uint64        // supervisor run number (beats are counted per run)
	IDs         IDs           // the pipeline's ID token: in every ID its producers make
	Rate        time.Duration // heartbeat period; 0 = unpaced
	Beats       uint64        // beats per run; 0 = until stopped
	Queue       int           // bound on unconsumed numbers and beats
	Batch       int           // messages fetched / published per batch
	Showstopper int           // failed deliveries before a message is dead-lettered
	Faults      string        // fault plan, see internal/faults
	LogLevel    string        // debug, info, warn, error
	StallAfter  time.Duration // Status fails when the actor loop has not turned for this long
}

// Credentials are how a process connects to NATS. An actor is handed its
// own at Start, over go-plugin's mTLS channel. Zero fields are unused.
type Credentials struct {
	Seed        string // an nkey user seed (SU…)
	JWT         string // a user JWT, with Seed: a server in operator mode (a .creds file)
	User        string // a user name, with Password
	Password    string
	InboxPrefix string // the reply subjects' prefix its permissions allow (default _INBOX)
	CA          string // PEM: roots that sign the server's TLS certificate ("": the system's)
	Cert, Key   string // PEM: a client certificate for TLS, if the server asks for one
}

// String never shows a secret.
func (c Credentials) String() string {
	kind := "none"
	switch {
	case c.JWT != "":
		kind = "jwt"
	case c.Seed != "":
		kind = "nkey"
	case c.User != "":
		kind = "user " + c.User
	}
	return "credentials(" + kind + ")"
}

// GoString never shows a secret either (%#v, %+v of a struct holding it).
func (c Credentials) GoString() string { return c.String() }

// Status is an actor's answer to the supervisor's periodic health check.
type Status struct {
	Actor    string
	PID      int
	Starts   uint64            // this actor's starts, this one included
	Counters map[string]uint64 // actor-specific progress (generated, beats, processed, logged…)
	Done     bool              // heartbeat: all beats of the run are sent
}

// SpareName is the process name (its comm, what `pgrep -x` matches) of
// an actor's warm spare: a process started, connected and waiting to
// take over. The active process is named after the actor (Actor), so
// that `kill -9 $(pgrep -x worker)` reaches the active worker and only
// it. At most 15 bytes, the kernel's limit: "generator-spare" is 15.
func SpareName(actor string) string { return actor + "-spare" }

// Actor is the RPC interface every actor process serves to the supervisor.
type Actor interface {
	// Prepare makes the process a warm spare: it connects with cfg's
	// credentials and waits, reading and writing nothing, until Start.
	// A spare never claims the state (which fences the active process):
	// only Start does.
	Prepare(cfg ActorConfig) error
	// Start begins the actor's work in the background and returns once it
	// has connected and loaded its state. After Prepare with the same
	// cfg it uses the connection made then, and the process takes the
	// actor's own name.
	Start(cfg ActorConfig) error
	// Status reports progress. It fails if the actor's loop is stuck: the
	// supervisor treats that like a crash.
	Status() (Status, error)
	// Stop finishes the current batch and stops the work loop.
	Stop() error
}

// PluginMap is the plugin set both sides use. The host side only needs the
// type; the actor side sets Impl.
func PluginMap(impl Actor) map[string]plugin.Plugin {
	return map[string]plugin.Plugin{PluginName: &ActorPlugin{Impl: impl}}
}

// ActorPlugin adapts Actor to go-plugin's net/rpc transport.
type ActorPlugin struct {
	Impl Actor
}

// Server is called on the actor side.
func (p *ActorPlugin) Server(*plugin.MuxBroker) (any, error) { return &rpcServer{impl: p.Impl}, nil }

// Client is called on the supervisor side.
func (*ActorPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return &rpcClient{c: c}, nil
}

type rpcClient struct{ c *rpc.Client }

func (r *rpcClient) Prepare(cfg ActorConfig) error {
	return r.c.Call("Plugin.Prepare", cfg, new(struct{}))
}
func (r *rpcClient) Start(cfg ActorConfig) error { return r.c.Call("Plugin.Start", cfg, new(struct{})) }
func (r *rpcClient) Stop() error                 { return r.c.Call("Plugin.Stop", struct{}{}, new(struct{})) }
func (r *rpcClient) Status() (Status, error) {
	var s Status
	err := r.c.Call("Plugin.Status", struct{}{}, &s)
	return s, err
}

type rpcServer struct{ impl Actor }

func (s *rpcServer) Prepare(cfg ActorConfig, _ *struct{}) error { return s.impl.Prepare(cfg) }
func (s *rpcServer) Start(cfg ActorConfig, _ *struct{}) error   { return s.impl.Start(cfg) }
func (s *rpcServer) Stop(_ struct{}, _ *struct{}) error         { return s.impl.Stop() }
func (s *rpcServer) Status(_ struct{}, out *Status) error {
	st, err := s.impl.Status()
	*out = st
	return err
}
