package e2e

import (
	"context"
	"encoding/json"
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
	Depths   map[string]string   `json:"depths"`   // the streams between actors
	DLQ      string              `json:"dlq"`      // the dead-letter box's count, "" without one
	Restarts []string            `json:"restarts"` // "actor|cause", newest first
}

const readPage = `(() => {
	const v = {conn: document.getElementById("conn").dataset.conn, actors: {}, depths: {}, restarts: [],
		dlq: document.querySelector(".dlqbox[data-stream]")?.dataset.count ?? ""};
	for (const g of document.querySelectorAll("[data-actor].node")) {
		v.actors[g.dataset.actor] = {state: g.dataset.state, pid: +g.dataset.pid, restarts: +g.dataset.restarts, rate: g.dataset.rate};
	}
	for (const g of document.querySelectorAll(".edge[data-stream]")) v.depths[g.dataset.stream] = g.dataset.depth;
	for (const li of document.querySelectorAll("#restarts li[data-actor]")) v.restarts.push(li.dataset.actor + "|" + li.dataset.cause);
	return v;
})()`

// graphView is status.graph as GET /status serves it: the actors, and the
// streams between them.
type graphView struct {
	Nodes []struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"nodes"`
	Streams []struct {
		Name string   `json:"name"`
		From []string `json:"from"`
		To   []string `json:"to"`
	} `json:"streams"`
}

// statusGraph reads the graph from a supervisor's GET /status.
func statusGraph(t *testing.T, base string) graphView {
	t.Helper()
	code, body := get(t, base+"/status")
	var st struct {
		Graph *graphView `json:"graph"`
	}
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.Graph == nil || len(st.Graph.Nodes) == 0 {
		t.Fatalf("GET /status: %d, no graph (%v)\n%.300s", code, err, body)
	}
	return *st.Graph
}

// box is an element's bounding box in CSS pixels, from the viewport's top left.
type box struct {
	L float64 `json:"l"`
	R float64 `json:"r"`
	T float64 `json:"t"`
	B float64 `json:"b"`
}

// layoutView is where the dashboard put things.
type layoutView struct {
	Width    float64        `json:"width"`  // the viewport's, less any scroll bar
	Scroll   float64        `json:"scroll"` // the page's: wider than Width scrolls sideways
	Nodes    map[string]box `json:"nodes"`
	Kills    map[string]box `json:"kills"`
	MinFont  float64        `json:"min_font"` // the smallest text drawn in the graph, px
	Smallest string         `json:"smallest"` // that text
}

const readLayout = `(() => {
	const box = e => { const r = e.getBoundingClientRect(); return {l: r.left, r: r.right, t: r.top, b: r.bottom}; };
	const v = {width: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth,
		nodes: {}, kills: {}, min_font: 1e9, smallest: ""};
	for (const g of document.querySelectorAll("[data-actor].node")) v.nodes[g.dataset.actor] = box(g);
	for (const k of document.querySelectorAll("[data-kill]")) v.kills[k.dataset.kill] = box(k);
	for (const e of document.querySelectorAll("#graph *")) {
		const text = [...e.childNodes].filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.data).join("").trim();
		if (!text || !e.getClientRects().length || e.closest(".sr")) continue;
		const px = parseFloat(getComputedStyle(e).fontSize);
		if (px < v.min_font) { v.min_font = px; v.smallest = text; }
	}
	return v;
})()`

// layoutProblems says what is wrong with the dashboard's layout of g: laid
// down the page (narrow) each stream's publishers sit above its consumers,
// else to their left; every card and kill button lies within the viewport,
// nothing scrolls sideways, no text is under 12 px, and the kill buttons are
// at least minKill px tall.
func layoutProblems(v layoutView, g graphView, narrow bool, minKill float64) []string {
	var out []string
	if v.Scroll > v.Width+1 {
		out = append(out, fmt.Sprintf("the page is %.0f px wide in a %.0f px viewport", v.Scroll, v.Width))
	}
	if v.MinFont < 12 {
		out = append(out, fmt.Sprintf("text of %.1f px: %q", v.MinFont, v.Smallest))
	}
	for _, n := range g.Nodes {
		b, ok := v.Nodes[n.Name]
		if !ok {
			out = append(out, n.Name+" is not drawn")
			continue
		}
		if b.L < 0 || b.R > v.Width+0.5 {
			out = append(out, fmt.Sprintf("%s spans x %.0f to %.0f, outside the viewport's %.0f px", n.Name, b.L, b.R, v.Width))
		}
		k, ok := v.Kills[n.Name]
		switch {
		case !ok:
			out = append(out, n.Name+" has no kill button")
		case k.B-k.T < minKill:
			out = append(out, fmt.Sprintf("%s's kill button is %.0f px tall, under %.0f", n.Name, k.B-k.T, minKill))
		case k.L < 0 || k.R > v.Width+0.5:
			out = append(out, fmt.Sprintf("%s's kill button spans x %.0f to %.0f, outside the viewport's %.0f px", n.Name, k.L, k.R, v.Width))
		}
	}
	for _, s := range g.Streams {
		if s.Name == protocol.StreamDLQ {
			continue // it feeds back: drawn apart
		}
		for _, f := range s.From {
			for _, to := range s.To {
				a, b := v.Nodes[f], v.Nodes[to]
				if narrow && a.T >= b.T {
					out = append(out, fmt.Sprintf("%s feeds %s through %s but is not above it (top %.0f, %.0f)", f, to, s.Name, a.T, b.T))
				}
				if !narrow && a.R > b.L {
					out = append(out, fmt.Sprintf("%s feeds %s through %s but is not left of it (right %.0f, left %.0f)", f, to, s.Name, a.R, b.L))
				}
			}
		}
	}
	return out
}

// killRestart says whether restart, "actor|cause" as the page lists it, is
// actor's after a kill (a SIGKILL from outside, or one the supervisor was
// asked for: the cause's wording is the supervisor's).
func killRestart(restart, actor string) bool {
	a, cause, _ := strings.Cut(restart, "|")
	return a == actor && strings.Contains(cause, "kill")
}

// checkLayout polls the dashboard's layout until layoutProblems finds
// nothing, and fails the test with what it found if that takes 5 s.
func checkLayout(t *testing.T, ctx context.Context, g graphView, narrow bool, minKill float64) {
	t.Helper()
	var problems []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[layoutView](readLayout))
		if err != nil {
			problems = []string{err.Error()}
		} else if problems = layoutProblems(v, g, narrow, minKill); len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Errorf("the dashboard's layout (narrow %v):\n\t%s", narrow, strings.Join(problems, "\n\t"))
}

// screenshot saves the page as name in the test's artifacts and, when
// ROBUST_SCREENSHOT is set to a .png path, beside it (name's suffix added).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	paths := []string{filepath.Join(t.ArtifactDir(), name+".png")}
	if path := os.Getenv("ROBUST_SCREENSHOT"); path != "" {
		paths = append(paths, strings.TrimSuffix(path, ".png")+strings.TrimPrefix(name, "dashboard")+".png")
	}
	for _, path := range paths {
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
}

// The dashboard in a real browser: it draws the graph GET /status
// describes, a SIGKILL of the worker shows on it as a restart with a new
// pid, its kill button kills, it is laid down the page on a 400 px phone
// with every card on screen and buttons big enough to tap, and it says so
// when the supervisor has gone.
func TestDashboard(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, "", "--rate", "10", "--beats", "0", "--faults", "none", "--http", addr)
	base := "http://" + addr
	waitFor(t, 20*time.Second, "/healthz", func() bool { code, _ := get(t, base+"/healthz"); return code == 200 })
	g := statusGraph(t, base)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.WindowSize(1100, 860))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // the browser lives as long as bctx
		t.Fatalf("start %s: %v", browser, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	// The link `supervisor dashboard` prints: its token becomes the page's
	// cookie, which lets its kill buttons kill.
	code, link := control(t, addr, p.dataDir, "dashboard")
	if code != 0 || !strings.HasPrefix(link, base+"/?token=") {
		t.Fatalf("supervisor dashboard: exit %d: %s", code, link)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(strings.TrimSpace(link))); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	var v pageView
	defer func() {
		if t.Failed() {
			t.Logf("the dashboard last showed %+v", v)
		}
	}()
	read := func() bool {
		var err error
		v, err = chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage))
		return err == nil
	}

	waitFor(t, 20*time.Second, "the dashboard to show every actor running", func() bool {
		if !read() || v.Conn != "live" || len(v.Actors) != len(g.Nodes) {
			return false
		}
		for _, a := range v.Actors {
			if a.State != "running" || a.PID == 0 {
				return false
			}
		}
		return v.Depths[protocol.StreamNumbers] != "" && v.Actors[protocol.Worker].Rate != ""
	})
	// What it draws is the graph, and only that.
	for _, n := range g.Nodes {
		if _, ok := v.Actors[n.Name]; !ok {
			t.Errorf("the graph has actor %s; the dashboard does not draw it (it draws %v)", n.Name, v.Actors)
		}
	}
	streams := 0
	for _, s := range g.Streams {
		if s.Name == protocol.StreamDLQ {
			if v.DLQ == "" {
				t.Errorf("the graph has stream %s; the dashboard draws no box for it", s.Name)
			}
			continue
		}
		streams++
		if _, ok := v.Depths[s.Name]; !ok {
			t.Errorf("the graph has stream %s; the dashboard does not draw it (it draws %v)", s.Name, v.Depths)
		}
	}
	if len(v.Depths) != streams {
		t.Errorf("the dashboard draws streams %v; the graph has %d besides the DLQ", v.Depths, streams)
	}
	checkLayout(t, ctx, g, false, 24)

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
			len(v.Restarts) > 0 && killRestart(v.Restarts[0], protocol.Worker)
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
			len(v.Restarts) == 2 && killRestart(v.Restarts[0], protocol.Logger)
	})
	msg, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#msg")))
	if err != nil || !strings.Contains(msg, fmt.Sprintf("killed logger (pid %d)", logger.PID)) {
		t.Errorf("after the kill button the page says %q (%v)", msg, err)
	}
	screenshot(t, ctx, "dashboard")

	// A phone: 400 px wide, touch.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(400, 860, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch)); err != nil {
		t.Fatalf("a 400 px viewport: %v", err)
	}
	checkLayout(t, ctx, g, true, 32)
	screenshot(t, ctx, "dashboard-narrow")

	p.finish(syscall.SIGTERM, time.Minute)
	waitFor(t, 5*time.Second, "the dashboard to say it is disconnected", func() bool {
		return read() && v.Conn == "disconnected"
	})
}
