package authsvc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/authsvc"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/jwtauth"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/quota"
)

const limits = `
domain: api
algorithm: fixed_window
descriptors:
  - key: tenant
    descriptors:
      - key: tier
        value: free
        rate_limit: {unit: minute, requests_per_unit: 2, name: free-tier}
      - key: tier
        value: pro
        rate_limit: {unit: minute, requests_per_unit: 5, name: pro-tier}
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 3, name: per-user}
  - key: client_ip
    rate_limit: {unit: minute, requests_per_unit: 4, name: per-ip}
  - key: race
    rate_limit: {unit: hour, requests_per_unit: 500, name: race}
  - key: region
    descriptors:
      - key: client
        rate_limit: {unit: minute, requests_per_unit: 9, name: per-region-client}
`

// start is on a minute and an hour boundary.
var start = time.Unix(1_700_000_000-1_700_000_000%3600, 0)

type fixture struct {
	svc      *authsvc.Service
	clock    *backendtest.Clock
	reg      *prometheus.Registry
	logs     *syncBuffer
	verifier authsvc.TokenVerifier
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t testing.TB, cfg *authconfig.Config, eopts engine.Options) *fixture {
	t.Helper()
	return newFixtureLogging(t, cfg, eopts, slog.LevelDebug)
}

func newFixtureLogging(t testing.TB, cfg *authconfig.Config, eopts engine.Options, level slog.Level) *fixture {
	t.Helper()
	f := &fixture{clock: backendtest.NewClock(start), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: level}))
	if eopts.Limiter == nil {
		store, err := memstore.New(memstore.Options{Now: f.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		eopts.Limiter = store
	}
	eng, err := engine.New(eopts)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := descriptors.Parse("limits.yaml", []byte(limits), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(lim)
	f.svc, err = authsvc.New(eng, authsvc.Options{
		Now:        f.clock.Now,
		Registerer: f.reg,
		Log:        log,
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.New(cfg.JWT, jwtauth.Options{Now: f.clock.Now, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	f.verifier = downVerifier{v}
	f.svc.SetConfig(cfg, f.verifier)
	return f
}

// request is what Envoy's ext_authz filter sends for one HTTP request.
type request struct {
	method, host, path string
	headers            map[string]string
	peer               string
}

func (r request) proto() *authv3.CheckRequest {
	if r.method == "" {
		r.method = "GET"
	}
	if r.host == "" {
		r.host = "api.example.com"
	}
	if r.peer == "" {
		r.peer = "192.0.2.10"
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: r.peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.method, Host: r.host, Path: r.path, Headers: r.headers,
		}},
	}}
}

func (f *fixture) check(t testing.TB, r request) *authv3.CheckResponse {
	t.Helper()
	resp, err := f.svc.Check(context.Background(), r.proto())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func key(k string) map[string]string     { return map[string]string{"x-api-key": k} }
func bearer(tk string) map[string]string { return map[string]string{"authorization": "Bearer " + tk} }

// problemOf decodes a denied answer's body.
type problemBody struct {
	Type     string   `json:"type"`
	Title    string   `json:"title"`
	Status   int      `json:"status"`
	Detail   string   `json:"detail"`
	Violated []string `json:"violated-policies"`
}

func deniedOf(t testing.TB, resp *authv3.CheckResponse) (*authv3.DeniedHttpResponse, problemBody) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("answer %v, want denied", resp)
	}
	var p problemBody
	if err := json.Unmarshal([]byte(d.Body), &p); err != nil {
		t.Fatalf("body %q: %v", d.Body, err)
	}
	return d, p
}

func headerOf(opts []*corev3.HeaderValueOption, name string) (string, bool) {
	for _, o := range opts {
		if strings.EqualFold(o.GetHeader().GetKey(), name) {
			return o.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// TestAnswerTable: every row of the contract's answer table, plus the
// allowed answers, with their codes, HTTP statuses, bodies and challenges.
func TestAnswerTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		req       request
		code      codes.Code
		http      int
		problem   string
		challenge string
	}{
		{"allowed, auth none", request{path: "/docs/a"}, codes.OK, 0, "", ""},
		{"allowed, API key", request{path: "/v1/x", headers: key(keyPro)}, codes.OK, 0, "", ""},
		{"allowed, ApiKey scheme", request{path: "/keys/x", headers: map[string]string{"authorization": "apikey " + keyGold}}, codes.OK, 0, "", ""},
		{"allowed, JWT", request{path: "/jwt/x", headers: bearer(tokenGood)}, codes.OK, 0, "", ""},
		{"allowed, JWT ES256", request{path: "/jwt/x", headers: bearer(tokenES)}, codes.OK, 0, "", ""},
		{"allowed, wildcard host", request{host: "eu.API.example.com:8443", path: "/v1/x", headers: key(keyPro)}, codes.OK, 0, "", ""},
		{"missing, api_key", request{path: "/keys/x"}, codes.Unauthenticated, 401, authsvc.ProblemMissingCredentials, `ApiKey realm="floodgate"`},
		{"missing, jwt", request{path: "/jwt/x"}, codes.Unauthenticated, 401, authsvc.ProblemMissingCredentials, `Bearer realm="floodgate"`},
		{"missing, any", request{path: "/v1/x"}, codes.Unauthenticated, 401, authsvc.ProblemMissingCredentials, `Bearer realm="floodgate", ApiKey realm="floodgate"`},
		{"missing: a token where only keys count", request{path: "/keys/x", headers: bearer(tokenGood)}, codes.Unauthenticated, 401, authsvc.ProblemMissingCredentials, `ApiKey realm="floodgate"`},
		{"invalid: unknown key", request{path: "/keys/x", headers: key("nope")}, codes.Unauthenticated, 401, authsvc.ProblemInvalidCredentials, `ApiKey realm="floodgate"`},
		{"invalid: expired key", request{path: "/v1/x", headers: key(keyExpired)}, codes.Unauthenticated, 401, authsvc.ProblemInvalidCredentials, `Bearer realm="floodgate", ApiKey realm="floodgate"`},
		{"invalid: bad token", request{path: "/jwt/x", headers: bearer(tokenBad)}, codes.Unauthenticated, 401, authsvc.ProblemInvalidCredentials, `Bearer realm="floodgate", error="invalid_token"`},
		{"invalid: bad token on any", request{path: "/v1/x", headers: bearer(tokenBad)}, codes.Unauthenticated, 401, authsvc.ProblemInvalidCredentials, `Bearer realm="floodgate", error="invalid_token", ApiKey realm="floodgate"`},
		{"invalid: verifier failed", request{path: "/jwt/x", headers: bearer(tokenDown)}, codes.Unauthenticated, 401, authsvc.ProblemInvalidCredentials, `Bearer realm="floodgate", error="invalid_token"`},
		{"forbidden tier", request{path: "/v1/x", headers: key(keyGold)}, codes.PermissionDenied, 403, authsvc.ProblemForbidden, ""},
		{"no policy: path", request{path: "/admin", headers: key(keyPro)}, codes.PermissionDenied, 403, authsvc.ProblemNoPolicy, ""},
		{"no policy: method", request{method: "DELETE", path: "/v1/x", headers: key(keyPro)}, codes.PermissionDenied, 403, authsvc.ProblemNoPolicy, ""},
		{"no policy: apex of a wildcard", request{host: "other.example.com", path: "/v1/x", headers: key(keyPro)}, codes.PermissionDenied, 403, authsvc.ProblemNoPolicy, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, testConfig(nil, 0), engine.Options{})
			resp := f.check(t, tc.req)
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.code || resp.GetStatus() == nil {
				t.Fatalf("status %v, want %v (%v)", resp.GetStatus(), tc.code, resp)
			}
			if tc.code == codes.OK {
				if resp.GetOkResponse() == nil {
					t.Fatalf("OK without ok_response: %v", resp)
				}
				return
			}
			d, p := deniedOf(t, resp)
			if int(d.GetStatus().GetCode()) != tc.http || p.Status != tc.http || p.Type != tc.problem || p.Title == "" || p.Detail == "" {
				t.Errorf("denied %d, body %+v; want %d %s", d.GetStatus().GetCode(), p, tc.http, tc.problem)
			}
			if ct, _ := headerOf(d.Headers, "content-type"); ct != "application/problem+json" {
				t.Errorf("content-type %q", ct)
			}
			challenge, ok := headerOf(d.Headers, "www-authenticate")
			if challenge != tc.challenge || ok != (tc.challenge != "") {
				t.Errorf("WWW-Authenticate %q (sent %v), want %q", challenge, ok, tc.challenge)
			}
		})
	}
}

// TestIdentityHeadersAndMetadata: the identity headers overwrite what the
// client sent, the unset ones (and the stripped credential) are removed,
// and the identity travels as dynamic metadata.
func TestIdentityHeadersAndMetadata(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	hdrs := key(keyPro)
	hdrs["x-floodgate-tenant"] = "forged"
	hdrs["x-floodgate-subject"] = "forged"
	resp := f.check(t, request{path: "/v1/things?q=1", headers: hdrs})
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not allowed: %v", resp)
	}
	want := map[string]string{
		"x-floodgate-tenant": "acme", "x-floodgate-tier": "pro", "x-floodgate-user": "billing-bot",
		"x-floodgate-key-id": "k-pro", "x-floodgate-auth": "api_key", "x-floodgate-policy": "api",
	}
	got := map[string]string{}
	for _, o := range ok.Headers {
		if o.AppendAction != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || o.GetAppend().GetValue() {
			t.Errorf("%s: append_action %v, append %v; want OVERWRITE_IF_EXISTS_OR_ADD", o.Header.Key, o.AppendAction, o.GetAppend())
		}
		got[o.Header.Key] = o.Header.Value
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	removed := slices.Sorted(slices.Values(ok.HeadersToRemove))
	if fmt.Sprint(removed) != "[x-api-key x-floodgate-subject]" {
		t.Errorf("headers_to_remove %v, want the unset x-floodgate-subject and the stripped x-api-key", removed)
	}
	md := resp.GetDynamicMetadata().AsMap()
	wantMD := map[string]any{"tenant": "acme", "tier": "pro", "user": "billing-bot", "key_id": "k-pro",
		"client_ip": "192.0.2.10", "auth": "api_key", "policy": "api"}
	if fmt.Sprint(md) != fmt.Sprint(wantMD) {
		t.Errorf("dynamic_metadata %v, want %v", md, wantMD)
	}
	if ok.DynamicMetadata != nil {
		t.Error("the deprecated ok_response.dynamic_metadata is set")
	}

	// A JWT identity: subject and issuer; nothing stripped on a policy
	// without strip_credentials; auth: none sets only auth and policy.
	resp = f.check(t, request{path: "/jwt/x", headers: bearer(tokenGood)})
	ok = resp.GetOkResponse()
	if v, _ := headerOf(ok.GetHeaders(), "x-floodgate-subject"); v != "alice" {
		t.Errorf("subject header %q", v)
	}
	if slices.Contains(ok.GetHeadersToRemove(), "authorization") || !slices.Contains(ok.GetHeadersToRemove(), "x-floodgate-key-id") {
		t.Errorf("headers_to_remove %v", ok.GetHeadersToRemove())
	}
	if md := resp.GetDynamicMetadata().AsMap(); md["issuer"] != "https://id.example.com" || md["subject"] != "alice" || md["auth"] != "jwt" {
		t.Errorf("dynamic_metadata %v", md)
	}
	resp = f.check(t, request{path: "/docs/x", headers: map[string]string{"x-floodgate-user": "forged"}})
	ok = resp.GetOkResponse()
	if len(ok.GetHeaders()) != 2 || len(ok.GetHeadersToRemove()) != 5 || !slices.Contains(ok.GetHeadersToRemove(), "x-floodgate-user") {
		t.Errorf("auth none: headers %v, removed %v", ok.GetHeaders(), ok.GetHeadersToRemove())
	}
}

// TestAnyJudgedByKey: with auth: any and both credentials, the API key
// decides (a bad token beside it does not matter), and strip_credentials
// removes both.
func TestAnyJudgedByKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	hdrs := map[string]string{"x-api-key": keyPro, "authorization": "Bearer " + tokenBad}
	resp := f.check(t, request{path: "/v1/x", headers: hdrs})
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not allowed: %v", resp)
	}
	if !slices.Contains(ok.HeadersToRemove, "x-api-key") || !slices.Contains(ok.HeadersToRemove, "authorization") {
		t.Errorf("headers_to_remove %v, want both credentials", ok.HeadersToRemove)
	}
	hdrs = map[string]string{"x-api-key": "unknown", "authorization": "Bearer " + tokenGood}
	if code := f.check(t, request{path: "/v1/x", headers: hdrs}).GetStatus().GetCode(); codes.Code(code) != codes.Unauthenticated {
		t.Errorf("a bad key beside a good token: %v, want UNAUTHENTICATED", codes.Code(code))
	}
}

