// Package proc reads Linux's /proc: which processes run, with their parent
// and name. The chaos driver and the end-to-end tests find actors with it.
package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
