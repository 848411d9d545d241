package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// Dir is where a data dir keeps its credentials.
func Dir(dataDir string) string { return filepath.Join(dataDir, "auth") }

// ErrCredentials: a credentials file is unreadable or damaged.
var ErrCredentials = errors.New("credentials")

// Keys are a data dir's credentials: an nkey for the supervisor and for
// each actor (an nkey costs the server a signature check per connection, a
// password a bcrypt hash: actors reconnect often), and a password for each
// of the people's users (a nats CLI context carries it whole, so it also
// works from another machine or outside a container).
type Keys struct {
	dir       string
	seeds     map[string][]byte // supervisor and actors: nkey user seeds
	passwords map[string]string // people
}

// Open loads the credentials of dataDir, generating what is missing: the
// supervisor's, the people's and one per actor named.
func Open(dataDir string, actors []string) (*Keys, error) {
	k := &Keys{dir: Dir(dataDir), seeds: map[string][]byte{}, passwords: map[string]string{}}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	if err := os.Chmod(k.dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	for _, name := range append([]string{Supervisor}, actors...) {
		seed, err := k.seed(name)
		if err != nil {
			return nil, err
		}
		k.seeds[name] = seed
	}
	for _, name := range People {
		pw, err := k.password(name)
		if err != nil {
			return nil, err
		}
		k.passwords[name] = pw
	}
	return k, nil
}

// seedFile is where an nkey user's seed lives: supervisor.nk, and
// actor-NAME.nk (an actor's name cannot clash with the supervisor's).
func (k *Keys) seedFile(name string) string {
	if name == Supervisor {
		return filepath.Join(k.dir, name+".nk")
	}
	return filepath.Join(k.dir, "actor-"+name+".nk")
}

func (k *Keys) seed(name string) ([]byte, error) {
	path := k.seedFile(name)
	b, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, err
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, err
		}
		return seed, writeSecret(path, append(seed, '\n'))
	}
	if err != nil {
		return nil, err
	}
	seed, err := parseSeed(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not an nkey user seed (%v): remove it to have a new one made", ErrCredentials, path, err)
	}
	return seed, nil
}

// parseSeed reads a seed file: an nkey user seed.
func parseSeed(b []byte) ([]byte, error) {
	seed := []byte(strings.TrimSpace(string(b)))
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, err
	}
	if pre, _, err := nkeys.DecodeSeed(seed); err != nil || pre != nkeys.PrefixByteUser {
		return nil, fmt.Errorf("not a user's seed")
	}
	kp.Wipe()
	return seed, nil
}

// parsePassword reads a password file.
func parsePassword(b []byte) (string, error) {
	pw := strings.TrimSpace(string(b))
	if len(pw) < 16 {
		return "", fmt.Errorf("no password of at least 16 characters")
	}
	if strings.ContainsFunc(pw, func(r rune) bool { return r < ' ' || r == 0x7f || r == utf8.RuneError }) {
		return "", fmt.Errorf("a password of control characters or invalid UTF-8")
	}
	return pw, nil
}

func (k *Keys) password(name string) (string, error) {
	path := filepath.Join(k.dir, name+".password")
	b, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return "", err
		}
		pw := base64.RawURLEncoding.EncodeToString(raw)
		return pw, writeSecret(path, []byte(pw+"\n"))
	}
	if err != nil {
		return "", err
	}
	pw, err := parsePassword(b)
	if err != nil {
		return "", fmt.Errorf("%w: %s holds %v: remove it to have a new one made", ErrCredentials, path, err)
	}
	return pw, nil
}

// maxSecret bounds a secret's file: seeds, passwords and tokens are tens of
// bytes.
const maxSecret = 4 << 10

// readSecret reads a credentials file, refusing one that others may read.
func readSecret(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is readable by others (mode %v): chmod 600 it, or remove it to have a new one made", ErrCredentials, path, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecret+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	if len(b) > maxSecret {
		return nil, fmt.Errorf("%w: %s is over %d bytes: no secret of ours is; remove it to have a new one made", ErrCredentials, path, maxSecret)
	}
	return b, nil
}

