// Package api serves the supervisor's HTTP API: status, metrics, dead
// letters and their replay, kills, and the live dashboard. It reads the
// pipeline through the Pipeline interface and the events it is handed.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/robust/robust/internal/buildinfo"
	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/ledger"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// StatusReport is what GET /status and `supervisor status` show.
type StatusReport struct {
	Run         uint64            `json:"run"`
	Build       buildinfo.Info    `json:"build"`
	Actors      []ActorReport     `json:"actors"`
	Graph       registry.Graph    `json:"graph"`
	Queues      map[string]uint64 `json:"queues"` // stream to messages waiting
	DeadLetters uint64            `json:"dead_letters"`
	// Tampered: what was done to the pipeline's data from outside it, as
	// the supervisor saw it (all runs of the data dir, the last 100).
	Tampered []events.Tampered `json:"tampered,omitempty"`
	// StorageFull: the NATS store takes no writes, since when and why;
	// restarts wait. Absent while it takes writes.
	StorageFull *events.StorageFull `json:"storage_full,omitempty"`
}

// ActorReport is one actor in a StatusReport.
type ActorReport struct {
	Name            string            `json:"name"`
	Kind            registry.Kind     `json:"kind"`
	PID             int               `json:"pid"`
	SparePID        int               `json:"spare_pid,omitempty"` // its warm spare (--standby), waiting to take over
	State           string            `json:"state"`               // starting, running, backing off, given up, stopped
	UptimeSeconds   float64           `json:"uptime_seconds"`
	Restarts        uint64            `json:"restarts"`         // this supervisor's
	RestartsTotal   uint64            `json:"restarts_total"`   // all runs, persisted
	Causes          map[string]uint64 `json:"causes,omitempty"` // restarts, all runs, by kind of exit
	LastExit        string            `json:"last_exit,omitempty"`
	Counters        map[string]uint64 `json:"counters,omitempty"`
	ProgressCounter string            `json:"progress_counter"` // the counter that grows while it works
	Progress        uint64            `json:"progress"`         // its value
}

// ErrUnknownActor is returned by Kill for a name that is no actor.
var ErrUnknownActor = errors.New("unknown actor")

// Pipeline is what the API serves; the supervisor implements it.
type Pipeline interface {
	// Report snapshots the pipeline.
	Report(ctx context.Context) (StatusReport, error)
	// Kill sends SIGKILL to an actor's process (ErrUnknownActor for a name
	// that is none).
	Kill(name string) (pid int, err error)
	// Replay puts dead letters back on their subjects (ledger.Ledger.Replay).
	Replay(ctx context.Context, ids []uint64, all bool) ([]ledger.Replayed, error)
	// Books is the pipeline's ledger, or nil while it is not connected.
	Books() *ledger.Ledger
}

// Server is the HTTP API of one pipeline.
type Server struct {
	p   Pipeline
	reg registry.Registry

	mu     sync.Mutex
	events []Event // the last recentEvents

	dlqMu  sync.Mutex // serialises reads of the DLQ and guards the cache
	dlqKey dlqKey     // the DLQ stream's state when dlq was read
	dlq    []RecentLetter

	deadLettered atomic.Uint64 // dead-lettering events while it ran
	tampered     atomic.Uint64 // tampering events while it ran

	access Access
	token  atomic.Pointer[string]
	hub    hub // GET /events: one snapshot per tick for all clients
}

// New returns the API of p, whose actors reg declares, open as access
// says. Hand it the pipeline's events with On.
func New(p Pipeline, reg registry.Registry, access Access) *Server {
	s := &Server{p: p, reg: reg, access: access.withDefaults()}
	s.SetToken(access.Token)
	s.hub.build = s.Snapshot
	return s
}

