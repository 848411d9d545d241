// Command dlqcount is an extra actor for TestExtraActor: it reads the DLQ
// stream on its own durable consumer and counts the dead letters, by the
// actor that dead-lettered them. It shows that an actor is a registry entry
// plus a main like this one, with no edit to the project's packages.
package main

import (
	"fmt"
	"os"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/pkg/protocol"
)

// state is the counter's own state, kept by the runtime under its key.
type state struct {
	Counted uint64            `json:"counted"`
	ByActor map[string]uint64 `json:"by_actor,omitempty"`
	Last    uint64            `json:"last"` // the DLQ sequence of the last one counted
}

type counter struct{}

func (counter) Counters(d *state) map[string]uint64 {
	c := map[string]uint64{"counted": d.Counted}
	for a, n := range d.ByActor {
		c["from_"+a] = n
	}
	return c
}

func (counter) Limit(protocol.Input, *state) int { return 1 << 20 }

// deadLetter is one DLQ message as the counter sees it.
type deadLetter struct {
	seq   uint64
	actor string
}

// Decode takes any dead letter; its fault key is its DLQ sequence.
func (counter) Decode(_ protocol.Input, m actor.Msg) (uint64, any, error) {
	return m.Seq, deadLetter{seq: m.Seq, actor: m.Header.Get(protocol.HeaderActor)}, nil
}

func (counter) Fresh(_ protocol.Input, v any, d *state) bool { return v.(deadLetter).seq > d.Last }

func (c counter) Apply(env *actor.Env, in protocol.Input, v any, d *state) []actor.Out {
	dl := v.(deadLetter)
	if !c.Fresh(in, v, d) {
		return nil
	}
	d.Last = dl.seq
	d.Counted++
	if d.ByActor == nil {
		d.ByActor = map[string]uint64{}
	}
	d.ByActor[dl.actor]++
	env.Log.Info(fmt.Sprintf("dead letter %d from %s (counted %d)", dl.seq, dl.actor, d.Counted))
	return nil
}

func (counter) Discard(_ *actor.Env, _ protocol.Input, m actor.Msg, d *state) {
	d.Last = max(d.Last, m.Seq)
}

func main() {
	if err := actor.ServeProcessor(counter{}); err != nil {
		fmt.Fprintf(os.Stderr, "dlqcount: %v\n", err)
		os.Exit(actor.ExitCode(err))
	}
}
