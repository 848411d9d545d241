package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Beat is the payload on SubjectBeats.
type Beat struct {
	Run   uint64 `json:"run"`             // the supervisor run the beat belongs to
	Beat  uint64 `json:"beat"`            // 1-based within the run: the first beat this message carries
	Count uint64 `json:"count,omitempty"` // beats carried: Beat … Beat+Count-1; omitted means 1
}

// Result is the payload on SubjectResults.
type Result struct {
	Value uint64 `json:"value"`
	Kind  Kind   `json:"kind"`
	Text  string `json:"text"` // "Fizz", "Buzz", "FizzBuzz" or the number
}

// Beats is how many beats b carries.
func (b Beat) Beats() uint64 { return max(b.Count, 1) }

// EncodeBeat returns b as JSON.
func EncodeBeat(b Beat) []byte { return mustJSON(b) }

// EncodeResult returns r as JSON, in the one canonical form
// {"value":N,"kind":"K","text":"T"} (written by hand: it is on the hot path).
func EncodeResult(r Result) []byte {
	b := make([]byte, 0, 64)
	b = append(b, `{"value":`...)
	b = strconv.AppendUint(b, r.Value, 10)
	b = append(b, `,"kind":`...)
	b = strconv.AppendQuote(b, r.Kind.String())
	b = append(b, `,"text":`...)
	b = strconv.AppendQuote(b, r.Text)
	return append(b, '}')
}

// DecodeBeat parses a payload from SubjectBeats.
func DecodeBeat(data []byte) (Beat, error) {
	var b Beat
	if err := strictJSON(data, &b); err != nil {
		return Beat{}, fmt.Errorf("%w: beat: %v", ErrMalformed, err)
	}
	if b.Beat == 0 {
		return Beat{}, fmt.Errorf("%w: beat: beat number must be at least 1", ErrMalformed)
	}
	return b, nil
}

// DecodeResult parses a payload from SubjectResults and checks that it is the
// FizzBuzz of its value.
func DecodeResult(data []byte) (Result, error) {
	// The worker writes the canonical form: recognise it without a decoder.
	if n, ok := canonicalValue(data); ok {
		if r := FizzBuzz(n); bytes.Equal(EncodeResult(r), data) {
			return r, nil
		}
	}
	var r Result
	if err := strictJSON(data, &r); err != nil {
		return Result{}, fmt.Errorf("%w: result: %v", ErrMalformed, err)
	}
	if want := FizzBuzz(r.Value); r != want {
		return Result{}, fmt.Errorf("%w: result: {value %d, kind %v, text %q} is not the FizzBuzz of %d", ErrMalformed, r.Value, r.Kind, truncate(r.Text), r.Value)
	}
	return r, nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only Beats and Results built by this package, with valid kinds, come here
		panic(err)
	}
	return b
}

// canonicalValue reads N from a payload starting {"value":N, .
func canonicalValue(data []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"value":`))
	if !ok {
		return 0, false
	}
	i := bytes.IndexByte(rest, ',')
	if i <= 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	return n, err == nil
}
