package e2e

import (
	"bytes"
	"context"
	"testing"

	"github.com/robust/robust/internal/chaos"
)

// The chaos driver at a size that fits CI: a few thousand values, a few
// dozen SIGKILLs of actors, three of the supervisor, random panics at every
// point. Nothing may be lost or applied twice.
func TestChaos(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	v, err := chaos.Run(context.Background(), chaos.Config{
		BinDir:          binDir,
		DataDir:         t.TempDir(),
		Values:          3000,
		Seed:            20261127,
		KillEvery:       150e6, // 150ms
		SupervisorKills: 3,
		PanicP:          0.001,
		Log:             &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var out bytes.Buffer
	v.WriteText(&out)
	t.Log(out.String())
	kills := 0
	for _, n := range v.Kills {
		kills += n
	}
	if !v.OK || v.Lost != 0 || v.Duplicated != 0 {
		t.Fatalf("chaos run failed:\n%s", out.String())
	}
	if kills < 10 || v.SupervisorKills != 3 || v.InjectedPanics == 0 {
		t.Fatalf("too little chaos to prove anything: %d actor kills, %d supervisor kills, %d panics", kills, v.SupervisorKills, v.InjectedPanics)
	}
}
