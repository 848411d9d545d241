package ledger

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
	"github.com/robust/robust/pkg/protocol"
)

// tallyOf is the tally of a list of values, duplicates included.
func tallyOf(tb testing.TB, values ...uint64) actors.Tally {
	tb.Helper()
	var t actors.Tally
	for _, v := range values {
		t.Add(v)
	}
	return t
}

// span lists lo … hi-1.
func span(lo, hi uint64) []uint64 {
	var out []uint64
	for v := lo; v < hi; v++ {
		out = append(out, v)
	}
	return out
}

// without returns values minus every element of drop.
func without(values []uint64, drop ...uint64) []uint64 {
	var out []uint64
outer:
	for _, v := range values {
		for _, d := range drop {
			if v == d {
				continue outer
			}
		}
		out = append(out, v)
	}
	return out
}

// dead builds the DLQ: one DeadLetter per value; nil stands for a message
// that carried no generated value (malformed payload, or a beat).
// deadOf is the tally of the dead letters' values, as the actors keep it.
func deadOf(dls []DeadLetter) actors.Tally {
	var t actors.Tally
	for _, d := range dls {
		if d.Value != nil {
			t.Add(*d.Value)
		}
	}
	return t
}

func dead(values ...*uint64) []DeadLetter {
	var out []DeadLetter
	for i, v := range values {
		d := DeadLetter{Seq: uint64(i + 1), Actor: protocol.Worker, Value: v, Subject: protocol.SubjectNumbers, Reason: "showstopper: test"}
		if v == nil {
			d.Reason, d.Payload = "malformed: test", "not a number"
		}
		out = append(out, d)
	}
	return out
}

func u(v uint64) *uint64 { return &v }

