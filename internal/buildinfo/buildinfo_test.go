package buildinfo

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/robust/robust", Version: "v0.0.0-20261129101500-abc1234def56+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "abc1234def5678901234567890abcdef12345678"},
			{Key: "vcs.time", Value: "2026-11-29T10:15:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want Info
		str  string
	}{
		{"stamped", stamped, true,
			Info{Version: "v0.0.0-20261129101500-abc1234def56+dirty", Revision: "abc1234def5678901234567890abcdef12345678", Time: "2026-11-29T10:15:00Z", Modified: true, GoVersion: "go1.26.8"},
			"v0.0.0-20261129101500-abc1234def56+dirty (commit abc1234, 2026-11-29T10:15:00Z, modified) go1.26.8"},
		{"clean tree", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "false"}}}, true,
			Info{Version: "v1.2.3", Revision: "0123456789abcdef", Time: "2026-01-02T03:04:05Z", GoVersion: "go1.26.8"},
			"v1.2.3 (commit 0123456, 2026-01-02T03:04:05Z) go1.26.8"},
		{"no vcs stamp", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true,
			Info{Version: devel, GoVersion: "go1.26.8"},
			"(devel) go1.26.8"},
		{"no module version", &debug.BuildInfo{GoVersion: "go1.26.8"}, true,
			Info{Version: devel, GoVersion: "go1.26.8"},
			"(devel) go1.26.8"},
		{"no build info", nil, false,
			Info{Version: devel, GoVersion: runtime.Version()},
			"(devel) " + runtime.Version()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromBuildInfo(tt.bi, tt.ok)
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Fatalf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

// A short revision is printed whole, and a zero Info still says something.
func TestStringEdges(t *testing.T) {
	if s := (Info{Revision: "abc"}).String(); s != "(devel) (commit abc)" {
		t.Errorf("short revision: %q", s)
	}
	if s := (Info{}).String(); s != devel {
		t.Errorf("zero Info: %q", s)
	}
}

// The running binary (this test) always knows its Go version.
func TestRead(t *testing.T) {
	i := Read()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Version == "" {
		t.Error("Version is empty; want devel when unknown")
	}
}

// The JSON names are what GET /status will carry.
func TestJSON(t *testing.T) {
	b, err := json.Marshal(Info{Version: "v1.2.3", Revision: "abc", Time: "2026-01-02T03:04:05Z", Modified: true, GoVersion: "go1.26.8"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"version":"v1.2.3","revision":"abc","time":"2026-01-02T03:04:05Z","modified":true,"go_version":"go1.26.8"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}
