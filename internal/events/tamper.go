package events

import "fmt"

// TamperOp is what was done to the pipeline's data from outside it.
type TamperOp string

// The tamperings.
const (
	// OpPurged: messages of a stream were purged (all, or by subject or
	// sequence).
	OpPurged TamperOp = "purged"
	// OpStreamDeleted: a stream was deleted, with everything in it.
	OpStreamDeleted TamperOp = "stream deleted"
	// OpMsgDeleted: one message of a stream was deleted.
	OpMsgDeleted TamperOp = "message deleted"
	// OpStreamUpdated: a stream's configuration was changed (limits can
	// drop messages).
	OpStreamUpdated TamperOp = "stream updated"
	// OpConsumerDeleted: a consumer of a stream was deleted.
	OpConsumerDeleted TamperOp = "consumer deleted"
	// OpKeyDeleted: a state key was deleted or purged.
	OpKeyDeleted TamperOp = "state deleted"
	// OpKeyUnreadable: a state key was overwritten with what no actor
	// writes.
	OpKeyUnreadable TamperOp = "state unreadable"
)

// Tampered: someone other than the supervisor and the actors changed the
// pipeline's data: it may have removed values. What names the stream
// (STREAM), the consumer (STREAM/CONSUMER) or the state key (key NAME).
type Tampered struct {
	Base
	Op   TamperOp `json:"op"`
	What string   `json:"what"`
	// By is who did it, as the server knows the client: its user and
	// connection name ("" for a state key: a KV watch does not say).
	By string `json:"by,omitempty"`
	// Messages is how many messages the server said it removed (purge,
	// message delete); 0 when it did not say.
	Messages uint64 `json:"messages,omitempty"`
}

func (e Tampered) String() string {
	s := fmt.Sprintf("%s %s", e.What, e.Op)
	if e.Messages > 0 {
		s += fmt.Sprintf(" (%d messages)", e.Messages)
	}
	if e.By != "" {
		s += " by " + e.By
	}
	return s + " at " + e.At.UTC().Format("2006-01-02T15:04:05.000Z")
}
