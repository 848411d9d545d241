package faults

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{in: "", want: "none"},
		{in: "none", want: "none"},
		{in: "lesson", want: Lesson},
		{in: "worker:5@after-publish/once, logger:7@after-save", want: "worker:5@after-publish/once,logger:7@after-save"},
		{in: "worker:5@before", want: "worker:5"},
		{in: "worker", wantErr: ErrBadPlan},
		{in: "Robot:5", wantErr: ErrBadPlan},
		{in: "worker:-1", wantErr: ErrBadPlan},
		{in: "worker:1@sometime", wantErr: ErrBadPlan},
		{in: "worker:1,", wantErr: ErrBadPlan},
	}
	for _, tt := range tests {
		p, err := Parse(tt.in)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Parse(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && p.String() != tt.want {
			t.Errorf("Parse(%q) = %q, want %q", tt.in, p, tt.want)
		}
	}
}

func TestHit(t *testing.T) {
	p, err := Parse("lesson")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		actor  string
		key    uint64
		starts uint64
		want   bool
	}{
		{"heartbeat", 7, 1, true},
		{"heartbeat", 7, 2, false}, // first start only
		{"generator", 13, 1, true},
		{"generator", 12, 1, false},
		{"worker", 33, 1, true},
		{"worker", 33, 9, true}, // every delivery
		{"logger", 41, 4, true},
		{"logger", 33, 1, false},
	}
	for _, c := range cases {
		if _, got := p.Hit(c.actor, Before, c.key, c.starts); got != c.want {
			t.Errorf("Hit(%s, %d, starts=%d) = %v, want %v", c.actor, c.key, c.starts, got, c.want)
		}
	}
	if _, got := p.Hit("worker", AfterSave, 33, 1); got {
		t.Error("a rule for 'before' fired at after-save")
	}
}

func TestRandom(t *testing.T) {
	if _, err := Parse("random:1:2"); !errors.Is(err, ErrBadPlan) {
		t.Fatalf("P=2 accepted: %v", err)
	}
	p, err := Parse("random:42:0.01")
	if err != nil || p.String() != "random:42:0.01" {
		t.Fatalf("%v %v", p, err)
	}
	hits := 0
	for k := range uint64(100000) {
		if _, ok := p.Hit("worker", AfterSave, k, 1); ok {
			hits++
			if _, again := p.Hit("worker", AfterSave, k, 1); !again {
				t.Fatal("not deterministic")
			}
		}
	}
	if hits < 800 || hits > 1200 { // 1% of 100000, give or take
		t.Fatalf("%d hits in 100000 draws at P=0.01", hits)
	}
	// Another seed, another pattern.
	q, _ := Parse("random:43:0.01")
	same := 0
	for k := range uint64(100000) {
		_, a := p.Hit("worker", AfterSave, k, 1)
		_, b := q.Hit("worker", AfterSave, k, 1)
		if a && b {
			same++
		}
	}
	if same > 50 {
		t.Fatalf("seeds 42 and 43 share %d of ~1000 hits", same)
	}
}

// A plan may name any actor; the supervisor checks the names against its
// registry, so that an extra actor's faults are accepted.
func TestCheck(t *testing.T) {
	p, err := Parse("dlqcount:3,worker:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check([]string{"worker", "dlqcount"}); err != nil {
		t.Fatalf("Check with both actors: %v", err)
	}
	if err := p.Check([]string{"worker"}); !errors.Is(err, ErrBadPlan) || !strings.Contains(err.Error(), `unknown actor "dlqcount"`) {
		t.Fatalf("Check without dlqcount: %v, want an unknown actor", err)
	}
	if _, err := Parse("Worker!:1"); !errors.Is(err, ErrBadPlan) {
		t.Fatalf("Parse of a bad name: %v", err)
	}
}
