package tlsreload_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/internal/tlstest"
	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/tlsreload"
)

// handshake runs a TLS handshake between server and client over a pipe and
// returns the server certificate the client saw and the server's error.
func handshake(t *testing.T, server, client *tls.Config) (seen *x509.Certificate, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		done <- tls.Server(conn, server).Handshake()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(conn, client)
	if err := c.Handshake(); err == nil {
		seen = c.ConnectionState().PeerCertificates[0]
	}
	// Under TLS 1.3 the client finishes before the server has checked the
	// client's certificate: the server's verdict is the one that counts.
	return seen, <-done
}

type fixture struct {
	dir                 string
	ca                  *tlstest.CA
	cert, key, clientCA string
	serverName          string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), ca: tlstest.NewCA(t, "test CA"), serverName: "floodgate.test"}
	p := f.ca.Issue(t, tlstest.Leaf{CommonName: "one", DNSNames: []string{f.serverName}})
	f.cert = tlstest.Write(t, f.dir, "tls.crt", p.CertPEM)
	f.key = tlstest.Write(t, f.dir, "tls.key", p.KeyPEM)
	f.clientCA = tlstest.Write(t, f.dir, "ca.crt", f.ca.PEM)
	return f
}

func (f *fixture) client(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: f.ca.Pool(), ServerName: f.serverName, Certificates: certs, NextProtos: []string{"h2"}}
}

func TestServesAndRequiresClientCertificates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	plain, err := tlsreload.New(tlsreload.Options{CertFile: f.cert, KeyFile: f.key})
	if err != nil {
		t.Fatal(err)
	}
	if seen, err := handshake(t, plain.Config(), f.client()); err != nil || seen == nil || seen.Subject.CommonName != "one" {
		t.Fatalf("server TLS: err %v, saw %v", err, seen)
	}

	other := tlstest.NewCA(t, "other CA")
	good := f.ca.Issue(t, tlstest.Leaf{CommonName: "envoy", DNSNames: []string{"envoy.gateway.svc"}, URIs: []string{"spiffe://cluster.local/ns/gw/sa/envoy"}})
	stranger := other.Issue(t, tlstest.Leaf{CommonName: "envoy", DNSNames: []string{"envoy.gateway.svc"}})
	wrongName := f.ca.Issue(t, tlstest.Leaf{CommonName: "intruder", DNSNames: []string{"intruder.svc"}})
	for _, tc := range []struct {
		name   string
		san    string
		client []tls.Certificate
		ok     bool
	}{
		{"no client certificate", "", nil, false},
		{"certificate from another CA", "", []tls.Certificate{stranger.TLS(t)}, false},
		{"certificate from the CA", "", []tls.Certificate{good.TLS(t)}, true},
		{"SAN pinned, DNS name matches", "envoy.gateway.svc", []tls.Certificate{good.TLS(t)}, true},
		{"SAN pinned, URI matches", "spiffe://cluster.local/ns/gw/sa/envoy", []tls.Certificate{good.TLS(t)}, true},
		{"SAN pinned, other name", "envoy.gateway.svc", []tls.Certificate{wrongName.TLS(t)}, false},
		{"SAN pinned, no certificate", "envoy.gateway.svc", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tlsreload.New(tlsreload.Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA, ClientSAN: tc.san})
			if err != nil {
				t.Fatal(err)
			}
			_, err = handshake(t, s.Config(), f.client(tc.client...))
			if (err == nil) != tc.ok {
				t.Fatalf("handshake error %v, want success %v", err, tc.ok)
			}
		})
	}
}