func TestReconcile(t *testing.T) {
	tests := []struct {
		name         string
		generated    uint64
		dlq          []DeadLetter
		queued       []uint64
		logged       []uint64
		wantExpected []uint64 // the values the logger should have logged
		anyExpected  bool     // the expected tally is beside the point
		wantQueued   uint64
		removedMsgs  map[string]uint64
		wantRemoved  uint64
		wantProblems []string // each a substring of the problem at the same index
	}{
		{
			name:      "nothing generated",
			generated: 0,
		},
		{
			name:         "everything logged",
			generated:    100,
			logged:       span(0, 100),
			wantExpected: span(0, 100),
		},
		{
			name:         "everything logged, out of order",
			generated:    5,
			logged:       []uint64{4, 2, 0, 3, 1},
			wantExpected: span(0, 5),
		},
		{
			name:         "dead-lettered and queued, the rest logged",
			generated:    20,
			dlq:          dead(u(3), u(15)),
			queued:       []uint64{17, 18, 19},
			logged:       without(span(0, 17), 3, 15),
			wantExpected: without(span(0, 17), 3, 15),
			wantQueued:   3,
		},
		{
			name:         "a value queued twice counts once",
			generated:    10,
			queued:       []uint64{8, 9, 9, 8},
			logged:       span(0, 8),
			wantExpected: span(0, 8),
			wantQueued:   2,
		},
		{
			name:         "a value lost",
			generated:    20,
			logged:       without(span(0, 20), 7),
			wantExpected: span(0, 20),
			wantProblems: []string{"value 10, expected 11"},
		},
		{
			name:         "a value logged twice",
			generated:    20,
			logged:       append(span(0, 20), 9),
			wantExpected: span(0, 20),
			wantProblems: []string{"fizz 6, expected 5"},
		},
		{
			name:         "a value both logged and dead-lettered",
			generated:    10,
			dlq:          dead(u(4)),
			logged:       span(0, 10),
			wantExpected: without(span(0, 10), 4),
			wantProblems: []string{"lost or applied twice"},
		},
		{
			name:         "a value both logged and queued",
			generated:    10,
			queued:       []uint64{9},
			logged:       span(0, 10),
			wantExpected: span(0, 9),
			wantQueued:   1,
			wantProblems: []string{"lost or applied twice"},
		},
		{
			// Same count of every kind: only the checksums catch it.
			name:         "15 logged twice and 30 lost",
			generated:    31,
			logged:       append(without(span(0, 31), 30), 15),
			wantExpected: span(0, 31),
			wantProblems: []string{"checksums of the logged values differ"},
		},
		{
			// Same counts and the same Sum (15+45 = 30+30): only SumSq catches it.
			name:         "30 logged twice, 15 and 45 lost",
			generated:    46,
			logged:       append(without(span(0, 46), 15, 45), 30, 30),
			wantExpected: span(0, 46),
			wantProblems: []string{"checksums of the logged values differ"},
		},
		{
			name:         "a dead-lettered value that was never generated",
			generated:    10,
			dlq:          dead(u(10)),
			logged:       span(0, 10),
			anyExpected:  true,
			wantProblems: []string{"lost or applied twice"},
		},
		{
			name:         "a dead-lettered value far beyond generated",
			generated:    10,
			dlq:          dead(u(1000)),
			logged:       span(0, 10),
			anyExpected:  true,
			wantProblems: []string{"checksums of the logged values differ"},
		},
		{
			name:         "the same value dead-lettered twice",
			generated:    10,
			dlq:          dead(u(6), u(6)),
			logged:       without(span(0, 10), 6),
			anyExpected:  true,
			wantProblems: []string{"lost or applied twice"},
		},
		{
			name:         "a queued value that was never generated",
			generated:    10,
			queued:       []uint64{12},
			logged:       span(0, 10),
			wantExpected: span(0, 10),
			wantQueued:   0, // only generated values count as queued
			wantProblems: []string{"value 12 is queued but was never generated"},
		},
		{
			name:         "dead letters without a value are ignored",
			generated:    10,
			dlq:          dead(nil, nil),
			logged:       span(0, 10),
			wantExpected: span(0, 10),
		},
		{
			name:         "dead letters without a value among real ones",
			generated:    10,
			dlq:          dead(nil, u(2), nil, u(5)),
			queued:       []uint64{9},
			logged:       without(span(0, 9), 2, 5),
			wantExpected: without(span(0, 9), 2, 5),
			wantQueued:   1,
		},
		{
			name:         "values removed from the queues",
			generated:    10,
			dlq:          dead(u(2)),
			queued:       []uint64{9},
			logged:       without(span(0, 9), 2, 4, 6, 7),
			removedMsgs:  map[string]uint64{"NUMBERS": 2, "RESULTS": 1},
			wantExpected: without(span(0, 9), 2, 4, 6, 7),
			wantQueued:   1,
			wantRemoved:  3,
			wantProblems: []string{"3 messages left their queues before they were taken (2 from NUMBERS, 1 from RESULTS)"},
		},
		{
			name:         "more values missing than messages removed: a loss besides",
			generated:    10,
			logged:       without(span(0, 10), 4, 6),
			removedMsgs:  map[string]uint64{"NUMBERS": 1},
			wantExpected: span(0, 10),
			wantProblems: []string{"1 messages left", "lost or applied twice"},
		},
		{
			name:         "a removal does not hide a value logged twice",
			generated:    10,
			logged:       append(without(span(0, 10), 3, 4), 5),
			removedMsgs:  map[string]uint64{"RESULTS": 1},
			wantExpected: span(0, 10),
			wantProblems: []string{"1 messages left", "lost or applied twice"},
		},
		{
			name:         "a dead letter without a value does not excuse a loss",
			generated:    10,
			dlq:          dead(nil),
			logged:       span(0, 9),
			wantExpected: span(0, 10),
			wantProblems: []string{"lost or applied twice"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expected, queued, removed, problems := reconcile(tt.generated, deadOf(tt.dlq), tt.queued, tallyOf(t, tt.logged...), tt.removedMsgs)
			if removed != tt.wantRemoved {
				t.Errorf("removed = %d, want %d", removed, tt.wantRemoved)
			}
			if want := tallyOf(t, tt.wantExpected...); expected != want && !tt.anyExpected {
				t.Errorf("expected tally = %+v, want %+v", expected, want)
			}
			if queued != tt.wantQueued {
				t.Errorf("queued = %d, want %d", queued, tt.wantQueued)
			}
			if len(problems) != len(tt.wantProblems) {
				t.Fatalf("problems = %q, want %d matching %q", problems, len(tt.wantProblems), tt.wantProblems)
			}
			for i, want := range tt.wantProblems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %d = %q, want it to mention %q", i, problems[i], want)
				}
			}
		})
	}
}

// TestReconcileConservation: with no problems, every generated value is
// accounted for exactly once.
func TestReconcileConservation(t *testing.T) {
	const generated = 50
	dlq := dead(u(0), nil, u(7), u(21))
	queued := []uint64{45, 46, 47, 48, 49, 21}
	logged := without(span(0, 45), 0, 7, 21)
	expected, q, _, problems := reconcile(generated, deadOf(dlq), without(queued, 21), tallyOf(t, logged...), nil)
	if len(problems) != 0 {
		t.Fatalf("problems: %q", problems)
	}
	if got := expected.Total() + 3 + q; got != generated {
		t.Fatalf("logged %d + dead-lettered 3 + queued %d = %d, want %d", expected.Total(), q, got, generated)
	}
}

