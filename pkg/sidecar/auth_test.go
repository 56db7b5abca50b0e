package sidecar_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

const authHealthName = "envoy.service.auth.v3.Authorization"

// fakeAuthLoader stands in for authconfig.Load: the auth file names a keys
// file (relative to it), whose number becomes TrustedHops, so that a test
// can see which content is in force. Files lists both, as Load would.
type fakeAuthLoader struct{ calls atomic.Int64 }

func (l *fakeAuthLoader) load(path string) (*authconfig.Config, error) {
	l.calls.Add(1)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys := filepath.Join(filepath.Dir(path), strings.TrimSpace(string(b)))
	kb, err := os.ReadFile(keys)
	if err != nil {
		return nil, err
	}
	hops, err := strconv.Atoi(strings.TrimSpace(string(kb)))
	if err != nil {
		return nil, errors.New(keys + ":1: not a number")
	}
	return &authconfig.Config{TrustedHops: hops, Files: []string{path, keys}}, nil
}

func authFiles(t *testing.T, hops int) (dir, auth, keys string) {
	t.Helper()
	dir = t.TempDir()
	auth, keys = filepath.Join(dir, "auth.yaml"), filepath.Join(dir, "keys.yaml")
	writeFile(t, filepath.Join(dir, "limits.yaml"), limitConfig("a", 7))
	writeFile(t, keys, strconv.Itoa(hops))
	writeFile(t, auth, "keys.yaml")
	return dir, auth, keys
}

func checkRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x"},
	}}}
}

// TestAuthDoorOnlyWithAuthConfig: without --auth-config Check is
// UNIMPLEMENTED and its health name unknown; with it the door answers on
// the same listener and its health name is SERVING.
func TestAuthDoorOnlyWithAuthConfig(t *testing.T) {
	t.Parallel()
	dir, auth, _ := authFiles(t, 0)
	r := start(t, "--config="+filepath.Join(dir, "limits.yaml"))
	_, err := authv3.NewAuthorizationClient(r.conn).Check(context.Background(), checkRequest())
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Check without --auth-config: %v, want UNIMPLEMENTED", err)
	}
	if _, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: authHealthName}); status.Code(err) != codes.NotFound {
		t.Errorf("health %s without --auth-config: %v, want NOT_FOUND", authHealthName, err)
	}

	loader := &fakeAuthLoader{}
	r = startWith(t, func(m *sidecar.Main) { sidecar.SetAuthLoader(m, loader.load) },
		"--config="+filepath.Join(dir, "limits.yaml"), "--auth-config="+auth)
	h, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: authHealthName})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health %s: %v %v, want SERVING", authHealthName, h, err)
	}
	// A config without policies: every request is 403 no-policy, in the
	// answer, with the RPC itself OK.
	resp, err := authv3.NewAuthorizationClient(r.conn).Check(context.Background(), checkRequest())
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied || resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Errorf("Check: %v %v, want a 403 answer", resp, err)
	}
	if _, err := authv3.NewAuthorizationClient(r.conn).Check(context.Background(), &authv3.CheckRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Check without attributes.request.http: %v, want INVALID_ARGUMENT", err)
	}
	// The rate-limit door still answers beside it.
	if got := r.limitOf(t, "a"); got != 7 {
		t.Errorf("rate limit beside the auth door: %d, want 7", got)
	}
}

// TestAuthConfigReloadsWithItsFiles: an edit to a file the auth config was
// read from (a keys file) reloads it; a bad edit keeps the old one.
func TestAuthConfigReloadsWithItsFiles(t *testing.T) {
	t.Parallel()
	dir, auth, keys := authFiles(t, 1)
	loader := &fakeAuthLoader{}
	r := startWith(t, func(m *sidecar.Main) { sidecar.SetAuthLoader(m, loader.load) },
		"--config="+filepath.Join(dir, "limits.yaml"), "--auth-config="+auth)
	hops := func() int { return sidecar.AuthConfig(r.main).TrustedHops }
	if hops() != 1 {
		t.Fatalf("trusted hops %d, want 1", hops())
	}
	writeFile(t, keys, "2")
	eventually(t, "the keys file's edit", func() bool { return hops() == 2 })
	writeFile(t, keys, "two")
	eventually(t, "the reload error", func() bool { return strings.Contains(r.logs.String(), "keys.yaml:1: not a number") })
	if hops() != 2 {
		t.Errorf("after a bad edit: hops %d, want the old config's 2", hops())
	}
	writeFile(t, auth, "other.yaml")
	writeFile(t, filepath.Join(dir, "other.yaml"), "3")
	eventually(t, "the auth file's edit", func() bool { return hops() == 3 })
}