// writeSecret writes a file only its owner may read, atomically.
func writeSecret(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(b)
	}
	if err2 := tmp.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	return nil
}

// Public is the nkey user's public key.
func (k *Keys) Public(name string) (string, error) {
	kp, err := nkeys.FromSeed(k.seeds[name])
	if err != nil {
		return "", fmt.Errorf("%w: no nkey for %q", ErrCredentials, name)
	}
	return kp.PublicKey()
}

// Actor returns the credentials an actor is handed at spawn.
func (k *Keys) Actor(name string) (protocol.Credentials, error) {
	seed, ok := k.seeds[name]
	if !ok {
		return protocol.Credentials{}, fmt.Errorf("%w: no nkey for actor %q", ErrCredentials, name)
	}
	return protocol.Credentials{Seed: string(seed), InboxPrefix: InboxPrefix(name)}, nil
}

// Supervisor returns the supervisor's credentials.
func (k *Keys) Supervisor() protocol.Credentials {
	return protocol.Credentials{Seed: string(k.seeds[Supervisor]), InboxPrefix: InboxPrefix(Supervisor)}
}

// Person returns a person's credentials: operator, admin or system.
func (k *Keys) Person(name string) protocol.Credentials {
	return protocol.Credentials{User: name, Password: k.passwords[name], InboxPrefix: InboxPrefix(name)}
}

// PersonOf reads a person's credentials from a data dir a supervisor has
// started on: for tests, the chaos driver and the bench, which connect as
// admin beside a running supervisor.
func PersonOf(dataDir, name string) (protocol.Credentials, error) {
	b, err := readSecret(filepath.Join(Dir(dataDir), name+".password"))
	if err != nil {
		return protocol.Credentials{}, err
	}
	return protocol.Credentials{User: name, Password: strings.TrimSpace(string(b)), InboxPrefix: InboxPrefix(name)}, nil
}

// Connect dials url as a person whose credentials a supervisor generated
// in dataDir (it waits for neither: the caller retries until both exist).
func Connect(url, dataDir, person, name string) (*nats.Conn, jetstream.JetStream, error) {
	c, err := PersonOf(dataDir, person)
	if err != nil {
		return nil, nil, err
	}
	opts, err := natsx.Auth(c)
	if err != nil {
		return nil, nil, err
	}
	return natsx.Connect(url, name, opts...)
}

// HTTPTokenFile is where the HTTP API's token lives.
func HTTPTokenFile(dataDir string) string { return filepath.Join(Dir(dataDir), "http.token") }

// HTTPToken loads the HTTP API's token (kill, replay), making it on first
// start: the control commands read it from the same file.
func HTTPToken(dataDir string) (string, error) {
	if err := os.MkdirAll(Dir(dataDir), 0o700); err != nil {
		return "", fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	path := HTTPTokenFile(dataDir)
	b, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return "", err
		}
		tok := base64.RawURLEncoding.EncodeToString(raw)
		return tok, writeSecret(path, []byte(tok+"\n"))
	}
	if err != nil {
		return "", err
	}
	return parseToken(path, b)
}

// parseToken reads the HTTP token's file: as a password's.
func parseToken(path string, b []byte) (string, error) {
	tok, err := parsePassword(b)
	if err != nil {
		return "", fmt.Errorf("%w: %s holds %v: remove it to have a new one made", ErrCredentials, path, err)
	}
	return tok, nil
}

// ReadHTTPToken reads the HTTP API's token a supervisor made.
func ReadHTTPToken(dataDir string) (string, error) {
	b, err := readSecret(HTTPTokenFile(dataDir))
	if err != nil {
		return "", err
	}
	return parseToken(HTTPTokenFile(dataDir), b)
}
