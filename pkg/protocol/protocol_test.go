package protocol

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		n    uint64
		want Kind
	}{
		{0, KindFizzBuzz},
		{1, KindValue},
		{3, KindFizz},
		{5, KindBuzz},
		{7, KindValue},
		{9, KindFizz},
		{10, KindBuzz},
		{15, KindFizzBuzz},
		{30, KindFizzBuzz},
		{33, KindFizz},
		{41, KindValue},
		{^uint64(0), KindFizzBuzz}, // 2^64-1 = 3·5·17·257·641·65537·6700417
		{^uint64(0) - 1, KindValue},
	}
	for _, tt := range tests {
		if got := Classify(tt.n); got != tt.want {
			t.Errorf("Classify(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestFizzBuzz(t *testing.T) {
	tests := []struct {
		n    uint64
		want Result
	}{
		{0, Result{Value: 0, Kind: KindFizzBuzz, Text: "FizzBuzz"}},
		{1, Result{Value: 1, Kind: KindValue, Text: "1"}},
		{3, Result{Value: 3, Kind: KindFizz, Text: "Fizz"}},
		{5, Result{Value: 5, Kind: KindBuzz, Text: "Buzz"}},
		{7, Result{Value: 7, Kind: KindValue, Text: "7"}},
		{15, Result{Value: 15, Kind: KindFizzBuzz, Text: "FizzBuzz"}},
		{33, Result{Value: 33, Kind: KindFizz, Text: "Fizz"}},
		{41, Result{Value: 41, Kind: KindValue, Text: "41"}},
		{100, Result{Value: 100, Kind: KindBuzz, Text: "Buzz"}},
		{^uint64(0) - 1, Result{Value: ^uint64(0) - 1, Kind: KindValue, Text: "18446744073709551614"}},
	}
	for _, tt := range tests {
		if got := FizzBuzz(tt.n); got != tt.want {
			t.Errorf("FizzBuzz(%d) = %+v, want %+v", tt.n, got, tt.want)
		}
	}
}

// TestFizzBuzzDefinition checks FizzBuzz against the arithmetic definition.
func TestFizzBuzzDefinition(t *testing.T) {
	for n := range uint64(10001) {
		three, five := n%3 == 0, n%5 == 0
		var kind Kind
		var text string
		switch {
		case three && five:
			kind, text = KindFizzBuzz, "FizzBuzz"
		case three:
			kind, text = KindFizz, "Fizz"
		case five:
			kind, text = KindBuzz, "Buzz"
		default:
			kind, text = KindValue, strconv.FormatUint(n, 10)
		}
		want := Result{Value: n, Kind: kind, Text: text}
		if got := FizzBuzz(n); got != want {
			t.Fatalf("FizzBuzz(%d) = %+v, want %+v", n, got, want)
		}
		if got := Classify(n); got != kind {
			t.Fatalf("Classify(%d) = %v, want %v", n, got, kind)
		}
	}
}

func TestNumberRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 1, 9, 10, 15, 12345, 1 << 32, ^uint64(0)} {
		b := EncodeNumber(n)
		if want := strconv.FormatUint(n, 10); string(b) != want {
			t.Errorf("EncodeNumber(%d) = %q, want %q", n, b, want)
		}
		got, err := DecodeNumber(b)
		if err != nil || got != n {
			t.Errorf("DecodeNumber(%q) = %d, %v; want %d, nil", b, got, err, n)
		}
	}
}