// Handler serves the supervisor's HTTP API:
//
//	GET  /healthz            200 "ok" while the supervisor runs
//	GET  /status             StatusReport as JSON
//	GET  /metrics            Prometheus metrics
//	POST /actors/{name}/kill SIGKILL the actor
//	GET  /dlq                the dead letters, as JSON
//	GET  /dlq/{seq}          one dead letter with all its headers
//	POST /dlq/{seq}/replay   put the dead letter back on its subject
//	POST /dlq/replay         replay every dead letter that can be
//	GET  /                   the live dashboard
//	GET  /events             Server-Sent Events: a Snapshot as JSON every 400 ms
//
// Requests are guarded (see Access): by Host, and POSTs by origin and token.
func (s *Server) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s.handleDashboard(mux)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rep, err := s.p.Report(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /dlq", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		led := s.books(w)
		if led == nil {
			return
		}
		dls, err := led.DeadLetters(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(dls)
	})
	mux.HandleFunc("GET /dlq/{seq}", func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil {
			http.Error(w, "dead letter ID: want the DLQ stream sequence, a number", http.StatusBadRequest)
			return
		}
		if seq == 0 {
			// /dlq lists with ID 0 a dead letter still in an actor's outbox.
			http.Error(w, "dead letter 0: not in the DLQ yet (an actor has it in its outbox, to publish): list again in a moment", http.StatusNotFound)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		led := s.books(w)
		if led == nil {
			return
		}
		st, err := led.JS.Stream(ctx, protocol.StreamDLQ)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			http.Error(w, fmt.Sprintf("no dead letter %d", seq), http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "dead letter %d on %s at %s\n", m.Sequence, m.Subject, m.Time.UTC().Format(time.RFC3339))
		for _, k := range slices.Sorted(maps.Keys(m.Header)) {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(m.Header[k], ", "))
		}
		fmt.Fprintf(w, "\n%s\n", m.Data)
	})
	replay := func(w http.ResponseWriter, r *http.Request, ids []uint64, all bool) {
		ctx, cancel := context.WithTimeout(r.Context(), ledger.ReplayWait+10*time.Second)
		defer cancel()
		rs, err := s.p.Replay(ctx, ids, all)
		switch {
		case errors.Is(err, ledger.ErrNoDeadLetter):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case errors.Is(err, ledger.ErrNotReplayable):
			http.Error(w, err.Error(), http.StatusConflict)
			return
		case err != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			ledger.WriteReplayed(w, rs)
			fmt.Fprintln(w, err)
			return
		}
		ledger.WriteReplayed(w, rs)
	}
	mux.HandleFunc("POST /dlq/{seq}/replay", func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil {
			http.Error(w, "dead letter ID: want the DLQ stream sequence, a number", http.StatusBadRequest)
			return
		}
		replay(w, r, []uint64{seq}, false)
	})
	mux.HandleFunc("POST /dlq/replay", func(w http.ResponseWriter, r *http.Request) { replay(w, r, nil, true) })
	mux.HandleFunc("POST /actors/{name}/kill", func(w http.ResponseWriter, r *http.Request) {
		pid, err := s.p.Kill(r.PathValue("name"))
		switch {
		case errors.Is(err, ErrUnknownActor):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			fmt.Fprintf(w, "killed %s (pid %d)\n", r.PathValue("name"), pid)
		}
	})
	return s.guard(mux)
}

// books is the pipeline's ledger; nil, answered 503, before it connected.
func (s *Server) books(w http.ResponseWriter) *ledger.Ledger {
	led := s.p.Books()
	if led == nil {
		http.Error(w, "not connected to NATS yet", http.StatusServiceUnavailable)
	}
	return led
}

// HTTPServer serves Handler. Shutdown cancels every request's context:
// an event stream does not end by itself.
func (s *Server) HTTPServer() *http.Server {
	base, cancelBase := context.WithCancel(context.Background())
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return base }}
	srv.RegisterOnShutdown(cancelBase)
	return srv
}

// collector turns a status report into Prometheus metrics at each scrape.
type collector struct{ s *Server }