func TestDiscrepancy(t *testing.T) {
	expected := tallyOf(t, span(0, 100)...)
	tests := []struct {
		name       string
		logged     []uint64
		lost, dup  uint64
		wantValues []uint64
	}{
		{"exact", span(0, 100), 0, 0, nil},
		{"one lost", without(span(0, 100), 42), 1, 0, []uint64{42}},
		{"one doubled", append(span(0, 100), 42), 0, 1, []uint64{42}},
		{"doubled 15, lost 30: same kind", append(without(span(0, 100), 30), 15), 1, 1, []uint64{15, 30}},
		{"two lost", without(span(0, 100), 7, 8), 2, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Summary{Counts: tallyOf(t, tt.logged...), Expected: expected}
			lost, dup, values := s.Discrepancy()
			if lost != tt.lost || dup != tt.dup || !slices.Equal(values, tt.wantValues) {
				t.Fatalf("Discrepancy() = %d lost, %d doubled, values %v; want %d, %d, %v", lost, dup, values, tt.lost, tt.dup, tt.wantValues)
			}
		})
	}
}

// Replayed dead letters stop counting as dead: taken, queued, or replaced
// by the dead letter of their replay. The values then balance.
func TestReplayedDeadLettersBalance(t *testing.T) {
	dlq := dead(u(33), u(41), nil, u(50))
	dlq = append(dlq, DeadLetter{Seq: 5, Actor: protocol.Worker, Value: u(50), Subject: protocol.SubjectNumbers, Replay: 4})
	l := sortDeadLetters(dlq, map[uint64]bool{1: true, 4: true}, map[uint64]bool{2: true})
	status := map[uint64]string{}
	for _, d := range append(l.Standing, l.Replayed...) {
		status[d.Seq] = d.Status
	}
	want := map[uint64]string{1: StatusReplayed, 2: StatusReplayQueued, 3: StatusDead, 4: "replayed, dead again as 5", 5: StatusDead}
	if !maps.Equal(status, want) || len(l.Standing) != 2 {
		t.Fatalf("statuses %v (standing %d), want %v", status, len(l.Standing), want)
	}
	if why := l.Standing[0].Replayable(); !strings.Contains(why, "would only be dead-lettered again") {
		t.Fatalf("a malformed dead letter is replayable: %q", why)
	}
	if why := l.Standing[1].Replayable(); why != "" {
		t.Fatalf("the dead replay of 50 is not replayable: %q", why)
	}
	// 33 was taken and logged, 41 waits as a replay, 50 is dead once.
	logged := without(span(0, 60), 41, 50)
	_, queued, _, problems := reconcile(60, deadOf(l.Standing), []uint64{41}, tallyOf(t, logged...), nil)
	if queued != 1 || len(problems) != 0 {
		t.Fatalf("queued %d, problems %v; want 1 and none", queued, problems)
	}
	// Counting the replayed ones as dead as well would not balance.
	if _, _, _, problems := reconcile(60, deadOf(dlq), []uint64{41}, tallyOf(t, logged...), nil); len(problems) == 0 {
		t.Fatal("the unsorted DLQ balanced: the test proves nothing")
	}
}

// A queue's removed messages: those its consumer jumped over, and those
// above its cursor the queue no longer holds; nothing for a queue whose
// every message is taken or held.
func TestRemovedMsgs(t *testing.T) {
	held := func(seqs ...uint64) []queuedMsg {
		var out []queuedMsg
		for _, s := range seqs {
			out = append(out, queuedMsg{seq: s})
		}
		return out
	}
	got := removedMsgs(map[protocol.Input]*actor.Cursor{
		protocol.WorkerNumbers: {Applied: 100, Skipped: 7},
		protocol.LoggerResults: {Applied: 50},
	}, map[string]uint64{protocol.StreamNumbers: 110, protocol.StreamResults: 53},
		map[string][]queuedMsg{protocol.StreamNumbers: held(101, 102, 103, 111), protocol.StreamResults: held(51, 52, 53)})
	if want := map[string]uint64{protocol.StreamNumbers: 7 + 7}; !maps.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
	// A new consumer (no cursor) of an emptied queue: all of it removed.
	got = removedMsgs(map[protocol.Input]*actor.Cursor{protocol.WorkerNumbers: nil},
		map[string]uint64{protocol.StreamNumbers: 5}, nil)
	if want := map[string]uint64{protocol.StreamNumbers: 5}; !maps.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
}