func TestDecodeNumber(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr error
	}{
		{in: "0", want: 0},
		{in: "42", want: 42},
		{in: "18446744073709551615", want: ^uint64(0)},
		{in: "", wantErr: ErrMalformed},
		{in: " 5", wantErr: ErrMalformed},
		{in: "5 ", wantErr: ErrMalformed},
		{in: "5\n", wantErr: ErrMalformed},
		{in: "\t5", wantErr: ErrMalformed},
		{in: "-1", wantErr: ErrMalformed},
		{in: "+1", wantErr: ErrMalformed},
		{in: "abc", wantErr: ErrMalformed},
		{in: "1.5", wantErr: ErrMalformed},
		{in: "1e3", wantErr: ErrMalformed},
		{in: "0x10", wantErr: ErrMalformed},
		{in: "1_000", wantErr: ErrMalformed},
		{in: "18446744073709551616", wantErr: ErrMalformed},
		{in: "99999999999999999999999", wantErr: ErrMalformed},
		{in: `"5"`, wantErr: ErrMalformed},
		{in: "5\x00", wantErr: ErrMalformed},
		// The payload is the number in decimal as EncodeNumber writes it, so
		// that a payload means one value and one value has one payload.
		{in: "05", wantErr: ErrMalformed},
		{in: "00", wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			got, err := DecodeNumber([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("DecodeNumber(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("DecodeNumber(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestBeatRoundTrip(t *testing.T) {
	for _, b := range []Beat{{Run: 0, Beat: 1}, {Run: 1, Beat: 1}, {Run: 7, Beat: 60}, {Run: ^uint64(0), Beat: ^uint64(0)}} {
		data := EncodeBeat(b)
		got, err := DecodeBeat(data)
		if err != nil || got != b {
			t.Errorf("DecodeBeat(EncodeBeat(%+v) = %s) = %+v, %v", b, data, got, err)
		}
	}
	if got, want := string(EncodeBeat(Beat{Run: 2, Beat: 3})), `{"run":2,"beat":3}`; got != want {
		t.Errorf("EncodeBeat = %s, want %s", got, want)
	}
}

func TestDecodeBeat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Beat
		wantErr error
	}{
		{name: "valid", in: `{"run":1,"beat":2}`, want: Beat{Run: 1, Beat: 2}},
		{name: "no run", in: `{"beat":2}`, want: Beat{Beat: 2}},
		{name: "whitespace", in: " {\"run\": 1, \"beat\": 2}\n", want: Beat{Run: 1, Beat: 2}},
		{name: "empty object", in: `{}`, wantErr: ErrMalformed},
		{name: "beat 0", in: `{"beat":0}`, wantErr: ErrMalformed},
		{name: "run only", in: `{"run":4}`, wantErr: ErrMalformed},
		{name: "null", in: `null`, wantErr: ErrMalformed},
		{name: "empty", in: ``, wantErr: ErrMalformed},
		{name: "unknown field", in: `{"run":1,"beat":2,"extra":true}`, wantErr: ErrMalformed},
		{name: "negative", in: `{"beat":-1}`, wantErr: ErrMalformed},
		{name: "fraction", in: `{"beat":1.5}`, wantErr: ErrMalformed},
		{name: "string beat", in: `{"beat":"1"}`, wantErr: ErrMalformed},
		{name: "overflow", in: `{"beat":18446744073709551616}`, wantErr: ErrMalformed},
		{name: "array", in: `[1,2]`, wantErr: ErrMalformed},
		{name: "number", in: `5`, wantErr: ErrMalformed},
		{name: "truncated", in: `{"beat":1`, wantErr: ErrMalformed},
		{name: "trailing object", in: `{"beat":1}{"beat":2}`, wantErr: ErrMalformed},
		{name: "trailing garbage", in: `{"beat":1} x`, wantErr: ErrMalformed},
		{name: "trailing number", in: `{"beat":1} 2`, wantErr: ErrMalformed},
		{name: "trailing brace", in: `{"beat":1}}`, wantErr: ErrMalformed},
		{name: "trailing bracket", in: `{"beat":1}]`, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeBeat([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("DecodeBeat(%q) = %+v, error %v; want error %v", tt.in, got, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("DecodeBeat(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestResultRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 1, 3, 5, 7, 15, 33, 41, ^uint64(0), ^uint64(0) - 1} {
		r := FizzBuzz(n)
		data := EncodeResult(r)
		got, err := DecodeResult(data)
		if err != nil || got != r {
			t.Errorf("DecodeResult(EncodeResult(%+v) = %s) = %+v, %v", r, data, got, err)
		}
	}
	if got, want := string(EncodeResult(FizzBuzz(3))), `{"value":3,"kind":"fizz","text":"Fizz"}`; got != want {
		t.Errorf("EncodeResult(FizzBuzz(3)) = %s, want %s", got, want)
	}
}

func TestDecodeResult(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Result
		wantErr error
	}{
		{name: "fizz", in: `{"value":3,"kind":"fizz","text":"Fizz"}`, want: FizzBuzz(3)},
		{name: "value", in: `{"value":7,"kind":"value","text":"7"}`, want: FizzBuzz(7)},
		{name: "zero", in: `{"value":0,"kind":"fizzbuzz","text":"FizzBuzz"}`, want: FizzBuzz(0)},
		{name: "wrong kind and text", in: `{"value":3,"kind":"buzz","text":"Buzz"}`, wantErr: ErrMalformed},
		{name: "wrong kind", in: `{"value":3,"kind":"buzz","text":"Fizz"}`, wantErr: ErrMalformed},
		{name: "wrong text", in: `{"value":3,"kind":"fizz","text":"Buzz"}`, wantErr: ErrMalformed},
		{name: "text of another value", in: `{"value":7,"kind":"value","text":"8"}`, wantErr: ErrMalformed},
		{name: "text case", in: `{"value":3,"kind":"fizz","text":"fizz"}`, wantErr: ErrMalformed},
		{name: "missing text", in: `{"value":3,"kind":"fizz"}`, wantErr: ErrMalformed},
		{name: "empty object", in: `{}`, wantErr: ErrMalformed}, // FizzBuzz(0) has text "FizzBuzz"
		{name: "unknown kind", in: `{"value":3,"kind":"fuzz","text":"Fizz"}`, wantErr: ErrMalformed},
		{name: "numeric kind", in: `{"value":3,"kind":1,"text":"Fizz"}`, wantErr: ErrMalformed},
		{name: "unknown field", in: `{"value":3,"kind":"fizz","text":"Fizz","x":1}`, wantErr: ErrMalformed},
		{name: "negative value", in: `{"value":-3,"kind":"fizz","text":"Fizz"}`, wantErr: ErrMalformed},
		{name: "null", in: `null`, wantErr: ErrMalformed},
		{name: "empty", in: ``, wantErr: ErrMalformed},
		{name: "trailing garbage", in: `{"value":3,"kind":"fizz","text":"Fizz"}x`, wantErr: ErrMalformed},
		{name: "trailing brace", in: `{"value":3,"kind":"fizz","text":"Fizz"}}`, wantErr: ErrMalformed},
		{name: "trailing bracket", in: `{"value":3,"kind":"fizz","text":"Fizz"}]`, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeResult([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("DecodeResult(%q) = %+v, error %v; want error %v", tt.in, got, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("DecodeResult(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestKindText(t *testing.T) {
	names := map[Kind]string{KindValue: "value", KindFizz: "fizz", KindBuzz: "buzz", KindFizzBuzz: "fizzbuzz"}
	if len(Kinds) != len(names) {
		t.Fatalf("Kinds has %d kinds, want %d", len(Kinds), len(names))
	}
	for _, k := range Kinds {
		want, ok := names[k]
		if !ok {
			t.Fatalf("Kinds lists unexpected kind %d", int(k))
		}
		b, err := k.MarshalText()
		if err != nil || string(b) != want {
			t.Errorf("%d.MarshalText() = %q, %v; want %q", int(k), b, err, want)
		}
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(k), k.String(), want)
		}
		var got Kind = -1
		if err := got.UnmarshalText([]byte(want)); err != nil || got != k {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", want, got, err, k)
		}
	}
	for _, k := range []Kind{-1, 4, 100} {
		if b, err := k.MarshalText(); err == nil {
			t.Errorf("Kind(%d).MarshalText() = %q, want an error", int(k), b)
		}
		if got, want := k.String(), "Kind("+strconv.Itoa(int(k))+")"; got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
	for _, in := range []string{"", "Fizz", "FIZZ", "fizz ", "1", "Kind(1)"} {
		k := KindBuzz
		if err := k.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", in, k)
		}
		if k != KindBuzz {
			t.Errorf("UnmarshalText(%q) failed but changed the kind to %v", in, k)
		}
	}
}

func TestMsgIDs(t *testing.T) {
	// Stable: the same logical message always gets the same ID.
	if NumberMsgID(42) != NumberMsgID(42) || ResultMsgID(42) != ResultMsgID(42) ||
		BeatMsgID(Beat{Run: 1, Beat: 2}) != BeatMsgID(Beat{Run: 1, Beat: 2}) || DLQMsgID(StreamNumbers, 9) != DLQMsgID(StreamNumbers, 9) {
		t.Fatal("message IDs are not stable")
	}
	golden := map[string]string{
		NumberMsgID(42):                              "n-42",
		ResultMsgID(42):                              "r-42",
		BeatMsgID(Beat{Run: 3, Beat: 7}):             "b-3-7",
		BeatMsgID(Beat{Run: 3, Beat: 7, Count: 256}): "b-3-7+256",
		DLQMsgID(StreamResults, 11):                  "dlq-RESULTS-11",
	}
	for got, want := range golden {
		if got != want {
			t.Errorf("message ID %q, want %q", got, want)
		}
	}

	// Distinct: no two logical messages share an ID, across kinds too.
	seen := map[string]string{}
	add := func(id, what string) {
		t.Helper()
		if prev, ok := seen[id]; ok {
			t.Errorf("message ID %q used by %s and %s", id, prev, what)
		}
		seen[id] = what
	}
	vals := []uint64{0, 1, 2, 11, 12, 21, 111, 112, 121, 211, ^uint64(0)}
	for _, n := range vals {
		add(NumberMsgID(n), "number "+strconv.FormatUint(n, 10))
		add(ResultMsgID(n), "result "+strconv.FormatUint(n, 10))
	}
	for _, run := range vals {
		for _, beat := range vals {
			add(BeatMsgID(Beat{Run: run, Beat: beat}), "beat "+strconv.FormatUint(run, 10)+"/"+strconv.FormatUint(beat, 10))
		}
	}
	for _, stream := range []string{StreamNumbers, StreamBeats, StreamResults, StreamDLQ} {
		for _, seq := range vals {
			add(DLQMsgID(stream, seq), "dead letter "+stream+"/"+strconv.FormatUint(seq, 10))
		}
	}
}

func TestDLQSubject(t *testing.T) {
	tests := []struct{ actor, want string }{
		{Worker, "robust.dlq.worker"},
		{Logger, "robust.dlq.logger"},
		{Generator, "robust.dlq.generator"},
		{Heartbeat, "robust.dlq.heartbeat"},
	}
	for _, tt := range tests {
		if got := DLQSubject(tt.actor); got != tt.want {
			t.Errorf("DLQSubject(%q) = %q, want %q", tt.actor, got, tt.want)
		}
	}
	if DLQSubject("worker") != "robust.dlq.worker" {
		t.Errorf(`DLQSubject("worker") = %q`, DLQSubject("worker"))
	}
}

func TestIDTokens(t *testing.T) {
	a, b := NewIDs(), NewIDs()
	if a == b || !a.Valid() || !b.Valid() || len(a) != idTokenLen {
		t.Fatalf("NewIDs: %q and %q", a, b)
	}
	for _, bad := range []IDs{"0123456789aB", "0123456789a", "0123456789abc", "01234567-9ab", "n-5"} {
		if bad.Valid() {
			t.Errorf("%q is valid", bad)
		}
	}
	tok := IDs("0123456789ab")
	base := NumberMsgID(42)
	if got := tok.Of(base); got != "n-42.0123456789ab" || IDs("").Of(base) != base {
		t.Fatalf("Of: %q", got)
	}
	// The base of an ID is the ID without any one valid token.
	for id, want := range map[string]string{"n-42": "n-42", "n-42.0123456789ab": "n-42", "n-42.ffffffffffff": "n-42", "n-42.": "n-42.", "n-42.0123456789AB": "n-42.0123456789AB",
		"n-42.0123456789ab.0123456789ab": "n-42.0123456789ab", "b-3-7+256.0123456789ab": "b-3-7+256", "n-42.zz": "n-42.zz", "replay-9": "replay-9", "": ""} {
		if got := BaseMsgID(id); got != want {
			t.Errorf("BaseMsgID(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestBeatTime(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 7, time.UTC)
	got, ok, err := ParseBeatTime(map[string][]string{HeaderBeatTime: {FormatBeatTime(at)}})
	if err != nil || !ok || got != at.UnixNano() {
		t.Fatalf("round trip of %v: %d %v %v", at, got, ok, err)
	}
	if _, ok, err := ParseBeatTime(map[string][]string{}); ok || err != nil {
		t.Fatalf("no header: ok %v, error %v", ok, err)
	}
	for _, bad := range [][]string{{"0"}, {"-1"}, {"+1"}, {"1e9"}, {" 1"}, {"12345678901234567890"}, {"1", "2"}, {""}} {
		if _, _, err := ParseBeatTime(map[string][]string{HeaderBeatTime: bad}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s %q: error %v, want malformed", HeaderBeatTime, bad, err)
		}
	}
}
