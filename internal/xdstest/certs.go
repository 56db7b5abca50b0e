package xdstest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/floodgate/floodgate/internal/tlstest"
)

// Certs are a test CA and certificates it signed, written as PEM files.
type Certs struct {
	// CAFile is the CA's certificate.
	CAFile string
	// ServerCert and ServerKey are for 127.0.0.1 and the DNS name
	// "xds.test" (a SAN that is not the address).
	ServerCert, ServerKey string
	// ClientCert and ClientKey are a client certificate.
	ClientCert, ClientKey string

	pool *x509.CertPool
}

// NewCerts makes a CA and a server and a client certificate (tlstest's)
// in a temporary directory of the test.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "xdstest CA")
	server := ca.Issue(t, tlstest.Leaf{CommonName: "server", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"xds.test"}})
	client := ca.Issue(t, tlstest.Leaf{CommonName: "client"})
	return &Certs{
		CAFile:     tlstest.Write(t, dir, "ca.crt", ca.PEM),
		ServerCert: tlstest.Write(t, dir, "server.crt", server.CertPEM),
		ServerKey:  tlstest.Write(t, dir, "server.key", server.KeyPEM),
		ClientCert: tlstest.Write(t, dir, "client.crt", client.CertPEM),
		ClientKey:  tlstest.Write(t, dir, "client.key", client.KeyPEM),
		pool:       ca.Pool(),
	}
}

// ServerTLS is the server's TLS config; with requireClient it requires and
// verifies a client certificate signed by the CA.
func (c *Certs) ServerTLS(t testing.TB, requireClient bool) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(c.ServerCert, c.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if requireClient {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = c.pool
	}
	return cfg
}
