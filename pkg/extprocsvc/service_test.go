package extprocsvc_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/internal/extproctest"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/cachestore"
	"github.com/floodgate/floodgate/pkg/extprocsvc"
	"github.com/floodgate/floodgate/pkg/rediscache"
	"github.com/floodgate/floodgate/pkg/respcache"
	"github.com/redis/go-redis/v9"
)

const rules = `
rules:
  - name: users
    match: {hosts: [api.example.com], path_prefix: /v1/users/}
    scope: user
    ttl: 60s
    max_ttl: 10m
  - name: teams
    match: {hosts: [api.example.com], path_prefix: /v1/teams/}
    scope: tenant
    ttl: 60s
  - name: catalog
    match: {hosts: [api.example.com], path_prefix: /v1/catalog/}
    scope: public
    ttl: 30s
    max_ttl: 10m
    key_headers: [accept]
    ignore_query: [utm_source]
    invalidates: [/v1/search/]
  - name: search
    match: {path_prefix: /v1/search/}
    ttl: 30s
`

type fixture struct {
	t     *testing.T
	clock *backendtest.Clock
	eng   *respcache.Engine
	store cachestore.Store
	reg   *prometheus.Registry
	c     *extproctest.Client
	conn  *grpc.ClientConn
}

func newFixture(t *testing.T, store storeKind, opts respcache.Options) *fixture {
	t.Helper()
	cfg, err := cacheconfig.Parse("cache.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, clock: backendtest.NewClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)), reg: prometheus.NewRegistry()}
	if opts.Store == nil {
		opts.Store = store(t)
	}
	f.store = opts.Store
	opts.Now = f.clock.Now
	opts.Registerer = f.reg
	if f.eng, err = respcache.New(opts); err != nil {
		t.Fatal(err)
	}
	f.eng.SetConfig(cfg)
	svc, err := extprocsvc.New(f.eng)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(g, svc)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.conn = conn
	f.c = extproctest.New(conn)
	return f
}

func (f *fixture) do(req extproctest.Request, resp extproctest.Response) *extproctest.Result {
	f.t.Helper()
	if req.Authority == "" {
		req.Authority = "api.example.com"
	}
	res, err := f.c.Do(context.Background(), req, resp)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	return res
}

func (f *fixture) count(rule, result string) int {
	return int(f.metric("floodgate_cache_requests_total", "rule", rule, "result", result))
}

// metric is the value of the series of name with the given label pairs
// (0 when absent).
func (f *fixture) metric(name string, labels ...string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

var body1k = bytes.Repeat([]byte("x"), 1024)

func ok(cc string, extra ...[2]string) extproctest.Response {
	h := [][2]string{{"content-type", "application/json"}, {"cache-control", cc}}
	return extproctest.Response{Status: 200, Header: append(h, extra...), Body: body1k}
}

var alice = map[string]string{"auth": "api_key", "tenant": "acme", "user": "alice", "key_id": "k1"}
var bob = map[string]string{"auth": "api_key", "tenant": "acme", "user": "bob", "key_id": "k2"}

func testMissThenHit(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	req := extproctest.Request{Path: "/v1/catalog/items?b=2&a=1"}
	first := f.do(req, ok("max-age=120", [2]string{"etag", `"v1"`}))
	if first.Hit() || first.BodyMode != procmodev3.ProcessingMode_BUFFERED {
		t.Fatalf("first: hit %v, body mode %v; want a miss that asks for the buffered body", first.Hit(), first.BodyMode)
	}
	if got := first.Get("cache-status"); got != "floodgate; fwd=miss; stored" {
		t.Fatalf("first Cache-Status %q", got)
	}
	f.clock.Advance(5 * time.Second)
	second := f.do(extproctest.Request{Path: "/v1/catalog/items?a=1&b=2&utm_source=x"}, extproctest.Response{Status: 500})
	if !second.Hit() || second.Status != 200 || !bytes.Equal(second.Body, body1k) {
		t.Fatalf("second: hit %v status %d body %d bytes; want the stored 200", second.Hit(), second.Status, len(second.Body))
	}
	if got := second.Get("cache-status"); got != "floodgate; hit; ttl=115" {
		t.Fatalf("hit Cache-Status %q", got)
	}
	if got := second.Get("age"); got != "5" {
		t.Fatalf("hit Age %q", got)
	}
	if got := second.Get("content-type"); got != "application/json" {
		t.Fatalf("hit content-type %q", got)
	}
	head := f.do(extproctest.Request{Method: "HEAD", Path: "/v1/catalog/items?a=1&b=2"}, extproctest.Response{Status: 500})
	if !head.Hit() || head.Status != 200 || len(head.Body) != 0 {
		t.Fatalf("HEAD: hit %v status %d body %d; want a 200 with no body", head.Hit(), head.Status, len(head.Body))
	}
	nm := f.do(extproctest.Request{Path: "/v1/catalog/items?a=1&b=2", Header: [][2]string{{"if-none-match", `W/"v0", "v1"`}}}, extproctest.Response{Status: 500})
	if !nm.Hit() || nm.Status != 304 || len(nm.Body) != 0 || nm.Get("etag") != `"v1"` {
		t.Fatalf("If-None-Match: hit %v status %d body %d etag %q", nm.Hit(), nm.Status, len(nm.Body), nm.Get("etag"))
	}
	if f.count("catalog", "hit") != 3 || f.count("catalog", "miss") != 1 {
		t.Fatalf("hits %d misses %d; want 3 and 1", f.count("catalog", "hit"), f.count("catalog", "miss"))
	}
	f.clock.Advance(116 * time.Second)
	if stale := f.do(req, ok("max-age=120")); stale.Hit() {
		t.Fatal("served after its freshness ran out")
	}
}

func testNotStored(t *testing.T, store storeKind) {
	cases := []struct {
		name string
		req  extproctest.Request
		resp extproctest.Response
	}{
		{"no-store", extproctest.Request{Path: "/v1/catalog/a"}, ok("no-store, max-age=60")},
		{"no-cache", extproctest.Request{Path: "/v1/catalog/a"}, ok("no-cache")},
		{"private on a public rule", extproctest.Request{Path: "/v1/catalog/a"}, ok("private, max-age=60")},
		{"set-cookie", extproctest.Request{Path: "/v1/catalog/a"}, ok("max-age=60", [2]string{"set-cookie", "s=1"})},
		{"vary star", extproctest.Request{Path: "/v1/catalog/a"}, ok("max-age=60", [2]string{"vary", "*"})},
		{"vary cookie", extproctest.Request{Path: "/v1/catalog/a"}, ok("max-age=60", [2]string{"vary", "Cookie"})},
		{"status 500", extproctest.Request{Path: "/v1/catalog/a"}, extproctest.Response{Status: 500, Header: [][2]string{{"cache-control", "max-age=60"}}, Body: body1k}},
		{"status 302", extproctest.Request{Path: "/v1/catalog/a"}, extproctest.Response{Status: 302, Header: [][2]string{{"cache-control", "max-age=60"}, {"location", "/x"}}}},
		{"authorization on a public rule", extproctest.Request{Path: "/v1/catalog/a", Header: [][2]string{{"authorization", "Bearer t"}}}, ok("max-age=60")},
		{"cookie on a public rule", extproctest.Request{Path: "/v1/catalog/a", Header: [][2]string{{"cookie", "s=1"}}}, ok("max-age=60")},
		{"api key identity on a public rule", extproctest.Request{Path: "/v1/catalog/a", Identity: alice}, ok("max-age=60")},
		{"too large", extproctest.Request{Path: "/v1/catalog/a"}, extproctest.Response{Status: 200, Header: [][2]string{{"cache-control", "max-age=60"}}, Body: make([]byte, 2048)}},
		{"chunked and cut", extproctest.Request{Path: "/v1/catalog/a"}, extproctest.Response{Status: 200, Header: [][2]string{{"cache-control", "max-age=60"}}, Body: body1k, Chunked: true, BufferLimit: 512}},
		{"no freshness, search rule ttl", extproctest.Request{Path: "/v1/catalog/a"}, ok("max-age=0")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, store, respcache.Options{MaxEntryBytes: 1500})
			res := f.do(c.req, c.resp)
			if strings.Contains(res.Get("cache-status"), "stored") {
				t.Fatalf("Cache-Status %q says stored", res.Get("cache-status"))
			}
			if again := f.do(c.req, c.resp); again.Hit() {
				t.Fatal("served from cache")
			}
			if n := f.metric("floodgate_cache_stores_total", "rule", "catalog"); n != 0 {
				t.Fatalf("%v stores", n)
			}
		})
	}
}

