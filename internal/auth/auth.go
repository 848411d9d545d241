// Package auth is who may connect to the pipeline's NATS and what each may
// do there, with NATS's own accounts, users and permissions:
//
//   - one user per actor, allowed what the registry says it consumes and
//     publishes, its own state key and its own reply inbox;
//   - the supervisor, which owns the streams, consumers and the bucket;
//   - three users for people: operator (read-only), admin (everything in
//     the pipeline's account) and system (the system account, for `nats
//     server info` and `nats server report jetstream`).
//
// Credentials are generated on first start in the data dir (auth/, files
// mode 0600); the embedded server's configuration (auth/nats-server.conf)
// and the nats CLI contexts (nats-context/) are written from them at every
// start, since permissions follow the registry.
package auth

import (
	"slices"

	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// The accounts of the embedded server.
const (
	// Account holds the pipeline: its streams, consumers, state bucket, the
	// actors, the supervisor and the people's users but system.
	Account = "ROBUST"
	// SystemAccount is the server's system account.
	SystemAccount = "SYS"
)

// The users that are not actors.
const (
	Supervisor = "supervisor"
	Admin      = "admin"
	Operator   = "operator"
	System     = "system"
)

// People are the users for people, in the order the README lists them.
var People = []string{Operator, Admin, System}

// InboxPrefix is the reply-subject prefix of a user's connections: each
// user subscribes to its own, so that no actor can read another's replies
// (a shared _INBOX.> would let it).
func InboxPrefix(user string) string { return "_INBOX_" + user }

// Permissions are the subjects a user may publish and subscribe to. JetStream
// calls are subjects too ($JS.API.…), so these limit what it may ask of
// JetStream.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// kv is a key's subject in the state bucket; direct is its direct-get
// subject (a read of one key, answered by the stream itself).
func kv(key string) string { return "$KV." + protocol.StateBucket + "." + key }
func direct(key string) string {
	return "$JS.API.DIRECT.GET.KV_" + protocol.StateBucket + "." + kv(key)
}

// ForActor is what an actor may do: publish its outputs and its dead
// letters, pull from and ack its own consumers (never create, reset or
// delete one: the supervisor does that), read and write its own state key,
// read the info of the streams it publishes to and of the DLQ (the bound
// of replay IDs), and receive replies on its own inbox. Nothing else: no
// purge or delete of any stream, no other actor's state or consumers.
func ForActor(a registry.Actor) Permissions {
	key := a.StateKey
	if key == "" {
		key = a.Name
	}
	pub := []string{
		kv(key), direct(key),
		"$JS.API.STREAM.INFO.KV_" + protocol.StateBucket, // binding the bucket reads its config
	}
	for _, o := range a.Outputs {
		pub = append(pub, o.Subject, "$JS.API.STREAM.INFO."+o.Stream)
	}
	if a.Kind == registry.Processor {
		pub = append(pub, protocol.DLQSubject(a.Name), "$JS.API.STREAM.INFO."+protocol.StreamDLQ)
	}
	for _, in := range a.Inputs {
		pub = append(pub,
			"$JS.API.CONSUMER.INFO."+in.Stream+"."+in.Consumer,
			"$JS.API.CONSUMER.MSG.NEXT."+in.Stream+"."+in.Consumer,
			"$JS.ACK."+in.Stream+"."+in.Consumer+".>",
		)
	}
	return Permissions{Publish: dedupe(pub), Subscribe: []string{InboxPrefix(a.Name) + ".>"}}
}

// ForOperator is read-only: the streams', consumers' and the account's
// info, messages by sequence and state keys by direct get, live
// subscriptions to the pipeline's subjects and JetStream's advisories, and
// ordered (ephemeral) consumers on the two streams of limits retention, the
// DLQ and the state bucket, which `nats stream view`, `nats sub --all` and
// `nats kv watch` create. No consumer on a work queue: one that does not
// ack would remove messages.
func ForOperator() Permissions {
	var pub []string
	for _, s := range []string{protocol.StreamDLQ, "KV_" + protocol.StateBucket} {
		pub = append(pub,
			"$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".*",
		)
	}
	pub = append(pub,
		"$JS.API.INFO",
		"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
		"$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*", "$JS.API.CONSUMER.INFO.*.*",
		"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
		"$JS.FC.>", // flow control of the ordered consumers above
	)
	return Permissions{
		Publish: pub,
		Subscribe: []string{
			InboxPrefix(Operator) + ".>",
			"robust.>", "$KV." + protocol.StateBucket + ".>", "$JS.EVENT.>",
		},
	}
}

func dedupe(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
