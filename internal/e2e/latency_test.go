package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/robust/robust/internal/bench"
)

// Paced, every result carries the send time of the beat that moved its
// value (protocol.HeaderBeatTime, carried by the worker), so the time
// from a beat to the logger's commit of its value can be measured:
// bench.Latency fails on a result without one.
func TestBeatTimeReachesTheLogger(t *testing.T) {
	const values = 400
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lat, err := bench.Latency(ctx, binDir, t.TempDir(), values, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Values whose beat came before the logger's first commit are left
	// out (they waited for the start); the rest are measured.
	if len(lat) < values/2 || len(lat) > values {
		t.Fatalf("%d latencies of %d values: want most of them", len(lat), values)
	}
	for i, d := range lat {
		if d <= 0 || d > 10*time.Second {
			t.Fatalf("latency %d is %s: a beat time that is not the beat's", i, d)
		}
	}
	t.Logf("%d values: p50 %s, p99 %s", len(lat), bench.Percentile(lat, 50), bench.Percentile(lat, 99))
}
