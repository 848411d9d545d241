package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/robust/robust/pkg/protocol"
)

// StatusReport is what GET /status and `supervisor status` show.
type StatusReport struct {
	Run         uint64            `json:"run"`
	Actors      []ActorReport     `json:"actors"`
	Queues      map[string]uint64 `json:"queues"` // stream to messages waiting
	DeadLetters uint64            `json:"dead_letters"`
}

// ActorReport is one actor in a StatusReport.
type ActorReport struct {
	Name          string            `json:"name"`
	PID           int               `json:"pid"`
	State         string            `json:"state"` // starting, running, backing off, given up, stopped
	UptimeSeconds float64           `json:"uptime_seconds"`
	Restarts      uint64            `json:"restarts"`         // this supervisor's
	RestartsTotal uint64            `json:"restarts_total"`   // all runs, persisted
	Causes        map[string]uint64 `json:"causes,omitempty"` // restarts, all runs, by kind of exit
	LastExit      string            `json:"last_exit,omitempty"`
	Counters      map[string]uint64 `json:"counters,omitempty"`
}

// ErrUnknownActor is returned by Kill for a name that is no actor.
var ErrUnknownActor = errors.New("unknown actor")

// Report snapshots the pipeline.
func (s *Supervisor) Report(ctx context.Context) (StatusReport, error) {
	s.mu.Lock()
	r := StatusReport{Run: s.run, Queues: map[string]uint64{}}
	for _, a := range protocol.Actors {
		st := s.actors[a]
		ar := ActorReport{Name: a, PID: st.PID, State: st.State, Restarts: st.Restarts,
			RestartsTotal: s.sup.Restarts[a], LastExit: st.LastCause, Counters: st.Status.Counters,
			Causes: maps.Clone(s.sup.Causes[a])}
		if st.State == "running" {
			ar.UptimeSeconds = time.Since(st.Since).Seconds()
		}
		r.Actors = append(r.Actors, ar)
	}
	js := s.js
	s.mu.Unlock()
	if js == nil {
		return r, nil
	}
	for _, name := range []string{protocol.StreamNumbers, protocol.StreamBeats, protocol.StreamResults, protocol.StreamDLQ} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return r, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return r, err
		}
		if name == protocol.StreamDLQ {
			r.DeadLetters = info.State.Msgs
		} else {
			r.Queues[name] = info.State.Msgs
		}
	}
	return r, nil
}

// Kill sends SIGKILL to an actor's process, to watch it come back.
func (s *Supervisor) Kill(name string) (pid int, err error) {
	s.mu.Lock()
	c := s.children[name]
	_, known := s.actors[name]
	s.mu.Unlock()
	if !known {
		return 0, fmt.Errorf("%w %q: want one of %s", ErrUnknownActor, name, strings.Join(protocol.Actors, ", "))
	}
	if c == nil || c.pid() == 0 {
		return 0, fmt.Errorf("%s is not running right now", name)
	}
	return c.pid(), syscall.Kill(c.pid(), syscall.SIGKILL)
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
func (s *Supervisor) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s.handleDashboard(mux)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rep, err := s.Report(ctx)
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
		dls, err := s.deadLetters(ctx)
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
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		st, err := s.js.Stream(ctx, protocol.StreamDLQ)
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
		ctx, cancel := context.WithTimeout(r.Context(), replayWait+10*time.Second)
		defer cancel()
		rs, err := s.Replay(ctx, ids, all)
		switch {
		case errors.Is(err, ErrNoDeadLetter):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case errors.Is(err, ErrNotReplayable):
			http.Error(w, err.Error(), http.StatusConflict)
			return
		case err != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			writeReplayed(w, rs)
			fmt.Fprintln(w, err)
			return
		}
		writeReplayed(w, rs)
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
		pid, err := s.Kill(r.PathValue("name"))
		switch {
		case errors.Is(err, ErrUnknownActor):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			fmt.Fprintf(w, "killed %s (pid %d)\n", r.PathValue("name"), pid)
		}
	})
	return sameOrigin(mux)
}

// sameOrigin refuses a state-changing request sent by a web page of another
// origin: the listener is on localhost, and any page open in a browser
// there could otherwise kill actors or replay dead letters with a plain
// form post. The control commands send no Origin; the dashboard sends its
// own.
func sameOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" {
				if u, err := url.Parse(o); err != nil || u.Host != r.Host {
					http.Error(w, "cross-origin request refused", http.StatusForbidden)
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// serveHTTP listens on addr until ctx is done. It returns once listening.
func (s *Supervisor) serveHTTP(ctx context.Context, addr string) (stop func(), err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP listener %s: %w (pass --http with a free address, or --http '' to turn it off)", addr, err)
	}
	// Shutdown waits for every request to end, and an event stream does not
	// end by itself: shutting down cancels the requests' context.
	base, cancelBase := context.WithCancel(context.Background())
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return base }}
	srv.RegisterOnShutdown(cancelBase)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l) // returns http.ErrServerClosed on Shutdown
	}()
	s.log.Info("HTTP status and metrics", "addr", "http://"+l.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}

// collector turns a status report into Prometheus metrics at each scrape.
type collector struct{ s *Supervisor }

var (
	descUp        = prometheus.NewDesc("robust_actor_up", "1 while the actor's process runs.", []string{"actor"}, nil)
	descRestarts  = prometheus.NewDesc("robust_actor_restarts_total", "Restarts of the actor, all runs, by kind of exit: panic, killed, hang, error.", []string{"actor", "cause"}, nil)
	descProcessed = prometheus.NewDesc("robust_actor_processed_total", "Messages the actor has handled: numbers generated, beats sent, values processed, results logged.", []string{"actor"}, nil)
	descLogged    = prometheus.NewDesc("robust_logged_total", "Values logged, by FizzBuzz result.", []string{"result"}, nil)
	descQueue     = prometheus.NewDesc("robust_queue_depth", "Messages waiting in a stream.", []string{"stream"}, nil)
	descDead      = prometheus.NewDesc("robust_dead_letters_total", "Messages in the dead-letter stream.", nil, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descRestarts, descProcessed, descLogged, descQueue, descDead} {
		ch <- d
	}
}

// progressCounter names the counter that grows while each actor works.
var progressCounter = map[string]string{
	protocol.Generator: "generated", protocol.Heartbeat: "beats_total",
	protocol.Worker: "processed", protocol.Logger: "logged",
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rep, err := c.s.Report(ctx)
	for _, a := range rep.Actors {
		up := 0.0
		if a.State == "running" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, a.Name)
		for cause, n := range a.Causes {
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n), a.Name, cause)
		}
		ch <- prometheus.MustNewConstMetric(descProcessed, prometheus.CounterValue, float64(a.Counters[progressCounter[a.Name]]), a.Name)
		if a.Name == protocol.Logger {
			for _, k := range protocol.Kinds {
				ch <- prometheus.MustNewConstMetric(descLogged, prometheus.CounterValue, float64(a.Counters[k.String()]), k.String())
			}
		}
	}
	if err != nil {
		return // the streams could not be read: leave their metrics out
	}
	for stream, n := range rep.Queues {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(n), stream)
	}
	ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(rep.DeadLetters))
}

// causeKind sorts an exit cause into a few label values.
func causeKind(cause string) string {
	switch {
	case cause == "":
		return "none"
	case strings.HasPrefix(cause, "panic"):
		return "panic"
	case strings.HasPrefix(cause, "hung"):
		return "hang"
	case strings.Contains(cause, "killed"):
		return "killed"
	default:
		return "error"
	}
}
