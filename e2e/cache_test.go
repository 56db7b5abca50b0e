package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/floodgate/floodgate/internal/extproctest"
	"github.com/floodgate/floodgate/internal/redistest"
)

// The response cache's tests run the built binary with --cache-config and
// play Envoy's ext_proc filter against it with internal/extproctest: each
// HTTP request is one Process stream, its headers in raw_value, the
// ext_authz metadata in metadata_context, bodies only when asked for. The
// same tests run on the memory store and on a real Redis. Every count is
// exact: each test has its own sidecar (or, on Redis, its own server).

// cacheRules are the rules most tests use: public items whose writes also
// invalidate the lists, public lists, and per-user pages.
const cacheRules = `rules:
  - name: items
    match: {hosts: [api.example.com], path_prefix: /v1/items/}
    scope: public
    ttl: 60s
    invalidates: [/v1/lists/]
  - name: lists
    match: {hosts: [api.example.com], path_prefix: /v1/lists/}
    scope: public
    ttl: 60s
  - name: me
    match: {hosts: [api.example.com], path_prefix: /v1/me/}
    scope: user
    ttl: 60s
`

const cacheHost = "api.example.com"

// cacheStore is where a test's sidecars keep entries.
type cacheStore struct {
	name  string
	redis bool
}

var cacheStores = []cacheStore{{name: "memory"}, {name: "redis", redis: true}}

// eachStore runs f as a parallel subtest per store; on Redis each subtest
// gets a server of its own, so that entry counts are the test's alone.
func eachStore(t *testing.T, f func(t *testing.T, args []string)) {
	for _, st := range cacheStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			var args []string
			if st.redis {
				args = []string{"--redis-url", redistest.StartServer(t).URL}
			}
			f(t, args)
		})
	}
}

// startCacheSidecar writes rules to a new directory's cache.yaml and
// starts a sidecar on it (limits: examples/config.yaml). It returns the
// sidecar and the cache config's path.
func startCacheSidecar(t *testing.T, name, rules string, args ...string) (*sidecar, string) {
	t.Helper()
	path := writeFile(t, t.TempDir(), "cache.yaml", rules)
	args = append([]string{"--config", exampleConfig, "--cache-config", path, "--reload-interval", "100ms"}, args...)
	return startSidecar(t, name, args...), path
}

// body is a response body of n bytes that says which response it is.
func body(n int, tag string) []byte {
	b := bytes.Repeat([]byte("."), n)
	copy(b, `{"response":"`+tag+`"}`)
	return b
}

// okResponse is a 200 the upstream gives: JSON, fresh for a minute, an
// ETag, a 1 KiB body naming tag, and extra headers.
func okResponse(tag string, extra ...[2]string) extproctest.Response {
	h := [][2]string{{"content-type", "application/json"}, {"cache-control", "max-age=60"}, {"etag", `"` + tag + `"`}}
	return extproctest.Response{Status: 200, Header: append(h, extra...), Body: body(1024, tag)}
}

// do plays one request through s's ext_proc door; resp is what the
// upstream answers if the request reaches it.
func (s *sidecar) do(req extproctest.Request, resp extproctest.Response) *extproctest.Result {
	s.t.Helper()
	if req.Authority == "" {
		req.Authority = cacheHost
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	res, err := extproctest.New(s.conn).Do(ctx, req, resp)
	if err != nil {
		s.t.Fatalf("%s: %s %s: %v", s.name, req.Method, req.Path, err)
	}
	return res
}

// getVia is do for a GET of path.
func (s *sidecar) getVia(path string, resp extproctest.Response) *extproctest.Result {
	s.t.Helper()
	return s.do(extproctest.Request{Path: path}, resp)
}

var hitStatus = regexp.MustCompile(`^floodgate; hit; ttl=\d+$`)

// wantHit fails unless res was served from the cache with the body of tag.
func wantHit(t *testing.T, what string, res *extproctest.Result, tag string) {
	t.Helper()
	if res.Immediate == nil {
		t.Errorf("%s: forwarded (cache-status %q), want a hit", what, res.Get("cache-status"))
		return
	}
	if res.Status != 200 || !bytes.Equal(res.Body, body(1024, tag)) || res.Messages != 1 {
		t.Errorf("%s: status %d, %d bytes (%.30q), %d messages; want 200 with %s's 1 KiB body in one message",
			what, res.Status, len(res.Body), res.Body, res.Messages, tag)
	}
	if cs := res.Get("cache-status"); !hitStatus.MatchString(cs) {
		t.Errorf("%s: cache-status %q, want floodgate; hit; ttl=N", what, cs)
	}
	if res.Get("age") == "" || res.Get("content-type") != "application/json" || res.Get("etag") != `"`+tag+`"` {
		t.Errorf("%s: headers %v, want age, the stored content-type and etag", what, res.Header)
	}
}

// wantStored fails unless res was forwarded and its response stored.
func wantStored(t *testing.T, what string, res *extproctest.Result) {
	t.Helper()
	if res.Immediate != nil {
		t.Errorf("%s: a hit (%s), want forwarded and stored", what, res.Get("cache-status"))
		return
	}
	if cs := res.Get("cache-status"); cs != "floodgate; fwd=miss; stored" || res.BodyMode != procmodev3.ProcessingMode_BUFFERED {
		t.Errorf("%s: cache-status %q, body mode %v; want fwd=miss; stored after a BUFFERED body", what, cs, res.BodyMode)
	}
}

// wantBypass fails unless res was forwarded with neither a hit nor a store
// and without its body asked for.
func wantBypass(t *testing.T, what string, res *extproctest.Result) {
	t.Helper()
	cs := res.Get("cache-status")
	if res.Immediate != nil || strings.Contains(cs, "hit") || strings.Contains(cs, "stored") || res.BodyMode != procmodev3.ProcessingMode_NONE {
		t.Errorf("%s: hit %v, cache-status %q, body mode %v; want bypassed, body not asked for", what, res.Immediate != nil, cs, res.BodyMode)
	}
}

// wantMetrics fails for each series whose value is not the one given.
func wantMetrics(t *testing.T, s *sidecar, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		got, err := s.metric(series)
		if err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		if got != v {
			t.Errorf("%s: %s = %v, want %v", s.name, series, got, v)
		}
	}
}

func requests(rule, result string) string {
	return fmt.Sprintf(`floodgate_cache_requests_total{result=%q,rule=%q}`, result, rule)
}

