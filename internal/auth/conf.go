package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"

	"golang.org/x/crypto/bcrypt"

	"github.com/robust/robust/internal/registry"
)

// ServerConfFile is where the embedded server's accounts and users are
// written at every start, for the server to load and for people to read.
func ServerConfFile(dataDir string) string { return filepath.Join(Dir(dataDir), "nats-server.conf") }

// The shapes of a NATS server configuration (NATS's format reads JSON).
type (
	confSubjects struct {
		Allow []string `json:"allow"`
	}
	confPerms struct {
		Publish   confSubjects `json:"publish"`
		Subscribe confSubjects `json:"subscribe"`
	}
	confUser struct {
		Nkey        string     `json:"nkey,omitempty"`
		User        string     `json:"user,omitempty"`
		Password    string     `json:"password,omitempty"` // a bcrypt hash
		Permissions *confPerms `json:"permissions,omitempty"`
	}
	confAccount struct {
		JetStream string     `json:"jetstream,omitempty"`
		Users     []confUser `json:"users"`
	}
	conf struct {
		Accounts      map[string]confAccount `json:"accounts"`
		SystemAccount string                 `json:"system_account"`
	}
)

func perms(p Permissions) *confPerms {
	return &confPerms{Publish: confSubjects{Allow: p.Publish}, Subscribe: confSubjects{Allow: p.Subscribe}}
}

// ServerConf is the embedded server's accounts and users, in NATS's
// configuration format: the pipeline's account with JetStream, holding the
// supervisor and admin (everything in it), the operator (read-only) and
// one user per actor of reg (ForActor); and the system account, holding
// the system user. Passwords appear as bcrypt hashes only.
func (k *Keys) ServerConf(reg registry.Registry) ([]byte, error) {
	hash := func(name string) (string, error) {
		// The least cost: the passwords are 192 random bits, beyond any
		// guessing however fast the hash; a slow one would only make
		// every connection cost the server milliseconds of CPU (at cost
		// 10, 80 ms here: a client retrying in a loop starved it).
		h, err := bcrypt.GenerateFromPassword([]byte(k.passwords[name]), bcrypt.MinCost)
		return string(h), err
	}
	sup, err := k.Public(Supervisor)
	if err != nil {
		return nil, err
	}
	admin, err := hash(Admin)
	if err != nil {
		return nil, err
	}
	op, err := hash(Operator)
	if err != nil {
		return nil, err
	}
	sys, err := hash(System)
	if err != nil {
		return nil, err
	}
	users := []confUser{
		{Nkey: sup}, // no permissions: everything in the account
		{User: Admin, Password: admin},
		{User: Operator, Password: op, Permissions: perms(ForOperator())},
	}
	for _, a := range reg.All() {
		pub, err := k.Public(a.Name)
		if err != nil {
			return nil, err
		}
		users = append(users, confUser{Nkey: pub, Permissions: perms(ForActor(a))})
	}
	c := conf{
		Accounts: map[string]confAccount{
			Account:       {JetStream: "enabled", Users: users},
			SystemAccount: {Users: []confUser{{User: System, Password: sys}}},
		},
		SystemAccount: SystemAccount,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // NATS's format knows no \u escapes: ">" stays ">"
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	b := bytes.TrimSpace(buf.Bytes())
	head := "# The accounts and users of robust's embedded NATS server, written by the\n" +
		"# supervisor at every start from its registry: edits are overwritten.\n" +
		"# Users in order: the supervisor (nkey), admin, operator, then one nkey per actor:\n#"
	for _, a := range reg.All() {
		head += " " + a.Name
	}
	return []byte(fmt.Sprintf("%s\n%s\n", head, b)), nil
}

// WriteServerConf writes ServerConf to ServerConfFile, mode 0600.
func (k *Keys) WriteServerConf(dataDir string, reg registry.Registry) (string, error) {
	b, err := k.ServerConf(reg)
	if err != nil {
		return "", err
	}
	path := ServerConfFile(dataDir)
	return path, writeSecret(path, b)
}