// TestClaimAndHeaderTemplates: %claim:NAME% and %header:NAME% render
// from the token and the request; a key has no claims, so its descriptor
// is left out. strip_credentials removes the Authorization it took.
func TestClaimAndHeaderTemplates(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	hdrs := bearer(tokenGood)
	hdrs["x-client"] = "mobile"
	resp := f.check(t, request{path: "/claims/x", headers: hdrs})
	ok := resp.GetOkResponse()
	state, _ := headerOf(ok.GetResponseHeadersToAdd(), "RateLimit")
	if state != `"per-region-client";r=8;t=60` {
		t.Errorf("token: RateLimit %q, want per-region-client counted", state)
	}
	if !slices.Contains(ok.GetHeadersToRemove(), "authorization") || slices.Contains(ok.GetHeadersToRemove(), "x-api-key") {
		t.Errorf("headers_to_remove %v, want authorization only", ok.GetHeadersToRemove())
	}
	resp = f.check(t, request{path: "/claims/x", headers: key(keyPro)})
	if h := resp.GetOkResponse().GetResponseHeadersToAdd(); resp.GetOkResponse() == nil || len(h) != 0 {
		t.Errorf("key: %v, want allowed without limits", resp)
	}
	// "%header:x-client%-%method%" without the header: the entry is left
	// out, not counted under "-GET" for every client that omits it.
	resp = f.check(t, request{path: "/claims/x", headers: bearer(tokenGood)})
	if h := resp.GetOkResponse().GetResponseHeadersToAdd(); resp.GetOkResponse() == nil || len(h) != 0 {
		t.Errorf("token without x-client: %v, want allowed without limits", resp)
	}
	// A number claim renders as written in the token.
	cfg := parseConfig(nil, 0, `
  - name: level
    match: {}
    auth: jwt
    rate_limit: {domain: api, descriptors: [[{key: user, value: "lvl-%claim:level%"}]]}
`)
	f.svc.SetConfig(cfg, f.verifier)
	resp = f.check(t, request{path: "/x", headers: bearer(tokenGood)})
	if state, _ := headerOf(resp.GetOkResponse().GetResponseHeadersToAdd(), "RateLimit"); state != `"per-user";r=2;t=60` {
		t.Errorf("a number claim: RateLimit %q, want per-user counted", state)
	}
	if md := resp.GetDynamicMetadata().AsMap(); md["subject"] != "alice" {
		t.Errorf("dynamic_metadata %v", md)
	}
}

