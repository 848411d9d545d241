// Package faults parses and evaluates the pipeline's fault-injection plan.
//
// A plan is a comma-separated list of rules:
//
//	actor:KEY[@POINT][/once]
//
// KEY is what the actor counts: the beat number for heartbeat (1-based), the
// send number for generator (1-based: its 13th send publishes value 12), the
// value for worker and logger. POINT is where the actor panics:
//
//	before         before handling the message or sending (default)
//	after-publish  after the batch's outputs are stored, before the state is saved
//	after-save     after the state is saved, before the inputs are acked
//
// "/once" fires only on the actor's first start ever (its persisted start
// count is 1); without it the rule fires every time the key comes by.
//
// Two names stand for whole plans: "lesson" (the default: the classic
// demonstration) and "none".
package faults

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Point is where in the processing of a batch a fault fires.
type Point string

// The fault points.
const (
	Before       Point = "before"
	AfterPublish Point = "after-publish"
	AfterSave    Point = "after-save"
)

// Lesson is the default plan: heartbeat panics at beat 7 on its first start,
// generator once at its 13th send, worker on every delivery of 33, logger on
// every delivery of the result for 41.
const Lesson = "heartbeat:7/once,generator:13/once,worker:33,logger:41"

// ErrBadPlan is wrapped by every Parse error.
var ErrBadPlan = errors.New("bad fault plan")

var actors = []string{"generator", "heartbeat", "worker", "logger"}

// Rule is one injected fault.
type Rule struct {
	Actor string
	Key   uint64
	Point Point
	Once  bool
}

func (r Rule) String() string {
	s := r.Actor + ":" + strconv.FormatUint(r.Key, 10)
	if r.Point != Before {
		s += "@" + string(r.Point)
	}
	if r.Once {
		s += "/once"
	}
	return s
}

// Plan is a parsed fault plan. The zero Plan injects nothing.
type Plan struct {
	Rules []Rule
}

// Parse reads a plan: "lesson", "none", "" or a list of rules.
func Parse(s string) (Plan, error) {
	switch strings.TrimSpace(s) {
	case "", "none":
		return Plan{}, nil
	case "lesson":
		s = Lesson
	}
	var p Plan
	for _, part := range strings.Split(s, ",") {
		r, err := parseRule(strings.TrimSpace(part))
		if err != nil {
			return Plan{}, err
		}
		p.Rules = append(p.Rules, r)
	}
	return p, nil
}

func parseRule(s string) (Rule, error) {
	bad := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("%w: rule %q: %s (want actor:KEY[@before|@after-publish|@after-save][/once], e.g. worker:33, or lesson, or none)", ErrBadPlan, s, why)
	}
	r := Rule{Point: Before}
	if rest, ok := strings.CutSuffix(s, "/once"); ok {
		r.Once, s = true, rest
	}
	actor, rest, ok := strings.Cut(s, ":")
	if !ok {
		return bad("missing ':'")
	}
	if !slices.Contains(actors, actor) {
		return bad("unknown actor " + strconv.Quote(actor))
	}
	r.Actor = actor
	key, point, hasPoint := strings.Cut(rest, "@")
	n, err := strconv.ParseUint(key, 10, 64)
	if err != nil {
		return bad("key must be a non-negative integer")
	}
	r.Key = n
	if hasPoint {
		switch p := Point(point); p {
		case Before, AfterPublish, AfterSave:
			r.Point = p
		default:
			return bad("unknown point " + strconv.Quote(point))
		}
	}
	return r, nil
}

func (p Plan) String() string {
	if len(p.Rules) == 0 {
		return "none"
	}
	parts := make([]string, len(p.Rules))
	for i, r := range p.Rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Hit reports the rule, if any, that fires for actor at point for key, given
// the actor's persisted start count (1 on its first start).
func (p Plan) Hit(actor string, point Point, key, starts uint64) (Rule, bool) {
	for _, r := range p.Rules {
		if r.Actor == actor && r.Point == point && r.Key == key && (!r.Once || starts == 1) {
			return r, true
		}
	}
	return Rule{}, false
}

// HitIn is Hit for any key in [from, to].
func (p Plan) HitIn(actor string, point Point, from, to, starts uint64) (Rule, bool) {
	for _, r := range p.Rules {
		if r.Actor == actor && r.Point == point && r.Key >= from && r.Key <= to && (!r.Once || starts == 1) {
			return r, true
		}
	}
	return Rule{}, false
}

// Injected is the panic value of an injected fault.
type Injected struct{ Rule Rule }

func (i Injected) Error() string {
	return fmt.Sprintf("injected fault %s (intentional)", i.Rule)
}
