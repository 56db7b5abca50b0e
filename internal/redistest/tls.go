package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tlsFiles are a TLS server's certificate files and the client config that
// trusts them.
type tlsFiles struct {
	certFile, keyFile, caFile string
	client                    *tls.Config
}

// TLSConfig returns a client TLS config that trusts a TLS server's private
// CA (nil for a plain server).
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.client.Clone()
}

// StartTLSServer starts a redis-server for this test that speaks only TLS,
// with a certificate for 127.0.0.1 from a CA made for it; URL is
// rediss://127.0.0.1:port and TLSConfig trusts the CA.
func StartTLSServer(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	files, err := makeCerts(dir)
	if err != nil {
		t.Fatalf("redistest: certificates: %v", err)
	}
	bin, err := lookPath()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(false)
		if err != nil {
			lastErr = err
			continue
		}
		s := newServer(port, dir, nil)
		s.tls = files
		s.URL = "rediss://" + s.Addr
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: starting a TLS redis-server: %v", lastErr)
	return nil
}

// makeCerts writes a CA and a server certificate for 127.0.0.1 into dir.
func makeCerts(dir string) (*tlsFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	f := &tlsFiles{
		certFile: filepath.Join(dir, "server.crt"),
		keyFile:  filepath.Join(dir, "server.key"),
		caFile:   filepath.Join(dir, "ca.crt"),
	}
	for _, w := range []struct {
		path, kind string
		der        []byte
	}{
		{f.certFile, "CERTIFICATE", der},
		{f.keyFile, "EC PRIVATE KEY", keyDER},
		{f.caFile, "CERTIFICATE", caDER},
	} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.kind, Bytes: w.der}), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", w.path, err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	f.client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return f, nil
}

// TLSFiles returns a TLS server's certificate, key and CA files (PEM; the
// certificate names 127.0.0.1 and localhost), for settings that take
// paths, or "" for a plain server.
func (s *Server) TLSFiles() (cert, key, ca string) {
	if s.tls == nil {
		return "", "", ""
	}
	return s.tls.certFile, s.tls.keyFile, s.tls.caFile
}