// TestRawHeaders: with encode_raw_headers Envoy sends header_map, values
// possibly in raw_value.
func TestRawHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 1), engine.Options{})
	req := request{path: "/v1/x"}.proto()
	req.Attributes.Request.Http.Host = ""
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte("api.example.com")},
		{Key: "X-Api-Key", RawValue: []byte(keyPro)},
		{Key: "x-forwarded-for", Value: "198.51.100.1, 10.0.0.1"},
	}}
	resp, err := f.svc.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() == nil {
		t.Fatalf("not allowed: %v", resp)
	}
	if md := resp.GetDynamicMetadata().AsMap(); md["key_id"] != "k-pro" || md["client_ip"] != "198.51.100.1" {
		t.Errorf("dynamic_metadata %v", md)
	}
}

// TestTierLimitsWithHeaders: each tier's limit, with RateLimit headers
// on allowed answers and a 429 with Retry-After and violated-policies.
func TestTierLimitsWithHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	for i := 1; i <= 2; i++ {
		resp := f.check(t, request{path: "/v1/x", headers: key(keyFree)})
		ok := resp.GetOkResponse()
		if ok == nil {
			t.Fatalf("request %d: %v", i, resp)
		}
		policy, _ := headerOf(ok.ResponseHeadersToAdd, "RateLimit-Policy")
		state, _ := headerOf(ok.ResponseHeadersToAdd, "RateLimit")
		if policy != `"free-tier";q=2;w=60` || state != fmt.Sprintf(`"free-tier";r=%d;t=60`, 2-i) {
			t.Errorf("request %d: RateLimit-Policy %q, RateLimit %q", i, policy, state)
		}
	}
	resp := f.check(t, request{path: "/v1/x", headers: key(keyFree)})
	if codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Fatalf("third free request: %v", resp)
	}
	d, p := deniedOf(t, resp)
	if d.Status.Code != 429 || p.Type != authsvc.ProblemQuotaExceeded || fmt.Sprint(p.Violated) != "[free-tier]" {
		t.Errorf("denied %v, body %+v", d.Status, p)
	}
	for name, want := range map[string]string{"Retry-After": "60", "RateLimit-Policy": `"free-tier";q=2;w=60`, "RateLimit": `"free-tier";r=0;t=60`} {
		if v, _ := headerOf(d.Headers, name); v != want {
			t.Errorf("%s %q, want %q", name, v, want)
		}
	}
	// The pro tier has its own, larger limit, and its user a second one.
	resp = f.check(t, request{path: "/v1/x", headers: key(keyPro)})
	state, _ := headerOf(resp.GetOkResponse().GetResponseHeadersToAdd(), "RateLimit")
	if state != `"pro-tier";r=4;t=60, "per-user";r=2;t=60` {
		t.Errorf("pro: RateLimit %q", state)
	}
	// A policy without rate_limit answers without the headers.
	resp = f.check(t, request{path: "/keys/x", headers: key(keyFree)})
	if h := resp.GetOkResponse().GetResponseHeadersToAdd(); len(h) != 0 {
		t.Errorf("no rate_limit: response headers %v", h)
	}
}

