package lifecycle

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Reap is the whole of a reaper process (`supervisor reap`). It reads the
// supervisor's pipe:
// "+PGID" when an actor's process group starts, "-PGID" when it has gone.
// When the pipe ends, because the supervisor exited or died (even by
// SIGKILL: the kernel closes its end), it kills every group still listed,
// so that nothing an actor started outlives the supervisor, and removes
// dir (the supervisor's temp dir). Signals meant for the supervisor's
// terminal do not stop it.
func Reap(r io.Reader, ready io.Writer, dir string) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	// Its own name, so that `pgrep -x supervisor` finds only the supervisor.
	_ = os.WriteFile("/proc/self/comm", []byte(ReaperName), 0)
	_, _ = io.WriteString(ready, "ready\n")
	groups := map[int]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	for pgid := range groups {
		killGroup(pgid)
	}
	if dir != "" { // the supervisor's temp dir: sockets and crash files
		_ = os.RemoveAll(dir)
	}
	return 0
}

// ReaperName is the reaper's process name (ps, pgrep).
const ReaperName = "robust-reaper"

// Reaper is the supervisor's end of its reaper process.
type Reaper struct {
	mu     sync.Mutex
	w      io.WriteCloser
	cmd    *exec.Cmd
	closed bool
	done   chan error // the reaper's exit
}

// StartReaper starts `exe reap DIR` (exe: a supervisor binary) as the
// reaper, in a process group of its own, outside the terminal's signals.
// dir is removed by it when the supervisor has gone. died is called if the
// reaper ends before Close.
func StartReaper(exe, dir string, died func(error)) (*Reaper, error) {
	cmd := exec.Command(exe, "reap", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the reaper %s: %w", exe, err)
	}
	// Ready before the first actor starts: from then on it acts at once.
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("not ready within 10s")
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("the reaper %s: %w (is it a supervisor binary of this version?)", exe, err)
	}
	rp := &Reaper{w: w, cmd: cmd, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		rp.mu.Lock()
		closed := rp.closed
		rp.mu.Unlock()
		if !closed {
			if err == nil {
				err = errors.New("exited")
			}
			died(err)
		}
		rp.done <- err
	}()
	return rp, nil
}

func (r *Reaper) say(op byte, pgid int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		_, _ = fmt.Fprintf(r.w, "%c%d\n", op, pgid)
	}
}

// Add lists a process group to kill should the supervisor die.
func (r *Reaper) Add(pgid int) { r.say('+', pgid) }

// Remove takes a group that has gone off the list.
func (r *Reaper) Remove(pgid int) { r.say('-', pgid) }

// Close ends the reaper: it kills what is still listed, and exits.
func (r *Reaper) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	w := r.w
	r.w, r.closed = nil, true
	r.mu.Unlock()
	if w == nil {
		return nil
	}
	_ = w.Close()
	return <-r.done
}
