// Package registry declares the pipeline's actors in one place. Each entry
// says what an actor is (producer or processor), what it consumes and
// publishes, where its state lives, which counter shows its progress and
// what it adds to the metrics. The supervisor, the topology's consumers,
// the fault plans, the HTTP API, the metrics, the progress line and the
// dashboard's graph are derived from it.
//
// Adding an actor is an entry here (or in a Registry a program builds with
// With) plus its cmd/NAME/main.go.
package registry

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/robust/robust/pkg/protocol"
)

// Kind is what an actor does with messages.
type Kind string

// The kinds.
const (
	// Producer only publishes (generator, heartbeat).
	Producer Kind = "producer"
	// Processor consumes inputs through its own durable consumers, and may
	// dead-letter what it cannot take (worker, logger).
	Processor Kind = "processor"
)

// Output is a subject an actor publishes to, and the stream that stores it.
type Output struct {
	Stream  string
	Subject string
}

// Metric exposes one of an actor's counters as one Prometheus series. Series
// of one name share Help and label names.
type Metric struct {
	Name    string            // e.g. robust_logged_total
	Help    string            // shown by /metrics
	Counter string            // the actor's counter (Status.Counters) it reads
	Labels  map[string]string // this series' labels, e.g. result=fizz
}

// Actor declares one actor. Zero fields get defaults: StateKey and Binary
// are the Name.
type Actor struct {
	// Name is the actor's process and binary name, its dead-letter subject's
	// last token and what fault plans and the HTTP API call it: lower case
	// letters, digits and dashes.
	Name string
	Kind Kind
	// Inputs are the streams a processor consumes, each through its own
	// durable consumer, in the order it polls them.
	Inputs []protocol.Input
	// Outputs are the subjects it publishes to. A processor's dead-letter
	// subject (protocol.DLQSubject(Name)) is implied.
	Outputs []Output
	// StateKey is the actor's key in the state bucket.
	StateKey string
	// Progress names the counter that grows while the actor works: it
	// becomes robust_actor_processed_total, the dashboard's msg/s and the
	// API's "progress".
	Progress string
	// EndsRun: the run is complete once this producer reports that it has
	// sent everything (the heartbeat's last beat). At most one actor.
	EndsRun bool
	// RunProgress, with EndsRun: its counter of this run's units (beats),
	// which reaches --beats; the progress line shows it with an ETA.
	RunProgress string
	// Metrics are series of its own beyond the ones every actor has.
	Metrics []Metric
	// Binary is the executable's name in the supervisor's --bin-dir.
	Binary string
}

// DLQ is the subject the actor dead-letters to, or "" for a producer.
func (a Actor) DLQ() string {
	if a.Kind != Processor {
		return ""
	}
	return protocol.DLQSubject(a.Name)
}

// Registry is an ordered set of actors. The zero Registry has none; build
// one with New, Default or With.
type Registry struct {
	actors []Actor
}