// TestAllOrNothing: a request over one of its policy's limits takes
// nothing from the others, and 401 and 403 take nothing at all.
func TestAllOrNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	// billing-bot's per-user limit is 3; acme's pro tier 5.
	for i := 0; i < 3; i++ {
		f.check(t, request{path: "/v1/x", headers: key(keyPro)})
	}
	if code := f.check(t, request{path: "/v1/x", headers: key(keyPro)}).GetStatus().GetCode(); codes.Code(code) != codes.ResourceExhausted {
		t.Fatalf("fourth: %v", codes.Code(code))
	}
	// Denials on the same policy consume nothing either.
	f.check(t, request{path: "/v1/x", headers: key("unknown")})
	f.check(t, request{path: "/v1/x"})
	resp := f.check(t, request{path: "/v1/x", headers: key(keyPro2)})
	state, _ := headerOf(resp.GetOkResponse().GetResponseHeadersToAdd(), "RateLimit")
	if state != `"pro-tier";r=1;t=60, "per-user";r=2;t=60` {
		t.Errorf("after a rejected request: RateLimit %q, want pro-tier at 1 (3 taken + this one)", state)
	}
}

// TestDescriptorLeftOutWhenEmpty: a descriptor whose entry renders empty
// is left out of the decision (a key without a user).
func TestDescriptorLeftOutWhenEmpty(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	resp := f.check(t, request{path: "/v1/x", headers: key(keyFree)})
	state, _ := headerOf(resp.GetOkResponse().GetResponseHeadersToAdd(), "RateLimit")
	if state != `"free-tier";r=1;t=60` {
		t.Errorf("RateLimit %q, want the tier only", state)
	}
}