var (
	descUp        = prometheus.NewDesc("robust_actor_up", "1 while the actor's process runs.", []string{"actor"}, nil)
	descRestarts  = prometheus.NewDesc("robust_actor_restarts_total", "Restarts of the actor, all runs, by kind of exit: killed, hang, panic, error, exited, start-failed.", []string{"actor", "cause"}, nil)
	descProcessed = prometheus.NewDesc("robust_actor_processed_total", "The actor's progress counter: numbers generated, beats sent, values processed, results logged.", []string{"actor"}, nil)
	descQueue     = prometheus.NewDesc("robust_queue_depth", "Messages waiting in a stream.", []string{"stream"}, nil)
	descDLQ       = prometheus.NewDesc("robust_dlq_messages", "Messages in the dead-letter stream now.", nil, nil)
	descDead      = prometheus.NewDesc("robust_dead_letters_total", "Messages dead-lettered while this supervisor ran.", nil, nil)
	descTampered  = prometheus.NewDesc("robust_tampered_total", "Changes to the pipeline's data from outside it (purges, deletions, unreadable states) seen while this supervisor ran.", nil, nil)
	descFull      = prometheus.NewDesc("robust_storage_full", "1 while the NATS store takes no writes (its disk is full): restarts wait.", nil, nil)
	descBuild     = prometheus.NewDesc("robust_build_info", "The supervisor's build: always 1.", []string{"version", "revision", "goversion"}, nil)
)

// registryDescs are the metrics the registry's actors add, by name.
func (c collector) registryDescs() map[string]*prometheus.Desc {
	out := map[string]*prometheus.Desc{}
	for _, a := range c.s.reg.All() {
		for _, m := range a.Metrics {
			if _, ok := out[m.Name]; !ok {
				out[m.Name] = prometheus.NewDesc(m.Name, m.Help, slices.Sorted(maps.Keys(m.Labels)), nil)
			}
		}
	}
	return out
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descRestarts, descProcessed, descQueue, descDLQ, descDead, descTampered, descFull, descBuild} {
		ch <- d
	}
	for _, d := range c.registryDescs() {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rep, err := c.s.p.Report(ctx)
	b := rep.Build
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, b.Version, b.Revision, b.GoVersion)
	ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(c.s.deadLettered.Load()))
	ch <- prometheus.MustNewConstMetric(descTampered, prometheus.CounterValue, float64(c.s.tampered.Load()))
	full := 0.0
	if rep.StorageFull != nil {
		full = 1
	}
	ch <- prometheus.MustNewConstMetric(descFull, prometheus.GaugeValue, full)
	descs := c.registryDescs()
	for _, a := range rep.Actors {
		up := 0.0
		if a.State == "running" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, a.Name)
		// Every cause from the start, at 0: increase() misses the first
		// restart of a series that appears with it.
		for _, cause := range events.Causes {
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(a.Causes[string(cause)]), a.Name, string(cause))
		}
		if a.Counters == nil {
			// Not reported since this supervisor started: a 0 here would
			// read as a counter reset (and a spike in rate()).
			continue
		}
		ch <- prometheus.MustNewConstMetric(descProcessed, prometheus.CounterValue, float64(a.Progress), a.Name)
		ra, _ := c.s.reg.Get(a.Name)
		for _, m := range ra.Metrics {
			var values []string
			for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
				values = append(values, m.Labels[k])
			}
			ch <- prometheus.MustNewConstMetric(descs[m.Name], prometheus.CounterValue, float64(a.Counters[m.Counter]), values...)
		}
	}
	if err != nil {
		return // the streams could not be read: leave their metrics out
	}
	for stream, n := range rep.Queues {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(n), stream)
	}
	ch <- prometheus.MustNewConstMetric(descDLQ, prometheus.GaugeValue, float64(rep.DeadLetters))
}

// WriteText prints the report as a table.
func (r StatusReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "run %d\n%-10s %7s %7s  %-12s %9s %9s  %s\n", r.Run, "actor", "pid", "spare", "state", "uptime", "restarts", "last exit")
	for _, a := range r.Actors {
		up := "-"
		if a.State == "running" {
			up = (time.Duration(a.UptimeSeconds) * time.Second).String()
		}
		spare := "-"
		if a.SparePID > 0 {
			spare = strconv.Itoa(a.SparePID)
		}
		fmt.Fprintf(w, "%-10s %7d %7s  %-12s %9s %9d  %s\n", a.Name, a.PID, spare, a.State, up, a.Restarts, a.LastExit)
	}
	var qs []string
	for _, st := range r.Graph.Streams {
		if n, ok := r.Queues[st.Name]; ok {
			qs = append(qs, fmt.Sprintf("%s %d", strings.ToLower(st.Name), n))
		}
	}
	fmt.Fprintf(w, "queues: %s; dead letters %d\n", strings.Join(qs, ", "), r.DeadLetters)
}
