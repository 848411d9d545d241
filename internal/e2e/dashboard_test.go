package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/robust/robust/pkg/protocol"
)

// chromium finds a Chromium or Chrome to drive, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no Chromium to drive the dashboard: apt-get install chromium (.ci/run installs it)")
	return ""
}

// nodeView is an actor as the dashboard draws it.
type nodeView struct {
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Rate     string `json:"rate"`
}

// pageView is what the test reads off the dashboard.
type pageView struct {
	Conn     string              `json:"conn"`
	Actors   map[string]nodeView `json:"actors"`
	Depths   map[string]string   `json:"depths"`
	Restarts []string            `json:"restarts"` // "actor|cause", newest first
}

const readPage = `(() => {
	const v = {conn: document.getElementById("conn").dataset.conn, actors: {}, depths: {}, restarts: []};
	for (const g of document.querySelectorAll("[data-actor].node")) {
		v.actors[g.dataset.actor] = {state: g.dataset.state, pid: +g.dataset.pid, restarts: +g.dataset.restarts, rate: g.dataset.rate};
	}
	for (const g of document.querySelectorAll(".edge[data-stream]")) v.depths[g.dataset.stream] = g.dataset.depth;
	for (const li of document.querySelectorAll("#restarts li[data-actor]")) v.restarts.push(li.dataset.actor + "|" + li.dataset.cause);
	return v;
})()`

// The dashboard in a real browser: it draws the running pipeline, a SIGKILL
// of the worker shows on it as a restart with a new pid, its kill button
// kills, and it says so when the supervisor has gone.
func TestDashboard(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, "", "--rate", "10", "--beats", "0", "--faults", "none", "--http", addr)
	base := "http://" + addr
	waitFor(t, 20*time.Second, "/healthz", func() bool { code, _ := get(t, base+"/healthz"); return code == 200 })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.WindowSize(1100, 860))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // the browser lives as long as bctx
		t.Fatalf("start %s: %v", browser, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	var v pageView
	read := func() bool {
		var err error
		v, err = chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage))
		return err == nil
	}

	waitFor(t, 20*time.Second, "the dashboard to show every actor running", func() bool {
		if !read() || v.Conn != "live" || len(v.Actors) != len(protocol.Actors) {
			return false
		}
		for _, a := range v.Actors {
			if a.State != "running" || a.PID == 0 {
				return false
			}
		}
		return v.Depths[protocol.StreamNumbers] != "" && v.Actors[protocol.Worker].Rate != ""
	})
	worker := v.Actors[protocol.Worker]
	if real := p.actorPID(protocol.Worker); worker.PID != real {
		t.Fatalf("the dashboard shows the worker as pid %d; its process is %d", worker.PID, real)
	}

	killed := time.Now()
	kill(t, worker.PID, syscall.SIGKILL)
	waitFor(t, 3*time.Second, "the dashboard to count the worker's restart", func() bool {
		return read() && v.Actors[protocol.Worker].Restarts == worker.Restarts+1
	})
	t.Logf("the restart showed %s after the SIGKILL", time.Since(killed).Round(time.Millisecond))
	waitFor(t, 15*time.Second, "the dashboard to show the worker back with a new pid, its restart listed", func() bool {
		if !read() {
			return false
		}
		w := v.Actors[protocol.Worker]
		return w.State == "running" && w.PID != 0 && w.PID != worker.PID &&
			len(v.Restarts) > 0 && v.Restarts[0] == "worker|signal: killed"
	})
	if w := v.Actors[protocol.Worker]; w.PID != p.actorPID(protocol.Worker) {
		t.Fatalf("the dashboard shows the new worker as pid %d; its process is %d", w.PID, p.actorPID(protocol.Worker))
	}

	// The page's own kill button, on the logger.
	logger := v.Actors[protocol.Logger]
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-kill="logger"]`))); err != nil {
		t.Fatalf("click kill on the logger: %v", err)
	}
	waitFor(t, 15*time.Second, "the logger back after its kill button", func() bool {
		if !read() {
			return false
		}
		l := v.Actors[protocol.Logger]
		return l.State == "running" && l.Restarts == logger.Restarts+1 && l.PID != logger.PID && l.PID != 0 &&
			len(v.Restarts) == 2 && v.Restarts[0] == "logger|signal: killed"
	})
	msg, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#msg")))
	if err != nil || !strings.Contains(msg, fmt.Sprintf("killed logger (pid %d)", logger.PID)) {
		t.Errorf("after the kill button the page says %q (%v)", msg, err)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (kept with go test -artifacts)", shot)
	if path := os.Getenv("ROBUST_SCREENSHOT"); path != "" {
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}

	p.finish(syscall.SIGTERM, time.Minute)
	waitFor(t, 5*time.Second, "the dashboard to say it is disconnected", func() bool {
		return read() && v.Conn == "disconnected"
	})
}