// TestFailedAuthLimit: each invalid credential counts one for its
// address; once the count reaches the limit every request from it is
// answered 429 before its credential is looked at, on any policy or none;
// missing credentials count nothing; an IPv6 client counts by its /64.
func TestFailedAuthLimit(t *testing.T) {
	t.Parallel()
	limit := &quota.Limit{Requests: 3, Unit: time.Minute} // a fixed window, whatever the algorithm
	f := newFixture(t, testConfig(limit, 0), engine.Options{})
	bad := request{path: "/keys/x", headers: key("guess"), peer: "203.0.113.9"}
	code := func(r request) codes.Code { return codes.Code(f.check(t, r).GetStatus().GetCode()) }
	for i := 0; i < 2; i++ {
		if c := code(bad); c != codes.Unauthenticated {
			t.Fatalf("invalid %d: %v", i+1, c)
		}
	}
	// Missing credentials and a bad token's verifier failure count nothing.
	for i := 0; i < 3; i++ {
		code(request{path: "/keys/x", peer: "203.0.113.9"})
		code(request{path: "/jwt/x", headers: bearer(tokenDown), peer: "203.0.113.9"})
	}
	good := request{path: "/v1/x", headers: key(keyPro), peer: "203.0.113.9"}
	if c := code(good); c != codes.OK {
		t.Fatalf("a good key after 2 failures: %v", c)
	}
	if c := code(request{path: "/jwt/x", headers: bearer(tokenBad), peer: "203.0.113.9"}); c != codes.Unauthenticated {
		t.Fatalf("third failure: %v, want 401", c)
	}
	for _, r := range []request{good, bad, {path: "/docs/x", peer: "203.0.113.9"}, {path: "/nowhere", peer: "203.0.113.9"}} {
		resp := f.check(t, r)
		if codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted {
			t.Fatalf("%s after the limit: %v", r.path, resp)
		}
		d, p := deniedOf(t, resp)
		if p.Type != authsvc.ProblemQuotaExceeded || fmt.Sprint(p.Violated) != "[failed-auth]" || d.Status.Code != 429 {
			t.Errorf("body %+v", p)
		}
		for name, want := range map[string]string{"Retry-After": "60", "RateLimit-Policy": `"failed-auth";q=3;w=60`, "RateLimit": `"failed-auth";r=0;t=60`} {
			if v, _ := headerOf(d.Headers, name); v != want {
				t.Errorf("%s: %s %q, want %q", r.path, name, v, want)
			}
		}
	}
	// Another address is untouched; the window's end frees this one.
	if c := code(request{path: "/v1/x", headers: key(keyPro), peer: "203.0.113.10"}); c != codes.OK {
		t.Errorf("another address: %v", c)
	}
	f.clock.Advance(time.Minute)
	if c := code(good); c != codes.OK {
		t.Errorf("next window: %v", c)
	}

	// IPv6: 2001:db8:1:2::a and 2001:db8:1:2::b share a /64.
	for _, peer := range []string{"2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2::c"} {
		if c := code(request{path: "/keys/x", headers: key("guess"), peer: peer}); c != codes.Unauthenticated {
			t.Fatalf("%s: %v", peer, c)
		}
	}
	if c := code(request{path: "/v1/x", headers: key(keyPro), peer: "2001:db8:1:2::d"}); c != codes.ResourceExhausted {
		t.Errorf("same /64 after 3 failures: %v", c)
	}
	if resp := f.check(t, request{path: "/v1/x", headers: key(keyPro), peer: "2001:db8:1:3::d"}); resp.GetOkResponse() == nil {
		t.Errorf("another /64: %v", resp)
	}
}