// purge posts body to s's POST /cache/purge with the bearer token (none
// when ""): the status and the answer.
func (s *sidecar) purge(body, token string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+"/cache/purge", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s: POST /cache/purge: %v", s.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestCacheMissHit: a GET is forwarded and stored with its 1 KiB body,
// then served from the cache (GET, HEAD, and 304 for a matching
// If-None-Match) without reaching the upstream; a request's no-cache
// bypasses; the metrics count each request once.
func TestCacheMissHit(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, args []string) {
		s, _ := startCacheSidecar(t, "cache-hit", cacheRules, args...)
		wantStored(t, "first GET", s.getVia("/v1/items/1", okResponse("one")))
		// The upstream would answer differently now: a hit never asks it.
		wantHit(t, "second GET", s.getVia("/v1/items/1", okResponse("changed")), "one")

		head := s.do(extproctest.Request{Method: "HEAD", Path: "/v1/items/1"}, okResponse("changed"))
		if head.Immediate == nil || head.Status != 200 || len(head.Body) != 0 || head.Get("etag") != `"one"` {
			t.Errorf("HEAD: hit %v, status %d, %d bytes, etag %q; want a 200 hit with no body", head.Immediate != nil, head.Status, len(head.Body), head.Get("etag"))
		}
		inm := s.do(extproctest.Request{Path: "/v1/items/1", Header: [][2]string{{"if-none-match", `"zero", "one"`}}}, okResponse("changed"))
		if inm.Immediate == nil || inm.Status != 304 || len(inm.Body) != 0 || inm.Get("etag") != `"one"` {
			t.Errorf("If-None-Match: hit %v, status %d, %d bytes, etag %q; want 304 from the cache, no body", inm.Immediate != nil, inm.Status, len(inm.Body), inm.Get("etag"))
		}
		nc := s.do(extproctest.Request{Path: "/v1/items/1", Header: [][2]string{{"cache-control", "no-cache"}}}, okResponse("fresh"))
		wantBypass(t, "request no-cache", nc)
		if !bytes.Equal(nc.Body, body(1024, "fresh")) {
			t.Errorf("request no-cache: got %.30q, want the upstream's body", nc.Body)
		}
		// The entry is still the first response's.
		wantHit(t, "GET after the bypass", s.getVia("/v1/items/1", okResponse("changed")), "one")

		// A request no rule covers: its response headers are skipped.
		if other := s.getVia("/elsewhere", okResponse("x")); !other.SkippedResponse || other.Get("cache-status") != "" {
			t.Errorf("a path without a rule: skipped %v, cache-status %q; want its response headers skipped", other.SkippedResponse, other.Get("cache-status"))
		}
		// A response that says no-store is forwarded, not stored.
		ns := s.getVia("/v1/items/2", extproctest.Response{Status: 200, Header: [][2]string{{"cache-control", "no-store"}}, Body: body(1024, "two")})
		if ns.Immediate != nil || ns.Get("cache-status") != "floodgate; fwd=miss" || ns.BodyMode != procmodev3.ProcessingMode_NONE {
			t.Errorf("no-store response: cache-status %q, body mode %v; want fwd=miss, body not asked for", ns.Get("cache-status"), ns.BodyMode)
		}

		wantMetrics(t, s, map[string]float64{
			requests("items", "hit"):                     4, // GET, HEAD, 304, GET
			requests("items", "miss"):                    2,
			requests("items", "bypass"):                  1,
			`floodgate_cache_stores_total{rule="items"}`: 1,
			`floodgate_cache_entries`:                    1,
		})
		if b := s.mustMetric("floodgate_cache_bytes"); b < 1024 || b > 4096 {
			t.Errorf("floodgate_cache_bytes %v, want one 1 KiB entry with its headers", b)
		}
	})
}

// TestCacheUserScope: a user rule keys on the verified user that Envoy
// forwards in the ext_authz metadata: two users never share an entry, the
// same user in two tenants neither, and identity headers (x-floodgate-*)
// neither make nor choose an entry.
func TestCacheUserScope(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, args []string) {
		s, _ := startCacheSidecar(t, "cache-user", cacheRules, args...)
		alice := map[string]string{"auth": "api_key", "tenant": "acme", "user": "alice", "key_id": "k-alice"}
		bob := map[string]string{"auth": "api_key", "tenant": "acme", "user": "bob", "key_id": "k-bob"}
		aliceElsewhere := map[string]string{"auth": "api_key", "tenant": "initech", "user": "alice", "key_id": "k-alice2"}
		me := func(id map[string]string, hdr [][2]string, tag string) *extproctest.Result {
			return s.do(extproctest.Request{Path: "/v1/me/profile", Identity: id, Header: hdr}, okResponse(tag))
		}
		wantStored(t, "alice", me(alice, nil, "alice"))
		wantStored(t, "bob", me(bob, nil, "bob"))
		wantStored(t, "alice of initech", me(aliceElsewhere, nil, "alice-initech"))
		wantHit(t, "alice again", me(alice, nil, "x"), "alice")
		wantHit(t, "bob again", me(bob, nil, "x"), "bob")
		wantHit(t, "alice of initech again", me(aliceElsewhere, nil, "x"), "alice-initech")

		// Identity headers are not identity: without the metadata the
		// request bypasses, whatever headers it carries.
		forged := [][2]string{{"x-floodgate-user", "alice"}, {"x-floodgate-tenant", "acme"}, {"x-floodgate-key-id", "k-alice"}, {"x-floodgate-auth", "api_key"}}
		wantBypass(t, "no metadata, alice's headers", me(nil, forged, "forged"))
		// With bob's metadata and alice's headers: bob's entry.
		wantHit(t, "bob with alice's headers", me(bob, forged, "x"), "bob")
		// Metadata without a user, key id or subject is no user.
		wantBypass(t, "metadata without a user", me(map[string]string{"auth": "none", "tenant": "acme"}, nil, "anon"))

		wantMetrics(t, s, map[string]float64{
			requests("me", "miss"):                    3,
			requests("me", "hit"):                     4,
			requests("me", "bypass"):                  2,
			`floodgate_cache_stores_total{rule="me"}`: 3,
			`floodgate_cache_entries`:                 3,
		})
	})
}

