package sidecar_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/xdstest"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

const xdsNode = "sidecar-test"

func xdsArgs(srv *xdstest.Server, more ...string) []string {
	return append([]string{"--config-xds-url=" + srv.Addr, "--config-xds-node-id=" + xdsNode}, more...)
}

// askErr is ShouldRateLimit's error for one descriptor k=v of domain.
func (r *running) askErr(domain string) error {
	_, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
		Domain:      domain,
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
	})
	return err
}

func (r *running) healthOf(t *testing.T, name string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	h, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
	if err != nil {
		t.Fatalf("health %q: %v", name, err)
	}
	return h.GetStatus()
}

// xdsLimit is a RateLimitConfig of domain whose rule k is perMinute a
// minute, as limitConfig's file.
func xdsLimit(domain string, perMinute uint32) *rlconf.RateLimitConfig {
	return &rlconf.RateLimitConfig{Name: domain, Domain: domain, Descriptors: []*rlconf.RateLimitDescriptor{
		{Key: "k", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_MINUTE, RequestsPerUnit: perMinute}},
	}}
}

// TestXDSLimits: with --config-xds-url, Start does not wait for a config;
// until the first arrives ShouldRateLimit is UNAVAILABLE and every probe
// fails; then it serves, takes updates, NACKs a bad one (counted once, the
// old config serving through the server's resends) and takes the fix.
func TestXDSLimits(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	r := start(t, xdsArgs(srv)...)
	base := "http://" + r.main.HTTPAddr()

	if err := r.askErr("a"); status.Code(err) != codes.Unavailable {
		t.Errorf("ShouldRateLimit before the first config: %v, want UNAVAILABLE", err)
	}
	for _, name := range healthNames {
		if s := r.healthOf(t, name); s != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health %q before the first config: %v, want NOT_SERVING", name, s)
		}
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no limits config") {
		t.Errorf("/readyz before the first config: %d %q", code, body)
	}
	if code, _ := httpGet(t, base+"/healthcheck"); code != http.StatusInternalServerError {
		t.Errorf("/healthcheck before the first config: %d, want 500", code)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200 (the process runs)", code)
	}

	srv.Set(xdsNode, "1", xdsLimit("a", 7))
	eventually(t, "the first config", func() bool { return r.askErr("a") == nil })
	if got := r.limitOf(t, "a"); got != 7 {
		t.Errorf("limit %d, want 7", got)
	}
	for _, name := range healthNames {
		if s := r.healthOf(t, name); s != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q after the first config: %v, want SERVING", name, s)
		}
	}
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the first config: %d", code)
	}
	if code, body := httpGet(t, base+"/healthcheck"); code != http.StatusOK || body != "OK" {
		t.Errorf("/healthcheck after the first config: %d %q", code, body)
	}
	if _, body := httpGet(t, base+"/debug/config"); !strings.Contains(body, `"path": "xds://`+srv.Addr+` version 1"`) || !strings.Contains(body, `"xds:a"`) {
		t.Errorf("/debug/config does not say where the config came from:\n%.1500s", body)
	}

	srv.Set(xdsNode, "2", xdsLimit("a", 8), xdsLimit("b", 3))
	eventually(t, "the update", func() bool { return r.limitOf(t, "a") == 8 })
	if got := r.limitOf(t, "b"); got != 3 {
		t.Errorf("domain b: %d, want 3", got)
	}

	bad := xdsLimit("a", 9)
	bad.Descriptors[0].RateLimit.Unit = rlconf.RateLimitUnit_UNKNOWN
	srv.Set(xdsNode, "3", bad)
	eventually(t, "the NACK", func() bool { return len(srv.NACKs()) > 0 })
	if msg := srv.NACKs()[0].GetErrorDetail().GetMessage(); !strings.HasPrefix(msg, "xds:a: descriptors[0].rate_limit.unit: missing; allowed: ") {
		t.Errorf("NACK error_detail %q", msg)
	}
	time.Sleep(1500 * time.Millisecond) // the server resends version 3 all along
	if got := r.limitOf(t, "a"); got != 8 {
		t.Errorf("after a bad version: %d, want the old 8", got)
	}
	_, metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{
		`floodgate_config_reloads_total{result="error",source="limits"} 1`,
		`floodgate_config_reloads_total{result="success",source="limits"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "floodgate_config_reloads_total"))
		}
	}
	if n := strings.Count(r.logs.String(), "config reload failed"); n != 1 {
		t.Errorf("%d reload-failure lines for one rejected version, resent all along", n)
	}
	if _, body := httpGet(t, base+"/debug/config"); !strings.Contains(body, `xDS version \"3\" rejected`) || !strings.Contains(body, `version 2"`) {
		t.Errorf("/debug/config does not show the rejection beside version 2:\n%.1500s", body)
	}

	srv.Set(xdsNode, "4", xdsLimit("a", 10))
	eventually(t, "the fix", func() bool { return r.limitOf(t, "a") == 10 })
	if err := r.askErr("b"); err != nil {
		t.Errorf("domain b after it left the config: %v, want an OK answer (unknown domain)", err)
	}
}

// TestXDSForceStart: with --force-start the probes pass at once, while
// ShouldRateLimit stays UNAVAILABLE until the first config.
func TestXDSForceStart(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	r := start(t, xdsArgs(srv, "--force-start")...)
	base := "http://" + r.main.HTTPAddr()
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with --force-start: %d, want 200", code)
	}
	if code, body := httpGet(t, base+"/healthcheck"); code != http.StatusOK || body != "OK" {
		t.Errorf("/healthcheck with --force-start: %d %q", code, body)
	}
	for _, name := range healthNames {
		if s := r.healthOf(t, name); s != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q with --force-start: %v, want SERVING", name, s)
		}
	}
	if err := r.askErr("a"); status.Code(err) != codes.Unavailable {
		t.Errorf("ShouldRateLimit before the first config: %v, want UNAVAILABLE", err)
	}
	srv.Set(xdsNode, "1", xdsLimit("a", 7))
	eventually(t, "the first config", func() bool { return r.askErr("a") == nil })
	if got := r.limitOf(t, "a"); got != 7 {
		t.Errorf("limit %d, want 7", got)
	}
}

// TestForceStartWithBadFile: with --config, --force-start starts without
// a file that does not load and takes it once it is fixed.
func TestForceStartWithBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	writeFile(t, file, "domain: a\ndescriptors: [{key: k, rate_limit: {unit: fortnight, requests_per_unit: 1}}]\n")
	r := start(t, "--config="+file, "--force-start")
	if code, _ := httpGet(t, "http://"+r.main.HTTPAddr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d, want 200", code)
	}
	if err := r.askErr("a"); status.Code(err) != codes.Unavailable {
		t.Errorf("ShouldRateLimit without a config: %v, want UNAVAILABLE", err)
	}
	writeFile(t, file, limitConfig("a", 5))
	eventually(t, "the fixed file", func() bool { return r.askErr("a") == nil })
	if got := r.limitOf(t, "a"); got != 5 {
		t.Errorf("limit %d, want 5", got)
	}
}

// TestXDSMTLS: the TLS flags reach the xDS server that requires a client
// certificate, checking its SAN; a SAN it lacks gets nothing.
func TestXDSMTLS(t *testing.T) {
	t.Parallel()
	certs := xdstest.NewCerts(t)
	srv := xdstest.StartTLS(t, certs.ServerTLS(t, true))
	srv.Set(xdsNode, "1", xdsLimit("a", 7))
	tlsArgs := func(san string) []string {
		return xdsArgs(srv, "--config-xds-tls", "--config-xds-tls-ca="+certs.CAFile, "--config-xds-tls-san="+san,
			"--config-xds-tls-cert="+certs.ClientCert, "--config-xds-tls-key="+certs.ClientKey)
	}
	good := start(t, tlsArgs("xds.test")...)
	wrong := start(t, tlsArgs("other.test")...)
	eventually(t, "the config over mTLS", func() bool { return good.askErr("a") == nil })
	if got := good.limitOf(t, "a"); got != 7 {
		t.Errorf("limit %d, want 7", got)
	}
	time.Sleep(300 * time.Millisecond)
	if err := wrong.askErr("a"); status.Code(err) != codes.Unavailable {
		t.Errorf("with a SAN the server lacks: %v, want UNAVAILABLE", err)
	}
	if !strings.Contains(wrong.logs.String(), "other.test") {
		t.Errorf("the logs do not say why:\n%s", grepLines(wrong.logs.String(), "xDS"))
	}

	s, err := sidecar.ParseSettings(append(xdsArgs(srv, "--config-xds-tls", "--config-xds-tls-ca="+filepath.Join(t.TempDir(), "none.pem")),
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := sidecar.New(s, slog.New(slog.DiscardHandler)).Start(context.Background()); err == nil || !strings.Contains(err.Error(), "--config-xds-tls: CA file") {
		t.Errorf("start with a missing CA file: %v", err)
	}
}

// TestXDSWithAuthConfig: an auth config whose policies name domains loads
// before the first limits arrive over xDS, is checked against them once
// they do, and a reload naming a domain they lack fails.
func TestXDSWithAuthConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.yaml")
	authYAML := func(domain string) string {
		return "api_keys:\n  files: [keys.yaml]\npolicies:\n  - name: api\n    match: {path_prefix: /v1/}\n    auth: any\n" +
			"    rate_limit:\n      domain: " + domain + "\n      descriptors: [[{key: k, value: x}]]\n"
	}
	writeFile(t, filepath.Join(dir, "keys.yaml"), keysFile(map[string]string{"k-1": "fg_first-key-0123456789abcdefghijklmnop"}))
	writeFile(t, auth, authYAML("a"))
	srv := xdstest.Start(t)
	r := start(t, xdsArgs(srv, "--auth-config="+auth)...)
	if sidecar.AuthConfig(r.main) == nil {
		t.Fatal("no auth config in force")
	}
	srv.Set(xdsNode, "1", xdsLimit("b", 7))
	eventually(t, "the limits", func() bool { return r.askErr("b") == nil })
	eventually(t, "the domain mismatch logged", func() bool {
		return strings.Contains(r.logs.String(), "the limits config lacks domains the auth config") &&
			strings.Contains(r.logs.String(), `unknown domain \"a\"; known: b`)
	})
	srv.Set(xdsNode, "2", xdsLimit("a", 7), xdsLimit("b", 7))
	eventually(t, "domain a", func() bool { return r.askErr("a") == nil && r.limitOf(t, "a") == 7 })
	writeFile(t, auth, authYAML("nope"))
	eventually(t, "the auth reload checked against the xDS limits", func() bool {
		return strings.Contains(r.logs.String(), `unknown domain \"nope\"; known: a, b`)
	})
}