// TestClientAddressTrustedHops: the contract's example and its edges.
func TestClientAddressTrustedHops(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hops int
		xff  string
		want string
	}{
		{1, "203.0.113.7, 10.0.0.2", "203.0.113.7"}, // the contract's example
		{0, "203.0.113.7, 10.0.0.2", "192.0.2.10"},  // 0: the peer
		{2, "198.51.100.3, 203.0.113.7, 10.0.0.2", "198.51.100.3"},
		{2, "203.0.113.7,10.0.0.2", "203.0.113.7"}, // fewer: the leftmost
		{5, "203.0.113.7", "203.0.113.7"},
		{1, "", "192.0.2.10"}, // no header: the peer
		{1, "2001:db8::7, 10.0.0.2", "2001:db8::7"},
	} {
		t.Run(fmt.Sprintf("%d/%s", tc.hops, tc.xff), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, testConfig(nil, tc.hops), engine.Options{})
			hdrs := map[string]string{}
			if tc.xff != "" {
				hdrs["x-forwarded-for"] = tc.xff
			}
			resp := f.check(t, request{path: "/docs/x", headers: hdrs})
			if got := resp.GetDynamicMetadata().AsMap()["client_ip"]; got != tc.want {
				t.Errorf("client_ip %v, want %s", got, tc.want)
			}
			// The address is what %client_ip% renders.
			state, _ := headerOf(resp.GetOkResponse().GetResponseHeadersToAdd(), "RateLimit")
			if state != `"per-ip";r=3;t=60` {
				t.Errorf("RateLimit %q", state)
			}
		})
	}
}

// TestInvalidArgument: a CheckRequest without attributes.request.http.
func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	for _, req := range []*authv3.CheckRequest{
		{},
		{Attributes: &authv3.AttributeContext{}},
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
	} {
		_, err := f.svc.Check(context.Background(), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "attributes.request.http") {
			t.Errorf("%v: %v, want INVALID_ARGUMENT naming attributes.request.http", req, err)
		}
	}
}

// TestBeforeConfig: no config yet answers UNAVAILABLE.
func TestBeforeConfig(t *testing.T) {
	t.Parallel()
	store, _ := memstore.New(memstore.Options{})
	eng, _ := engine.New(engine.Options{Limiter: store})
	svc, err := authsvc.New(eng, authsvc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Check(context.Background(), request{path: "/docs/"}.proto()); status.Code(err) != codes.Unavailable {
		t.Errorf("before SetConfig: %v", err)
	}
}

type failingLimiter struct{}

func (failingLimiter) Take(context.Context, []quota.Hit, []quota.Decision) error {
	return errors.New("redis: connection refused 10.0.0.5:6379")
}

// TestBackendFailure follows the engine: UNAVAILABLE with no internals,
// or allowed with --fail-open.
func TestBackendFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{Limiter: failingLimiter{}})
	_, err := f.svc.Check(context.Background(), request{path: "/v1/x", headers: key(keyPro)}.proto())
	if status.Code(err) != codes.Unavailable || strings.Contains(err.Error(), "10.0.0.5") {
		t.Errorf("backend down: %v, want UNAVAILABLE without internals", err)
	}
	f = newFixture(t, testConfig(nil, 0), engine.Options{Limiter: failingLimiter{}, FailOpen: true})
	if resp := f.check(t, request{path: "/v1/x", headers: key(keyPro)}); resp.GetOkResponse() == nil {
		t.Errorf("fail-open: %v", resp)
	}
}

