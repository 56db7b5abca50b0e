package sidecar_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/floodgate/floodgate/internal/shareddata"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

const referenceConfig = `domain: rl
descriptors:
  - key: source_cluster
    value: proxy
    descriptors:
      - key: destination_cluster
        value: bar
        rate_limit: {unit: minute, requests_per_unit: 2}
  - key: foo
    rate_limit: {unit: hour, requests_per_unit: 5}
    shadow_mode: true
  - key: quota
    quota_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: free
    rate_limit: {unlimited: true}
`

func postJSON(t *testing.T, url, body string) (int, string, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestJSONEndpoint: /json as the reference answers it: 200 with the
// response in protojson, 429 over the limit, 400 for a body that is not a
// request and for a request the service refuses.
func TestJSONEndpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rl.yaml"), referenceConfig)
	r := start(t, "--config="+dir, "--ratelimit-headers=false")
	url := "http://" + r.main.HTTPAddr() + "/json"
	req := `{"domain":"rl","descriptors":[{"entries":[{"key":"source_cluster","value":"proxy"},{"key":"destination_cluster","value":"bar"}]}]}`
	for i, want := range []int{200, 200, 429} {
		code, ctype, body := postJSON(t, url, req)
		if code != want || ctype != "application/json" {
			t.Fatalf("call %d: %d %s %s, want %d application/json", i, code, ctype, body, want)
		}
		var resp rlsv3.RateLimitResponse
		if err := protojson.Unmarshal([]byte(body), &resp); err != nil {
			t.Fatalf("call %d: body %s: %v", i, body, err)
		}
		wantCode := rlsv3.RateLimitResponse_OK
		if want == 429 {
			wantCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if resp.OverallCode != wantCode || resp.Statuses[0].GetCurrentLimit().GetRequestsPerUnit() != 2 {
			t.Errorf("call %d: %s", i, body)
		}
	}
	for _, bad := range []string{`{"domain":`, `{"domian":"rl"}`, `{"domain":"","descriptors":[]}`} {
		if code, _, body := postJSON(t, url, bad); code != http.StatusBadRequest || strings.TrimSpace(body) != "Bad Request" {
			t.Errorf("%s: %d %q, want 400 Bad Request", bad, code, body)
		}
	}
}

// TestRLConfig: /rlconfig on the debug listener, one limit a line in the
// reference's format; the listener is off without --debug-addr.
func TestRLConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rl.yaml"), referenceConfig)
	writeFile(t, filepath.Join(dir, "another.yaml"), "domain: another\ndescriptors:\n  - key: key2\n    rate_limit: {unit: day, requests_per_unit: 20}\n")
	r := start(t, "--config="+dir, "--debug-addr=127.0.0.1:0")
	code, body := httpGet(t, "http://"+r.main.DebugAddr()+"/rlconfig")
	want := "another.key2: unit=DAY requests_per_unit=20, shadow_mode: false, quota_mode: false\n" +
		"rl.source_cluster_proxy.destination_cluster_bar: unit=MINUTE requests_per_unit=2, shadow_mode: false, quota_mode: false\n" +
		"rl.foo: unit=HOUR requests_per_unit=5, shadow_mode: true, quota_mode: false\n" +
		"rl.quota: unit=SECOND requests_per_unit=1, shadow_mode: false, quota_mode: true\n" +
		"rl.free: unit=UNKNOWN requests_per_unit=0, shadow_mode: false, quota_mode: false\n"
	if code != 200 || body != want {
		t.Errorf("/rlconfig: %d\n%s\nwant\n%s", code, body, want)
	}
	if code, _ := httpGet(t, "http://"+r.main.HTTPAddr()+"/rlconfig"); code != http.StatusNotFound {
		t.Errorf("/rlconfig on the HTTP listener: %d, want 404", code)
	}
	if plain := start(t, "--config="+dir); plain.main.DebugAddr() != "" {
		t.Errorf("debug listener %q without --debug-addr", plain.main.DebugAddr())
	}
}