// ErrInvalid is wrapped by every error of New and With.
var ErrInvalid = errors.New("invalid actor registry")

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// New checks the actors and returns them as a Registry, in the order given
// (the order status, summaries and the dashboard list them in).
func New(actors ...Actor) (Registry, error) {
	r := Registry{}
	names := map[string]bool{}
	keys := map[string]bool{}
	consumers := map[string]bool{}
	metrics := metricSet{}
	endsRun := ""
	for _, a := range actors {
		if a.StateKey == "" {
			a.StateKey = a.Name
		}
		if a.Binary == "" {
			a.Binary = a.Name
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: actor %q: %s", ErrInvalid, a.Name, fmt.Sprintf(format, args...))
		}
		switch {
		case !validName.MatchString(a.Name):
			return r, bad("a name is lower case letters, digits and dashes, starting with a letter")
		case names[a.Name]:
			return r, bad("declared twice")
		case keys[a.StateKey] || a.StateKey == protocol.SupervisorKey || strings.HasPrefix(a.StateKey, protocol.SupervisorKey+"."):
			return r, bad("state key %q is taken", a.StateKey)
		case a.Kind != Producer && a.Kind != Processor:
			return r, bad("kind %q: want producer or processor", a.Kind)
		case a.Kind == Processor && len(a.Inputs) == 0:
			return r, bad("a processor consumes at least one input")
		case a.Kind == Producer && len(a.Inputs) > 0:
			return r, bad("a producer consumes nothing")
		case a.Kind == Producer && len(a.Outputs) == 0:
			return r, bad("a producer publishes at least one output")
		case a.EndsRun && a.Kind != Producer:
			return r, bad("only a producer can end the run")
		case a.EndsRun && endsRun != "":
			return r, bad("%q ends the run already", endsRun)
		case a.Progress == "":
			return r, bad("no progress counter")
		}
		for _, in := range a.Inputs {
			if in.Stream == "" || in.Subject == "" || in.Consumer == "" {
				return r, bad("input %+v: stream, subject and consumer are all needed", in)
			}
			if consumers[in.Stream+"/"+in.Consumer] {
				return r, bad("consumer %s on %s is taken", in.Consumer, in.Stream)
			}
			consumers[in.Stream+"/"+in.Consumer] = true
		}
		for _, m := range a.Metrics {
			if err := metrics.add(m); err != nil {
				return r, bad("metric %s: %v", m.Name, err)
			}
		}
		if a.EndsRun {
			endsRun = a.Name
		}
		names[a.Name], keys[a.StateKey] = true, true
		a.Inputs, a.Outputs, a.Metrics = slices.Clone(a.Inputs), slices.Clone(a.Outputs), slices.Clone(a.Metrics)
		r.actors = append(r.actors, a)
	}
	return r, nil
}

// With returns r with more actors.
func (r Registry) With(more ...Actor) (Registry, error) {
	return New(append(r.All(), more...)...)
}

// All returns the actors in the registry's order.
func (r Registry) All() []Actor { return slices.Clone(r.actors) }

// Names returns the actors' names in the registry's order.
func (r Registry) Names() []string {
	out := make([]string, len(r.actors))
	for i, a := range r.actors {
		out[i] = a.Name
	}
	return out
}

// StartOrder returns the actors in the order they are started: processors
// first, so that consumers are ready when the first message arrives.
func (r Registry) StartOrder() []Actor {
	out := r.All()
	slices.SortStableFunc(out, func(a, b Actor) int {
		switch {
		case a.Kind == b.Kind:
			return 0
		case a.Kind == Processor:
			return -1
		}
		return 1
	})
	return out
}

// Get returns the actor called name.
func (r Registry) Get(name string) (Actor, bool) {
	i := slices.IndexFunc(r.actors, func(a Actor) bool { return a.Name == name })
	if i < 0 {
		return Actor{}, false
	}
	return r.actors[i], true
}

// Inputs returns every consumer of every actor.
func (r Registry) Inputs() []protocol.Input {
	var out []protocol.Input
	for _, a := range r.actors {
		out = append(out, a.Inputs...)
	}
	return out
}

// Graph is the pipeline as the dashboard draws it: the actors, and each
// stream with the actors that publish into it and those that consume it.
type Graph struct {
	Nodes   []Node   `json:"nodes"`
	Streams []Stream `json:"streams"`
}

// Node is one actor in a Graph.
type Node struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
}

// Stream is one stream in a Graph.
type Stream struct {
	Name string   `json:"name"`
	From []string `json:"from"`
	To   []string `json:"to"`
}

