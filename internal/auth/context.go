package auth

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// ContextDir is where the nats CLI contexts for people are written:
// NAME.json for operator, admin and system. The nats CLI takes a context
// file's path wherever it takes a context's name:
//
//	nats --context data/nats-context/operator.json stream info DLQ
//	export NATS_CONTEXT=$PWD/data/nats-context/operator.json
func ContextDir(dataDir string) string { return filepath.Join(dataDir, "nats-context") }

// natsContext is the nats CLI's context file (natscontext's settings).
type natsContext struct {
	Description string `json:"description"`
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	InboxPrefix string `json:"inbox_prefix,omitempty"`
	CA          string `json:"ca,omitempty"`
}

var descriptions = map[string]string{
	Operator: "robust: read-only (streams, consumers, the DLQ, actor states)",
	Admin:    "robust: everything in the pipeline's account (publishing by hand, repairs)",
	System:   "robust: the server's system account (nats server info, nats server report jetstream)",
}

// Context is the nats CLI context of a person's user, for a server at url
// (ca: a file of roots for its TLS certificate, or "").
func (k *Keys) Context(name, url, ca string) ([]byte, error) {
	c := k.Person(name)
	return json.MarshalIndent(natsContext{
		Description: descriptions[name],
		URL:         url,
		User:        c.User,
		Password:    c.Password,
		InboxPrefix: c.InboxPrefix,
		CA:          ca,
	}, "", "  ")
}

// WriteContexts writes the people's contexts into ContextDir, mode 0600.
func (k *Keys) WriteContexts(dataDir, url, ca string) error {
	dir := ContextDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, name := range People {
		b, err := k.Context(name, url, ca)
		if err != nil {
			return err
		}
		if err := writeSecret(filepath.Join(dir, name+".json"), append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}
