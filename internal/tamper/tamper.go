// Package tamper notices, as it happens, what only someone outside the
// pipeline does to its data: a pipeline stream purged or deleted,
// messages deleted from it or its configuration changed, a consumer
// deleted, a state key deleted or overwritten with what no actor writes.
// It reads the server's JetStream API audit advisories
// ($JS.EVENT.ADVISORY.API, one per API call, with the caller) and watches
// the state bucket, and reports each as an events.Tampered within
// moments. The supervisor's own calls (it resets consumers and updates
// streams) are told apart by the connection that made them.
package tamper

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/pkg/protocol"
)

// AdvisorySubject is where the server publishes an audit of every
// JetStream API call, in the caller's account.
const AdvisorySubject = "$JS.EVENT.ADVISORY.API"

// Watcher watches one pipeline's data.
type Watcher struct {
	// NC is the supervisor's connection: calls made on it are the
	// supervisor's own. It must be allowed to subscribe to AdvisorySubject.
	NC *nats.Conn
	// KV is the state bucket, watched for deletes and unreadable values;
	// nil: not watched.
	KV jetstream.KeyValue
	// Streams are the streams whose purge, deletion, message deletion,
	// update or consumer deletion is tampering (the state bucket's stream
	// among them).
	Streams []string
	// Consumers are the pipeline's own consumers ("STREAM/CONSUMER"):
	// deleting one of them is tampering; deleting another (the nats CLI
	// deletes the ones it made to read a stream) is not.
	Consumers []string
	Emit      func(events.Event)
	Now       func() time.Time // nil: time.Now

	sub *nats.Subscription
	kw  jetstream.KeyWatcher
}

// Start subscribes to the advisories and starts the watch of the bucket:
// from its return on, no tampering is missed. Run then reports them.
func (w *Watcher) Start(ctx context.Context) error {
	if w.Now == nil {
		w.Now = time.Now
	}
	sub, err := w.NC.Subscribe(AdvisorySubject, func(m *nats.Msg) {
		if e, ok := w.Audit(m.Data); ok {
			w.Emit(e)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", AdvisorySubject, err)
	}
	// The subscription is in place once the server has it.
	if err := w.NC.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe to %s: %w", AdvisorySubject, err)
	}
	w.sub = sub
	if w.KV != nil {
		if w.kw, err = w.KV.WatchAll(ctx, jetstream.UpdatesOnly()); err != nil {
			_ = sub.Unsubscribe()
			return fmt.Errorf("watch the state bucket: %w", err)
		}
	}
	return nil
}

// Run reports tamperings until ctx is done, then stops watching. Start
// must have succeeded.
func (w *Watcher) Run(ctx context.Context) {
	defer w.sub.Unsubscribe()
	if w.kw == nil {
		<-ctx.Done()
		return
	}
	defer w.kw.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.kw.Updates():
			if !ok {
				<-ctx.Done()
				return
			}
			if t, bad := w.Entry(e); bad {
				w.Emit(t)
			}
		}
	}
}

// audit is the part of the server's JSAPIAudit advisory read here.
type audit struct {
	Type   string `json:"type"`
	Client *struct {
		ID     uint64 `json:"id"`
		User   string `json:"user"`
		Name   string `json:"name"`
		Server string `json:"server"`
	} `json:"client"`
	Subject  string `json:"subject"`
	Request  string `json:"request"`
	Response string `json:"response"`
}

// response is the part of a JetStream API response read here.
type response struct {
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
	Purged uint64 `json:"purged"`
}

const auditType = "io.nats.jetstream.advisory.v1.api_audit"

// Audit is the tampering an advisory reports, if it reports one: a
// successful call that purges, deletes or changes one of the Streams or
// deletes one of their consumers, made by another connection than NC.
func (w *Watcher) Audit(data []byte) (events.Tampered, bool) {
	var a audit
	if err := json.Unmarshal(data, &a); err != nil || a.Type != auditType {
		return events.Tampered{}, false
	}
	call, ok := strings.CutPrefix(a.Subject, "$JS.API.")
	if !ok {
		return events.Tampered{}, false
	}
	t := events.Tampered{Base: events.Base{At: w.now()}}
	var stream string
	switch tok := strings.Split(call, "."); {
	case len(tok) == 3 && tok[0] == "STREAM" && tok[1] == "PURGE":
		t.Op, stream = events.OpPurged, tok[2]
	case len(tok) == 3 && tok[0] == "STREAM" && tok[1] == "DELETE":
		t.Op, stream = events.OpStreamDeleted, tok[2]
	case len(tok) == 3 && tok[0] == "STREAM" && tok[1] == "UPDATE":
		t.Op, stream = events.OpStreamUpdated, tok[2]
	case len(tok) == 4 && tok[0] == "STREAM" && tok[1] == "MSG" && tok[2] == "DELETE":
		t.Op, stream, t.Messages = events.OpMsgDeleted, tok[3], 1
	case len(tok) == 4 && tok[0] == "CONSUMER" && tok[1] == "DELETE":
		t.Op, stream = events.OpConsumerDeleted, tok[2]
		t.What = tok[2] + "/" + tok[3]
		if !slices.Contains(w.Consumers, t.What) {
			return events.Tampered{}, false
		}
	default:
		return events.Tampered{}, false
	}
	if !slices.Contains(w.Streams, stream) || w.own(a) {
		return events.Tampered{}, false
	}
	var r response
	if err := json.Unmarshal([]byte(a.Response), &r); err != nil || r.Error != nil {
		return events.Tampered{}, false // refused: nothing changed
	}
	if t.What == "" {
		t.What = stream
	}
	if t.Op == events.OpPurged {
		t.Messages = r.Purged
	}
	if c := a.Client; c != nil {
		t.By = c.User
		if c.Name != "" {
			t.By += fmt.Sprintf(" (connection %q)", c.Name)
		}
	}
	// An advisory can be forged by whoever may publish on its subject (the
	// admin): what it says is kept bounded.
	t.By = cut(t.By)
	return t, true
}

// maxText bounds the text a tampering keeps of an advisory.
const maxText = 200

func cut(s string) string {
	if len(s) <= maxText {
		return s
	}
	return strings.ToValidUTF8(s[:maxText], "") + "…"
}

// own: the call came on the supervisor's connection.
func (w *Watcher) own(a audit) bool {
	if a.Client == nil || w.NC == nil {
		return false
	}
	id, err := w.NC.GetClientID()
	return err == nil && a.Client.ID == id && a.Client.Server == w.NC.ConnectedServerName()
}

// Entry is the tampering a change of the state bucket shows, if any: a key
// deleted or purged (no actor deletes its state), or a value that is no
// JSON object (no actor writes one).
func (w *Watcher) Entry(e jetstream.KeyValueEntry) (events.Tampered, bool) {
	if e == nil || e.Key() == protocol.ProbeKey {
		return events.Tampered{}, false // the watch's marker: caught up; the store's probe: no state
	}
	t := events.Tampered{Base: events.Base{At: w.now()}, What: "state key " + e.Key()}
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		t.Op = events.OpKeyDeleted
		return t, true
	}
	if !Readable(e.Value()) {
		t.Op = events.OpKeyUnreadable
		return t, true
	}
	return events.Tampered{}, false
}

// Readable: a state's value is a JSON object, as every actor and the
// supervisor write.
func Readable(v []byte) bool {
	var obj map[string]json.RawMessage
	return json.Unmarshal(v, &obj) == nil && obj != nil
}

func (w *Watcher) now() time.Time {
	if w.Now == nil {
		return time.Now()
	}
	return w.Now()
}
