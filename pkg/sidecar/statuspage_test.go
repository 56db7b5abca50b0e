package sidecar

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/statuspage"
)

// statusLimits has a rule whose value would be markup if not escaped.
const statusLimits = `domain: api
descriptors:
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: path
    value: "<b>bold</b>"
    rate_limit: {unit: minute, requests_per_unit: 100}
`

func startStatus(t *testing.T, args ...string) *Main {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "api.yaml")
	if err := os.WriteFile(cfg, []byte(statusLimits), 0o644); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--config=" + cfg}, args...)
	s, err := ParseSettings(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := New(s, slog.New(slog.DiscardHandler))
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func getStatus(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
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
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStatusPageAgreesWithMetrics: after known traffic, the page's JSON
// and HTML carry the counts /metrics has, the top limited key with its
// exact count and no value in clear, and the rule's value escaped.
func TestStatusPageAgreesWithMetrics(t *testing.T) {
	t.Parallel()
	m := startStatus(t)
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rls := rlsv3.NewRateLimitServiceClient(conn)
	const sent = 10 // the limit is 3 a minute: 7 over, if a minute does not turn meanwhile
	for range sent {
		_, err := rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "api",
			Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "tenant", Value: "acme-secret-tenant"}}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + m.HTTPAddr()
	code, body := getStatus(t, base+"/debug/status.json", "")
	if code != http.StatusOK {
		t.Fatalf("/debug/status.json: %d %s", code, body)
	}
	var p statuspage.Page
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	_, metrics := getStatus(t, base+"/metrics", "")
	series := func(s string) string {
		for _, line := range strings.Split(metrics, "\n") {
			if v, ok := strings.CutPrefix(line, s+" "); ok {
				return v
			}
		}
		return "absent"
	}
	rule := p.Domains[0].Rules[0]
	if got, want := strconv.FormatFloat(rule.Hits.Value, 'f', -1, 64), series(`floodgate_ratelimit_total_hits{domain="api",rule="tenant"}`); got != want || got != "10" {
		t.Errorf("tenant hits: page %s, /metrics %s, want 10", got, want)
	}
	over := series(`floodgate_ratelimit_over_limit{domain="api",rule="tenant"}`)
	if got := strconv.FormatFloat(rule.OverLimit.Value, 'f', -1, 64); got != over {
		t.Errorf("tenant over limit: page %s, /metrics %s", got, over)
	}
	if len(p.TopKeys) != 1 || strconv.FormatUint(p.TopKeys[0].OverLimit, 10) != over || p.TopKeys[0].MaxError != 0 ||
		p.TopKeys[0].Domain != "api" || p.TopKeys[0].Keys[0] != "tenant" {
		t.Errorf("top keys %+v, want tenant of api with %s", p.TopKeys, over)
	}
	if len(p.Backend) != 1 || p.Backend[0].Name != "memory" || !p.Backend[0].Up {
		t.Errorf("backend %+v, want memory up", p.Backend)
	}
	if len(p.Sources) != 1 || p.Sources[0].Name != "limits" || !strings.HasSuffix(p.Sources[0].Origin, "api.yaml") || !p.Sources[0].Loaded {
		t.Errorf("sources %+v, want the limits file", p.Sources)
	}
	code, html := getStatus(t, base+"/debug/", "")
	if code != http.StatusOK {
		t.Fatalf("/debug/: %d", code)
	}
	for _, page := range []string{body, html} {
		if strings.Contains(page, "acme-secret-tenant") {
			t.Error("the page shows a descriptor value")
		}
	}
	if strings.Contains(html, "<b>bold</b>") || !strings.Contains(html, "&lt;b&gt;bold&lt;/b&gt;") {
		t.Error("the rule's value is not escaped on the page")
	}
	if !strings.Contains(html, `data-metric="floodgate_ratelimit_over_limit" data-labels="{domain=&#34;api&#34;,rule=&#34;tenant&#34;}" data-value="`+over+`"`) {
		t.Errorf("the page does not mark the tenant rule's over-limit count %s", over)
	}
}

// TestStatusPageGuarded: /debug/ and /debug/status.json answer loopback
// peers only, or with --admin-token-file only the token.
func TestStatusPageGuarded(t *testing.T) {
	t.Parallel()
	open := startStatus(t)
	h := open.httpHandler()
	for _, path := range []string{"/debug/", "/debug/status.json"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "10.0.0.7:5000"
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s from 10.0.0.7: %d, want 403", path, rec.Code)
		}
	}
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("page-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	guarded := startStatus(t, "--admin-token-file="+tok)
	base := "http://" + guarded.HTTPAddr()
	for _, path := range []string{"/debug/", "/debug/status.json"} {
		if code, _ := getStatus(t, base+path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", path, code)
		}
		if code, _ := getStatus(t, base+path, "page-token"); code != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200", path, code)
		}
	}
}

// TestStatusPageRedisHealth: the page says Redis is up while it answers,
// down once the store has marked it down, and up again when it is back;
// the node is named by its host only.
func TestStatusPageRedisHealth(t *testing.T) {
	t.Parallel()
	redis := redistest.StartServer(t)
	m := startStatus(t, "--redis-url="+redis.URL, "--redis-key-prefix="+t.Name()+":")
	node := func() statuspage.BackendNode {
		_, body := getStatus(t, "http://"+m.HTTPAddr()+"/debug/status.json", "")
		var p statuspage.Page
		if err := json.Unmarshal([]byte(body), &p); err != nil || len(p.Backend) != 1 {
			t.Fatalf("status.json: %v, %d backend nodes: %s", err, len(p.Backend), body)
		}
		return p.Backend[0]
	}
	u, _ := url.Parse(redis.URL)
	if n := node(); !n.Up || n.Name != "redis "+u.Host {
		t.Fatalf("backend %+v, want redis %s up", n, u.Host)
	}
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rls := rlsv3.NewRateLimitServiceClient(conn)
	ask := func() {
		rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "api",
			Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "tenant", Value: "t"}}}}})
	}
	redis.Stop()
	waitFor(t, "the page to say Redis is down", func() bool { ask(); return !node().Up })
	if err := redis.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the page to say Redis is up again", func() bool { ask(); return node().Up })
}

// TestBackendNodeNameHasNoSecret: the Redis node is named by host, never
// with the URL's password or query.
func TestBackendNodeNameHasNoSecret(t *testing.T) {
	t.Parallel()
	m := &Main{registry: prometheus.NewRegistry()}
	m.settings.Backend = "redis"
	m.settings.Redis.URL = "redis://user:hunter2@10.0.0.5:6379/0?addr=10.0.0.6:6379"
	nodes := m.backendNodes()
	if len(nodes) != 1 || nodes[0].Name != "redis 10.0.0.5:6379" || nodes[0].Up {
		t.Fatalf("nodes %+v, want redis 10.0.0.5:6379 not up (no gauge)", nodes)
	}
}

// waitFor polls cond until it holds, failing after a generous bound; it
// waits on behaviour and asserts no duration.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