// TestCacheInvalidation: a successful write removes its own path, the
// same-host Location it answers with, and the rule's invalidates
// prefixes; other entries stay; a failed write removes nothing.
func TestCacheInvalidation(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, args []string) {
		s, _ := startCacheSidecar(t, "cache-inval", cacheRules, args...)
		for _, p := range []string{"/v1/items/1", "/v1/items/2", "/v1/items/3", "/v1/lists/all", "/v1/lists/all?page=2"} {
			wantStored(t, p, s.getVia(p, okResponse(p)))
		}
		hit := func(p string) bool { return s.getVia(p, okResponse("new")).Immediate != nil }

		// A failed write: nothing removed.
		post := s.do(extproctest.Request{Method: "POST", Path: "/v1/items/"}, extproctest.Response{Status: 500})
		wantBypass(t, "POST answered 500", post)
		if !hit("/v1/items/2") || !hit("/v1/lists/all") {
			t.Fatal("a POST answered 500 removed entries")
		}
		// POST /v1/items/ answered 201 with Location /v1/items/2: removes
		// /v1/items/2 and everything under /v1/lists/ (both queries).
		s.do(extproctest.Request{Method: "POST", Path: "/v1/items/", Header: [][2]string{{"content-type", "application/json"}}},
			extproctest.Response{Status: 201, Header: [][2]string{{"location", "http://api.example.com/v1/items/2"}}})
		for p, want := range map[string]bool{"/v1/items/1": true, "/v1/items/2": false, "/v1/items/3": true, "/v1/lists/all": false, "/v1/lists/all?page=2": false} {
			if got := hit(p); got != want {
				t.Errorf("after POST with Location: %s hit %v, want %v", p, got, want)
			}
		}
		// DELETE /v1/items/3 answered 204: its path, and again the lists
		// (the checks above stored both again).
		s.do(extproctest.Request{Method: "DELETE", Path: "/v1/items/3"}, extproctest.Response{Status: 204})
		if hit("/v1/items/3") {
			t.Error("after DELETE: /v1/items/3 still a hit")
		}
		if !hit("/v1/items/1") || hit("/v1/lists/all") {
			t.Error("after DELETE /v1/items/3: /v1/items/1 removed, or /v1/lists/all not")
		}
		wantMetrics(t, s, map[string]float64{
			// /v1/items/2 and the two /v1/lists/all entries; then
			// /v1/items/3 and the two lists again.
			`floodgate_cache_invalidations_total{rule="items"}`: 6,
			requests("items", "bypass"):                         3, // the three writes
		})
	})
}

// TestCachePurge: tagged responses (Cache-Tag, Surrogate-Key) are purged
// by tag with POST /cache/purge, and by exact path; the answer counts
// what was removed.
func TestCachePurge(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, args []string) {
		s, _ := startCacheSidecar(t, "cache-purge", cacheRules, args...)
		wantStored(t, "red+blue", s.getVia("/v1/items/10", okResponse("10", [2]string{"cache-tag", "red, blue"})))
		wantStored(t, "blue", s.getVia("/v1/items/11", okResponse("11", [2]string{"surrogate-key", "blue green"})))
		wantStored(t, "untagged", s.getVia("/v1/items/12", okResponse("12")))
		wantStored(t, "list", s.getVia("/v1/lists/x", okResponse("x")))

		if code, n := s.purgeRemoved(`{"tags": ["blue"]}`, ""); code != 200 || n != 2 {
			t.Errorf("purge blue: %d, removed %d; want 200 and 2", code, n)
		}
		for p, want := range map[string]bool{"/v1/items/10": false, "/v1/items/11": false, "/v1/items/12": true, "/v1/lists/x": true} {
			if got := s.getVia(p, okResponse("again")).Immediate != nil; got != want {
				t.Errorf("after purging blue: %s hit %v, want %v", p, got, want)
			}
		}
		// 10 and 11 were stored again just now (untagged "again").
		if code, n := s.purgeRemoved(`{"paths": ["/v1/items/12", "/v1/lists/x"]}`, ""); code != 200 || n != 2 {
			t.Errorf("purge paths: %d, removed %d; want 200 and 2", code, n)
		}
		if code, n := s.purgeRemoved(`{"tags": ["blue"]}`, ""); code != 200 || n != 0 {
			t.Errorf("purge blue again: %d, removed %d; want 200 and 0", code, n)
		}
		for _, bad := range []string{`{}`, `{"tags": [""]}`, `{"paths": ["no-slash"]}`, `{"tag": ["x"]}`, `not json`} {
			if code, _ := s.purge(bad, ""); code != 400 {
				t.Errorf("purge %s: %d, want 400", bad, code)
			}
		}
		wantMetrics(t, s, map[string]float64{
			`floodgate_cache_purged_total`: 4,
			`floodgate_cache_entries`:      2, // 10 and 11, stored again
		})
	})
}

// TestCachePurgeToken: with --admin-token-file, purge needs the token,
// even from loopback.
func TestCachePurgeToken(t *testing.T) {
	t.Parallel()
	const token = "e2e-admin-token-0123456789"
	tokenFile := writeFile(t, t.TempDir(), "admin-token", token+"\n")
	s, _ := startCacheSidecar(t, "cache-token", cacheRules, "--admin-token-file", tokenFile)
	wantStored(t, "tagged", s.getVia("/v1/items/1", okResponse("1", [2]string{"cache-tag", "t"})))
	for _, tok := range []string{"", "wrong"} {
		if code, _ := s.purge(`{"tags": ["t"]}`, tok); code != 401 {
			t.Errorf("purge with token %q: %d, want 401", tok, code)
		}
	}
	if code, n := s.purgeRemoved(`{"tags": ["t"]}`, token); code != 200 || n != 1 {
		t.Errorf("purge with the token: %d, removed %d; want 200 and 1", code, n)
	}
	if strings.Contains(s.log(), token) {
		t.Error("the admin token is in the log")
	}
}

