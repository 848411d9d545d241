package buildinfo_test

import (
	"fmt"

	"github.com/robust/robust/internal/buildinfo"
)

func ExampleInfo_String() {
	i := buildinfo.Info{
		Version:   "v0.0.0-20261129101500-abc1234def56+dirty",
		Revision:  "abc1234def5678901234567890abcdef12345678",
		Time:      "2026-11-29T10:15:00Z",
		Modified:  true,
		GoVersion: "go1.26.8",
	}
	fmt.Println("supervisor", i)
	// Output: supervisor v0.0.0-20261129101500-abc1234def56+dirty (commit abc1234, 2026-11-29T10:15:00Z, modified) go1.26.8
}
