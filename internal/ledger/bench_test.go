package ledger

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// BenchmarkDeadLetters200k lists and summarises a DLQ of 200,000 dead
// letters of the worker's (every other value of 400,000 generated), the
// issue's bound: under 5 s for both. Run it with
//
//	go test -run '^$' -bench DeadLetters200k -benchtime 3x ./internal/ledger
func BenchmarkDeadLetters200k(b *testing.B) {
	const n = 200_000
	bk := newBooks(b, natsx.DLQLimits{})
	var dead []uint64
	for i := range uint64(n) {
		dead = append(dead, 2*i+1)
	}
	publishDead(b, bk.js, dead)
	bk.states(2*n, dead, tally(dead...))
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		dls, err := bk.led.DeadLetters(b.Context())
		if err != nil || len(dls) != n {
			b.Fatalf("listed %d dead letters, %v; want %d", len(dls), err, n)
		}
		listed := time.Since(start)
		sum := bk.summary()
		if !sum.OK || sum.Dead.Total() != n || len(sum.DeadLettered) != n {
			b.Fatalf("summary: ok %v, dead %d, listed %d; problems %v", sum.OK, sum.Dead.Total(), len(sum.DeadLettered), sum.Problems)
		}
		b.ReportMetric(listed.Seconds(), "s-list")
		b.ReportMetric((time.Since(start) - listed).Seconds(), "s-summary")
	}
}

// publishDead publishes the worker's dead letters of the values, in
// windows of async publishes.
func publishDead(tb testing.TB, js jetstream.JetStream, values []uint64) {
	tb.Helper()
	for i, v := range values {
		m := &nats.Msg{Subject: protocol.DLQSubject(protocol.Worker), Data: []byte(strconv.FormatUint(v, 10)), Header: nats.Header{}}
		m.Header.Set(protocol.HeaderActor, protocol.Worker)
		m.Header.Set(protocol.HeaderReason, "showstopper: 3 deliveries without ack")
		m.Header.Set(protocol.HeaderOrigSubject, protocol.SubjectNumbers)
		m.Header.Set(protocol.HeaderOrigStream, protocol.StreamNumbers)
		m.Header.Set(protocol.HeaderOrigMsgID, protocol.NumberMsgID(v))
		if _, err := js.PublishMsgAsync(m); err != nil {
			tb.Fatal(err)
		}
		if (i+1)%1000 == 0 || i == len(values)-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				tb.Fatal("publishing dead letters: no acks in 30s")
			}
		}
	}
}
