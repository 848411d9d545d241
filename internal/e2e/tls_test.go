package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robust/robust/internal/auth"
	"github.com/robust/robust/internal/natsx"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, PEM, and
// returns their paths (the certificate is its own CA).
func selfSigned(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "robust test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// With --nats-cert and --nats-key the embedded server's client port speaks
// TLS: the actors, handed the roots of --nats-ca, run the pipeline through
// it; a client that does not trust the certificate is refused, and the
// operator's context names the roots.
func TestNATSOverTLS(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	p := start(t, "", "--rate", "0", "--beats", "300", "--faults", "none",
		"--nats-cert", cert, "--nats-key", key, "--nats-ca", cert)
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(b)
	waitFor(t, 20*time.Second, "the credentials", func() bool {
		_, err := auth.PersonOf(p.dataDir, auth.Operator)
		return err == nil
	})
	c, err := auth.PersonOf(p.dataDir, auth.Operator)
	if err != nil {
		t.Fatal(err)
	}
	var nc *nats.Conn
	waitFor(t, 20*time.Second, "a client trusting the certificate to connect", func() bool {
		nc, _, err = natsx.Connect(p.url, "e2e-tls", nats.UserInfo(c.User, c.Password), nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
		return err == nil
	})
	if bad, _, err := natsx.Connect(p.url, "e2e-untrusting", nats.UserInfo(c.User, c.Password)); err == nil {
		bad.Close()
		t.Fatal("a client that does not trust the server's certificate connected")
	} else {
		t.Logf("a client that does not trust the certificate: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("the server does not require TLS")
	}
	nc.Close()
	ctxFile, err := os.ReadFile(filepath.Join(auth.ContextDir(p.dataDir), "operator.json"))
	if err != nil || !strings.Contains(string(ctxFile), `"ca": "`+cert+`"`) {
		t.Errorf("the operator's context does not name the roots: %v\n%s", err, ctxFile)
	}
	p.finish(0, 2*time.Minute)
}