func testPersonalPublicResponseStored(t *testing.T, store storeKind) {
	for _, cc := range []string{"public, max-age=60", "s-maxage=60", "must-revalidate, max-age=60"} {
		f := newFixture(t, store, respcache.Options{})
		req := extproctest.Request{Path: "/v1/catalog/a", Header: [][2]string{{"authorization", "Bearer t"}}}
		f.do(req, ok(cc))
		if !f.do(extproctest.Request{Path: "/v1/catalog/a"}, ok(cc)).Hit() {
			t.Fatalf("%s: a personal request's public response was not stored", cc)
		}
	}
}

func testBypass(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	f.do(extproctest.Request{Path: "/v1/catalog/a"}, ok("max-age=60"))
	for _, c := range []struct {
		name string
		req  extproctest.Request
		fwd  string
	}{
		{"request no-cache", extproctest.Request{Path: "/v1/catalog/a", Header: [][2]string{{"cache-control", "no-cache"}}}, "request"},
		{"request no-store", extproctest.Request{Path: "/v1/catalog/a", Header: [][2]string{{"cache-control", "no-store"}}}, "request"},
		{"user rule, no identity", extproctest.Request{Path: "/v1/users/alice"}, "bypass"},
		{"user rule, identity headers only", extproctest.Request{Path: "/v1/users/alice", Header: [][2]string{{"x-floodgate-user", "alice"}, {"x-floodgate-tenant", "acme"}}}, "bypass"},
		{"tenant rule, no tenant", extproctest.Request{Path: "/v1/teams/1", Identity: map[string]string{"auth": "none"}}, "bypass"},
		{"OPTIONS", extproctest.Request{Method: "OPTIONS", Path: "/v1/catalog/a"}, "method"},
	} {
		res := f.do(c.req, ok("max-age=60"))
		if res.Hit() || res.BodyMode != procmodev3.ProcessingMode_NONE {
			t.Fatalf("%s: hit %v body mode %v", c.name, res.Hit(), res.BodyMode)
		}
		if got, want := res.Get("cache-status"), "floodgate; fwd="+c.fwd; got != want {
			t.Fatalf("%s: Cache-Status %q, want %q", c.name, got, want)
		}
	}
	if res := f.do(extproctest.Request{Path: "/v1/users/alice", Identity: alice}, ok("private, max-age=60")); res.Hit() {
		t.Fatal("the identity-header request stored something")
	}
	if got := f.count("users", "bypass"); got != 2 {
		t.Fatalf("users bypass %d, want 2", got)
	}
}

