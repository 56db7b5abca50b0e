package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/floodgate/floodgate/internal/otlptest"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/internal/shareddata"
	"github.com/floodgate/floodgate/internal/xdstest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// refAddrs are the bound addresses of a ratelimit-mode process.
type refAddrs struct{ http, debug, grpc, metrics string }

// startRatelimit runs `sidecar ratelimit` with env (and nothing else: no
// SIDECAR_* is read) until the test ends. While serve lacks a flag that
// another branch adds, the mode cannot start in this build: the test is
// skipped naming that flag. TODO(after the merge into dropin): that skip
// must never happen.
func startRatelimit(t *testing.T, env map[string]string) refAddrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr lockedBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"ratelimit"}, func(k string) string { return env[k] }, io.Discard, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Error("ratelimit mode did not stop")
		}
	})
	deadline := time.After(20 * time.Second)
	for {
		select {
		case code := <-exited:
			exited <- code
			t.Fatalf("ratelimit mode exited %d:\n%s", code, stderr.String())
		case <-deadline:
			t.Fatalf("ratelimit mode not listening:\n%s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			var line struct {
				Msg, HTTP, Debug, GRPC string
				Metrics                string `json:"reference_metrics"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				return refAddrs{http: line.HTTP, debug: line.Debug, grpc: line.GRPC, metrics: line.Metrics}
			}
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// loopbackListeners put every listener of the mode on 127.0.0.1:0, and
// logs in JSON at info, so that the test reads the bound addresses.
func loopbackListeners(env map[string]string) {
	for k, v := range map[string]string{
		"HOST": "127.0.0.1", "PORT": "0", "GRPC_HOST": "127.0.0.1", "GRPC_PORT": "0",
		"DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": "0", "LOG_FORMAT": "json", "LOG_LEVEL": "info",
	} {
		env[k] = v
	}
}

// TestRatelimitModeFile runs the mode on the reference's runtime layout
// (its integration test's config files) and Redis, and asks it as the
// reference is asked: /healthcheck, /json, /rlconfig.
func TestRatelimitModeFile(t *testing.T) {
	t.Parallel()
	redis := redistest.StartServer(t)
	root := t.TempDir()
	cfgDir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	fixtures := shareddata.Dir(t, "envoy-ratelimit", "test", "integration", "runtime", "current", "ratelimit", "config")
	for _, f := range []string{"basic.yaml", "another.yaml"} {
		data, err := os.ReadFile(filepath.Join(fixtures, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfgDir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{
		"RUNTIME_ROOT": root, "RUNTIME_SUBDIRECTORY": "ratelimit", "RUNTIME_IGNOREDOTFILES": "true",
		"REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": redis.Addr, "USE_STATSD": "false",
		// Read by serve, never by the ratelimit mode.
		"SIDECAR_CONFIG": "/nonexistent",
	}
	loopbackListeners(env)
	a := startRatelimit(t, env)
	if code, body := get(t, "http://"+a.http+"/healthcheck"); code != 200 || body != "OK" {
		t.Errorf("/healthcheck: %d %q", code, body)
	}
	req := `{"domain":"another","descriptors":[{"entries":[{"key":"key2"}]}]}`
	if code, body := post(t, "http://"+a.http+"/json", req); code != 200 || !strings.Contains(body, `"overallCode":"OK"`) {
		t.Errorf("/json: %d %s", code, body)
	}
	code, body := get(t, "http://"+a.debug+"/rlconfig")
	if code != 200 || !strings.Contains(body, "another.key2: unit=MINUTE requests_per_unit=20, shadow_mode: false, quota_mode: false\n") ||
		!strings.Contains(body, "basic.key1: unit=SECOND requests_per_unit=50, shadow_mode: false, quota_mode: false\n") {
		t.Errorf("/rlconfig: %d\n%s", code, body)
	}
}

// TestRatelimitModeEnvoyGateway starts the mode with the environment
// Envoy Gateway gives its envoy-ratelimit Deployment
// (../../pkg/refenv/testdata/envoy-gateway.env), changed only where the
// test needs local things: file paths to generated certificates, the xDS
// server (go-control-plane's, over mutual TLS) and Redis (over TLS) on
// loopback, listeners on loopback. With FORCE_START_WITHOUT_INITIAL_CONFIG
// it serves before any config (/healthcheck OK, /json refused with 400,
// /rlconfig empty); once the xDS server sends a config for node
// envoy-ratelimit, /rlconfig lists it and /json decides with it.
func TestRatelimitModeEnvoyGateway(t *testing.T) {
	t.Parallel()
	env := readEnv(t, "../../pkg/refenv/testdata/envoy-gateway.env")
	certs := xdstest.NewCerts(t)
	xds := xdstest.StartTLS(t, certs.ServerTLS(t, true))
	redis := redistest.StartTLSServer(t)
	_, _, redisCA := redis.TLSFiles()
	otlp := otlptest.Start(t)
	for k, v := range map[string]string{
		"GRPC_SERVER_TLS_CERT": certs.ServerCert, "GRPC_SERVER_TLS_KEY": certs.ServerKey, "GRPC_SERVER_TLS_CA_CERT": certs.CAFile,
		"CONFIG_GRPC_XDS_CLIENT_TLS_CERT": certs.ClientCert, "CONFIG_GRPC_XDS_CLIENT_TLS_KEY": certs.ClientKey,
		"CONFIG_GRPC_XDS_SERVER_TLS_CACERT": certs.CAFile, "CONFIG_GRPC_XDS_SERVER_URL": xds.Addr,
		"REDIS_URL": redis.Addr, "REDIS_TLS_CLIENT_CERT": certs.ClientCert, "REDIS_TLS_CLIENT_KEY": certs.ClientKey, "REDIS_TLS_CACERT": redisCA,
		"PROMETHEUS_ADDR": "127.0.0.1:0", "PROMETHEUS_MAPPER_YAML": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + otlp.HTTPAddr(),
	} {
		env[k] = v
	}
	loopbackListeners(env)
	a := startRatelimit(t, env)
	if code, body := get(t, "http://"+a.http+"/healthcheck"); code != 200 || body != "OK" {
		t.Errorf("/healthcheck: %d %q", code, body)
	}
	req := `{"domain":"eg","descriptors":[{"entries":[{"key":"k","value":"v"}]}]}`
	if code, _ := post(t, "http://"+a.http+"/json", req); code != 400 {
		t.Errorf("/json before any config: %d, want 400", code)
	}
	if code, body := get(t, "http://"+a.debug+"/rlconfig"); code != 200 || body != "" {
		t.Errorf("/rlconfig before any config: %d %q", code, body)
	}

	xds.Set(env["CONFIG_GRPC_XDS_NODE_ID"], "1", xdstest.Limit("eg", 2, "k", "v"))
	want := "eg.k_v: unit=MINUTE requests_per_unit=2, shadow_mode: false, quota_mode: false\n"
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, body := get(t, "http://"+a.debug+"/rlconfig"); body == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/rlconfig never showed the xDS config")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, wantCode := range []int{200, 200, 429} {
		if code, body := post(t, "http://"+a.http+"/json", req); code != wantCode {
			t.Errorf("/json call %d: %d %s, want %d", i, code, body, wantCode)
		}
	}

	// gRPC is mutual TLS: Envoy's client certificate (signed by the CA of
	// GRPC_SERVER_TLS_CA_CERT) is answered, a connection without one is not.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(certs.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA %s: %v", certs.CAFile, err)
	}
	clientCert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	grpcReq := &rlsv3.RateLimitRequest{Domain: "eg", Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}}}
	for _, c := range []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{{"with the client certificate", []tls.Certificate{clientCert}, true}, {"without a client certificate", nil, false}} {
		conn, err := grpc.NewClient(a.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: c.certs, ServerName: "127.0.0.1"})))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, grpcReq)
		cancel()
		conn.Close()
		switch {
		case c.wantOK && (err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT):
			t.Errorf("gRPC %s: %v %v, want OVER_LIMIT (the 4th hit)", c.name, resp, err)
		case !c.wantOK && err == nil:
			t.Errorf("gRPC %s: answered %v, want the connection refused", c.name, resp)
		}
	}

	// A bad update (a resource without a domain, beside a new limit for eg)
	// is NACKed, and the config in force, with its counts, stays.
	xds.Set(env["CONFIG_GRPC_XDS_NODE_ID"], "2", xdstest.Limit("eg", 100, "k", "v"), &rlconf.RateLimitConfig{Name: "bad"})
	for len(xds.NACKs()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the bad xDS update was never NACKed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, body := get(t, "http://"+a.debug+"/rlconfig"); body != want {
		t.Errorf("/rlconfig after a NACKed update: %q, want %q", body, want)
	}
	if code, body := post(t, "http://"+a.http+"/json", req); code != 429 {
		t.Errorf("/json after a NACKed update: %d %s, want 429 (the old limit of 2, 4 hits in)", code, body)
	}

	// PROMETHEUS_ADDR serves the reference's names, by its default mapping:
	// 5 hits on eg's k_v, 3 of them over the limit of 2.
	_, metrics := get(t, "http://"+a.metrics+"/metrics")
	for _, w := range []string{
		`ratelimit_service_rate_limit_total_hits{domain="eg",key1="k_v"} 5`,
		`ratelimit_service_rate_limit_over_limit{domain="eg",key1="k_v"} 3`,
		`ratelimit_service_rate_limit_within_limit{domain="eg",key1="k_v"} 2`,
	} {
		if !strings.Contains(metrics, w+"\n") {
			t.Errorf("PROMETHEUS_ADDR /metrics lacks %s", w)
		}
	}
	if t.Failed() {
		t.Logf("reference metrics:\n%s", metrics)
	}

	// Tracing as Envoy Gateway turns it on: the gRPC call's server span
	// reaches OTEL_EXPORTER_OTLP_ENDPOINT (a loopback collector here) over
	// OTLP/HTTP, under the service names it sets.
	deadline = time.Now().Add(20 * time.Second)
	for {
		if spans := otlp.Spans(); len(spans) > 0 {
			r := spans[0].Resource
			if r["service.name"] != env["TRACING_SERVICE_NAME"] || r["service.namespace"] != env["TRACING_SERVICE_NAMESPACE"] || r["service.instance.id"] != env["TRACING_SERVICE_INSTANCE_ID"] {
				t.Errorf("span resource %v, want Envoy Gateway's TRACING_SERVICE_* names", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no span reached OTEL_EXPORTER_OTLP_ENDPOINT")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRatelimitModeRefuses: a value the mode cannot honour stops it before
// anything starts, naming the variable.
func TestRatelimitModeRefuses(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"BACKEND_TYPE":   {"BACKEND_TYPE": "cassandra", "RUNTIME_SUBDIRECTORY": "rl"},
		"USE_DOG_STATSD": {"USE_DOG_STATSD": "true", "RUNTIME_SUBDIRECTORY": "rl"},
		"CONFIG_TYPE":    {"CONFIG_TYPE": "GRPC_XDS_DELTA"},
		"PORT":           {"PORT": "eighty", "RUNTIME_SUBDIRECTORY": "rl"},
	} {
		var stderr lockedBuffer
		code := run(context.Background(), []string{"ratelimit"}, func(k string) string { return env[k] }, io.Discard, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), name+"=") {
			t.Errorf("%s: exit %d, stderr %q; want %d naming %s", name, code, stderr.String(), exitUsage, name)
		}
	}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}