// TestCacheHealthAndValidate: with --cache-config, grpc.health.v1 reports
// the ext_proc service SERVING; without it the service is unknown. And
// `sidecar validate --cache-config` checks the file.
func TestCacheHealthAndValidate(t *testing.T) {
	t.Parallel()
	s, path := startCacheSidecar(t, "cache-health", cacheRules)
	plain := startSidecar(t, "no-cache", "--config", exampleConfig)
	svc := extprocv3.ExternalProcessor_ServiceDesc.ServiceName
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of %s with --cache-config: %v (%v), want SERVING", svc, st.GetStatus(), err)
	}
	if st, err := healthpb.NewHealthClient(plain.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc}); err == nil {
		t.Errorf("health of %s without --cache-config: %v, want NOT_FOUND", svc, st.GetStatus())
	}

	dir := filepath.Dir(path)
	stdout, stderr, code := runCLI(t, dir, "validate", "--cache-config", path)
	if code != 0 || !strings.Contains(stdout, "cache config: 3 rules (2 public, 0 tenant, 1 user)") {
		t.Errorf("validate --cache-config (good): exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	bad := writeFile(t, dir, "bad.yaml", "rules:\n  - name: x\n    match: {path_prefix: /a/}\n    scope: everyone\n")
	stdout, stderr, code = runCLI(t, dir, "validate", "--cache-config", bad)
	if code != 1 || !regexp.MustCompile(`(?m)^\S*bad\.yaml:4: .*scope`).MatchString(stdout) {
		t.Errorf("validate --cache-config (bad scope): exit %d, want 1 and bad.yaml:4 naming scope\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// replaceFile replaces path's content at once (a new file renamed over
// it), as editors and config management do: the poller never reads it
// half written. (A cache config with no rules is valid, so an empty file,
// as os.WriteFile leaves it for a moment, would be loaded.)
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := writeFile(t, filepath.Dir(path), "."+filepath.Base(path)+".new", content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCacheReload: a rule added to the cache config takes effect without
// a restart; a broken edit keeps the rules in force.
func TestCacheReload(t *testing.T) {
	t.Parallel()
	s, path := startCacheSidecar(t, "cache-reload", cacheRules)
	if res := s.getVia("/v1/extra/1", okResponse("e")); !res.SkippedResponse {
		t.Fatalf("/v1/extra/ before the reload: cache-status %q, want no rule (response skipped)", res.Get("cache-status"))
	}
	reloads := `floodgate_config_reloads_total{result="success",source="cache"}`
	before, _ := s.metric(reloads) // absent until the first reload
	replaceFile(t, path, cacheRules+`  - name: extra
    match: {path_prefix: /v1/extra/}
    ttl: 30s
`)
	eventually(t, 10*time.Second, "the cache config reloaded", func() error {
		if n, err := s.metric(reloads); err != nil || n <= before {
			return fmt.Errorf("%s = %v (%v)", reloads, n, err)
		}
		return nil
	})
	wantStored(t, "/v1/extra/1 after the reload", s.getVia("/v1/extra/1", okResponse("e")))
	wantHit(t, "/v1/extra/1 again", s.getVia("/v1/extra/1", okResponse("x")), "e")
	wantMetrics(t, s, map[string]float64{requests("extra", "hit"): 1, requests("extra", "miss"): 1})

	// A broken file: the reload fails and the rules stay.
	replaceFile(t, path, "rules: [{name: \"\"}]\n")
	failed := `floodgate_config_reloads_total{result="error",source="cache"}`
	eventually(t, 10*time.Second, "the broken cache config refused", func() error {
		if n, err := s.metric(failed); err != nil || n < 1 {
			return fmt.Errorf("%s = %v (%v)", failed, n, err)
		}
		return nil
	})
	wantHit(t, "/v1/extra/1 after a broken edit", s.getVia("/v1/extra/1", okResponse("x")), "e")
}

// TestCacheTwoSidecarsOneRedis: two sidecars on one Redis share entries
// and invalidations: stored via A, served via B; a write via B removes
// A's entry; a purge via B removes what A stored; user entries stay
// per user across both.
func TestCacheTwoSidecarsOneRedis(t *testing.T) {
	t.Parallel()
	redis := redistest.StartServer(t)
	a, _ := startCacheSidecar(t, "cache-a", cacheRules, "--redis-url", redis.URL)
	b, _ := startCacheSidecar(t, "cache-b", cacheRules, "--redis-url", redis.URL)

	wantStored(t, "GET via A", a.getVia("/v1/items/1", okResponse("from-a")))
	wantHit(t, "GET via B", b.getVia("/v1/items/1", okResponse("from-b")), "from-a")
	wantHit(t, "GET via A again", a.getVia("/v1/items/1", okResponse("x")), "from-a")

	// A write via B removes A's entry; the next GET via A is a miss.
	b.do(extproctest.Request{Method: "PUT", Path: "/v1/items/1"}, extproctest.Response{Status: 200, Body: []byte(`{}`)})
	wantStored(t, "GET via A after PUT via B", a.getVia("/v1/items/1", okResponse("after-put")))
	wantHit(t, "GET via B after that", b.getVia("/v1/items/1", okResponse("x")), "after-put")

	// Invalidation by prefix across sidecars: a list stored via A, a POST
	// on items via B removes it.
	wantStored(t, "list via A", a.getVia("/v1/lists/all", okResponse("list")))
	b.do(extproctest.Request{Method: "POST", Path: "/v1/items/"}, extproctest.Response{Status: 201, Header: [][2]string{{"location", "/v1/items/9"}}})
	wantStored(t, "list via A after POST via B", a.getVia("/v1/lists/all", okResponse("list2")))

	// Users: alice via A, alice via B is hers; bob via B is not.
	alice := map[string]string{"auth": "api_key", "tenant": "acme", "user": "alice"}
	bob := map[string]string{"auth": "api_key", "tenant": "acme", "user": "bob"}
	wantStored(t, "alice via A", a.do(extproctest.Request{Path: "/v1/me/", Identity: alice}, okResponse("alice")))
	wantHit(t, "alice via B", b.do(extproctest.Request{Path: "/v1/me/", Identity: alice}, okResponse("x")), "alice")
	wantStored(t, "bob via B", b.do(extproctest.Request{Path: "/v1/me/", Identity: bob}, okResponse("bob")))

	// Tags: stored via A, purged via B.
	wantStored(t, "tagged via A", a.getVia("/v1/items/t", okResponse("t", [2]string{"cache-tag", "shared"})))
	if code, n := b.purgeRemoved(`{"tags": ["shared"]}`, ""); code != 200 || n != 1 {
		t.Errorf("purge via B: %d, removed %d; want 200 and 1", code, n)
	}
	wantStored(t, "tagged via A after the purge via B", a.getVia("/v1/items/t", okResponse("t2")))

	wantMetrics(t, a, map[string]float64{
		`floodgate_cache_stores_total{rule="items"}`: 4, // items/1 twice, items/t twice
		`floodgate_cache_stores_total{rule="lists"}`: 2,
		`floodgate_cache_stores_total{rule="me"}`:    1,
		requests("items", "hit"):                     1,
	})
	wantMetrics(t, b, map[string]float64{
		`floodgate_cache_stores_total{rule="items"}`:        0,
		`floodgate_cache_stores_total{rule="me"}`:           1,
		requests("items", "hit"):                            2,
		requests("me", "hit"):                               1,
		`floodgate_cache_invalidations_total{rule="items"}`: 2, // A's item, A's list
	})
	// Both see what Redis holds: items/1, lists/all, alice, bob, items/t.
	for _, s := range []*sidecar{a, b} {
		wantMetrics(t, s, map[string]float64{`floodgate_cache_entries`: 5})
	}
}

// TestCacheAfterAuth: Envoy's sequence with both doors on one sidecar:
// ext_authz Check verifies the API key (examples/auth.yaml and the TEST
// ONLY keys of examples/keys.yaml), Envoy applies the Check's header
// changes and forwards its dynamic_metadata to ext_proc, and a user rule
// keys on the verified identity: each key gets its own entry.
func TestCacheAfterAuth(t *testing.T) {
	t.Parallel()
	const (
		acmeKey    = "fgk_nvYjpyVSHE7bLTVK8lhjKzCQBLUyFFVxqjoayZkYXFs" // k-acme-pro, user billing-bot
		initechKey = "fgk_HTHLw9Rqui1tpLgHid8UyG3WbJlgzzJtioDaaqMVFEY" // k-initech-free, no user: keyed by key_id
	)
	rules := `rules:
  - name: things
    match: {path_prefix: /v1/}
    scope: user
    ttl: 60s
`
	eachStore(t, func(t *testing.T, args []string) {
		path := writeFile(t, t.TempDir(), "cache.yaml", rules)
		s := startSidecar(t, "auth-cache", append([]string{"--config", exampleLimits, "--auth-config", exampleAuth,
			"--cache-config", path, "--log-level", "debug"}, args...)...)

		// through plays one request as Envoy does: Check, then (allowed)
		// the ext_proc stream with the Check's header changes applied and
		// its dynamic_metadata forwarded.
		through := func(key, tag string) *extproctest.Result {
			t.Helper()
			hdr := map[string]string{"x-api-key": key, "x-floodgate-user": "forged"}
			resp := s.mustCheck("192.0.2.7", hdr)
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatalf("Check: %v, want allowed", resp.GetStatus())
			}
			for _, h := range ok.GetHeadersToRemove() {
				delete(hdr, strings.ToLower(h))
			}
			for _, o := range ok.GetHeaders() {
				hdr[strings.ToLower(o.GetHeader().GetKey())] = o.GetHeader().GetValue()
			}
			var fields [][2]string
			for k, v := range hdr {
				fields = append(fields, [2]string{k, v})
			}
			return s.do(extproctest.Request{Path: "/v1/things", Header: fields, AuthzMetadata: resp.GetDynamicMetadata()}, okResponse(tag))
		}
		wantStored(t, "acme's key", through(acmeKey, "acme"))
		wantStored(t, "initech's key", through(initechKey, "initech"))
		wantHit(t, "acme's key again", through(acmeKey, "x"), "acme")
		wantHit(t, "initech's key again", through(initechKey, "x"), "initech")
		// The same path without the metadata (an Envoy that does not
		// forward the namespace): bypassed, even with identity headers.
		wantBypass(t, "no metadata", s.do(extproctest.Request{Path: "/v1/things",
			Header: [][2]string{{"x-floodgate-user", "billing-bot"}, {"x-floodgate-tenant", "acme"}}}, okResponse("anon")))
		wantMetrics(t, s, map[string]float64{
			requests("things", "hit"):    2,
			requests("things", "miss"):   2,
			requests("things", "bypass"): 1,
			`floodgate_cache_entries`:    2,
		})
		noSecretsLogged(t, s, acmeKey, initechKey)
	})
}

// TestCacheExample: the README tour's cache step. examples/cache.yaml
// validates, and served beside examples/auth.yaml and examples/limits it
// reports the ext_proc service SERVING, empty store metrics and an empty
// purge; behind Check, its tenant rule shares /v1/things within a tenant
// (two keys of acme: hits for the second) and not across tenants, and its
// public docs rule serves a request without credentials to everyone.
func TestCacheExample(t *testing.T) {
	t.Parallel()
	const (
		acmeKey    = "fgk_nvYjpyVSHE7bLTVK8lhjKzCQBLUyFFVxqjoayZkYXFs" // k-acme-pro
		initechKey = "fgk_HTHLw9Rqui1tpLgHid8UyG3WbJlgzzJtioDaaqMVFEY" // k-initech-free
	)
	exampleCache := filepath.Join(moduleRoot, "examples", "cache.yaml")
	stdout, stderr, code := runCLI(t, moduleRoot, "validate", "--cache-config", "examples/cache.yaml")
	if code != 0 || strings.TrimSpace(stdout) != "cache config: 3 rules (1 public, 1 tenant, 1 user) from examples/cache.yaml" {
		t.Errorf("validate --cache-config examples/cache.yaml: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	s := startSidecar(t, "cache-example", "--config", exampleLimits, "--auth-config", exampleAuth, "--cache-config", exampleCache, "--log-level", "debug")
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: extprocv3.ExternalProcessor_ServiceDesc.ServiceName})
	if err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v (%v), want SERVING", st.GetStatus(), err)
	}
	wantMetrics(t, s, map[string]float64{`floodgate_cache_entries`: 0, `floodgate_cache_bytes`: 0})
	if code, n := s.purgeRemoved(`{"paths": ["/docs/"]}`, ""); code != 200 || n != 0 {
		t.Errorf("purge /docs/: %d, removed %d; want 200 and 0", code, n)
	}

	// through plays a request as Envoy does: Check, then the stream with
	// the Check's metadata.
	through := func(key, path, tag string) *extproctest.Result {
		t.Helper()
		hdr := map[string]string{}
		if key != "" {
			hdr["x-api-key"] = key
		}
		resp, err := s.checkPath("192.0.2.8", path, hdr)
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("Check %s: %v (%v), want allowed", path, resp.GetStatus(), err)
		}
		return s.do(extproctest.Request{Authority: "localhost:10000", Path: path, AuthzMetadata: resp.GetDynamicMetadata()}, okResponse(tag))
	}
	wantStored(t, "acme's things", through(acmeKey, "/v1/things", "acme"))
	wantHit(t, "acme's things again", through(acmeKey, "/v1/things", "x"), "acme")
	wantStored(t, "initech's things", through(initechKey, "/v1/things", "initech"))
	wantStored(t, "docs without a key", through("", "/docs/intro", "docs"))
	wantHit(t, "docs again", through("", "/docs/intro", "x"), "docs")
	wantMetrics(t, s, map[string]float64{
		requests("things", "hit"):  1,
		requests("things", "miss"): 2,
		requests("docs", "hit"):    1,
		`floodgate_cache_entries`:  3,
	})
	noSecretsLogged(t, s, acmeKey, initechKey)
}

// checkPath sends one Check for GET path from peer with headers.
func (s *sidecar) checkPath(peer, path string, headers map[string]string) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return authv3.NewAuthorizationClient(s.conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "localhost:10000", Path: path, Headers: headers}},
	}})
}