func testUnmatchedSkipsResponse(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	res := f.do(extproctest.Request{Path: "/v2/other"}, ok("max-age=60"))
	if !res.SkippedResponse || res.Get("cache-status") != "" || res.Messages != 1 {
		t.Fatalf("skipped %v, Cache-Status %q, %d messages; want the response skipped", res.SkippedResponse, res.Get("cache-status"), res.Messages)
	}
}

func testScopes(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	f.do(extproctest.Request{Path: "/v1/users/me", Identity: alice}, ok("private, max-age=60"))
	if !f.do(extproctest.Request{Path: "/v1/users/me", Identity: alice}, ok("max-age=60")).Hit() {
		t.Fatal("alice's own entry missed")
	}
	if f.do(extproctest.Request{Path: "/v1/users/me", Identity: bob}, ok("private, max-age=60")).Hit() {
		t.Fatal("bob got alice's entry")
	}
	// The same user name in another tenant, or from another issuer, is
	// someone else.
	other := map[string]string{"auth": "jwt", "issuer": "https://id.example.com", "tenant": "initech", "user": "alice"}
	if f.do(extproctest.Request{Path: "/v1/users/me", Identity: other}, ok("max-age=60")).Hit() {
		t.Fatal("alice of another tenant got acme's alice's entry")
	}
	// Tenant scope: shared in the tenant, not across.
	f.do(extproctest.Request{Path: "/v1/teams/1", Identity: alice}, ok("max-age=60"))
	if !f.do(extproctest.Request{Path: "/v1/teams/1", Identity: bob}, ok("max-age=60")).Hit() {
		t.Fatal("bob missed his tenant's entry")
	}
	if f.do(extproctest.Request{Path: "/v1/teams/1", Identity: other}, ok("max-age=60")).Hit() {
		t.Fatal("another tenant got acme's entry")
	}
}

