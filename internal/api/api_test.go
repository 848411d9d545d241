package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/ledger"
	"github.com/robust/robust/internal/natstest"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// pipeline is a Pipeline whose actors are all starting: a supervisor
// before its processes run.
type pipeline struct {
	reg registry.Registry
	led *ledger.Ledger
}

func (p *pipeline) Report(context.Context) (StatusReport, error) {
	r := StatusReport{Graph: p.reg.Graph(), Queues: map[string]uint64{}}
	for _, n := range p.reg.Names() {
		r.Actors = append(r.Actors, ActorReport{Name: n, State: "starting"})
	}
	return r, nil
}

func (p *pipeline) Kill(name string) (int, error) {
	if _, ok := p.reg.Get(name); !ok {
		return 0, ErrUnknownActor
	}
	return 0, errors.New(name + " is not running right now")
}

func (p *pipeline) Replay(context.Context, []uint64, bool) ([]ledger.Replayed, error) {
	return nil, nil
}

func (p *pipeline) Books() *ledger.Ledger { return p.led }

func newTestServer(t *testing.T, led *ledger.Ledger) *Server {
	t.Helper()
	reg := registry.Default()
	return New(&pipeline{reg: reg, led: led}, reg, Access{Token: testToken})
}

// firstSnapshot opens GET /events at url and reads its first snapshot.
func firstSnapshot(t *testing.T, ctx context.Context, url string) Snapshot {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET /events: Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var snap Snapshot
			if err := json.Unmarshal([]byte(data), &snap); err != nil {
				t.Fatalf("snapshot: %v: %s", err, data)
			}
			return snap
		}
	}
	t.Fatalf("GET /events ended without a snapshot: %v", sc.Err())
	return Snapshot{}
}

func TestRecentEventsBounded(t *testing.T) {
	d := newTestServer(t, nil)
	for i := range uint64(recentEvents + 5) {
		d.addEvent(restartEvent(protocol.Worker, "signal: killed", i+1))
	}
	if len(d.events) != recentEvents || d.events[0].N != 6 || d.events[recentEvents-1].N != recentEvents+5 {
		t.Fatalf("kept %d events, #%d … #%d; want the last %d", len(d.events), d.events[0].N, d.events[len(d.events)-1].N, recentEvents)
	}
}

// The page and its stream, served without a pipeline: the actors as the
// supervisor knows them, and the recent restarts.
func TestDashboardRoutes(t *testing.T) {
	s := newTestServer(t, nil)
	s.addEvent(restartEvent(protocol.Logger, "signal: killed", 1))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close() // waits for the stream's handler to end

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `new EventSource("events")`) {
		t.Fatalf("GET /: %d\n%.200s", resp.StatusCode, page)
	}
	if resp, err := http.Get(srv.URL + "/nothing"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nothing: %v %v; want 404, not the page", resp.Status, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	snap := firstSnapshot(t, ctx, srv.URL+"/events")
	if len(snap.Status.Actors) != len(registry.Default().Names()) || snap.Status.Actors[0].State != "starting" {
		t.Fatalf("snapshot actors: %+v", snap.Status.Actors)
	}
	if len(snap.Events) != 1 || snap.Events[0].Actor != protocol.Logger || snap.Events[0].Kind != "restart" || snap.Events[0].N != 1 {
		t.Fatalf("snapshot events: %+v", snap.Events)
	}
}

