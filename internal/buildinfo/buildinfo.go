// Package buildinfo says which build of robust is running: the module
// version, the commit it was built from and the Go version, as the Go
// toolchain stamped them into the binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// devel is the version of a build the toolchain could not name: one built
// outside a module or VCS checkout, or a test binary.
const devel = "(devel)"

// Info describes the running binary. Fields the toolchain did not stamp
// (a build with -buildvcs=false, or from a tree without .git) are empty.
type Info struct {
	Version   string `json:"version"`    // the main module's version, e.g. v0.0.0-20261129101500-abc1234def56+dirty; "(devel)" if unknown
	Revision  string `json:"revision"`   // vcs.revision: the full commit hash
	Time      string `json:"time"`       // vcs.time: the commit's time, RFC 3339
	Modified  bool   `json:"modified"`   // vcs.modified: the tree had uncommitted changes
	GoVersion string `json:"go_version"` // e.g. go1.26.8
}

// Read returns the running binary's build information.
func Read() Info {
	return fromBuildInfo(debug.ReadBuildInfo())
}

func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: devel, GoVersion: runtime.Version()}
	if !ok || bi == nil {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is one line for --version, e.g.
//
//	v0.0.0-20261129101500-abc1234def56+dirty (commit abc1234, 2026-11-29T10:15:00Z, modified) go1.26.8
//
// The parenthesis holds what is known of the commit, and is left out when
// nothing is.
func (i Info) String() string {
	var vcs []string
	if i.Revision != "" {
		vcs = append(vcs, "commit "+i.Revision[:min(len(i.Revision), 7)])
	}
	if i.Time != "" {
		vcs = append(vcs, i.Time)
	}
	if i.Modified {
		vcs = append(vcs, "modified")
	}
	version := i.Version
	if version == "" {
		version = devel
	}
	s := version
	if len(vcs) > 0 {
		s += " (" + strings.Join(vcs, ", ") + ")"
	}
	if i.GoVersion != "" {
		s += " " + i.GoVersion
	}
	return s
}
