package protocol

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// IDs is the pipeline's ID token: the generator, the heartbeat and the
// worker add it to their messages' IDs ("n-42.3fa9c1d2e0b4"). The worker
// and the logger take an ID of the right shape with any token or none (a
// message from before tokens): which token it carries says nothing of its
// value, and a token that changed (a state restored without it) must not
// make the pipeline's own messages foreign.
//
// The stream's duplicate window drops a second message with an ID it holds.
// Without the token, a number published by hand with the next producer-style
// ID ("n-1050", from a careless admin, or an actor with a bug) would take the
// real value's place there: the generator's 1050 would be dropped as a copy,
// and the worker, dead-lettering the stray as out of order, would wait for
// 1050 forever. With it, the stray's ID is another, and the real value
// lands.
//
// The supervisor makes the token once per pipeline (its state) and hands it
// to each actor at Start. It is no secret from whoever reads the streams.
type IDs string

// idTokenLen is the token's length: lowercase hex.
const idTokenLen = 12

// NewIDs makes a token.
func NewIDs() IDs {
	b := make([]byte, idTokenLen/2)
	rand.Read(b) // never fails (crypto/rand)
	return IDs(hex.EncodeToString(b))
}

// Valid: a token NewIDs could have made, or none.
func (t IDs) Valid() bool {
	if t == "" {
		return true
	}
	if len(t) != idTokenLen {
		return false
	}
	for _, c := range []byte(t) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Of is the ID base (NumberMsgID, BeatMsgID, ResultMsgID) with the token.
func (t IDs) Of(base string) string {
	if t == "" {
		return base
	}
	return base + "." + string(t)
}

// BaseMsgID is id without a token, whatever the token: the shape of the
// ID, which the consumers and the ledger check.
func BaseMsgID(id string) string {
	i := strings.LastIndexByte(id, '.')
	if i < 0 || !IDs(id[i+1:]).Valid() || i+1 == len(id) {
		return id
	}
	return id[:i]
}