// TestRLConfigFormat: the reference's fixture configs render as it
// renders them (line set; its order is a map's).
func TestRLConfigFormat(t *testing.T) {
	t.Parallel()
	cfg, err := descriptors.Load(filepath.Join(shareddata.Dir(t, "envoy-ratelimit", "test", "integration", "runtime", "current", "ratelimit", "config"), "another.yaml"), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := sidecar.RLConfig(cfg)
	for _, line := range []string{
		"another.key2: unit=MINUTE requests_per_unit=20, shadow_mode: false, quota_mode: false\n",
		"another.key3: unit=HOUR requests_per_unit=10, shadow_mode: false, quota_mode: false\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
}

// TestHealthyNeedsConfig: with --healthy-needs-config, /healthcheck,
// readiness and the reference's grpc.health.v1 name fail while no domain
// is loaded, and recover once one is.
func TestHealthyNeedsConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := start(t, "--config="+dir, "--healthy-needs-config")
	base := "http://" + r.main.HTTPAddr()
	health := healthpb.NewHealthClient(r.conn)
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "ratelimit"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	if code, _ := httpGet(t, base+"/healthcheck"); code != 500 {
		t.Errorf("/healthcheck without a domain: %d, want 500", code)
	}
	if code, _ := httpGet(t, base+"/readyz"); code != 503 {
		t.Errorf("/readyz without a domain: %d, want 503", code)
	}
	if st := status(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("grpc health ratelimit: %v, want NOT_SERVING", st)
	}
	writeFile(t, filepath.Join(dir, "rl.yaml"), referenceConfig)
	eventually(t, "healthy once a domain loads", func() bool {
		code, body := httpGet(t, base+"/healthcheck")
		return code == 200 && body == "OK"
	})
	if st := status(); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc health ratelimit: %v, want SERVING", st)
	}

	// Without the setting an empty config is healthy, as the reference's.
	plain := start(t, "--config="+t.TempDir())
	if code, body := httpGet(t, "http://"+plain.main.HTTPAddr()+"/healthcheck"); code != 200 || body != "OK" {
		t.Errorf("/healthcheck, empty config, no setting: %d %q", code, body)
	}
}

// TestReferenceHeaders: --ratelimit-header-style=reference answers with
// the reference's three headers for the descriptor nearest its limit.
func TestReferenceHeaders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rl.yaml"), "domain: rl\ndescriptors:\n  - key: a\n    rate_limit: {unit: hour, requests_per_unit: 10}\n  - key: b\n    rate_limit: {unit: minute, requests_per_unit: 3}\n")
	r := start(t, "--config="+dir, "--ratelimit-header-style=reference", "--ratelimit-header-reset=X-Reset")
	desc := func(k string) *rlv3.RateLimitDescriptor {
		return &rlv3.RateLimitDescriptor{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: k, Value: "v"}}}
	}
	resp, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "rl", Descriptors: []*rlv3.RateLimitDescriptor{desc("a"), desc("b")}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range resp.ResponseHeadersToAdd {
		got[h.Key] = h.Value
	}
	reset, _ := strconv.Atoi(got["X-Reset"])
	if len(got) != 3 || got["RateLimit-Limit"] != "3" || got["RateLimit-Remaining"] != "2" || reset < 1 || reset > 60 {
		t.Errorf("headers %v, want RateLimit-Limit 3, RateLimit-Remaining 2, X-Reset 1..60 (b is nearest its limit)", got)
	}
}

// TestRuntimeLayout: --config-layout=runtime reads the directory as the
// reference's runtime loader does: every file below it, any name,
// subdirectories too, dotfiles skipped; runtime-dotfiles reads those too.
func TestRuntimeLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, ".hidden"), 0o755))
	writeFile(t, filepath.Join(dir, "one.conf"), limitConfig("one", 1))
	writeFile(t, filepath.Join(dir, "sub", "two.yaml"), limitConfig("two", 2))
	writeFile(t, filepath.Join(dir, ".three.yaml"), limitConfig("three", 3))
	writeFile(t, filepath.Join(dir, ".hidden", "four.yaml"), limitConfig("four", 4))
	r := start(t, "--config="+dir, "--config-layout=runtime")
	if r.limitOf(t, "one") != 1 || r.limitOf(t, "two") != 2 || r.limitOf(t, "three") != 0 || r.limitOf(t, "four") != 0 {
		t.Errorf("runtime layout: one %d two %d three %d four %d, want 1 2 0 0", r.limitOf(t, "one"), r.limitOf(t, "two"), r.limitOf(t, "three"), r.limitOf(t, "four"))
	}
	// An edit in the subdirectory reloads.
	writeFile(t, filepath.Join(dir, "sub", "two.yaml"), limitConfig("two", 22))
	eventually(t, "the subdirectory's edit", func() bool { return r.limitOf(t, "two") == 22 })

	d := start(t, "--config="+dir, "--config-layout=runtime-dotfiles")
	if d.limitOf(t, "three") != 3 || d.limitOf(t, "four") != 4 {
		t.Errorf("runtime-dotfiles: three %d four %d, want 3 4", d.limitOf(t, "three"), d.limitOf(t, "four"))
	}
	// The yaml layout: top-level *.yaml only.
	y := start(t, "--config="+dir)
	if y.limitOf(t, "one") != 0 || y.limitOf(t, "two") != 0 {
		t.Errorf("yaml layout read one.conf or sub/")
	}
}
