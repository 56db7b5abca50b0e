package xdsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// TLSFiles say how to secure the connection to the xDS server. Every field
// is optional.
type TLSFiles struct {
	// CA is a PEM file of the CAs that sign the server's certificate
	// (default: the system's roots).
	CA string
	// Cert and Key are a PEM client certificate and its key, for servers
	// that require one (mTLS). Both or neither.
	Cert, Key string
	// SAN is the name the server's certificate must carry (a DNS name or
	// an IP address); default: the host of the server's address.
	SAN string
}

// ClientTLS reads the files and returns the TLS config for a server at addr
// (host:port). It fails on a file that cannot be read or parsed.
func ClientTLS(addr string, f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.SAN}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("server address %q: %w", addr, err)
		}
		cfg.ServerName = host
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", f.CA)
		}
		cfg.RootCAs = pool
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("a client certificate and its key go together")
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