func testVaryAndKeyHeaders(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	en := [][2]string{{"accept-language", "en"}, {"accept", "application/json"}}
	de := [][2]string{{"accept-language", "de"}, {"accept", "application/json"}}
	vary := [2]string{"vary", "Accept-Language"}
	f.do(extproctest.Request{Path: "/v1/catalog/v", Header: en}, ok("max-age=60", vary))
	if f.do(extproctest.Request{Path: "/v1/catalog/v", Header: de}, ok("max-age=60", vary)).Hit() {
		t.Fatal("de got the en variant")
	}
	if !f.do(extproctest.Request{Path: "/v1/catalog/v", Header: en}, ok("max-age=60", vary)).Hit() ||
		!f.do(extproctest.Request{Path: "/v1/catalog/v", Header: de}, ok("max-age=60", vary)).Hit() {
		t.Fatal("both variants should be served")
	}
	xml := [][2]string{{"accept-language", "en"}, {"accept", "application/xml"}}
	if f.do(extproctest.Request{Path: "/v1/catalog/v", Header: xml}, ok("max-age=60", vary)).Hit() {
		t.Fatal("a key header's other value was served the json entry")
	}
}

func testFreshnessCapped(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	f.do(extproctest.Request{Path: "/v1/catalog/long"}, ok("max-age=86400"))
	if got := f.do(extproctest.Request{Path: "/v1/catalog/long"}, ok("")).Get("cache-status"); got != "floodgate; hit; ttl=600" {
		t.Fatalf("Cache-Status %q, want ttl capped at max_ttl 600", got)
	}
	f.do(extproctest.Request{Path: "/v1/catalog/default"}, extproctest.Response{Status: 404, Body: []byte("nope")})
	if got := f.do(extproctest.Request{Path: "/v1/catalog/default"}, ok("")); got.Status != 404 || got.Get("cache-status") != "floodgate; hit; ttl=30" {
		t.Fatalf("status %d Cache-Status %q, want the 404 stored for the rule's ttl", got.Status, got.Get("cache-status"))
	}
}

func testInvalidation(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	f.do(extproctest.Request{Path: "/v1/catalog/1?x=1"}, ok("max-age=60"))
	f.do(extproctest.Request{Path: "/v1/catalog/1?x=2"}, ok("max-age=60"))
	f.do(extproctest.Request{Path: "/v1/catalog/2"}, ok("max-age=60"))
	f.do(extproctest.Request{Path: "/v1/catalog/3"}, ok("max-age=60"))
	f.do(extproctest.Request{Path: "/v1/search/q?a=1"}, ok("max-age=60"))
	f.do(extproctest.Request{Authority: "other.example.com", Path: "/v1/search/q"}, ok("max-age=60"))
	// A failed write invalidates nothing.
	f.do(extproctest.Request{Method: "PUT", Path: "/v1/catalog/1"}, extproctest.Response{Status: 409})
	if !f.do(extproctest.Request{Path: "/v1/catalog/1?x=1"}, ok("max-age=60")).Hit() {
		t.Fatal("a 409 write invalidated")
	}
	res := f.do(extproctest.Request{Method: "POST", Path: "/v1/catalog/1"}, extproctest.Response{Status: 201, Header: [][2]string{{"location", "http://api.example.com/v1/catalog/2"}, {"content-location", "https://elsewhere.example.com/v1/catalog/3"}}})
	if strings.Contains(res.Get("cache-status"), "hit") || res.BodyMode != procmodev3.ProcessingMode_NONE {
		t.Fatalf("write: Cache-Status %q, body mode %v", res.Get("cache-status"), res.BodyMode)
	}
	for path, want := range map[string]bool{"/v1/catalog/1?x=1": false, "/v1/catalog/1?x=2": false, "/v1/catalog/2": false, "/v1/catalog/3": true, "/v1/search/q?a=1": false} {
		if got := f.do(extproctest.Request{Path: path}, ok("max-age=60")).Hit(); got != want {
			t.Errorf("%s after the write: hit %v, want %v", path, got, want)
		}
	}
	if !f.do(extproctest.Request{Authority: "other.example.com", Path: "/v1/search/q"}, ok("max-age=60")).Hit() {
		t.Error("another host's entry was invalidated")
	}
	if got := f.metric("floodgate_cache_invalidations_total", "rule", "catalog"); got != 4 {
		t.Errorf("invalidations %v, want 4 (two variants of /1, /2, the search prefix)", got)
	}
}

