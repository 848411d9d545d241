package registry

import (
	"errors"
	"reflect"
	"testing"

	"github.com/robust/robust/pkg/protocol"
)

func TestDefault(t *testing.T) {
	r := Default()
	if got, want := r.Names(), []string{"heartbeat", "generator", "worker", "logger"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	var order []string
	for _, a := range r.StartOrder() {
		order = append(order, a.Name)
	}
	if want := []string{"worker", "logger", "heartbeat", "generator"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("StartOrder() = %v, want %v (processors first)", order, want)
	}
	w, ok := r.Get("worker")
	if !ok || w.StateKey != "worker" || w.Binary != "worker" || w.DLQ() != "robust.dlq.worker" {
		t.Fatalf("worker = %+v, %v", w, ok)
	}
	if len(r.Inputs()) != 3 {
		t.Fatalf("Inputs() = %v, want the three consumers", r.Inputs())
	}
}

func TestGraph(t *testing.T) {
	r, err := Default().With(Actor{
		Name: "dlqcount", Kind: Processor, Progress: "counted",
		Inputs: []protocol.Input{{Stream: protocol.StreamDLQ, Subject: protocol.SubjectDLQ + ".>", Consumer: "dlqcount"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := r.Graph()
	if len(g.Nodes) != 5 || g.Nodes[4] != (Node{"dlqcount", Processor}) {
		t.Fatalf("nodes = %v", g.Nodes)
	}
	want := []Stream{
		{"BEATS", []string{"heartbeat"}, []string{"worker"}},
		{"NUMBERS", []string{"generator"}, []string{"worker"}},
		{"RESULTS", []string{"worker"}, []string{"logger"}},
		{"DLQ", []string{"worker", "logger", "dlqcount"}, []string{"dlqcount"}},
	}
	if !reflect.DeepEqual(g.Streams, want) {
		t.Fatalf("streams = %+v\nwant %+v", g.Streams, want)
	}
}

func TestNewRefuses(t *testing.T) {
	ok := Actor{Name: "x", Kind: Producer, Progress: "n", Outputs: []Output{{"S", "s"}}}
	in := protocol.Input{Stream: "S", Subject: "s", Consumer: "c"}
	tests := []struct {
		name string
		a    []Actor
	}{
		{"bad name", []Actor{{Name: "Worker!", Kind: Producer, Progress: "n", Outputs: ok.Outputs}}},
		{"twice", []Actor{ok, ok}},
		{"no kind", []Actor{{Name: "y", Progress: "n"}}},
		{"processor without inputs", []Actor{{Name: "y", Kind: Processor, Progress: "n"}}},
		{"producer with inputs", []Actor{{Name: "y", Kind: Producer, Progress: "n", Outputs: ok.Outputs, Inputs: []protocol.Input{in}}}},
		{"consumer taken", []Actor{{Name: "y", Kind: Processor, Progress: "n", Inputs: []protocol.Input{in}}, {Name: "z", Kind: Processor, Progress: "n", Inputs: []protocol.Input{in}}}},
		{"state key taken", []Actor{ok, {Name: "z", StateKey: "x", Kind: Producer, Progress: "n", Outputs: ok.Outputs}}},
		{"supervisor's key", []Actor{{Name: "supervisor", Kind: Producer, Progress: "n", Outputs: ok.Outputs}}},
		{"supervisor's probe key", []Actor{{Name: "y", StateKey: protocol.ProbeKey, Kind: Producer, Progress: "n", Outputs: ok.Outputs}}},
		{"no progress", []Actor{{Name: "y", Kind: Producer, Outputs: ok.Outputs}}},
		{"reserved metric", []Actor{{Name: "y", Kind: Producer, Progress: "n", Outputs: ok.Outputs, Metrics: []Metric{{Name: "robust_actor_up", Counter: "n"}}}}},
		{"metric twice", []Actor{{Name: "y", Kind: Producer, Progress: "n", Outputs: ok.Outputs, Metrics: []Metric{{Name: "robust_y_total", Counter: "n"}, {Name: "robust_y_total", Counter: "m"}}}}},
		{"metric labels differ", []Actor{{Name: "y", Kind: Producer, Progress: "n", Outputs: ok.Outputs, Metrics: []Metric{{Name: "robust_y_total", Counter: "n", Labels: map[string]string{"a": "1"}}, {Name: "robust_y_total", Counter: "m", Labels: map[string]string{"b": "1"}}}}}},
		{"processor ends run", []Actor{{Name: "y", Kind: Processor, Progress: "n", EndsRun: true, Inputs: []protocol.Input{in}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.a...); !errors.Is(err, ErrInvalid) {
				t.Fatalf("New = %v, want ErrInvalid", err)
			}
		})
	}
}
