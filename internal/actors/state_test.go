package actors

import (
	"testing"

	"github.com/robust/robust/pkg/protocol"
)

func tallyOf(values ...uint64) Tally {
	var t Tally
	for _, v := range values {
		t.Add(v)
	}
	return t
}

func TestTallyAdd(t *testing.T) {
	var tl Tally
	steps := []struct {
		n         uint64
		wantCount uint64 // of n's kind, after adding n
	}{
		{3, 1}, {5, 1}, {15, 1}, {7, 1}, {6, 2}, {0, 2}, {1, 2}, {10, 2}, {9, 3},
	}
	for _, s := range steps {
		if got := tl.Add(s.n); got != s.wantCount {
			t.Errorf("Add(%d) = %d, want %d", s.n, got, s.wantCount)
		}
	}
	want := Tally{Fizz: 3, Buzz: 2, FizzBuzz: 2, Value: 2,
		Sum: 3 + 5 + 15 + 7 + 6 + 0 + 1 + 10 + 9, SumSq: 9 + 25 + 225 + 49 + 36 + 0 + 1 + 100 + 81}
	if tl != want {
		t.Fatalf("tally = %+v, want %+v", tl, want)
	}
	if got := tl.Total(); got != 9 {
		t.Errorf("Total() = %d, want 9", got)
	}
	for k, w := range map[protocol.Kind]uint64{protocol.KindFizz: 3, protocol.KindBuzz: 2, protocol.KindFizzBuzz: 2, protocol.KindValue: 2} {
		if got := tl.Count(k); got != w {
			t.Errorf("Count(%v) = %d, want %d", k, got, w)
		}
	}
	if got := (Tally{}).Total(); got != 0 {
		t.Errorf("zero Tally: Total() = %d, want 0", got)
	}
}

func TestTallyWraps(t *testing.T) {
	big := ^uint64(0) // FizzBuzz
	tl := tallyOf(big, 1)
	if tl.Sum != 0 {
		t.Errorf("Sum = %d, want 0 (wrapping)", tl.Sum)
	}
	if tl.SumSq != 2 { // (2^64-1)^2 = 1 mod 2^64, plus 1
		t.Errorf("SumSq = %d, want 2 (wrapping)", tl.SumSq)
	}
	if tl.FizzBuzz != 1 || tl.Value != 1 {
		t.Errorf("counts = %+v, want one fizzbuzz and one value", tl)
	}
}

// TestTallyChecksums: multisets with the same count of every kind must still
// produce different tallies, which is how a duplicate hiding a loss shows.
func TestTallyChecksums(t *testing.T) {
	tests := []struct {
		name string
		a, b []uint64
	}{
		// 15 applied twice and 30 lost: Sum tells them apart.
		{"duplicate hides a loss", []uint64{15, 30}, []uint64{15, 15}},
		// Same counts and same Sum (60): only SumSq tells them apart.
		{"same sum", []uint64{15, 45}, []uint64{30, 30}},
		{"same sum, mixed kinds", []uint64{1, 3, 5, 8}, []uint64{2, 3, 5, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tallyOf(tt.a...), tallyOf(tt.b...)
			for _, k := range protocol.Kinds {
				if a.Count(k) != b.Count(k) {
					t.Fatalf("bad example: %v counts differ (%d vs %d)", k, a.Count(k), b.Count(k))
				}
			}
			if a == b {
				t.Fatalf("tallies of %v and %v are equal: %+v", tt.a, tt.b, a)
			}
		})
	}
	// Order does not matter.
	if a, b := tallyOf(1, 2, 3, 15), tallyOf(15, 3, 2, 1); a != b {
		t.Errorf("tally depends on order: %+v vs %+v", a, b)
	}
}