// The latest dead letters, newest first, read again when the stream changes.
func TestLatestDeadLetters(t *testing.T) {
	ns := natstest.RunJetStream(t)
	nc, js, err := natsx.Connect(ns.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := t.Context()
	if err := natsx.Ensure(ctx, js, natsx.Topology{Queue: 10}, registry.Default().Inputs()); err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, &ledger.Ledger{JS: js})
	publish := func(n int) {
		for i := range n {
			m := nats.NewMsg(protocol.DLQSubject(protocol.Logger))
			m.Header.Set(protocol.HeaderActor, protocol.Logger)
			m.Header.Set(protocol.HeaderReason, fmt.Sprintf("malformed: %d", i))
			m.Data = []byte("not json")
			if _, err := js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	seqs := func() []uint64 {
		t.Helper()
		dls, err := s.latestDeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, d := range dls {
			if d.Actor != protocol.Logger || d.Payload != "not json" || d.Time.IsZero() {
				t.Fatalf("dead letter %+v", d)
			}
			out = append(out, d.Seq)
		}
		return out
	}
	if got := seqs(); len(got) != 0 {
		t.Fatalf("empty DLQ: %v", got)
	}
	publish(3)
	if got := fmt.Sprint(seqs()); got != "[3 2 1]" {
		t.Fatalf("3 dead letters: %s", got)
	}
	publish(12)
	if got := fmt.Sprint(seqs()); got != "[15 14 13 12 11 10 9 8 7 6]" {
		t.Fatalf("15 dead letters: %s", got)
	}
	st, err := js.Stream(ctx, protocol.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{15, 13} {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(seqs()); got != "[14 12 11 10 9 8 7 6 5 4]" {
		t.Fatalf("after deleting 15 and 13: %s", got)
	}
}

// Stopping the HTTP server ends the open event streams instead of waiting
// for them.
func TestStopEndsEventStreams(t *testing.T) {
	s := newTestServer(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}
	addr := []string{"", "http://" + l.Addr().String()}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, addr[1]+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	defer resp.Body.Close()
	started := time.Now()
	stop()
	if took := time.Since(started); took > time.Second {
		t.Errorf("stopping took %s with an event stream open", took)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
}

const testToken = "s3cret-token"

// The guard: requests by a name that is not this machine's are refused
// (DNS rebinding), whatever the method; kill and replay need the token, as
// a bearer or the dashboard's cookie, and never come from another origin.
func TestGuard(t *testing.T) {
	s := New(&pipeline{reg: registry.Default()}, registry.Default(), Access{Token: testToken, Hosts: []string{"robust.internal"}})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, host string, h map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for host, want := range map[string]int{
		"evil.example":        http.StatusMisdirectedRequest,
		"evil.example:9900":   http.StatusMisdirectedRequest,
		"127.0.0.1.nip.io":    http.StatusMisdirectedRequest,
		"localhost:9900":      http.StatusOK,
		"127.0.0.2:1":         http.StatusOK,
		"[::1]:9900":          http.StatusOK,
		"app.localhost":       http.StatusOK,
		"ROBUST.internal:80":  http.StatusOK,
		"robust.internal.com": http.StatusMisdirectedRequest,
	} {
		if got := do(http.MethodGet, "/status", host, nil).StatusCode; got != want {
			t.Errorf("GET /status with Host %s: %d, want %d", host, got, want)
		}
	}
	if got := do(http.MethodPost, "/actors/robot/kill", "evil.example", map[string]string{"Authorization": "Bearer " + testToken}).StatusCode; got != http.StatusMisdirectedRequest {
		t.Errorf("a rebound POST with the token: %d, want 421", got)
	}
	// Past the guard, an unknown actor is a 404.
	for _, c := range []struct {
		what string
		h    map[string]string
		want int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"a wrong token", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"the token", map[string]string{"Authorization": "Bearer " + testToken}, http.StatusNotFound},
		{"the token from another origin", map[string]string{"Authorization": "Bearer " + testToken, "Origin": "http://evil.example"}, http.StatusForbidden},
		{"the token from its own origin", map[string]string{"Authorization": "Bearer " + testToken, "Origin": srv.URL}, http.StatusNotFound},
		{"the cookie", map[string]string{"Cookie": CookieName + "=" + testToken}, http.StatusNotFound},
		{"a wrong cookie", map[string]string{"Cookie": CookieName + "=nope"}, http.StatusUnauthorized},
	} {
		for _, path := range []string{"/actors/robot/kill", "/dlq/99/replay"} {
			if got := do(http.MethodPost, path, "", c.h).StatusCode; got != c.want && !(path != "/actors/robot/kill" && c.want == http.StatusNotFound && got == http.StatusOK) {
				t.Errorf("POST %s with %s: %d, want %d", path, c.what, got, c.want)
			}
		}
	}
	// /dlq lists a dead letter still in an outbox with ID 0: showing it says so.
	if resp := do(http.MethodGet, "/dlq/0", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /dlq/0: %d, want 404", resp.StatusCode)
	}
	// The dashboard's link sets the cookie and drops the token from the address.
	resp := do(http.MethodGet, "/?token="+testToken, "", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("GET /?token=…: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != testToken || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("dashboard cookie %+v: want the token, HttpOnly, SameSite=Strict", cookie)
	}
	if got := do(http.MethodGet, "/?token=nope", "", nil).StatusCode; got != http.StatusForbidden {
		t.Errorf("GET /?token=nope: %d, want 403", got)
	}
}

// countingPipeline counts the snapshots built.
type countingPipeline struct {
	pipeline
	reports atomic.Int64
}

func (p *countingPipeline) Report(ctx context.Context) (StatusReport, error) {
	p.reports.Add(1)
	return p.pipeline.Report(ctx)
}

// /events clients are capped, and share one snapshot per tick: 12 clients
// for two seconds cost the pipeline about as many reports as one would.
func TestEventClients(t *testing.T) {
	p := &countingPipeline{pipeline: pipeline{reg: registry.Default()}}
	s := New(p, p.reg, Access{EventClients: 12})
	srv := httptest.NewServer(s.HTTPServer().Handler)
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var open []*http.Response
	for range 12 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("client within the cap: %v %v", resp.Status, err)
		}
		open = append(open, resp)
	}
	resp, err := http.Get(srv.URL + "/events")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("client 13: %v %v, want 503", resp.Status, err)
	}
	resp.Body.Close()
	p.reports.Store(0)
	time.Sleep(2 * time.Second)
	// Every tick (400 ms) builds one snapshot, which reads one report.
	if n := p.reports.Load(); n > 2*int64(2*time.Second/snapshotEvery)+2 {
		t.Fatalf("%d reports in 2s for 12 clients: snapshots are built per client, not per tick", n)
	}
	for _, r := range open {
		sc := bufio.NewScanner(r.Body)
		got := false
		for !got && sc.Scan() {
			got = strings.HasPrefix(sc.Text(), "data: ")
		}
		if !got {
			t.Fatal("a client got no snapshot")
		}
	}
	cancel()
	for _, r := range open {
		r.Body.Close()
	}
	// The cap counts open streams: once they are gone, a new one is taken.
	waitFor := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/events?x")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if resp != nil {
			resp.Body.Close()
		}
		if time.Now().After(waitFor) {
			t.Fatal("the cap still counts closed streams")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartEvent is the dashboard's event for an actor's n-th restart.
func restartEvent(name, cause string, n uint64) Event {
	return Event{Time: time.Now(), Kind: "restart", Actor: name, Cause: cause, N: n}
}
