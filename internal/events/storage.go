package events

import "fmt"

// StorageFull: the NATS server's store cannot take writes: its disk has
// less free space than the pipeline needs, or a write failed for lack of
// space. Restarts wait until StorageBack: an actor started now would fail
// at its first write.
type StorageFull struct {
	Base
	Free uint64 `json:"free_bytes"` // free space left on the store's file system
	Why  string `json:"why"`
}

func (e StorageFull) String() string {
	return fmt.Sprintf("%s (%d bytes free)", e.Why, e.Free)
}

// StorageBack: the store takes writes again. Restarted: a write had
// failed, and JetStream was restarted (its streams stop taking writes
// after a failed one, until then).
type StorageBack struct {
	Base
	Free      uint64 `json:"free_bytes"`
	Restarted bool   `json:"restarted"`
}
