package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// An unpaced run shows its progress: log lines when not on a terminal,
// one line redrawn in place on a terminal (run under script(1)).
func TestProgress(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "0", "--beats", "30000", "--faults", "none", "--progress-every", "200ms")
	p.finish(0, time.Minute)
	if !regexp.MustCompile(`msg=progress .*values_per_s=[0-9]+ logged=[0-9]+ dead_letters=0 restarts=0 beats=[0-9]+ of=30000 eta=`).MatchString(p.stderr.String()) {
		t.Fatalf("no progress log line:\n%s", lastBytes(p.stderr.String(), 2000))
	}

	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("skipped the terminal half: script(1) is not installed")
	}
	sup := fmt.Sprintf("%s --rate 0 --beats 30000 --faults none --http '' --log-level info --progress-every 200ms --data-dir %s --nats-listen 127.0.0.1:%d --bin-dir %s",
		filepath.Join(binDir, "supervisor"), t.TempDir(), freePort(t), binDir)
	out, err := exec.Command("script", "-qec", sup, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("on a terminal: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`\r\x1b\[K +[0-9]+ values/s  logged [0-9]+  dead letters 0  restarts 0  beats [0-9]+/30000  ETA `).Match(out) {
		t.Fatalf("no progress line on the terminal:\n%q", lastBytes(string(out), 1000))
	}
	// A log line (here "last beat sent; draining") clears the progress
	// line first: at c3d2f1f it was glued to it ("… ETA 0stime=…").
	if m := regexp.MustCompile(`ETA [^\r\n]*(time=|level=)`).Find(out); m != nil {
		t.Fatalf("a log line stuck to the progress line: %q", m)
	}
	if !strings.Contains(string(out), "no loss, no duplicates") {
		t.Fatalf("no summary on the terminal:\n%s", lastBytes(string(out), 1000))
	}
}
