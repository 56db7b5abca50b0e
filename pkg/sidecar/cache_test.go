package sidecar_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/extproctest"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

const cacheHealthName = "envoy.service.ext_proc.v3.ExternalProcessor"

const cacheRules = `rules:
  - name: catalog
    match: {path_prefix: /v1/catalog/}
    ttl: 60s
`

func cacheFiles(t *testing.T, rules string) (limits, cache string) {
	t.Helper()
	dir := t.TempDir()
	limits, cache = filepath.Join(dir, "limits.yaml"), filepath.Join(dir, "cache.yaml")
	writeFile(t, limits, limitConfig("a", 7))
	writeFile(t, cache, rules)
	return limits, cache
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// TestCacheDoorOnlyWithCacheConfig: without --cache-config Process is
// UNIMPLEMENTED, its health name unknown and /cache/purge absent; with it
// all three answer, on the same listeners, and a miss then a hit go
// through the door.
func TestCacheDoorOnlyWithCacheConfig(t *testing.T) {
	t.Parallel()
	limits, cache := cacheFiles(t, cacheRules)
	r := start(t, "--config="+limits)
	s, err := extprocv3.NewExternalProcessorClient(r.conn).Process(context.Background())
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Process without --cache-config: %v, want UNIMPLEMENTED", err)
	}
	if _, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: cacheHealthName}); status.Code(err) != codes.NotFound {
		t.Errorf("health without --cache-config: %v, want NOT_FOUND", err)
	}
	if code, _ := post(t, "http://"+r.main.HTTPAddr()+"/cache/purge", "", `{"tags":["a"]}`); code != http.StatusNotFound {
		t.Errorf("/cache/purge without --cache-config: %d, want 404", code)
	}

	r = start(t, "--config="+limits, "--cache-config="+cache)
	resp, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: cacheHealthName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %s: %v %v, want SERVING", cacheHealthName, resp, err)
	}
	c := extproctest.New(r.conn)
	req := extproctest.Request{Authority: "api.example.com", Path: "/v1/catalog/1"}
	upstream := extproctest.Response{Status: 200, Header: [][2]string{{"cache-tag", "t1"}}, Body: []byte("one")}
	for i, want := range []bool{false, true} {
		res, err := c.Do(context.Background(), req, upstream)
		if err != nil {
			t.Fatal(err)
		}
		if res.Hit() != want {
			t.Fatalf("request %d: hit %v, want %v (Cache-Status %q)", i, res.Hit(), want, res.Get("cache-status"))
		}
	}
	url := "http://" + r.main.HTTPAddr() + "/cache/purge"
	for body, want := range map[string]int{`{"tags":["t1"]}`: 200, `{}`: 400, `{"paths":["nope"]}`: 400, `{"tag":["t1"]}`: 400, `[`: 400} {
		if code, got := post(t, url, "", body); code != want {
			t.Errorf("purge %s: %d %s, want %d", body, code, got, want)
		}
	}
	if code, got := post(t, url, "", `{"paths":["/v1/catalog/1"]}`); code != 200 || got != `{"removed":0}` {
		t.Errorf("purge of a purged path: %d %s", code, got)
	}
	if _, body := httpGet(t, "http://"+r.main.HTTPAddr()+"/debug/config"); !strings.Contains(body, `"catalog"`) {
		t.Errorf("/debug/config lacks the cache rules: %s", body)
	}
}

// TestAdminToken: with --admin-token-file the admin endpoints want the
// token, even from loopback; /metrics and the probes do not.
func TestAdminToken(t *testing.T) {
	t.Parallel()
	limits, cache := cacheFiles(t, cacheRules)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "--config="+limits, "--cache-config="+cache, "--admin-token-file="+tokFile)
	base := "http://" + r.main.HTTPAddr()
	if code, _ := post(t, base+"/cache/purge", "", `{"tags":["x"]}`); code != http.StatusUnauthorized {
		t.Errorf("purge without the token: %d, want 401", code)
	}
	if code, _ := post(t, base+"/cache/purge", "wrong", `{"tags":["x"]}`); code != http.StatusUnauthorized {
		t.Errorf("purge with a wrong token: %d, want 401", code)
	}
	if code, body := post(t, base+"/cache/purge", "s3cret-token", `{"tags":["x"]}`); code != http.StatusOK {
		t.Errorf("purge with the token: %d %s, want 200", code, body)
	}
	if code, _ := httpGet(t, base+"/debug/config"); code != http.StatusUnauthorized {
		t.Errorf("/debug/config without the token: %d, want 401", code)
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if code, _ := httpGet(t, base+path); code != http.StatusOK {
			t.Errorf("%s: %d, want 200", path, code)
		}
	}
	if strings.Contains(r.logs.String(), "s3cret-token") {
		t.Error("the admin token is in the logs")
	}
}

func TestStartFailsOnBadCacheConfig(t *testing.T) {
	t.Parallel()
	limits, cache := cacheFiles(t, "rules:\n  - name: x\n    scope: everyone\n")
	s, err := sidecar.ParseSettings([]string{"--config=" + limits, "--cache-config=" + cache, "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = sidecar.New(s, slog.New(slog.NewJSONHandler(io.Discard, nil))).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), cache+":3") {
		t.Fatalf("Start: %v, want an error naming %s:3", err, cache)
	}
}

// TestCacheNeedsLoopbackGRPC: Process trusts the identity it is sent, so
// --cache-config refuses a listener others can reach, unless told the
// network is fenced.
func TestCacheNeedsLoopbackGRPC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{args: []string{"--cache-config=c.yaml"}},
		{args: []string{"--cache-config=c.yaml", "--grpc-addr=0.0.0.0:8081"}},
		{args: []string{"--cache-config=c.yaml", "--grpc-addr=127.0.0.1:8081"}, ok: true},
		{args: []string{"--cache-config=c.yaml", "--grpc-allow-remote"}, ok: true},
	} {
		_, err := sidecar.ParseSettings(tc.args, func(string) string { return "" }, io.Discard)
		if tc.ok != (err == nil) {
			t.Errorf("%v: %v, want ok %v", tc.args, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "--cache-config needs a loopback --grpc-addr") || !strings.Contains(err.Error(), "--grpc-allow-remote")) {
			t.Errorf("%v: %v, want the loopback error naming --grpc-allow-remote", tc.args, err)
		}
	}
}