// TestStartFailsOnBadAuthConfig: a config that does not load stops
// start-up, naming it.
func TestStartFailsOnBadAuthConfig(t *testing.T) {
	t.Parallel()
	dir, auth, keys := authFiles(t, 0)
	writeFile(t, keys, "zero")
	s, err := sidecar.ParseSettings([]string{"--config=" + filepath.Join(dir, "limits.yaml"), "--auth-config=" + auth,
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := sidecar.New(s, slog.New(slog.DiscardHandler))
	sidecar.SetAuthLoader(m, (&fakeAuthLoader{}).load)
	if err := m.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "auth config "+auth) || !strings.Contains(err.Error(), "keys.yaml:1") {
		t.Fatalf("start: %v, want an error naming the auth config and keys.yaml:1", err)
	}
}

// TestAuthConfigNeedsLoopback: with --auth-config, a gRPC listener that is
// not loopback (nor a Unix socket) stops start-up unless client
// certificates are required or --grpc-allow-remote is set.
func TestAuthConfigNeedsLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		ok   bool
	}{
		{args: []string{"--auth-config=a.yaml"}},                             // the default :8081
		{args: []string{"--auth-config=a.yaml", "--grpc-addr=0.0.0.0:8081"}}, // every interface
		{args: []string{"--auth-config=a.yaml", "--grpc-addr=10.0.0.1:8081"}},
		{args: []string{"--auth-config=a.yaml", "--grpc-addr=sidecar.local:8081"}},
		{args: []string{"--auth-config=a.yaml", "--grpc-addr=127.0.0.1:8081"}, ok: true},
		{args: []string{"--auth-config=a.yaml", "--grpc-addr=[::1]:8081"}, ok: true},
		{args: []string{"--auth-config=a.yaml", "--grpc-addr=localhost:8081"}, ok: true},
		{args: []string{"--auth-config=a.yaml", "--grpc-allow-remote"}, ok: true},
		{env: map[string]string{"SIDECAR_AUTH_CONFIG": "a.yaml", "SIDECAR_GRPC_ALLOW_REMOTE": "true"}, ok: true},
		{env: map[string]string{"SIDECAR_AUTH_CONFIG": "a.yaml"}},
		{args: []string{"--grpc-addr=0.0.0.0:8081"}, ok: true}, // no Check, no constraint
		// A Unix socket is reached only from the pod's file system.
		{args: []string{"--auth-config=a.yaml", "--grpc-addr=unix:///run/fg/grpc.sock"}, ok: true},
		// Required client certificates fence the listener; TLS alone does not.
		{args: []string{"--auth-config=a.yaml", "--grpc-tls-cert=c.pem", "--grpc-tls-key=k.pem", "--grpc-tls-client-ca=ca.pem"}, ok: true},
		{args: []string{"--auth-config=a.yaml", "--grpc-tls-cert=c.pem", "--grpc-tls-key=k.pem"}},
	} {
		s, err := sidecar.ParseSettings(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if tc.ok {
			if err != nil {
				t.Errorf("%v %v: %v", tc.args, tc.env, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "--auth-config needs a loopback --grpc-addr") || !strings.Contains(err.Error(), "--grpc-allow-remote") {
			t.Errorf("%v %v: %v, want the loopback error naming --grpc-allow-remote", tc.args, tc.env, err)
		}
		if s.AuthConfig != "a.yaml" {
			t.Errorf("%v %v: AuthConfig %q", tc.args, tc.env, s.AuthConfig)
		}
	}
}