// Graph derives the graph: streams in the order first named, every
// processor feeding the DLQ stream.
func (r Registry) Graph() Graph {
	g := Graph{Nodes: []Node{}, Streams: []Stream{}}
	idx := map[string]int{}
	stream := func(name string) *Stream {
		i, ok := idx[name]
		if !ok {
			i = len(g.Streams)
			idx[name] = i
			g.Streams = append(g.Streams, Stream{Name: name, From: []string{}, To: []string{}})
		}
		return &g.Streams[i]
	}
	add := func(list *[]string, name string) {
		if !slices.Contains(*list, name) {
			*list = append(*list, name)
		}
	}
	for _, a := range r.actors {
		g.Nodes = append(g.Nodes, Node{Name: a.Name, Kind: a.Kind})
		for _, o := range a.Outputs {
			add(&stream(o.Stream).From, a.Name)
		}
		if a.Kind == Processor {
			add(&stream(protocol.StreamDLQ).From, a.Name)
		}
		for _, in := range a.Inputs {
			add(&stream(in.Stream).To, a.Name)
		}
	}
	return g
}

// The four actors' names.
const (
	Generator = protocol.Generator
	Heartbeat = protocol.Heartbeat
	Worker    = protocol.Worker
	Logger    = protocol.Logger
)

// Default is the pipeline: heartbeat and generator feed the worker, the
// worker feeds the logger.
func Default() Registry {
	r, err := New(
		Actor{
			Name: Heartbeat, Kind: Producer, EndsRun: true, RunProgress: "beats",
			Outputs:  []Output{{protocol.StreamBeats, protocol.SubjectBeats}},
			Progress: "beats_total",
		},
		Actor{
			Name: Generator, Kind: Producer,
			Outputs:  []Output{{protocol.StreamNumbers, protocol.SubjectNumbers}},
			Progress: "generated",
		},
		Actor{
			Name: Worker, Kind: Processor,
			Inputs:   []protocol.Input{protocol.WorkerBeats, protocol.WorkerNumbers},
			Outputs:  []Output{{protocol.StreamResults, protocol.SubjectResults}},
			Progress: "processed",
		},
		Actor{
			Name: Logger, Kind: Processor,
			Inputs:   []protocol.Input{protocol.LoggerResults},
			Progress: "logged",
			Metrics:  loggedMetrics(),
		},
	)
	if err != nil {
		panic(err) // a bug in the declaration above; TestDefault catches it
	}
	return r
}

func loggedMetrics() []Metric {
	var ms []Metric
	for _, k := range protocol.Kinds {
		ms = append(ms, Metric{
			Name: "robust_logged_total", Help: "Values logged, by FizzBuzz result.",
			Counter: k.String(), Labels: map[string]string{"result": k.String()},
		})
	}
	return ms
}

// validMetric is a Prometheus metric name of the pipeline's own.
var validMetric = regexp.MustCompile(`^robust_[a-z0-9_]+$`)

// reservedMetrics are the supervisor's own series.
var reservedMetrics = map[string]bool{
	"robust_actor_up": true, "robust_actor_restarts_total": true, "robust_actor_processed_total": true,
	"robust_queue_depth": true, "robust_dlq_messages": true, "robust_dead_letters_total": true, "robust_build_info": true,
}

// metricSet checks that the registry's series can all be exposed at once:
// one help text and one set of label names per name, no series twice.
type metricSet map[string]Metric

func (ms metricSet) add(m Metric) error {
	switch {
	case m.Counter == "":
		return errors.New("no counter")
	case !validMetric.MatchString(m.Name) || reservedMetrics[m.Name]:
		return errors.New("want a name robust_… of lower case letters, digits and underscores, not one of the supervisor's")
	}
	labels := slices.Sorted(maps.Keys(m.Labels))
	key := m.Name
	for _, k := range labels {
		key += "\x00" + k + "=" + m.Labels[k]
	}
	if _, ok := ms[key]; ok {
		return errors.New("the same series twice")
	}
	for _, o := range ms {
		if o.Name == m.Name && (o.Help != m.Help || !slices.Equal(slices.Sorted(maps.Keys(o.Labels)), labels)) {
			return errors.New("another series of this name has another help text or other label names")
		}
	}
	ms[key] = m
	return nil
}
