package api

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/robust/robust/internal/events"
	"github.com/robust/robust/internal/registry"
)

// The metrics pass Prometheus's own lint, and every restart series exists
// at 0 from the start, so that increase() sees the first restart.
func TestMetricsLint(t *testing.T) {
	s := newTestServer(t, nil)
	problems, err := testutil.CollectAndLint(collector{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	_, body := getBody(t, srv.URL+"/metrics")
	for _, a := range registry.Default().Names() {
		for _, c := range events.Causes {
			want := `robust_actor_restarts_total{actor="` + a + `",cause="` + string(c) + `"} 0`
			if !strings.Contains(body, want+"\n") {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	}
	for _, want := range []string{"robust_dead_letters_total 0\n", "robust_tampered_total 0\n", "robust_build_info{", "go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	s.On(events.DeadLettered{Base: events.Base{Actor: "worker"}})
	if _, body := getBody(t, srv.URL+"/metrics"); !strings.Contains(body, "robust_dead_letters_total 1\n") {
		t.Errorf("a dead-lettering event is not counted")
	}
	s.On(events.Tampered{Op: events.OpPurged, What: "NUMBERS"})
	if _, body := getBody(t, srv.URL+"/metrics"); !strings.Contains(body, "robust_tampered_total 1\n") {
		t.Errorf("a tampering event is not counted")
	}
	// promtool, where installed (.ci/run installs it), checks the exposition too.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: its check skipped (apt-get install prometheus)")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
