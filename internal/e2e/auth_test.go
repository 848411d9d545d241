package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// violations collects the permission violations the server reports on a
// connection (they arrive asynchronously, as -ERR).
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.seen = append(v.seen, err.Error())
	v.mu.Unlock()
}

// refused waits until the server has refused a publish to subject.
func (v *violations) refused(t *testing.T, who, subject string) {
	t.Helper()
	waitFor(t, 5*time.Second, who+": the server refusing a publish to "+subject, func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, s := range v.seen {
			if strings.Contains(s, "Permissions Violation for Publish to \""+subject+"\"") {
				return true
			}
		}
		return false
	})
}

// Every connection authenticates, and each actor may do only what it
// needs: a client without credentials or with a wrong password is turned
// away; one holding the logger's credentials cannot publish a number, purge
// a stream, write the worker's state or pull from the worker's consumer,
// and one holding the worker's cannot write the logger's state. Each
// attempt is refused by the server, and the run's books balance with every
// value logged.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	p := start(t, "", "--rate", "10", "--beats", "0", "--faults", "none")
	_, js := p.connect() // admin; the supervisor has written the credentials

	if _, _, err := natsx.Connect(p.url, "anonymous"); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("a client without credentials: %v, want an authorization violation", err)
	}
	if _, _, err := natsx.Connect(p.url, "guesser", nats.UserInfo(auth.Admin, "not-the-password")); err == nil {
		t.Fatal("a client with a wrong password was let in")
	}

	as := func(actor string) (jetstream.JetStream, *violations) {
		t.Helper()
		seed, err := os.ReadFile(filepath.Join(auth.Dir(p.dataDir), "actor-"+actor+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		opts, err := natsx.Auth(protocol.Credentials{Seed: strings.TrimSpace(string(seed)), InboxPrefix: auth.InboxPrefix(actor)})
		if err != nil {
			t.Fatal(err)
		}
		v := &violations{}
		nc, js, err := natsx.Connect(p.url, "e2e-as-"+actor, append(opts, nats.ErrorHandler(v.handler))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return js, v
	}
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		t.Cleanup(cancel)
		return c
	}

	lg, v := as(protocol.Logger)
	if _, err := lg.Publish(ctx(), protocol.SubjectNumbers, protocol.EncodeNumber(7), jetstream.WithMsgID(protocol.NumberMsgID(7))); err == nil {
		t.Error("the logger published a number")
	}
	v.refused(t, "logger", protocol.SubjectNumbers)
	if err := lg.DeleteStream(ctx(), protocol.StreamNumbers); err == nil {
		t.Error("the logger deleted NUMBERS")
	}
	v.refused(t, "logger", "$JS.API.STREAM.DELETE."+protocol.StreamNumbers)
	if s, err := lg.Stream(ctx(), protocol.StreamResults); err == nil {
		t.Errorf("the logger read RESULTS' info (%s): it publishes nothing there", s.CachedInfo().Config.Name)
	}
	v.refused(t, "logger", "$JS.API.STREAM.INFO."+protocol.StreamResults)
	kv, err := lg.KeyValue(ctx(), protocol.StateBucket)
	if err != nil {
		t.Fatalf("the logger cannot bind its own state bucket: %v", err)
	}
	if _, err := kv.Put(ctx(), protocol.Worker, []byte(`{"starts":1}`)); err == nil {
		t.Error("the logger wrote the worker's state")
	}
	v.refused(t, "logger", "$KV."+protocol.StateBucket+"."+protocol.Worker)
	if _, err := kv.Get(ctx(), protocol.Worker); err == nil {
		t.Error("the logger read the worker's state")
	}
	if c, err := lg.Consumer(ctx(), protocol.StreamNumbers, protocol.WorkerNumbers.Consumer); err == nil {
		_, _ = c.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))
		t.Error("the logger bound the worker's consumer")
	}
	v.refused(t, "logger", "$JS.API.CONSUMER.INFO."+protocol.StreamNumbers+"."+protocol.WorkerNumbers.Consumer)
	if _, err := lg.CreateOrUpdateConsumer(ctx(), protocol.StreamNumbers, jetstream.ConsumerConfig{Durable: "thief", AckPolicy: jetstream.AckNonePolicy}); err == nil {
		t.Error("the logger created a consumer on NUMBERS")
	}
	v.refused(t, "logger", "$JS.API.CONSUMER.CREATE."+protocol.StreamNumbers+".thief")

	wk, v := as(protocol.Worker)
	wkv, err := wk.KeyValue(ctx(), protocol.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wkv.Put(ctx(), protocol.Logger, []byte(`{"starts":1}`)); err == nil {
		t.Error("the worker wrote the logger's state")
	}
	v.refused(t, "worker", "$KV."+protocol.StateBucket+"."+protocol.Logger)
	if st, err := wk.Stream(ctx(), protocol.StreamResults); err != nil {
		t.Errorf("the worker cannot read RESULTS' info, where it publishes: %v", err)
	} else if err := st.Purge(ctx()); err == nil {
		t.Error("the worker purged RESULTS")
	}
	v.refused(t, "worker", "$JS.API.STREAM.PURGE."+protocol.StreamResults)

	if _, err := js.Stream(context.Background(), protocol.StreamNumbers); err != nil {
		t.Fatalf("NUMBERS: %v", err)
	}
	// Nothing of it touched the pipeline: every value logged, none lost.
	s := p.finish(syscall.SIGTERM, 2*time.Minute)
	if s.BeatsTaken < 100 || s.Logged != s.Processed || len(s.DeadLettered) != 0 {
		t.Fatalf("logged %d of %d processed, %d dead-lettered, %d beats taken", s.Logged, s.Processed, len(s.DeadLettered), s.BeatsTaken)
	}
	if strings.Contains(p.stderr.String(), "Permissions Violation") {
		t.Errorf("an actor or the supervisor was refused something it needs:\n%s", lastBytes(p.stderr.String(), 4000))
	}
}

// A data dir an earlier version made (no authentication: the streams in
// the server's global account) is carried over to the pipeline's account:
// the next run continues its run count and keeps its dead letters.
func TestLegacyDataDirCarriedOver(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns, err := natsx.RunServer(natsx.ServerConfig{StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := natsx.Connect(ns.ClientURL(), "legacy")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsx.Ensure(ctx, js, natsx.Topology{}, nil); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, protocol.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, protocol.SupervisorKey, []byte(`{"run":7,"completed":true}`)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()
	if _, err := os.Stat(filepath.Join(dir, "jetstream", "jetstream", "$G", "streams")); err != nil {
		t.Fatalf("the legacy layout is not what CarryOver expects: %v", err)
	}

	p := start(t, dir, "--rate", "0", "--beats", "20", "--faults", "none")
	s := p.finish(0, time.Minute)
	if s.Run != 8 {
		t.Fatalf("run %d after a legacy run 7, want 8: the old state was not carried over", s.Run)
	}
	if !strings.Contains(p.stderr.String(), "carried the streams of an earlier version") {
		t.Errorf("the carry-over was not logged:\n%s", lastBytes(p.stderr.String(), 3000))
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream", "jetstream", "$G", "streams")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the global account still holds streams: %v", err)
	}
}