// purgeRemoved is purge with the answer's "removed" decoded (-1 when the
// answer is not {"removed": N}).
func (s *sidecar) purgeRemoved(body, token string) (int, int) {
	s.t.Helper()
	code, ans := s.purge(body, token)
	var out map[string]int
	if err := json.Unmarshal([]byte(ans), &out); err != nil || len(out) != 1 {
		return code, -1
	}
	n, ok := out["removed"]
	if !ok {
		return code, -1
	}
	return code, n
}

// keyRules key items on accept and leave utm_source out of the key.
const keyRules = `rules:
  - name: items
    match: {hosts: [api.example.com], path_prefix: /v1/items/}
    scope: public
    ttl: 60s
    key_headers: [accept]
    ignore_query: [utm_source]
`

// TestCacheKeys: what shares an entry and what does not: query order and
// ignored parameters share; key headers, Vary'd headers and hosts split;
// the ext_proc :authority's port is not part of the host.
func TestCacheKeys(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, args []string) {
		s, _ := startCacheSidecar(t, "cache-keys", keyRules, args...)
		get := func(path string, hdr [][2]string, resp extproctest.Response) *extproctest.Result {
			return s.do(extproctest.Request{Path: path, Header: hdr}, resp)
		}
		wantStored(t, "?a=1&b=2", get("/v1/items/q?a=1&b=2", nil, okResponse("q")))
		wantHit(t, "?b=2&a=1", get("/v1/items/q?b=2&a=1", nil, okResponse("x")), "q")
		wantHit(t, "?a=1&utm_source=mail&b=2", get("/v1/items/q?a=1&utm_source=mail&b=2", nil, okResponse("x")), "q")
		wantStored(t, "?a=2&b=2", get("/v1/items/q?a=2&b=2", nil, okResponse("q2")))
		wantHit(t, "port in :authority", s.do(extproctest.Request{Authority: "api.example.com:8443", Path: "/v1/items/q?a=1&b=2"}, okResponse("x")), "q")

		// key_headers: accept splits.
		acceptJSON := [][2]string{{"accept", "application/json"}}
		wantStored(t, "accept json", get("/v1/items/k", acceptJSON, okResponse("k-json")))
		wantStored(t, "accept text", get("/v1/items/k", [][2]string{{"accept", "text/plain"}}, okResponse("k-text")))
		wantHit(t, "accept json again", get("/v1/items/k", acceptJSON, okResponse("x")), "k-json")

		// Vary: accept-language splits too, by the response's word.
		vary := func(tag string) extproctest.Response { return okResponse(tag, [2]string{"vary", "Accept-Language"}) }
		de, fr := [][2]string{{"accept-language", "de"}}, [][2]string{{"accept-language", "fr"}}
		wantStored(t, "vary de", get("/v1/items/v", de, vary("v-de")))
		wantStored(t, "vary fr", get("/v1/items/v", fr, vary("v-fr")))
		wantHit(t, "vary de again", get("/v1/items/v", de, vary("x")), "v-de")
		wantHit(t, "vary fr again", get("/v1/items/v", fr, vary("x")), "v-fr")
		// Invalidating the path removes every variant.
		s.do(extproctest.Request{Method: "PATCH", Path: "/v1/items/v"}, extproctest.Response{Status: 200})
		for _, h := range [][][2]string{de, fr} {
			if get("/v1/items/v", h, vary("new")).Immediate != nil {
				t.Errorf("variant %v: still a hit after PATCH", h)
			}
		}
		wantMetrics(t, s, map[string]float64{`floodgate_cache_invalidations_total{rule="items"}`: 2})
	})
}

