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
//	after-save     worker, logger: the batch is committed (state and outbox
//	               saved), its outputs not yet published;
//	               generator, heartbeat: the position is saved
//	after-publish  worker, logger: the outputs are stored, the inputs not yet
//	               acked; generator, heartbeat: the messages are stored, the
//	               position not yet saved
//
// "/once" fires only on the actor's first start ever (its persisted start
// count is 1); without it the rule fires every time the key comes by.
//
// Two names stand for whole plans: "lesson" (the default: the classic
// demonstration) and "none". A third form, "random:SEED:P", injects a panic
// at every point of every actor with probability P per key and start,
// chosen by SEED: the chaos run's panics. The start count is part of the
// draw, so a random panic does not follow its message from start to start.
package faults

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
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

// actorName is what an actor may be called (see internal/registry).
var actorName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

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
	Rules  []Rule
	Random *Random // random panics, if any
}

// Random panics: probability P per actor, point, key and start.
type Random struct {
	Seed uint64
	P    float64
}

// Parse reads a plan: "lesson", "none", "" or a list of rules.
func Parse(s string) (Plan, error) {
	switch strings.TrimSpace(s) {
	case "", "none":
		return Plan{}, nil
	case "lesson":
		s = Lesson
	}
	if rest, ok := strings.CutPrefix(s, "random:"); ok {
		seed, p, ok := strings.Cut(rest, ":")
		r := &Random{}
		var err1, err2 error
		r.Seed, err1 = strconv.ParseUint(seed, 10, 64)
		r.P, err2 = strconv.ParseFloat(p, 64)
		if !ok || err1 != nil || err2 != nil || r.P < 0 || r.P > 1 {
			return Plan{}, fmt.Errorf("%w: %q: want random:SEED:P with P between 0 and 1, e.g. random:42:0.0001", ErrBadPlan, s)
		}
		return Plan{Random: r}, nil
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
	if !actorName.MatchString(actor) {
		return bad("bad actor name " + strconv.Quote(actor))
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

// Check reports a rule that names none of actors (the registry's names).
func (p Plan) Check(actors []string) error {
	for _, r := range p.Rules {
		if !slices.Contains(actors, r.Actor) {
			return fmt.Errorf("%w: rule %s: unknown actor %q (the actors are %s)", ErrBadPlan, r, r.Actor, strings.Join(actors, ", "))
		}
	}
	return nil
}

func (p Plan) String() string {
	if p.Random != nil {
		return fmt.Sprintf("random:%d:%g", p.Random.Seed, p.Random.P)
	}
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
	if p.Random != nil {
		return p.HitIn(actor, point, key, key, starts)
	}
	for _, r := range p.Rules {
		if r.Actor == actor && r.Point == point && r.Key == key && (!r.Once || starts == 1) {
			return r, true
		}
	}
	return Rule{}, false
}

// HitIn is Hit for any key in [from, to].
func (p Plan) HitIn(actor string, point Point, from, to, starts uint64) (Rule, bool) {
	if rd := p.Random; rd != nil {
		for k := from; k <= to && k >= from; k++ {
			if rd.hit(actor, point, k, starts) {
				return Rule{Actor: actor, Key: k, Point: point}, true
			}
		}
		return Rule{}, false
	}
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

// hit draws, deterministically from the seed, whether a random panic fires.
func (r *Random) hit(actor string, point Point, key, starts uint64) bool {
	h := fnv.New64a()
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], r.Seed)
	binary.LittleEndian.PutUint64(b[8:], key)
	binary.LittleEndian.PutUint64(b[16:], starts)
	h.Write(b[:])
	h.Write([]byte(actor))
	h.Write([]byte(point))
	return float64(mix(h.Sum64())>>11)/(1<<53) < r.P
}

// mix is splitmix64's finaliser: FNV alone spreads nearby keys poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
