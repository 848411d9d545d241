// Package proc reads Linux's /proc: which processes run, with their parent
// and name, their memory and CPU time. The chaos driver and the end-to-end tests find actors with it.
package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is one running process.
type Process struct {
	PID, PPID int
	Name      string // the kernel's comm: the executable's name, at most 15 bytes
	Exe       string // the executable's path, where readable
}

// List returns the running processes; zombies are left out.
func List() []Process {
	ents, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		out = append(out, Process{PID: pid, PPID: ppid, Name: s[open+1 : closing], Exe: exe})
	}
	return out
}

// Child returns the pid of parent's child called name, or 0.
func Child(parent int, name string) int {
	for _, p := range List() {
		if p.PPID == parent && p.Name == name {
			return p.PID
		}
	}
	return 0
}

// PeakRSS is a process's peak resident set size in bytes (VmHWM), or 0.
func PeakRSS(pid int) uint64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// clockTick is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// Linux a Go program runs on (sysconf(_SC_CLK_TCK) needs cgo to ask).
const clockTick = 10 * time.Millisecond

// CPU is the user plus system time a process has used so far (its own
// threads, not its children), or 0 if it is gone.
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	closing := strings.LastIndexByte(s, ')')
	if closing < 0 {
		return 0
	}
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return time.Duration(utime+stime) * clockTick
}

// Rusage is the CPU time (user plus system) of this process (who is
// syscall.RUSAGE_SELF) or of its waited-for descendants
// (syscall.RUSAGE_CHILDREN: a child's time counts once it has been reaped,
// with the time of the children it reaped itself).
func Rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
