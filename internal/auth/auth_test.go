package auth

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robust/robust/internal/registry"
	"github.com/robust/robust/pkg/protocol"
)

// Credentials are made once, mode 0600 in a 0700 dir, and read back the
// same; a file others may read is refused.
func TestOpenKeepsCredentials(t *testing.T) {
	dir := t.TempDir()
	names := registry.Default().Names()
	k1, err := Open(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Open(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		a, _ := k1.Actor(n)
		b, _ := k2.Actor(n)
		if a.Seed == "" || a.Seed != b.Seed || a.InboxPrefix != "_INBOX_"+n {
			t.Fatalf("actor %s: credentials not kept (%v, %v)", n, a, b)
		}
	}
	if k1.Person(Admin).Password != k2.Person(Admin).Password {
		t.Fatal("admin password changed between starts")
	}
	if a, w := k1.seeds[protocol.Logger], k1.seeds[protocol.Worker]; string(a) == string(w) {
		t.Fatal("two actors share a key")
	}
	fi, err := os.Stat(Dir(dir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("auth dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	ents, _ := os.ReadDir(Dir(dir))
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if err := os.Chmod(filepath.Join(Dir(dir), "admin.password"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, names); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a world-readable password: %v, want a refusal", err)
	}
}

// The server configuration parses with nats-server's own parser and gives
// each actor exactly its own subjects.
func TestServerConf(t *testing.T) {
	dir := t.TempDir()
	reg := registry.Default()
	k, err := Open(dir, reg.Names())
	if err != nil {
		t.Fatal(err)
	}
	path, err := k.WriteServerConf(dir, reg)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), k.Person(Admin).Password) {
		t.Fatal("the server configuration holds a password in the clear")
	}
	byKey := map[string]*server.NkeyUser{}
	for _, u := range opts.Nkeys {
		byKey[u.Nkey] = u
	}
	workerKey, _ := k.Public(protocol.Worker)
	w := byKey[workerKey]
	if w == nil || w.Account == nil || w.Account.Name != Account {
		t.Fatalf("the worker's user is not in account %s: %+v", Account, w)
	}
	pub := w.Permissions.Publish.Allow
	for _, want := range []string{protocol.SubjectResults, "robust.dlq.worker", "$KV.robust_state.worker",
		"$JS.API.DIRECT.GET.KV_robust_state.$KV.robust_state.worker", "$JS.API.CONSUMER.MSG.NEXT.NUMBERS.worker-numbers", "$JS.ACK.BEATS.worker-beats.>"} {
		if !slices.Contains(pub, want) {
			t.Errorf("worker may not publish %s: %v", want, pub)
		}
	}
	for _, s := range pub {
		if strings.Contains(s, "logger") || strings.Contains(s, "PURGE") || strings.Contains(s, "DELETE") || strings.Contains(s, "CREATE") || s == ">" || s == protocol.SubjectNumbers {
			t.Errorf("worker may publish %s", s)
		}
	}
	if sub := w.Permissions.Subscribe.Allow; !slices.Equal(sub, []string{"_INBOX_worker.>"}) {
		t.Errorf("worker subscribes %v, want its own inbox only", sub)
	}
	if opts.SystemAccount != SystemAccount {
		t.Errorf("system account %q", opts.SystemAccount)
	}
}