// TestCacheNotStored: responses the contract says are forwarded but never
// stored, and requests whose bodies are never asked for.
func TestCacheNotStored(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, args []string) {
		s, _ := startCacheSidecar(t, "cache-notstored", cacheRules, append(args, "--cache-max-entry-bytes", "4096")...)
		forwardedTwice := func(what string, req extproctest.Request, resp extproctest.Response) {
			t.Helper()
			for i := range 2 {
				res := s.do(req, resp)
				if res.Immediate != nil || strings.Contains(res.Get("cache-status"), "stored") {
					t.Errorf("%s (%d): hit %v, cache-status %q; want forwarded, not stored", what, i+1, res.Immediate != nil, res.Get("cache-status"))
				}
				if !bytes.Equal(res.Body, resp.Body) {
					t.Errorf("%s (%d): the client got %d bytes, want the upstream's %d", what, i+1, len(res.Body), len(resp.Body))
				}
			}
		}
		forwardedTwice("Set-Cookie", extproctest.Request{Path: "/v1/items/cookie"}, okResponse("c", [2]string{"set-cookie", "s=1"}))
		forwardedTwice("private on a public rule", extproctest.Request{Path: "/v1/items/private"},
			extproctest.Response{Status: 200, Header: [][2]string{{"cache-control", "private, max-age=60"}}, Body: body(100, "p")})
		forwardedTwice("Authorization on a public rule", extproctest.Request{Path: "/v1/items/authz", Header: [][2]string{{"authorization", "Bearer abc"}}}, okResponse("a"))
		forwardedTwice("Vary: *", extproctest.Request{Path: "/v1/items/star"}, okResponse("s", [2]string{"vary", "*"}))
		forwardedTwice("status 500", extproctest.Request{Path: "/v1/items/err"}, extproctest.Response{Status: 500, Header: [][2]string{{"cache-control", "max-age=60"}}, Body: body(10, "e")})
		big := okResponse("big")
		big.Body = body(5000, "big")
		forwardedTwice("a body over --cache-max-entry-bytes", extproctest.Request{Path: "/v1/items/big"}, big)
		if res := s.getVia("/v1/items/big", big); res.BodyMode != procmodev3.ProcessingMode_NONE {
			t.Errorf("a Content-Length over the limit: body mode %v, want NONE (never buffered)", res.BodyMode)
		}
		// A chunked body is asked for BUFFERED_PARTIAL: whole, it is stored;
		// cut at the proxy's buffer, it is not.
		chunked := okResponse("chunked")
		chunked.Chunked = true
		res := s.getVia("/v1/items/chunked", chunked)
		if res.BodyMode != procmodev3.ProcessingMode_BUFFERED_PARTIAL || res.Get("cache-status") != "floodgate; fwd=miss; stored" {
			t.Errorf("a chunked body: mode %v, cache-status %q; want BUFFERED_PARTIAL and stored", res.BodyMode, res.Get("cache-status"))
		}
		wantHit(t, "the chunked body again", s.getVia("/v1/items/chunked", okResponse("x")), "chunked")
		cut := okResponse("cut")
		cut.Chunked, cut.BufferLimit = true, 512
		res = s.getVia("/v1/items/cut", cut)
		if res.BodyMode != procmodev3.ProcessingMode_BUFFERED_PARTIAL || strings.Contains(res.Get("cache-status"), "stored") {
			t.Errorf("a cut chunked body: mode %v, cache-status %q; want BUFFERED_PARTIAL, not stored", res.BodyMode, res.Get("cache-status"))
		}
		if s.getVia("/v1/items/cut", okResponse("x")).Immediate != nil {
			t.Error("a body cut at the proxy's buffer was stored")
		}
		wantMetrics(t, s, map[string]float64{
			// The whole chunked body, and the GET that found no cut one.
			`floodgate_cache_stores_total{rule="items"}`: 2,
			`floodgate_cache_entries`:                    2,
		})
	})
}

