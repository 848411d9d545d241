package natsx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robust/robust/pkg/protocol"
)

// ErrCredentials: credentials that cannot be used.
var ErrCredentials = errors.New("NATS credentials")

// Auth turns credentials into connection options: an nkey (with a JWT for
// a server in operator mode) or a user and password, the inbox prefix its
// permissions allow, and TLS.
func Auth(c protocol.Credentials) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.JWT != "":
		opts = append(opts, nats.UserJWTAndSeed(c.JWT, c.Seed))
	case c.Seed != "":
		kp, err := nkeys.FromSeed([]byte(c.Seed))
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed: %v", ErrCredentials, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed: %v", ErrCredentials, err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	if c.CA != "" || c.Cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CA != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(c.CA)) {
				return nil, fmt.Errorf("%w: no certificate in the CA PEM", ErrCredentials)
			}
			tc.RootCAs = pool
		}
		if c.Cert != "" {
			cert, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
			if err != nil {
				return nil, fmt.Errorf("%w: client certificate: %v", ErrCredentials, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// MaxCredsFile bounds a credentials file: a .creds file is about 1 kB.
const MaxCredsFile = 64 << 10

// ReadCreds reads a credentials file for a server run by someone else: a
// .creds file (a user JWT and its nkey seed, as nsc writes them) or a bare
// nkey user seed, of at most MaxCredsFile bytes.
func ReadCreds(path string) (protocol.Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return protocol.Credentials{}, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxCredsFile+1))
	if err != nil {
		return protocol.Credentials{}, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	c, err := ParseCreds(b)
	if err != nil {
		return c, fmt.Errorf("%w: %s: %v", ErrCredentials, path, err)
	}
	return c, nil
}

// ParseCreds reads what ReadCreds reads from the file.
func ParseCreds(b []byte) (protocol.Credentials, error) {
	if len(b) > MaxCredsFile {
		return protocol.Credentials{}, fmt.Errorf("over %d bytes: no credentials file is", MaxCredsFile)
	}
	if bytes.Contains(b, []byte("BEGIN NATS USER JWT")) {
		jwt, err := nkeys.ParseDecoratedJWT(b)
		if err != nil {
			return protocol.Credentials{}, err
		}
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return protocol.Credentials{}, err
		}
		seed, err := kp.Seed()
		if err != nil {
			return protocol.Credentials{}, err
		}
		return protocol.Credentials{JWT: jwt, Seed: string(seed)}, nil
	}
	seed := strings.TrimSpace(string(b))
	if _, err := nkeys.FromSeed([]byte(seed)); err != nil {
		return protocol.Credentials{}, fmt.Errorf("neither a .creds file nor an nkey seed: %v", err)
	}
	return protocol.Credentials{Seed: seed}, nil
}