func testTagsAndPurge(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	f.do(extproctest.Request{Path: "/v1/catalog/a"}, ok("max-age=60", [2]string{"cache-tag", "red, blue"}))
	f.do(extproctest.Request{Path: "/v1/catalog/b"}, ok("max-age=60", [2]string{"surrogate-key", "blue green"}))
	f.do(extproctest.Request{Path: "/v1/catalog/c"}, ok("max-age=60"))
	f.do(extproctest.Request{Authority: "other.example.com", Path: "/v1/search/p"}, ok("max-age=60"))
	f.do(extproctest.Request{Path: "/v1/search/p"}, ok("max-age=60"))
	n, err := f.eng.Purge(context.Background(), cachestore.Selector{Tags: []string{"blue"}})
	if err != nil || n != 2 {
		t.Fatalf("purge tag blue: %d, %v; want 2", n, err)
	}
	n, err = f.eng.Purge(context.Background(), cachestore.Selector{Paths: []string{"/v1/search/p"}})
	if err != nil || n != 2 {
		t.Fatalf("purge path on every host: %d, %v; want 2", n, err)
	}
	for path, want := range map[string]bool{"/v1/catalog/a": false, "/v1/catalog/b": false, "/v1/catalog/c": true, "/v1/search/p": false} {
		if got := f.do(extproctest.Request{Path: path}, ok("max-age=60")).Hit(); got != want {
			t.Errorf("%s: hit %v, want %v", path, got, want)
		}
	}
}

func testCollapsed(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{CollapseWait: time.Minute})
	ctx := context.Background()
	req := extproctest.Request{Authority: "api.example.com", Path: "/v1/catalog/hot"}
	leader, err := f.c.Open(ctx, req)
	if err != nil || leader.Hit() {
		t.Fatalf("leader: %v", err)
	}
	const followers = 63
	var wg sync.WaitGroup
	results := make(chan *extproctest.Result, followers)
	for i := 0; i < followers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.c.Do(ctx, req, ok("max-age=60"))
			if err != nil {
				t.Error(err)
				return
			}
			results <- res
		}()
	}
	// Every follower waits behind the leader before it answers.
	waitFor(t, func() bool { return waiting(f.eng) == followers })
	if _, err := leader.Respond(ok("max-age=60")); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for res := range results {
		if !res.Hit() || res.Get("cache-status") != "floodgate; hit; collapsed" {
			t.Fatalf("follower: hit %v, Cache-Status %q", res.Hit(), res.Get("cache-status"))
		}
	}
	if f.count("catalog", "collapsed") != followers || f.count("catalog", "miss") != 1 || f.count("catalog", "hit") != 0 {
		t.Fatalf("collapsed %d miss %d hit %d", f.count("catalog", "collapsed"), f.count("catalog", "miss"), f.count("catalog", "hit"))
	}
}

func testCollapsedNotShared(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{CollapseWait: time.Minute})
	ctx := context.Background()
	req := extproctest.Request{Authority: "api.example.com", Path: "/v1/catalog/p"}
	leader, _ := f.c.Open(ctx, req)
	done := make(chan *extproctest.Result)
	go func() {
		res, err := f.c.Do(ctx, req, ok("max-age=60"))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitFor(t, func() bool { return waiting(f.eng) == 1 })
	leader.Respond(ok("private, max-age=60"))
	if res := <-done; res == nil || res.Hit() {
		t.Fatal("a follower was served a response that was not stored")
	}
	// A leader whose client goes away releases its followers (on another
	// key: the follower above stored its own response).
	req.Path = "/v1/catalog/q"
	leader, _ = f.c.Open(ctx, req)
	go func() {
		res, err := f.c.Do(ctx, req, ok("max-age=60"))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitFor(t, func() bool { return waiting(f.eng) == 1 })
	leader.Cancel()
	if res := <-done; res == nil || res.Hit() {
		t.Fatal("follower of a cancelled leader")
	}
	waitFor(t, func() bool { return flights(f.eng) == 0 })
}

func TestInvalidArgument(t *testing.T) {
	f := newFixture(t, memory, respcache.Options{})
	s, err := extprocv3.NewExternalProcessorClient(dialFor(t, f)).Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&extprocv3.ProcessingRequest{})
	_, err = s.Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty message: %v, want INVALID_ARGUMENT", err)
	}
}