// TestDecisionMetrics: floodgate_auth_decisions_total{policy,result}, and
// a reload drops the series of a policy that is gone.
func TestDecisionMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	f.check(t, request{path: "/v1/x", headers: key(keyPro)})
	f.check(t, request{path: "/v1/x", headers: key(keyPro)})
	f.check(t, request{path: "/keys/x"})
	f.check(t, request{path: "/nowhere"})
	want := `
# HELP floodgate_auth_decisions_total Check answers by policy ("" when none matched) and result.
# TYPE floodgate_auth_decisions_total counter
`
	got := map[string]float64{}
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	_ = want
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_auth_decisions_total" {
			continue
		}
		for _, m := range mf.Metric {
			var policy, result string
			for _, l := range m.Label {
				switch l.GetName() {
				case "policy":
					policy = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			got[policy+"/"+result] = m.GetCounter().GetValue()
		}
	}
	for k, v := range map[string]float64{"api/ok": 2, "keys/missing_credentials": 1, "/no_policy": 1, "docs/ok": 0} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	cfg := testConfig(nil, 0)
	cfg.Policies = cfg.Policies[:1]
	f.svc.SetConfig(cfg, nil)
	n := testutil.CollectAndCount(f.reg, "floodgate_auth_decisions_total")
	if want := 2 * 8; n != want { // docs and no policy, 8 results each
		t.Errorf("%d series after the reload, want %d", n, want)
	}
}

