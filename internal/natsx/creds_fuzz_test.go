package natsx

import (
	"bytes"
	"testing"

	"github.com/nats-io/nkeys"
)

// FuzzParseCreds: whatever a credentials file holds, ParseCreds returns
// credentials whose seed is an nkey seed, or an error; never a panic.
func FuzzParseCreds(f *testing.F) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	f.Add(seed)
	f.Add(append([]byte("  \n"), append(seed, '\n')...))
	f.Add([]byte("-----BEGIN NATS USER JWT-----\neyJhbGciOi.x.y\n------END NATS USER JWT------\n\n" +
		"-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n"))
	f.Add([]byte("-----BEGIN NATS USER JWT-----\n"))
	f.Add([]byte("SUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
	f.Add(bytes.Repeat([]byte("S"), MaxCredsFile+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCreds(b)
		if err != nil {
			return
		}
		if len(b) > MaxCredsFile {
			t.Fatalf("%d bytes taken", len(b))
		}
		if _, err := nkeys.FromSeed([]byte(c.Seed)); err != nil {
			t.Fatalf("credentials with a seed that is none: %v", err)
		}
	})
}
