package protocol_test

import (
	"errors"
	"fmt"

	"github.com/robust/robust/pkg/protocol"
)

func ExampleFizzBuzz() {
	for n := range uint64(16) {
		r := protocol.FizzBuzz(n)
		fmt.Printf("%d %s %s\n", r.Value, r.Kind, r.Text)
	}
	// Output:
	// 0 fizzbuzz FizzBuzz
	// 1 value 1
	// 2 value 2
	// 3 fizz Fizz
	// 4 value 4
	// 5 buzz Buzz
	// 6 fizz Fizz
	// 7 value 7
	// 8 value 8
	// 9 fizz Fizz
	// 10 buzz Buzz
	// 11 value 11
	// 12 fizz Fizz
	// 13 value 13
	// 14 value 14
	// 15 fizzbuzz FizzBuzz
}

func ExampleEncodeResult() {
	fmt.Println(string(protocol.EncodeResult(protocol.FizzBuzz(33))))
	// Output:
	// {"value":33,"kind":"fizz","text":"Fizz"}
}

func ExampleDecodeNumber() {
	n, err := protocol.DecodeNumber([]byte("41"))
	fmt.Println(n, err)

	// A malformed payload is dead-lettered at once: callers check for it
	// with errors.Is, never by the message.
	_, err = protocol.DecodeNumber([]byte(" 41"))
	fmt.Println(errors.Is(err, protocol.ErrMalformed))
	fmt.Println(err)
	// Output:
	// 41 <nil>
	// true
	// malformed: number " 41": want a decimal integer
}
