package supervisor

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/natsx"
	"github.com/robust/robust/pkg/protocol"
)

// access is how the supervisor and each actor connect to NATS.
type access struct {
	sup    protocol.Credentials
	actors map[string]protocol.Credentials
}

// readPEM reads an optional PEM file given by a flag.
func readPEM(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrConfig, flag, err)
	}
	return string(b), nil
}

// storeDir is the embedded server's JetStream store.
func (s *Supervisor) storeDir() string { return filepath.Join(s.cfg.DataDir, "jetstream") }

// embed starts the embedded server with authentication: the data dir's
// credentials (generated on first start), the accounts and users derived
// from the registry, and the nats CLI contexts for people.
// noSpace hears of the store's writes that failed for lack of space.
func (s *Supervisor) embed(noSpace func(error)) (*server.Server, access, error) {
	keys, err := auth.Open(s.cfg.DataDir, s.reg.Names())
	if err != nil {
		return nil, access{}, err
	}
	conf, err := keys.WriteServerConf(s.cfg.DataDir, s.reg)
	if err != nil {
		return nil, access{}, err
	}
	store := s.storeDir()
	ns, err := natsx.RunServer(natsx.ServerConfig{
		Listen:   s.cfg.NATSListen,
		StoreDir: store,
		Log:      s.cfg.Log.With("actor", "nats"),
		Conf:     conf,
		Account:  auth.Account,
		Monitor:  s.cfg.NATSMonitor,
		TLSCert:  s.cfg.NATSCert,
		TLSKey:   s.cfg.NATSKey,
		NoSpace:  noSpace,
	})
	if err != nil {
		return nil, access{}, err
	}
	ca, err := readPEM("--nats-ca", s.cfg.NATSCA)
	if err != nil {
		ns.Shutdown()
		return nil, access{}, err
	}
	acc := access{sup: keys.Supervisor(), actors: map[string]protocol.Credentials{}}
	acc.sup.CA = ca
	for _, name := range s.reg.Names() {
		c, err := keys.Actor(name)
		if err != nil {
			ns.Shutdown()
			return nil, access{}, err
		}
		c.CA = ca
		acc.actors[name] = c
	}
	caFile := ""
	if s.cfg.NATSCA != "" {
		caFile, _ = filepath.Abs(s.cfg.NATSCA)
	}
	if err := keys.WriteContexts(s.cfg.DataDir, ns.ClientURL(), caFile); err != nil {
		s.log.Warn("could not write the nats CLI contexts", "dir", auth.ContextDir(s.cfg.DataDir), "error", err)
	}
	if s.cfg.NATSMonitor != "" {
		s.log.Info("NATS monitoring (varz, jsz)", "addr", "http://"+s.cfg.NATSMonitor+"/")
	}
	return ns, acc, nil
}

// external reads the credentials for a server given by --nats-url: the
// supervisor's (--nats-creds) and one file per actor (--nats-creds-dir:
// NAME.creds, a JWT and seed as nsc writes them, or NAME.nk, a seed).
func (s *Supervisor) external() (access, error) {
	acc := access{actors: map[string]protocol.Credentials{}}
	ca, err := readPEM("--nats-ca", s.cfg.NATSCA)
	if err != nil {
		return acc, err
	}
	cert, err := readPEM("--nats-cert", s.cfg.NATSCert)
	if err != nil {
		return acc, err
	}
	key, err := readPEM("--nats-key", s.cfg.NATSKey)
	if err != nil {
		return acc, err
	}
	if s.cfg.NATSCreds != "" {
		if acc.sup, err = natsx.ReadCreds(s.cfg.NATSCreds); err != nil {
			return acc, err
		}
	}
	acc.sup.InboxPrefix, acc.sup.CA, acc.sup.Cert, acc.sup.Key = auth.InboxPrefix(auth.Supervisor), ca, cert, key
	for _, name := range s.reg.Names() {
		c := acc.sup // no directory: the supervisor's (no least privilege)
		if s.cfg.NATSCredsDir != "" {
			var err error
			c, err = readActorCreds(s.cfg.NATSCredsDir, name)
			if err != nil {
				return acc, err
			}
			c.CA, c.Cert, c.Key = ca, cert, key
		}
		c.InboxPrefix = auth.InboxPrefix(name)
		acc.actors[name] = c
	}
	if s.cfg.NATSCredsDir == "" {
		s.log.Warn("no --nats-creds-dir: the actors connect with the supervisor's credentials, not each with its own least privilege")
	}
	return acc, nil
}

func readActorCreds(dir, name string) (protocol.Credentials, error) {
	for _, ext := range []string{".creds", ".nk"} {
		path := filepath.Join(dir, name+ext)
		if _, err := os.Stat(path); err == nil {
			return natsx.ReadCreds(path)
		}
	}
	return protocol.Credentials{}, fmt.Errorf("%w: --nats-creds-dir %s has no %s.creds (or %s.nk) for actor %s", ErrConfig, dir, name, name, name)
}

// checksums takes the SHA-256 of each actor binary: go-plugin's
// SecureConfig refuses a binary changed since, at its next spawn.
func (s *Supervisor) checksums() (map[string][]byte, error) {
	sums := map[string][]byte{}
	for _, a := range s.reg.All() {
		f, err := os.Open(s.binPath(a))
		if errors.Is(err, fs.ErrNotExist) {
			continue // reported by Run
		}
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("checksum of %s: %w", s.binPath(a), err)
		}
		sums[a.Name] = h.Sum(nil)
	}
	return sums, nil
}
