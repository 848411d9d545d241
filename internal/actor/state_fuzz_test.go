package actor

import (
	"encoding/json"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
)

// FuzzDecodeState: whatever the state key holds (anyone allowed to write
// it may have written it), DecodeState returns a state or an error, never
// a panic or an allocation of what the bytes claim (an S2 header claims up
// to 4 GiB); a state it returns is stored and read again the same.
func FuzzDecodeState(f *testing.F) {
	outs := make([]Out, compressAbove+1)
	for i := range outs {
		outs[i] = Out{Subject: "robust.results", MsgID: "r-1", Data: []byte(`{"value":1}`), Header: nats.Header{"Robust-Source-Sequence": {"3"}}}
	}
	st := State[json.RawMessage]{Starts: 2, Cursors: map[string]*Cursor{"worker-numbers": {Applied: 9, Inflight: &Inflight{From: 10, To: 12, Attempts: 1}}}, Data: json.RawMessage(`{"next_value":10}`), Outbox: outs}
	packed, err := st.pack()
	if err != nil {
		f.Fatal(err)
	}
	b, _ := json.Marshal(packed)
	f.Add(b)
	f.Add([]byte(`{"starts":1,"data":{"next":5},"outbox":[{"Subject":"robust.numbers","MsgID":"n-4","Data":"NA=="}]}`))
	huge, _ := json.Marshal(State[json.RawMessage]{Data: json.RawMessage(`{}`), OutboxS2: []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}}) // claims 4 GiB
	f.Add(huge)
	f.Add([]byte(`{"outbox_s2":"AAAA"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState[json.RawMessage](b)
		if err != nil {
			return
		}
		if st.OutboxS2 != nil {
			t.Fatal("a state decoded with its outbox still packed")
		}
		packed, err := st.pack()
		if err != nil {
			t.Fatal(err)
		}
		again, err := json.Marshal(packed)
		if err != nil {
			return // e.g. Data that is not JSON after all (RawMessage keeps it as given)
		}
		st2, err := DecodeState[json.RawMessage](again)
		if err != nil || len(st2.Outbox) != len(st.Outbox) || st2.Starts != st.Starts || len(st2.Cursors) != len(st.Cursors) {
			t.Fatalf("stored and read again: %d outs, %d starts, %v; want %d, %d", len(st2.Outbox), st2.Starts, err, len(st.Outbox), st.Starts)
		}
	})
}

// An S2 header that claims more than maxOutbox is refused before anything
// is allocated.
func TestDecodeStateRefusesAHugeOutbox(t *testing.T) {
	big := s2.Encode(nil, make([]byte, maxOutbox+1))
	b, _ := json.Marshal(State[json.RawMessage]{Data: json.RawMessage(`{}`), OutboxS2: big})
	if _, err := DecodeState[json.RawMessage](b); err == nil {
		t.Fatalf("an outbox of %d bytes unpacked", maxOutbox+1)
	}
	claim, _ := json.Marshal(State[json.RawMessage]{Data: json.RawMessage(`{}`), OutboxS2: []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}})
	if _, err := DecodeState[json.RawMessage](claim); err == nil {
		t.Fatal("a 6-byte outbox claiming 4 GiB unpacked")
	}
}
