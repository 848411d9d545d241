package protocol

import (
	"fmt"
	"strconv"
)

// Kind classifies a number.
type Kind int

// The four kinds of FizzBuzz output.
const (
	KindValue    Kind = iota // neither a multiple of 3 nor of 5
	KindFizz                 // a multiple of 3 only
	KindBuzz                 // a multiple of 5 only
	KindFizzBuzz             // a multiple of 15
)

var kindNames = [...]string{"value", "fizz", "buzz", "fizzbuzz"}

// Kinds lists the kinds in a fixed order.
var Kinds = []Kind{KindFizz, KindBuzz, KindFizzBuzz, KindValue}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
	return kindNames[k]
}

// MarshalText encodes a Kind by name, so payloads stay readable.
func (k Kind) MarshalText() ([]byte, error) {
	if k < 0 || int(k) >= len(kindNames) {
		return nil, fmt.Errorf("unknown kind %d", int(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText decodes a Kind by name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown kind %q", b)
}

// Classify returns the FizzBuzz kind of n.
func Classify(n uint64) Kind {
	switch {
	case n%15 == 0:
		return KindFizzBuzz
	case n%3 == 0:
		return KindFizz
	case n%5 == 0:
		return KindBuzz
	default:
		return KindValue
	}
}

// FizzBuzz returns the Result for n.
func FizzBuzz(n uint64) Result {
	k := Classify(n)
	text := strconv.FormatUint(n, 10)
	switch k {
	case KindFizz:
		text = "Fizz"
	case KindBuzz:
		text = "Buzz"
	case KindFizzBuzz:
		text = "FizzBuzz"
	}
	return Result{Value: n, Kind: k, Text: text}
}