func TestHasSAN(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	p := ca.Issue(t, tlstest.Leaf{
		CommonName: "not-a-san.example",
		DNSNames:   []string{"envoy.example", "*.pods.example"},
		IPs:        []net.IP{net.ParseIP("10.0.0.7")},
		URIs:       []string{"spiffe://td/ns/a/sa/b"},
		Emails:     []string{"ops@example.org"},
	})
	leaf := p.TLS(t).Leaf
	for san, want := range map[string]bool{
		"envoy.example":         true,
		"ENVOY.example":         true,
		"x.pods.example":        true,
		"pods.example":          false,
		"10.0.0.7":              true,
		"10.0.0.8":              false,
		"spiffe://td/ns/a/sa/b": true,
		"spiffe://td/ns/a/sa/c": false,
		"ops@example.org":       true,
		"not-a-san.example":     false, // the common name is not a SAN
		"":                      false,
	} {
		if got := tlsreload.HasSAN(leaf, san); got != want {
			t.Errorf("HasSAN(%q) = %v, want %v", san, got, want)
		}
	}
}

func TestReloadsChangedFilesAndKeepsTheOldOnAnError(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	metrics := configsource.NewMetrics(prometheus.NewRegistry())
	reg := prometheus.NewRegistry()
	s, err := tlsreload.New(tlsreload.Options{CertFile: f.cert, KeyFile: f.key, Interval: 10 * time.Millisecond, Metrics: metrics, Registerer: reg, Name: "grpc-tls"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	serving := func() string {
		t.Helper()
		seen, err := handshake(t, s.Config(), f.client())
		if err != nil || seen == nil {
			t.Fatalf("handshake: %v", err)
		}
		return seen.Subject.CommonName
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for serving() != want {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %q, want %q", serving(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A new pair: key first, then certificate, as a non-atomic update
	// would leave them for a moment.
	two := f.ca.Issue(t, tlstest.Leaf{CommonName: "two", DNSNames: []string{f.serverName}, NotAfter: time.Now().Add(2 * time.Hour).Truncate(time.Second)})
	tlstest.Write(t, f.dir, "tls.key", two.KeyPEM)
	time.Sleep(50 * time.Millisecond) // the mismatched pair is polled
	if got := serving(); got != "one" {
		t.Fatalf("with the key changed alone: serving %q, want the old certificate", got)
	}
	tlstest.Write(t, f.dir, "tls.crt", two.CertPEM)
	waitFor("two")
	want := float64(two.TLS(t).Leaf.NotAfter.Unix())
	if got := gauge(t, reg, "floodgate_tls_certificate_expiry_timestamp_seconds"); got != want {
		t.Errorf("expiry gauge %v, want %v", got, want)
	}

	// Garbage keeps the old pair; the error is kept for /debug/config.
	tlstest.Write(t, f.dir, "tls.crt", []byte("not a certificate"))
	deadline := time.Now().Add(5 * time.Second)
	for s.Status().LastReloadError == "" {
		if time.Now().After(deadline) {
			t.Fatal("a bad certificate file was never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := serving(); got != "two" {
		t.Fatalf("after a bad file: serving %q, want the previous certificate", got)
	}
	three := f.ca.Issue(t, tlstest.Leaf{CommonName: "three", DNSNames: []string{f.serverName}})
	tlstest.Write(t, f.dir, "tls.crt", three.CertPEM)
	tlstest.Write(t, f.dir, "tls.key", three.KeyPEM)
	waitFor("three")
}

// gauge reads one unlabelled-by-caller gauge's value from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func TestStartUpErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := f.ca.Issue(t, tlstest.Leaf{CommonName: "other"})
	otherKey := tlstest.Write(t, f.dir, "other.key", other.KeyPEM)
	empty := tlstest.Write(t, f.dir, "empty.pem", []byte("# nothing\n"))
	missing := filepath.Join(f.dir, "missing.pem")
	for _, tc := range []struct {
		name string
		opts tlsreload.Options
		want string
	}{
		{"no key", tlsreload.Options{CertFile: f.cert}, "both required"},
		{"SAN without CA", tlsreload.Options{CertFile: f.cert, KeyFile: f.key, ClientSAN: "x"}, "needs a client CA"},
		{"missing certificate", tlsreload.Options{CertFile: missing, KeyFile: f.key}, missing},
		{"key of another certificate", tlsreload.Options{CertFile: f.cert, KeyFile: otherKey}, otherKey},
		{"CA file without a certificate", tlsreload.Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: empty}, empty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsreload.New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}
