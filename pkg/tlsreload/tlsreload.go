// Package tlsreload serves TLS from certificate files that change while the
// process runs: a server certificate and key, and optionally a CA whose
// certificates clients must present (mutual TLS), pinned to one subject
// alternative name if asked. The files are polled as configsource polls a
// config (a Kubernetes Secret update swaps a symlink, which inotify on the
// old target never sees); a change loads them together, and files that do
// not load (a key that does not match its certificate, say, or a pair
// caught half-updated) leave the certificates in force serving, with the
// error logged and counted once per change.
package tlsreload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/configsource"
)

// DefaultInterval is how often the files are checked when Options.Interval
// is zero.
const DefaultInterval = time.Second

// Options name the files and tune the polling.
type Options struct {
	// CertFile and KeyFile are the server's certificate chain and private
	// key, PEM. Both are required.
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the PEM CA certificates that client
	// certificates must chain to: a client without a valid certificate
	// fails the handshake. Empty asks clients for nothing.
	ClientCAFile string
	// ClientSAN, when set (with ClientCAFile), accepts only client
	// certificates with this subject alternative name: a DNS name (with
	// x509's wildcard matching), an IP address, a URI or an email address.
	ClientSAN string
	// Interval is how often the files are checked (default DefaultInterval).
	Interval time.Duration
	// Metrics count reloads as floodgate_config_reloads_total{source=Name};
	// nil counts nothing.
	Metrics *configsource.Metrics
	// Registerer, when set, receives
	// floodgate_tls_certificate_expiry_timestamp_seconds{source=Name}.
	Registerer prometheus.Registerer
	// Name labels the metrics and log lines (default "tls").
	Name string
	// Log receives a line per reload (default: discarded).
	Log *slog.Logger
}

// Certs is one loaded set of files, immutable.
type Certs struct {
	cert     tls.Certificate
	leaf     *x509.Certificate
	clientCA *x509.CertPool // nil: no client certificates asked for
	config   *tls.Config    // what handshakes use while these are in force
}

// NotAfter is when the server certificate expires.
func (c *Certs) NotAfter() time.Time { return c.leaf.NotAfter }

// Server hands out the certificates in force to each handshake.
type Server struct {
	opts Options
	src  *configsource.Source[*Certs]
}

// New loads the files, failing when they do not load (start-up errors name
// the file). Nothing is polled until Run.
func New(opts Options) (*Server, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tlsreload: a certificate file and a key file are both required")
	}
	if opts.ClientSAN != "" && opts.ClientCAFile == "" {
		return nil, errors.New("tlsreload: a client SAN needs a client CA file")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Name == "" {
		opts.Name = "tls"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	w := configsource.NewFiles(opts.CertFile, opts.Interval, func(string) (*Certs, error) { return s.load() },
		func(*Certs) []string { return []string{opts.CertFile, opts.KeyFile, opts.ClientCAFile} })
	s.src = configsource.New[*Certs](w, configsource.Options[*Certs]{
		Describe: describe,
		Summary: func(c *Certs) []any {
			return []any{"source", opts.Name, "not_after", c.NotAfter().UTC().Format(time.RFC3339)}
		},
		Metrics: opts.Metrics,
		Name:    opts.Name,
		Log:     opts.Log,
	})
	if err := s.src.Load(); err != nil {
		return nil, err
	}
	if reg := opts.Registerer; reg != nil {
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "floodgate", Subsystem: "tls", Name: "certificate_expiry_timestamp_seconds",
			Help:        "When the server certificate in force expires.",
			ConstLabels: prometheus.Labels{"source": opts.Name},
		}, func() float64 { return float64(s.Certs().NotAfter().Unix()) })); err != nil {
			return nil, fmt.Errorf("tlsreload: %w", err)
		}
	}
	return s, nil
}

// Run polls the files until ctx ends.
func (s *Server) Run(ctx context.Context) error { return s.src.Run(ctx) }

// Certs are the certificates in force.
func (s *Server) Certs() *Certs { return s.src.Snapshot().Config }

// Status is what /debug/config shows of the certificates.
func (s *Server) Status() configsource.Status { return s.src.Status() }

// Config is the server TLS config: each handshake takes the certificates
// in force at its start, so a reload affects new connections only (those
// already open keep the identity they were made with).
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.Certs().config, nil
		},
	}
}

// load reads the files and checks them together.
func (s *Server) load() (*Certs, error) {
	o := s.opts
	certPEM, err := os.ReadFile(o.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(o.KeyFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s with %s: %w", o.CertFile, o.KeyFile, err)
	}
	c := &Certs{cert: cert, leaf: cert.Leaf}
	if c.leaf == nil {
		if c.leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", o.CertFile, err)
		}
	}
	if o.ClientCAFile != "" {
		caPEM, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, err
		}
		c.clientCA = x509.NewCertPool()
		if !c.clientCA.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("%s: no PEM certificate in it", o.ClientCAFile)
		}
	}
	c.config = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
		Certificates: []tls.Certificate{c.cert},
	}
	if c.clientCA != nil {
		c.config.ClientAuth = tls.RequireAndVerifyClientCert
		c.config.ClientCAs = c.clientCA
		if san := o.ClientSAN; san != "" {
			c.config.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !HasSAN(cs.PeerCertificates[0], san) {
					return fmt.Errorf("client certificate has no subject alternative name %q", san)
				}
				return nil
			}
		}
	}
	if now := time.Now(); now.After(c.leaf.NotAfter) {
		o.Log.Warn("the server certificate has expired", "file", o.CertFile, "not_after", c.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// HasSAN says whether cert names san among its subject alternative names:
// a DNS name or IP address (matched as x509 matches a host name, wildcards
// included), a URI or an email address (matched exactly).
func HasSAN(cert *x509.Certificate, san string) bool {
	if cert.VerifyHostname(san) == nil {
		return true
	}
	for _, u := range cert.URIs {
		if u.String() == san {
			return true
		}
	}
	for _, e := range cert.EmailAddresses {
		if strings.EqualFold(e, san) {
			return true
		}
	}
	return false
}

// describe is /debug/config's view: who the certificate names, until when,
// and whether clients must present one.
func describe(c *Certs) any {
	d := struct {
		Subject   string    `json:"subject"`
		DNSNames  []string  `json:"dns_names,omitempty"`
		NotAfter  time.Time `json:"not_after"`
		ClientTLS bool      `json:"client_certificates_required"`
	}{c.leaf.Subject.String(), c.leaf.DNSNames, c.leaf.NotAfter, c.clientCA != nil}
	return d
}
