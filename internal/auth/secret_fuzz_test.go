package auth

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nkeys"
)

// FuzzSecrets: whatever a seed, password or token file in the data dir
// holds, it is read as a user's nkey seed, or a password of at least 16
// printable characters, or refused; never a panic.
func FuzzSecrets(f *testing.F) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	acct, _ := nkeys.CreateAccount()
	aseed, _ := acct.Seed()
	for _, s := range []string{string(seed) + "\n", string(aseed), "SUxyz", "", "short", "Zx3v_4xO0vDYzQ5Hp0g4GJ2V3dJ9-LBe\n", "0123456789abcdef\x00", "0123456789abcdef\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := parseSeed(b); err == nil {
			if pre, _, err := nkeys.DecodeSeed(s); err != nil || pre != nkeys.PrefixByteUser {
				t.Fatalf("seed %q taken: %v, prefix %v", s, err, pre)
			}
		}
		if pw, err := parsePassword(b); err == nil {
			if len(pw) < 16 || !utf8.ValidString(pw) || strings.TrimSpace(pw) != pw || strings.ContainsFunc(pw, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("password %q taken", pw)
			}
		}
	})
}
