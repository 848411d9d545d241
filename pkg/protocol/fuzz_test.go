package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode feeds arbitrary payloads to every decoder. None may panic; every
// error wraps ErrMalformed; every accepted payload means exactly the value it
// re-encodes to. A number has one encoding; a JSON payload must be a single
// valid JSON value.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		// valid
		"0", "7", "15", "18446744073709551615",
		`{"run":1,"beat":1}`,
		`{"beat":60}`,
		`{"value":3,"kind":"fizz","text":"Fizz"}`,
		`{"value":41,"kind":"value","text":"41"}`,
		`{"value":0,"kind":"fizzbuzz","text":"FizzBuzz"}`,
		// invalid
		"", " 5", "5 ", "-1", "abc", "1.5", "99999999999999999999999",
		`{}`, `{"beat":0}`, `null`, `[]`,
		`{"run":1,"beat":1,"x":1}`,
		`{"beat":1}{"beat":2}`,
		`{"value":3,"kind":"buzz","text":"Buzz"}`,
		`{"value":3,"kind":"fizz","text":"Fizz"} x`,
		"\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data) // the decoders must not modify their input
		defer func() {
			if !bytes.Equal(in, data) {
				t.Errorf("decoder modified its input: %q -> %q", in, data)
			}
		}()

		if n, err := DecodeNumber(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeNumber(%q): error %v does not wrap ErrMalformed", data, err)
			}
		} else if enc := EncodeNumber(n); !bytes.Equal(enc, data) {
			t.Errorf("DecodeNumber(%q) = %d, which encodes as %q", data, n, enc)
		}

		if b, err := DecodeBeat(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeBeat(%q): error %v does not wrap ErrMalformed", data, err)
			}
		} else {
			if !json.Valid(data) {
				t.Errorf("DecodeBeat(%q) = %+v, but the payload is not valid JSON", data, b)
			}
			enc := EncodeBeat(b)
			if b2, err := DecodeBeat(enc); err != nil || b2 != b {
				t.Errorf("DecodeBeat(%q) = %+v; re-encoded as %s it decodes to %+v, %v", data, b, enc, b2, err)
			}
		}

		if r, err := DecodeResult(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeResult(%q): error %v does not wrap ErrMalformed", data, err)
			}
		} else {
			if !json.Valid(data) {
				t.Errorf("DecodeResult(%q) = %+v, but the payload is not valid JSON", data, r)
			}
			if want := FizzBuzz(r.Value); r != want {
				t.Errorf("DecodeResult(%q) = %+v, which is not FizzBuzz(%d) = %+v", data, r, r.Value, want)
			}
			enc := EncodeResult(r)
			if r2, err := DecodeResult(enc); err != nil || r2 != r {
				t.Errorf("DecodeResult(%q) = %+v; re-encoded as %s it decodes to %+v, %v", data, r, enc, r2, err)
			}
		}
	})
}

// FuzzParseReplay feeds arbitrary replay and message-ID headers: never a
// panic; a replay is accepted only with its own ID and a sequence of at
// least 1; every refusal wraps ErrMalformed or ErrForeign.
func FuzzParseReplay(f *testing.F) {
	for _, s := range [][2]string{
		{"7", "replay-7"}, {"0", "replay-0"}, {"7", "replay-8"}, {"", ""}, {"18446744073709551615", "replay-18446744073709551615"},
		{"18446744073709551616", "replay-18446744073709551616"}, {"-1", "replay--1"}, {" 7", "replay- 7"}, {"7", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, replay, id string) {
		h := map[string][]string{HeaderMsgID: {id}}
		if replay != "" {
			h[HeaderReplay] = []string{replay}
		}
		seq, ok, err := ParseReplay(h)
		switch {
		case replay == "" && (ok || err != nil):
			t.Fatalf("no replay header: ok %v, %v", ok, err)
		case err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForeign):
			t.Fatalf("ParseReplay(%q, %q): %v wraps neither ErrMalformed nor ErrForeign", replay, id, err)
		case ok && err == nil && (seq == 0 || id != ReplayMsgID(seq)):
			t.Fatalf("ParseReplay(%q, %q) took dead letter %d", replay, id, seq)
		}
	})
}

// FuzzDecodeCrashReport: whatever an actor writes to its crash channel,
// the supervisor reads a report of a known kind with its message bounded,
// or an ErrMalformed error; never a panic.
func FuzzDecodeCrashReport(f *testing.F) {
	f.Add([]byte(`{"kind":"panic","message":"poison pill: value 41"}`))
	f.Add([]byte(`{"kind":"error","message":"connect: nats: authorization violation"}`))
	f.Add([]byte(`{"kind":"oops","message":""}`))
	f.Add([]byte(`{"kind":"panic","message":"` + strings.Repeat("é", MaxCrashMessage) + `"}`))
	f.Add(bytes.Repeat([]byte(" "), MaxCrashReport+1))
	f.Add([]byte(`{"kind":"panic","message":"\udc00"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeCrashReport(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || r != (CrashReport{}) {
				t.Fatalf("refused with %v and %+v", err, r)
			}
			return
		}
		if r.Kind != CrashPanic && r.Kind != CrashError {
			t.Fatalf("kind %q", r.Kind)
		}
		if len(r.Message) > MaxCrashMessage || !utf8.ValidString(r.Message) {
			t.Fatalf("message of %d bytes, valid UTF-8 %v", len(r.Message), utf8.ValidString(r.Message))
		}
	})
}