func dialFor(t *testing.T, f *fixture) *grpc.ClientConn { return f.conn }

func waiting(e *respcache.Engine) int { _, w := e.Collapsing(); return w }
func flights(e *respcache.Engine) int { n, _ := e.Collapsing(); return n }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}

func testMetricsNames(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	f.do(extproctest.Request{Path: "/v1/catalog/m"}, ok("max-age=60"))
	f.do(extproctest.Request{Path: "/v1/catalog/m"}, ok("max-age=60"))
	if got := f.metric("floodgate_cache_entries"); got != 1 {
		t.Fatalf("floodgate_cache_entries %v, want 1", got)
	}
	if got := f.metric("floodgate_cache_bytes"); got < 1024 {
		t.Fatalf("floodgate_cache_bytes %v, want at least the body", got)
	}
	if f.count("catalog", "hit") != 1 || f.count("catalog", "miss") != 1 || f.metric("floodgate_cache_stores_total", "rule", "catalog") != 1 {
		t.Fatal("requests/stores series")
	}
}

// storeKind builds an empty store for one test.
type storeKind func(t *testing.T) cachestore.Store

func memory(t *testing.T) cachestore.Store {
	st, err := cachestore.NewMemory(cachestore.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var prefixes atomic.Int64

// onRedis is a store on the shared real redis-server, under a prefix of
// the test's own.
func onRedis(t *testing.T) cachestore.Store {
	c := redis.NewClient(&redis.Options{Addr: redistest.Shared(t).Addr})
	t.Cleanup(func() { c.Close() })
	st, err := rediscache.New(c, rediscache.Options{KeyPrefix: fmt.Sprintf("door%d:", prefixes.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// both runs a test on the memory store and on Redis.
func both(t *testing.T, test func(*testing.T, storeKind)) {
	t.Run("memory", func(t *testing.T) { test(t, memory) })
	t.Run("redis", func(t *testing.T) { test(t, onRedis) })
}

func TestMain(m *testing.M) { redistest.Main(m) }

func TestMissThenHit(t *testing.T) { both(t, testMissThenHit) }

func TestNotStored(t *testing.T) { both(t, testNotStored) }

func TestPersonalPublicResponseStored(t *testing.T) { both(t, testPersonalPublicResponseStored) }

func TestBypass(t *testing.T) { both(t, testBypass) }

func TestUnmatchedSkipsResponse(t *testing.T) { both(t, testUnmatchedSkipsResponse) }

func TestScopes(t *testing.T) { both(t, testScopes) }

func TestVaryAndKeyHeaders(t *testing.T) { both(t, testVaryAndKeyHeaders) }

func TestFreshnessCapped(t *testing.T) { both(t, testFreshnessCapped) }

func TestInvalidation(t *testing.T) { both(t, testInvalidation) }

func TestTagsAndPurge(t *testing.T) { both(t, testTagsAndPurge) }

func TestCollapsed(t *testing.T) { both(t, testCollapsed) }

func TestCollapsedNotShared(t *testing.T) { both(t, testCollapsedNotShared) }

func TestMetricsNames(t *testing.T) { both(t, testMetricsNames) }

// TestStorageErrorsPassThrough: a store that fails never fails a request:
// each passes through uncached, and each failure is counted by operation.
func TestStorageErrorsPassThrough(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	st, err := rediscache.New(c, rediscache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, memory, respcache.Options{Store: st})
	for i := 0; i < 2; i++ {
		res := f.do(extproctest.Request{Path: "/v1/catalog/e"}, ok("max-age=60"))
		if res.Hit() || res.Get("cache-status") != "floodgate; fwd=miss" {
			t.Fatalf("request %d: hit %v, Cache-Status %q; want a plain miss", i, res.Hit(), res.Get("cache-status"))
		}
	}
	if res := f.do(extproctest.Request{Method: "DELETE", Path: "/v1/catalog/e"}, extproctest.Response{Status: 204}); res.Status != 204 {
		t.Fatalf("write: status %d", res.Status)
	}
	for op, want := range map[string]float64{"get": 2, "put": 2, "invalidate": 1} {
		if got := f.metric("floodgate_cache_errors_total", "op", op); got != want {
			t.Errorf("errors{op=%s} = %v, want %v", op, got, want)
		}
	}
	if f.count("catalog", "miss") != 2 {
		t.Errorf("misses %d, want 2", f.count("catalog", "miss"))
	}
}

// TestUpstreamCacheStatusKept: the response's own Cache-Status stays,
// with Floodgate's member after it, also when the body was asked for.
func testUpstreamCacheStatusKept(t *testing.T, store storeKind) {
	f := newFixture(t, store, respcache.Options{})
	res := f.do(extproctest.Request{Path: "/v1/catalog/u"}, ok("max-age=60", [2]string{"cache-status", "origin; hit"}))
	if got := res.Get("cache-status"); got != "origin; hit, floodgate; fwd=miss; stored" {
		t.Fatalf("stored: Cache-Status %q", got)
	}
	res = f.do(extproctest.Request{Path: "/v1/catalog/u2"}, ok("no-store", [2]string{"cache-status", "origin; fwd=uri-miss"}))
	if got := res.Get("cache-status"); got != "origin; fwd=uri-miss, floodgate; fwd=miss" {
		t.Fatalf("not stored: Cache-Status %q", got)
	}
	if hit := f.do(extproctest.Request{Path: "/v1/catalog/u"}, ok("max-age=60")); hit.Get("cache-status") != "floodgate; hit; ttl=60" {
		t.Fatalf("hit: Cache-Status %q, want only Floodgate's member", hit.Get("cache-status"))
	}
}

func TestUpstreamCacheStatusKept(t *testing.T) { both(t, testUpstreamCacheStatusKept) }

// TestStoreStallBreaker stalls the Redis under the cache (SIGSTOP): the
// first requests pass through after the store timeout, then the breaker
// opens (floodgate_cache_store_up 0) and requests pass through without
// asking the store; once Redis continues, a trial call closes it and
// responses are stored and served again.
func TestStoreStallBreaker(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	st, err := rediscache.New(c, rediscache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, memory, respcache.Options{Store: st})
	if up := f.metric("floodgate_cache_store_up"); up != 1 {
		t.Fatalf("floodgate_cache_store_up = %v before the stall", up)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := true
	t.Cleanup(func() {
		if paused {
			srv.Resume()
		}
	})
	for i := 0; f.metric("floodgate_cache_store_up") != 0; i++ {
		if i > 50 {
			t.Fatal("the breaker did not open on a stalled store")
		}
		if res := f.do(extproctest.Request{Path: "/v1/catalog/stall"}, ok("max-age=60")); res.Hit() {
			t.Fatal("a hit from a stalled store")
		}
	}
	errs := f.metric("floodgate_cache_errors_total", "op", "get")
	for i := 0; i < 5; i++ {
		if res := f.do(extproctest.Request{Path: "/v1/catalog/stall"}, ok("max-age=60")); res.Hit() || res.Status != 200 {
			t.Fatalf("while open: hit %v status %d, want a pass-through", res.Hit(), res.Status)
		}
	}
	if got := f.metric("floodgate_cache_errors_total", "op", "get"); got < errs+4 {
		t.Errorf("get errors %v -> %v while open: want the refused calls counted", errs, got)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	paused = false
	waitFor(t, func() bool {
		f.do(extproctest.Request{Path: "/v1/catalog/stall"}, ok("max-age=60"))
		return f.do(extproctest.Request{Path: "/v1/catalog/stall"}, extproctest.Response{Status: 500}).Hit()
	})
	if up := f.metric("floodgate_cache_store_up"); up != 1 {
		t.Errorf("floodgate_cache_store_up = %v after the stall", up)
	}
}