// TestCacheRedisDown: a storage error never fails a request: with Redis
// gone, requests pass through uncached and are counted; once Redis is
// back, the cache stores again.
func TestCacheRedisDown(t *testing.T) {
	t.Parallel()
	redis := redistest.StartServer(t)
	s, _ := startCacheSidecar(t, "cache-redis-down", cacheRules, "--redis-url", redis.URL)
	wantStored(t, "before the outage", s.getVia("/v1/items/1", okResponse("one")))
	redis.Stop()
	res := s.getVia("/v1/items/1", okResponse("during"))
	if res.Immediate != nil || res.Status != 200 || !bytes.Equal(res.Body, body(1024, "during")) || strings.Contains(res.Get("cache-status"), "stored") {
		t.Errorf("with Redis down: hit %v, status %d, cache-status %q; want the upstream's response, not stored", res.Immediate != nil, res.Status, res.Get("cache-status"))
	}
	wantMetrics(t, s, map[string]float64{
		`floodgate_cache_errors_total{op="get"}`: 1,
		`floodgate_cache_errors_total{op="put"}`: 1,
	})
	if !s.running() {
		t.Fatal("the sidecar exited with Redis down")
	}
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	// The restarted Redis is empty; the sidecar reconnects by itself.
	eventually(t, 15*time.Second, "stored again after Redis restarted", func() error {
		res := s.getVia("/v1/items/1", okResponse("after"))
		if res.Immediate != nil || res.Get("cache-status") == "floodgate; fwd=miss; stored" {
			return nil
		}
		return fmt.Errorf("cache-status %q", res.Get("cache-status"))
	})
	wantHit(t, "after the restart", s.getVia("/v1/items/1", okResponse("x")), "after")
}

