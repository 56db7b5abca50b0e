package sidecar_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/floodgate/floodgate/internal/tlstest"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// socketDir is a short directory for Unix sockets: their paths are limited
// to about 100 bytes, which t.TempDir's long names can pass.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fg-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func limitsFile(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "limits.yaml")
	writeFile(t, cfg, "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n")
	return cfg
}

// newSidecar parses args (on loopback ports unless they say otherwise)
// and returns the Main, not started.
func newSidecar(t *testing.T, args ...string) *sidecar.Main {
	t.Helper()
	args = append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--reload-interval=20ms"}, args...)
	s, err := sidecar.ParseSettings(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	return sidecar.New(s, slog.New(slog.NewJSONHandler(io.Discard, nil)))
}

// twoHits sends the same descriptor twice, the limit being 1: OK, then
// OVER_LIMIT proves the call reached the engine.
func twoHits(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	rls := rlsv3.NewRateLimitServiceClient(conn)
	req := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}}}
	for _, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := rls.ShouldRateLimit(ctx, req)
		cancel()
		if err != nil || resp.OverallCode != want {
			t.Fatalf("ShouldRateLimit: %v %v, want %v", resp, err, want)
		}
	}
}

// TestGRPCOnUnixSocket: --grpc-addr unix:///path serves on a socket of
// mode 0660 that a gRPC client dials as unix:///path; a stale socket is
// replaced, and the socket is gone after Shutdown.
func TestGRPCOnUnixSocket(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(socketDir(t), "rls.sock")
	// A socket left behind by a process that died.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	m := newSidecar(t, "--config="+limitsFile(t), "--grpc-addr=unix://"+sock)
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start over a stale socket: %v", err)
	}
	t.Cleanup(func() { m.Shutdown() })
	if got := m.GRPCAddr(); got != "unix://"+sock {
		t.Fatalf("GRPCAddr %q, want unix://%s", got, sock)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != sidecar.SocketMode {
		t.Fatalf("socket %v %v, want a socket of mode %v", fi.Mode(), err, sidecar.SocketMode)
	}
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	twoHits(t, conn)
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over the socket: %v %v", h, err)
	}

	// A second sidecar on the same path must not take the live socket.
	second := newSidecar(t, "--config="+limitsFile(t), "--grpc-addr=unix://"+sock)
	if err := second.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "another process is serving") {
		second.Shutdown()
		t.Fatalf("second sidecar on a live socket: %v, want a refusal", err)
	}
	stillServed := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("the first sidecar lost its socket: %v", err)
		}
	}
	stillServed()

	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket after Shutdown: %v, want it removed", err)
	}
}

// TestGRPCUnixSocketPathTaken: a file that is not a socket is never
// removed; start-up fails naming it.
func TestGRPCUnixSocketPathTaken(t *testing.T) {
	t.Parallel()
	path := filepath.Join(socketDir(t), "not-a-socket")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newSidecar(t, "--config="+limitsFile(t), "--grpc-addr=unix://"+path)
	err := m.Start(context.Background())
	if err == nil {
		m.Shutdown()
	}
	if err == nil || !strings.Contains(err.Error(), "--grpc-addr") || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("start: %v, want an error naming --grpc-addr and the file", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("the file was touched: %q", b)
	}
}

// TestGRPCMutualTLS: with --grpc-tls-*, only clients with a certificate
// from the CA (and the pinned SAN) are served, and a rotated server
// certificate is served to new connections without a restart.
func TestGRPCMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "gateway CA")
	srv := ca.Issue(t, tlstest.Leaf{CommonName: "first", DNSNames: []string{"ratelimit.test"}})
	cert := tlstest.Write(t, dir, "tls.crt", srv.CertPEM)
	key := tlstest.Write(t, dir, "tls.key", srv.KeyPEM)
	caFile := tlstest.Write(t, dir, "ca.crt", ca.PEM)
	m := newSidecar(t, "--config="+limitsFile(t), "--grpc-tls-cert="+cert, "--grpc-tls-key="+key,
		"--grpc-tls-client-ca="+caFile, "--grpc-tls-client-san=envoy.gateway.test")
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })

	dial := func(t *testing.T, certs ...tls.Certificate) *grpc.ClientConn {
		t.Helper()
		creds := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "ratelimit.test", Certificates: certs})
		conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	refused := func(t *testing.T, conn *grpc.ClientConn) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatal("served without an acceptable client certificate")
		}
	}
	envoy := ca.Issue(t, tlstest.Leaf{CommonName: "envoy", DNSNames: []string{"envoy.gateway.test"}})
	t.Run("no client certificate", func(t *testing.T) { refused(t, dial(t)) })
	t.Run("another SAN", func(t *testing.T) {
		refused(t, dial(t, ca.Issue(t, tlstest.Leaf{CommonName: "x", DNSNames: []string{"other.test"}}).TLS(t)))
	})
	t.Run("plaintext", func(t *testing.T) {
		conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		refused(t, conn)
	})
	twoHits(t, dial(t, envoy.TLS(t)))

	// Rotate the server certificate as cert-manager or Envoy Gateway's
	// certgen would: new connections see it, with no restart.
	next := ca.Issue(t, tlstest.Leaf{CommonName: "second", DNSNames: []string{"ratelimit.test"}})
	tlstest.Write(t, dir, "tls.key", next.KeyPEM)
	tlstest.Write(t, dir, "tls.crt", next.CertPEM)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tls.Dial("tcp", m.GRPCAddr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "ratelimit.test", Certificates: []tls.Certificate{envoy.TLS(t)}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		c.Close()
		if cn == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving %q after the rotation", cn)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn := dial(t, envoy.TLS(t))
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}

	// /debug/config shows the certificate in force.
	resp, err := http.Get("http://" + m.HTTPAddr() + "/debug/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		GRPCTLS struct {
			Path   string `json:"path"`
			Config struct {
				Subject  string `json:"subject"`
				Required bool   `json:"client_certificates_required"`
			} `json:"config"`
		} `json:"grpc_tls"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.GRPCTLS.Path != cert || st.GRPCTLS.Config.Subject != "CN=second" || !st.GRPCTLS.Config.Required {
		t.Errorf("/debug/config grpc_tls = %+v, want the rotated certificate, client certificates required", st.GRPCTLS)
	}
}

// TestGRPCTLSSettingsErrors: contradictory TLS settings and files that do
// not load fail start-up, naming the flags.
func TestGRPCTLSSettingsErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpc-tls-cert=c.pem"}, "--grpc-tls-cert needs --grpc-tls-key"},
		{[]string{"--grpc-tls-key=k.pem"}, "--grpc-tls-key needs --grpc-tls-cert"},
		{[]string{"--grpc-tls-client-ca=ca.pem"}, "--grpc-tls-client-ca needs --grpc-tls-cert"},
		{[]string{"--grpc-tls-cert=c.pem", "--grpc-tls-key=k.pem", "--grpc-tls-client-san=envoy"}, "--grpc-tls-client-san needs --grpc-tls-client-ca"},
		{[]string{"--grpc-addr=unix://"}, "a Unix socket needs a path"},
	} {
		_, err := sidecar.ParseSettings(tc.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.crt")
	m := newSidecar(t, "--config="+limitsFile(t), "--grpc-tls-cert="+missing, "--grpc-tls-key="+missing)
	err := m.Start(context.Background())
	if err == nil {
		m.Shutdown()
	}
	if err == nil || !strings.Contains(err.Error(), "--grpc-tls") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("start with a missing certificate: %v, want an error naming the flag and file", err)
	}
}
