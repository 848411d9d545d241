// Package ledger keeps the pipeline's books: it reads the streams and the
// actors' states, says what became of every value (logged, dead-lettered,
// queued) and reconciles them, lists and replays dead letters, and says
// what work is left while a run drains. Reconciliation is pure; the rest
// reads JetStream.
package ledger

import (
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Ledger reads the pipeline's streams and state bucket.
type Ledger struct {
	JS jetstream.JetStream
	KV jetstream.KeyValue // the state bucket

	replayMu sync.Mutex // one replay at a time: each checks, then publishes
}