// TestCacheCollapse: requests for a key whose miss is in flight wait for
// it and are served from it ("collapsed"); when it is not stored, they
// are forwarded. The wait is long here (10 s) so that the answer does not
// depend on the machine's speed; a follower that arrives after the miss
// landed is an ordinary hit, so the test tries a few times until one
// arrived in time.
func TestCacheCollapse(t *testing.T) {
	t.Parallel()
	s, _ := startCacheSidecar(t, "cache-collapse", cacheRules, "--cache-collapse-wait", "10s")
	client := extproctest.New(s.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// follow opens a stream for path in the background.
	follow := func(path string) <-chan *extproctest.Stream {
		ch := make(chan *extproctest.Stream, 1)
		go func() {
			st, err := client.Open(ctx, extproctest.Request{Authority: cacheHost, Path: path})
			if err != nil {
				t.Errorf("follower: %v", err)
			}
			ch <- st
		}()
		return ch
	}
	collapsed := 0
	for attempt := 1; attempt <= 5 && collapsed == 0; attempt++ {
		path := fmt.Sprintf("/v1/items/c%d", attempt)
		leader, err := client.Open(ctx, extproctest.Request{Authority: cacheHost, Path: path})
		if err != nil || leader.Hit() {
			t.Fatalf("leader: %v (hit %v)", err, err == nil && leader.Hit())
		}
		ch := follow(path)
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond) // a chance to start waiting, not an assertion
		if _, err := leader.Respond(okResponse("c")); err != nil {
			t.Fatal(err)
		}
		st := <-ch
		if st == nil {
			t.FailNow()
		}
		res, err := st.Respond(okResponse("x"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Immediate == nil {
			t.Fatalf("attempt %d: the follower was forwarded (cache-status %q), want served from the leader's entry", attempt, res.Get("cache-status"))
		}
		if res.Get("cache-status") == "floodgate; hit; collapsed" {
			collapsed++
		}
	}
	if collapsed == 0 {
		t.Fatal("no follower was collapsed behind the leader in 5 attempts")
	}
	wantMetrics(t, s, map[string]float64{requests("items", "collapsed"): float64(collapsed)})

	// A leader whose response is not stored releases its followers to
	// the upstream.
	leader, err := client.Open(ctx, extproctest.Request{Authority: cacheHost, Path: "/v1/items/nostore"})
	if err != nil {
		t.Fatal(err)
	}
	ch := follow("/v1/items/nostore")
	time.Sleep(200 * time.Millisecond)
	if _, err := leader.Respond(extproctest.Response{Status: 200, Header: [][2]string{{"cache-control", "no-store"}}, Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	st := <-ch
	if st == nil {
		t.FailNow()
	}
	if st.Hit() {
		t.Error("a follower of a not-stored response was served from the cache")
	}
	if _, err := st.Respond(okResponse("f")); err != nil {
		t.Fatal(err)
	}
}

// semanticsRules add a tenant rule and a short max_ttl to the usual ones.
const semanticsRules = cacheRules + `  - name: team
    match: {hosts: [api.example.com], path_prefix: /v1/team/}
    scope: tenant
    ttl: 60s
  - name: capped
    match: {hosts: [api.example.com], path_prefix: /v1/capped/}
    ttl: 10s
    max_ttl: 2m
`

// TestCacheHTTPSemantics: the HTTP caching rules of the contract as a
// client sees them through Envoy: statuses stored, freshness and its cap,
// Age, hop-by-hop headers, personal requests on public rules, tenant
// scope, and invalidation of every user's entries of a path.
func TestCacheHTTPSemantics(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, args []string) {
		s, _ := startCacheSidecar(t, "cache-http", semanticsRules, args...)

		// Statuses: 404 and 410 are stored, and so is a 204 without a body.
		for _, code := range []int{404, 410} {
			p := fmt.Sprintf("/v1/items/status-%d", code)
			r := extproctest.Response{Status: code, Header: [][2]string{{"cache-control", "max-age=60"}}, Body: []byte("gone")}
			wantStored(t, p, s.getVia(p, r))
			if res := s.getVia(p, okResponse("x")); res.Immediate == nil || res.Status != code || string(res.Body) != "gone" {
				t.Errorf("%s again: hit %v, status %d, body %q; want the stored %d", p, res.Immediate != nil, res.Status, res.Body, code)
			}
		}
		res := s.getVia("/v1/items/empty", extproctest.Response{Status: 204, Header: [][2]string{{"cache-control", "max-age=60"}}})
		if res.Get("cache-status") != "floodgate; fwd=miss; stored" {
			t.Errorf("204: cache-status %q, want stored without a body", res.Get("cache-status"))
		}
		if res := s.getVia("/v1/items/empty", okResponse("x")); res.Immediate == nil || res.Status != 204 || len(res.Body) != 0 {
			t.Errorf("204 again: hit %v, status %d, %d bytes", res.Immediate != nil, res.Status, len(res.Body))
		}

		// Freshness: s-maxage over max-age, capped by max_ttl; Age counts
		// the response's own age.
		ttlOf := func(res *extproctest.Result) int {
			var n int
			if _, err := fmt.Sscanf(res.Get("cache-status"), "floodgate; hit; ttl=%d", &n); err != nil {
				t.Errorf("cache-status %q: %v", res.Get("cache-status"), err)
			}
			return n
		}
		s.getVia("/v1/items/smax", okResponse("s", [2]string{"cache-control", "max-age=10, s-maxage=300"}))
		if n := ttlOf(s.getVia("/v1/items/smax", okResponse("x"))); n < 250 || n > 300 {
			t.Errorf("s-maxage=300 over max-age: ttl=%d", n)
		}
		capped := okResponse("c")
		capped.Header = [][2]string{{"cache-control", "max-age=86400"}}
		s.getVia("/v1/capped/1", capped)
		if n := ttlOf(s.getVia("/v1/capped/1", okResponse("x"))); n > 120 || n < 60 {
			t.Errorf("max-age=86400 under max_ttl 2m: ttl=%d", n)
		}
		aged := okResponse("aged")
		aged.Header = [][2]string{{"cache-control", "max-age=100"}, {"age", "40"}}
		s.getVia("/v1/items/aged", aged)
		hit := s.getVia("/v1/items/aged", okResponse("x"))
		if a := hit.Get("age"); a != "40" && a != "41" && a != "42" {
			t.Errorf("a response stored with Age 40: served with age %q", a)
		}
		if n := ttlOf(hit); n > 60 || n < 50 {
			t.Errorf("max-age=100 with Age 40: ttl=%d, want about 60", n)
		}

		// Hop-by-hop headers, and those Connection names, are not replayed.
		hop := okResponse("hop", [2]string{"connection", "x-conn-only"}, [2]string{"keep-alive", "timeout=5"},
			[2]string{"x-conn-only", "1"}, [2]string{"x-kept", "yes"})
		s.getVia("/v1/items/hop", hop)
		hit = s.getVia("/v1/items/hop", okResponse("x"))
		for _, h := range []string{"connection", "keep-alive", "x-conn-only"} {
			if v := hit.Get(h); v != "" {
				t.Errorf("a hit replays the hop-by-hop %s: %q", h, v)
			}
		}
		if hit.Get("x-kept") != "yes" {
			t.Errorf("a hit lost x-kept: %v", hit.Header)
		}

		// A personal request on a public rule is stored only when the
		// response says public.
		authz := [][2]string{{"authorization", "Bearer t"}}
		s.do(extproctest.Request{Path: "/v1/items/pub", Header: authz}, okResponse("pub", [2]string{"cache-control", "public, max-age=60"}))
		wantHit(t, "public response to a personal request", s.getVia("/v1/items/pub", okResponse("x")), "pub")
		apiKey := map[string]string{"auth": "api_key", "tenant": "acme", "user": "u"}
		s.do(extproctest.Request{Path: "/v1/items/md", Identity: apiKey}, okResponse("md"))
		if s.getVia("/v1/items/md", okResponse("x")).Immediate != nil {
			t.Error("a response to a request with ext_authz identity was stored on a public rule without public")
		}

		// Tenant scope: shared within the tenant, not across, bypassed
		// without one.
		acme1 := map[string]string{"auth": "api_key", "tenant": "acme", "user": "one"}
		acme2 := map[string]string{"auth": "api_key", "tenant": "acme", "user": "two"}
		initech := map[string]string{"auth": "api_key", "tenant": "initech", "user": "one"}
		team := func(id map[string]string, tag string) *extproctest.Result {
			return s.do(extproctest.Request{Path: "/v1/team/board", Identity: id}, okResponse(tag))
		}
		wantStored(t, "acme, one", team(acme1, "acme"))
		wantHit(t, "acme, two", team(acme2, "x"), "acme")
		wantStored(t, "initech", team(initech, "initech"))
		wantBypass(t, "no tenant", team(map[string]string{"auth": "api_key", "user": "one"}, "x"))

		// A write on a user rule's path removes every user's entry of it.
		alice, bob := map[string]string{"auth": "api_key", "user": "alice"}, map[string]string{"auth": "api_key", "user": "bob"}
		for _, id := range []map[string]string{alice, bob} {
			s.do(extproctest.Request{Path: "/v1/me/settings", Identity: id}, okResponse(id["user"]))
		}
		s.do(extproctest.Request{Method: "PUT", Path: "/v1/me/settings", Identity: alice}, extproctest.Response{Status: 200})
		for _, id := range []map[string]string{alice, bob} {
			if s.do(extproctest.Request{Path: "/v1/me/settings", Identity: id}, okResponse("new")).Immediate != nil {
				t.Errorf("%s's entry survived alice's PUT of the path", id["user"])
			}
		}
		// Content-Location, same host: invalidated too.
		s.getVia("/v1/items/cl", okResponse("cl"))
		s.do(extproctest.Request{Method: "POST", Path: "/v1/items/"}, extproctest.Response{Status: 200, Header: [][2]string{{"content-location", "/v1/items/cl"}}})
		if s.getVia("/v1/items/cl", okResponse("x")).Immediate != nil {
			t.Error("a POST answered with Content-Location left that path's entry")
		}
	})
}