// TestNoCredentialInLogs: at debug level, nothing logged holds a key, a
// token or an Authorization value.
func TestNoCredentialInLogs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(&quota.Limit{Requests: 2, Unit: time.Minute}, 0), engine.Options{})
	for _, r := range []request{
		{path: "/v1/x", headers: key(keyPro)},
		{path: "/v1/x", headers: key(keyGold)},
		{path: "/v1/x", headers: map[string]string{"authorization": "ApiKey " + keyFree}},
		{path: "/jwt/x", headers: bearer(tokenGood)},
		{path: "/jwt/x", headers: bearer(tokenBad)},
		{path: "/jwt/x", headers: bearer(tokenDown)},
		{path: "/keys/x", headers: key(keyExpired)},
		{path: "/keys/x", headers: key("guess-0123456789")},
		{path: "/keys/x", headers: key("guess-0123456789")},
		{path: "/keys/x", headers: key(keyPro)},
	} {
		f.check(t, r)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"auth decision"`) {
		t.Fatalf("no decision was logged at debug level: %s", logs)
	}
	for _, secret := range []string{keyPro, keyGold, keyFree, keyExpired, "guess-0123456789", tokenGood, tokenBad, tokenDown, "Bearer", "ApiKey "} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// TestConcurrentTierLimit: 64 goroutines racing on one limit admit
// exactly the limit, while the config is swapped under them.
func TestConcurrentTierLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testConfig(nil, 0), engine.Options{})
	var ok, over atomic.Int64
	var wg sync.WaitGroup
	// Reloads while the calls race change nothing in the count.
	stop := make(chan struct{})
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for {
			select {
			case <-stop:
				return
			default:
				f.svc.SetConfig(testConfig(nil, 0), f.verifier)
			}
		}
	}()
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := request{path: "/race", headers: key(keyPro)}.proto()
			for i := 0; i < 20; i++ {
				resp, err := f.svc.Check(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				switch codes.Code(resp.GetStatus().GetCode()) {
				case codes.OK:
					ok.Add(1)
				case codes.ResourceExhausted:
					over.Add(1)
				default:
					t.Errorf("answer %v", resp)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-reloaded
	if ok.Load() != 500 || over.Load() != 64*20-500 {
		t.Fatalf("admitted %d, rejected %d; want 500 and %d", ok.Load(), over.Load(), 64*20-500)
	}
}

// BenchmarkCheck: an API-key identity and one descriptor decided on the
// memory backend; with failed_auth_limit, the failed-auth read too.
func BenchmarkCheck(b *testing.B) {
	for _, failed := range []bool{false, true} {
		b.Run(fmt.Sprintf("failed_auth_limit=%v", failed), func(b *testing.B) {
			store, err := memstore.New(memstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			var limit *quota.Limit
			if failed {
				limit = &quota.Limit{Requests: 20, Unit: time.Minute}
			}
			cfg := parseConfig(limit, 0, `
  - name: bench
    match: {}
    auth: api_key
    rate_limit:
      domain: bench
      descriptors: [[{key: tenant, value: "%tenant%"}]]
`)
			f := newFixtureLogging(b, cfg, engine.Options{Limiter: store}, slog.LevelInfo)
			lim, err := descriptors.Parse("bench.yaml", []byte(`
domain: bench
descriptors:
  - key: tenant
    rate_limit: {unit: second, requests_per_unit: 1000000000}
`), descriptors.Options{})
			if err != nil {
				b.Fatal(err)
			}
			f.svc.Engine().SetConfig(lim)
			req := request{path: "/v1/x", headers: key(keyPro)}.proto()
			if resp := f.check(b, request{path: "/v1/x", headers: key(keyPro)}); resp.GetOkResponse() == nil {
				b.Fatalf("not allowed: %v", resp)
			}
			var failure atomic.Pointer[error]
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := f.svc.Check(ctx, req)
					if err == nil && resp.GetOkResponse() == nil {
						err = fmt.Errorf("not allowed: %v", resp.GetStatus())
					}
					if err != nil {
						e := err
						failure.CompareAndSwap(nil, &e)
						return
					}
				}
			})
			if err := failure.Load(); err != nil {
				b.Fatal(*err)
			}
		})
	}
}

// countingLimiter counts the backend round trips (Take calls).
type countingLimiter struct {
	quota.Limiter
	takes atomic.Int64
}

func (c *countingLimiter) Take(ctx context.Context, hits []quota.Hit, out []quota.Decision) error {
	c.takes.Add(1)
	return c.Limiter.Take(ctx, hits, out)
}

// TestOneBackendCallPerCheck: with failed_auth_limit, a Check whose
// credential is judged in memory (an API key, valid or not; a token the
// verifier has cached) costs one Take; so do a missing credential and
// auth: none. Only a token to verify costs two (the failed-auth read
// before its signature is checked, then the policy's batch). An address
// over the limit is refused in that one call, and nothing of the
// policy's limits is taken.
func TestOneBackendCallPerCheck(t *testing.T) {
	t.Parallel()
	var clock *backendtest.Clock
	store, err := memstore.New(memstore.Options{Now: func() time.Time { return clock.Now() }})
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingLimiter{Limiter: store}
	f := newFixture(t, testConfig(&quota.Limit{Requests: 2, Unit: time.Minute}, 0), engine.Options{Limiter: counting})
	clock = f.clock
	takes := func(r request) (int64, *authv3.CheckResponse) {
		t.Helper()
		before := counting.takes.Load()
		resp := f.check(t, r)
		return counting.takes.Load() - before, resp
	}
	for _, tc := range []struct {
		name string
		req  request
		want int64
		code codes.Code
	}{
		{"valid key", request{path: "/v1/x", headers: key(keyPro)}, 1, codes.OK},
		{"valid key, forbidden tier", request{path: "/v1/x", headers: key(keyGold)}, 1, codes.PermissionDenied},
		{"unknown key", request{path: "/keys/x", headers: key("guess-1"), peer: "198.51.100.7"}, 1, codes.Unauthenticated},
		{"missing key", request{path: "/keys/x"}, 1, codes.Unauthenticated},
		{"auth none", request{path: "/docs/x"}, 1, codes.OK},
		{"token, first seen", request{path: "/jwt/x", headers: bearer(tokenGood)}, 2, codes.OK},
		{"token, cached", request{path: "/jwt/x", headers: bearer(tokenGood)}, 1, codes.OK},
		{"no policy", request{path: "/nowhere"}, 1, codes.PermissionDenied},
	} {
		if n, resp := takes(tc.req); n != tc.want || codes.Code(resp.GetStatus().GetCode()) != tc.code {
			t.Errorf("%s: %d Take calls, answer %v; want %d, %v", tc.name, n, codes.Code(resp.GetStatus().GetCode()), tc.want, tc.code)
		}
	}
	// Over the limit: a valid key is refused in one call, and the
	// policy's per-user limit keeps every hit.
	bad := request{path: "/keys/x", headers: key("guess-2"), peer: "198.51.100.7"}
	if n, resp := takes(bad); n != 1 || codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Fatalf("second failure: %d calls, %v", n, resp.GetStatus())
	}
	over := request{path: "/v1/x", headers: key(keyPro2), peer: "198.51.100.7"}
	for _, r := range []request{over, bad, {path: "/jwt/x", headers: bearer(tokenGood), peer: "198.51.100.7"}} {
		if n, resp := takes(r); n != 1 || codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted {
			t.Errorf("%s over the limit: %d calls, %v; want 1 and 429", r.path, n, resp.GetStatus())
		}
	}
	resp := f.check(t, request{path: "/v1/x", headers: key(keyPro2)})
	if state, _ := headerOf(resp.GetOkResponse().GetResponseHeadersToAdd(), "RateLimit"); state != `"pro-tier";r=3;t=60, "per-user";r=2;t=60` {
		t.Errorf("report-bot after its 429: RateLimit %q, want nothing taken by the refused request", state)
	}
}