// TestXDSSettings: the flags' rules.
func TestXDSSettings(t *testing.T) {
	t.Parallel()
	s, err := sidecar.ParseSettings([]string{"--config-xds-url=127.0.0.1:18000", "--config-xds-node-id=n"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.Config != "" || s.XDS.URL != "127.0.0.1:18000" || s.XDS.NodeID != "n" {
		t.Errorf("settings %+v", s)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"both sources", []string{"--config=./limits", "--config-xds-url=h:1", "--config-xds-node-id=n"}, nil,
			"--config=./limits and --config-xds-url=h:1 are exclusive"},
		{"both sources by env", []string{"--config-xds-url=h:1", "--config-xds-node-id=n"}, map[string]string{"SIDECAR_CONFIG": "/etc/limits"},
			"--config=/etc/limits and --config-xds-url=h:1 are exclusive"},
		{"no node id", []string{"--config-xds-url=h:1"}, nil, "--config-xds-url needs --config-xds-node-id"},
		{"not host:port", []string{"--config-xds-url=http://h", "--config-xds-node-id=n"}, nil, "--config-xds-url=\"http://h\": must be host:port"},
		{"node id alone", []string{"--config-xds-node-id=n"}, nil, "--config-xds-node-id needs --config-xds-url"},
		{"tls alone", []string{"--config-xds-tls"}, nil, "--config-xds-tls needs --config-xds-url"},
		{"ca without tls", []string{"--config-xds-url=h:1", "--config-xds-node-id=n", "--config-xds-tls-ca=ca.pem"}, nil, "--config-xds-tls-ca needs --config-xds-tls"},
		{"san without tls", []string{"--config-xds-url=h:1", "--config-xds-node-id=n", "--config-xds-tls-san=x"}, nil, "--config-xds-tls-san needs --config-xds-tls"},
		{"cert without key", []string{"--config-xds-url=h:1", "--config-xds-node-id=n", "--config-xds-tls", "--config-xds-tls-cert=c.pem"}, nil,
			"--config-xds-tls-cert and --config-xds-tls-key go together"},
	} {
		_, err := sidecar.ParseSettings(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	// Settings built without ParseSettings are checked at Start too.
	m := sidecar.New(sidecar.Settings{Config: "./limits", XDS: sidecar.XDSSettings{URL: "h:1", NodeID: "n"},
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Backend: "memory"}, slog.New(slog.DiscardHandler))
	if err := m.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "are exclusive") {
		t.Errorf("Start with both sources: %v", err)
	}
}

// TestXDSInitialWait: with --config-xds-initial-wait, a call made before
// the first config waits for it and is answered with it (as the reference,
// which opens its gRPC port only then, has it retried); with no config
// within the wait, calls are answered UNAVAILABLE.
func TestXDSInitialWait(t *testing.T) {
	t.Parallel()
	srv := xdstest.Start(t)
	r := start(t, xdsArgs(srv, "--config-xds-initial-wait=20s")...)
	answered := make(chan error, 1)
	go func() { answered <- r.askErr("a") }()
	select {
	case err := <-answered:
		t.Fatalf("answered before any config: %v; want the call to wait", err)
	case <-time.After(300 * time.Millisecond):
	}
	srv.Set(xdsNode, "1", xdsLimit("a", 7))
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("the waiting call: %v, want answered with the config", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting call was never answered")
	}

	short := start(t, xdsArgs(xdstest.Start(t), "--config-xds-initial-wait=200ms")...)
	if err := short.askErr("a"); status.Code(err) != codes.Unavailable {
		t.Errorf("after the wait, without a config: %v, want UNAVAILABLE", err)
	}
}
