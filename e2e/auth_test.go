package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"google.golang.org/grpc/codes"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/authconfig"
)

// The auth door's tests run the built binary with --auth-config, keys
// files of digests, and JWTs signed here against a JWKS served by a real
// loopback HTTP server. Every sidecar logs at debug level, and each test
// ends by searching its log for every key and token it used.

const authIssuer = "https://id.e2e.example"

const authLimits = `domain: authe2e
descriptors:
  - key: tenant
    descriptors:
      - key: tier
        value: pro
        rate_limit: {unit: minute, requests_per_unit: %d, name: pro-tier}
`

// authConfig is an auth file: API keys from keys.yaml, the issuer's
// JWKS at jwksURL (none when ""), failed_auth_limit of failed a minute
// (none when 0) and one policy on /v1/ taking either credential, limited
// per tenant and tier.
func authConfig(jwksURL string, failed int) string {
	var b strings.Builder
	b.WriteString("api_keys:\n  files: [keys.yaml]\n")
	if jwksURL != "" {
		fmt.Fprintf(&b, `jwt:
  - issuer: %s
    audiences: [api]
    jwks_url: %s
    algorithms: [RS256, ES256]
    claims: {tenant: org, tier: plan, user: sub}
`, authIssuer, jwksURL)
	}
	if failed > 0 {
		fmt.Fprintf(&b, "failed_auth_limit: {unit: minute, requests_per_unit: %d}\n", failed)
	}
	b.WriteString(`policies:
  - name: api
    match: {path_prefix: /v1/}
    auth: any
    strip_credentials: true
    rate_limit:
      domain: authe2e
      descriptors:
        - [{key: tenant, value: "%tenant%"}, {key: tier, value: "%tier%"}]
`)
	return b.String()
}

// apiKey is one key of a keys file.
type apiKey struct{ key, id, tenant, tier, user string }

func newAPIKey(t testing.TB, id, tenant string) apiKey {
	t.Helper()
	k, err := authconfig.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return apiKey{key: k, id: id, tenant: tenant, tier: "pro", user: id + "-bot"}
}

func keysYAML(keys ...apiKey) string {
	var b strings.Builder
	b.WriteString("keys:\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  - {id: %s, sha256: %s, tenant: %s, tier: %s, user: %s}\n", k.id, authconfig.Digest(k.key), k.tenant, k.tier, k.user)
	}
	return b.String()
}

// startAuthSidecar writes the limits, auth and keys files to a new
// directory and starts a sidecar on them at debug level.
func startAuthSidecar(t *testing.T, name, limits, auth, keys string, args ...string) (*sidecar, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "limits.yaml", limits)
	writeFile(t, dir, "keys.yaml", keys)
	authPath := writeFile(t, dir, "auth.yaml", auth)
	args = append([]string{"--config", cfg, "--auth-config", authPath, "--log-level", "debug", "--reload-interval", "100ms"}, args...)
	return startSidecar(t, name, args...), dir
}

// check sends one Check for GET /v1/things from peer with headers.
func (s *sidecar) check(peer string, headers map[string]string) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return authv3.NewAuthorizationClient(s.conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/v1/things", Headers: headers}},
	}})
}

func (s *sidecar) mustCheck(peer string, headers map[string]string) *authv3.CheckResponse {
	s.t.Helper()
	resp, err := s.check(peer, headers)
	if err != nil {
		s.t.Fatalf("%s: Check: %v", s.name, err)
	}
	return resp
}

func answerCode(resp *authv3.CheckResponse) codes.Code { return codes.Code(resp.GetStatus().GetCode()) }

func headerValue(opts []*corev3.HeaderValueOption, name string) string {
	for _, o := range opts {
		if strings.EqualFold(o.GetHeader().GetKey(), name) {
			return o.GetHeader().GetValue()
		}
	}
	return ""
}

// noSecretsLogged fails when s's log holds any of the secrets.
func noSecretsLogged(t *testing.T, s *sidecar, secrets ...string) {
	t.Helper()
	log := s.log()
	if !strings.Contains(log, `"level":"DEBUG"`) {
		t.Errorf("%s logged nothing at debug level: the search below proves little", s.name)
	}
	for _, sec := range secrets {
		if sec != "" && strings.Contains(log, sec) {
			t.Errorf("%s's log holds a secret (%.10s…)", s.name, sec)
		}
	}
}

// TestAuthAPIKeys: a known key is allowed with its identity headers and
// RateLimit headers; a missing key is 401 with WWW-Authenticate; an
// unknown key is 401 and counted against failed_auth_limit until 429,
// which then answers a good key from that address too.
func TestAuthAPIKeys(t *testing.T) {
	t.Parallel()
	good := newAPIKey(t, "k-acme", "acme")
	s, _ := startAuthSidecar(t, "auth-keys", fmt.Sprintf(authLimits, 100), authConfig("", 3), keysYAML(good))
	windowHeadroom(t, time.Minute, 10*time.Second)

	resp := s.mustCheck("192.0.2.1", map[string]string{"x-api-key": good.key, "x-floodgate-tenant": "forged"})
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("a known key: %v, want allowed", resp)
	}
	for name, want := range map[string]string{"x-floodgate-tenant": "acme", "x-floodgate-tier": "pro",
		"x-floodgate-user": "k-acme-bot", "x-floodgate-key-id": "k-acme", "x-floodgate-auth": "api_key", "x-floodgate-policy": "api"} {
		if got := headerValue(ok.Headers, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if got := headerValue(ok.ResponseHeadersToAdd, "RateLimit-Policy"); got != `"pro-tier";q=100;w=60` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if got := headerValue(ok.ResponseHeadersToAdd, "RateLimit"); !strings.HasPrefix(got, `"pro-tier";r=99;t=`) {
		t.Errorf("RateLimit %q, want 99 left", got)
	}
	if !strings.Contains(strings.Join(ok.HeadersToRemove, ","), "x-api-key") {
		t.Errorf("headers_to_remove %v, want the stripped x-api-key", ok.HeadersToRemove)
	}
	if md := resp.GetDynamicMetadata().AsMap(); md["key_id"] != "k-acme" || md["client_ip"] != "192.0.2.1" {
		t.Errorf("dynamic_metadata %v", md)
	}

	resp = s.mustCheck("192.0.2.1", nil)
	d := resp.GetDeniedResponse()
	if answerCode(resp) != codes.Unauthenticated || d.GetStatus().GetCode() != 401 ||
		headerValue(d.GetHeaders(), "WWW-Authenticate") != `Bearer realm="floodgate", ApiKey realm="floodgate"` {
		t.Errorf("a missing key: %v, want 401 with both challenges", resp)
	}

	// Unknown keys from one address: 3 answered 401, then 429, whatever
	// the credential; another address is untouched.
	guesses := []string{"fg_guess-one-0123456789", "fg_guess-two-0123456789", "fg_guess-three-0123456789", "fg_guess-four-0123456789"}
	for i, g := range guesses[:3] {
		if resp := s.mustCheck("203.0.113.9", map[string]string{"x-api-key": g}); answerCode(resp) != codes.Unauthenticated {
			t.Fatalf("unknown key %d: %v, want 401", i+1, resp)
		}
	}
	for _, h := range []map[string]string{{"x-api-key": guesses[3]}, {"x-api-key": good.key}} {
		resp := s.mustCheck("203.0.113.9", h)
		d := resp.GetDeniedResponse()
		if answerCode(resp) != codes.ResourceExhausted || d.GetStatus().GetCode() != 429 || headerValue(d.GetHeaders(), "Retry-After") == "" {
			t.Errorf("after 3 failures: %v, want 429 with Retry-After", resp)
		}
	}
	if resp := s.mustCheck("203.0.113.10", map[string]string{"x-api-key": good.key}); resp.GetOkResponse() == nil {
		t.Errorf("another address: %v, want allowed", resp)
	}
	if n := s.mustMetric(`floodgate_auth_decisions_total{policy="api",result="failed_auth_limit"}`); n != 2 {
		t.Errorf("failed_auth_limit decisions %v, want 2", n)
	}
	// The door's own batches name no domain: none counts as unknown.
	if n := s.mustMetric(`floodgate_ratelimit_unknown_domain_total`); n != 0 {
		t.Errorf("unknown_domain_total %v, want 0", n)
	}
	noSecretsLogged(t, s, append(guesses, good.key)...)
}

// TestAuthKeysFileReload: a key added to the keys file works within a
// few reload intervals, and /debug/config lists it by id, never by digest.
func TestAuthKeysFileReload(t *testing.T) {
	t.Parallel()
	first, second := newAPIKey(t, "k-first", "acme"), newAPIKey(t, "k-second", "acme")
	s, dir := startAuthSidecar(t, "auth-reload", fmt.Sprintf(authLimits, 1000), authConfig("", 0), keysYAML(first))
	if resp := s.mustCheck("192.0.2.1", map[string]string{"x-api-key": second.key}); answerCode(resp) != codes.Unauthenticated {
		t.Fatalf("a key not yet in the file: %v, want 401", resp)
	}
	writeFile(t, dir, "keys.yaml", keysYAML(first, second))
	eventually(t, 10*time.Second, "the new key", func() error {
		if resp := s.mustCheck("192.0.2.1", map[string]string{"x-api-key": second.key}); resp.GetOkResponse() == nil {
			return fmt.Errorf("answer %v", resp.GetStatus())
		}
		return nil
	})
	if resp := s.mustCheck("192.0.2.1", map[string]string{"x-api-key": first.key}); resp.GetOkResponse() == nil {
		t.Errorf("the first key after the reload: %v", resp)
	}
	_, body, err := s.get("/debug/config")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, `"k-second"`) || strings.Contains(body, authconfig.Digest(second.key)) || strings.Contains(body, second.key) {
		t.Errorf("/debug/config: want k-second by id, no digest nor key:\n%.3000s", body)
	}
	noSecretsLogged(t, s, first.key, second.key, authconfig.Digest(first.key), authconfig.Digest(second.key))
}

// signer is a key pair that signs tokens under a kid.
type signer struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv crypto.Signer
}

func newSigner(t testing.TB, kid string, ec bool) *signer {
	t.Helper()
	if ec {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &signer{kid: kid, alg: jwa.ES256(), priv: k}
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: jwa.RS256(), priv: k}
}

// token signs a token for sub (tenant acme, tier pro) valid for an hour.
func (s *signer) token(t testing.TB, sub string) string {
	t.Helper()
	payload, err := json.Marshal(map[string]any{"iss": authIssuer, "aud": "api", "sub": sub, "org": "acme", "plan": "pro",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, s.kid); err != nil {
		t.Fatal(err)
	}
	tok, err := jws.Sign(payload, jws.WithKey(s.alg, s.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

func jwksBody(t testing.TB, signers ...*signer) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, s := range signers {
		k, err := jwk.Import(s.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Set(jwk.KeyIDKey, s.kid); err != nil {
			t.Fatal(err)
		}
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a JWKS on loopback; failing makes it answer 500.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	failing atomic.Bool
	fetches atomic.Int64
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

// TestAuthJWT: RS256 and ES256 tokens verified against a JWKS URL; the
// issuer rotates to a new key (a token with the new kid is accepted once
// the unknown kid has had the set fetched again), then the JWKS server
// fails, and tokens of the last good set still pass.
func TestAuthJWT(t *testing.T) {
	t.Parallel()
	rsaOld, ecOld, rsaNew := newSigner(t, "rsa-2025", false), newSigner(t, "ec-2025", true), newSigner(t, "rsa-2026", false)
	srv := newJWKSServer(t, jwksBody(t, rsaOld, ecOld))
	s, _ := startAuthSidecar(t, "auth-jwt", fmt.Sprintf(authLimits, 100000), authConfig(srv.URL+"/jwks", 0), keysYAML())
	var secrets []string
	allowed := func(tok string) error {
		resp := s.mustCheck("192.0.2.1", map[string]string{"authorization": "Bearer " + tok})
		if resp.GetOkResponse() == nil {
			return fmt.Errorf("answer %v", resp.GetStatus())
		}
		return nil
	}
	for _, sg := range []*signer{rsaOld, ecOld} {
		tok := sg.token(t, "alice")
		secrets = append(secrets, tok)
		if err := allowed(tok); err != nil {
			t.Fatalf("%s: %v", sg.alg, err)
		}
		resp := s.mustCheck("192.0.2.1", map[string]string{"authorization": "Bearer " + tok})
		if sub := headerValue(resp.GetOkResponse().GetHeaders(), "x-floodgate-subject"); sub != "alice" {
			t.Errorf("%s: x-floodgate-subject %q", sg.alg, sub)
		}
	}
	forged := newSigner(t, "rsa-2025", false).token(t, "mallory") // the old kid, another key
	secrets = append(secrets, forged)
	if resp := s.mustCheck("192.0.2.1", map[string]string{"authorization": "Bearer " + forged}); answerCode(resp) != codes.Unauthenticated ||
		!strings.Contains(headerValue(resp.GetDeniedResponse().GetHeaders(), "WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a forged token: %v, want 401 invalid_token", resp)
	}

	// Rotation: the server now serves the new key only. A token under the
	// new kid passes once its unknown kid has had the set fetched again
	// (at most one fetch per 10 s, so this waits on behaviour).
	srv.body.Store(ptr(jwksBody(t, rsaNew)))
	newTok := rsaNew.token(t, "bob")
	secrets = append(secrets, newTok)
	eventually(t, 40*time.Second, "the rotated key", func() error {
		time.Sleep(200 * time.Millisecond)
		return allowed(newTok)
	})
	// The old set is gone with the fetch: its token, cached or not, fails.
	oldFresh := rsaOld.token(t, "carol")
	secrets = append(secrets, oldFresh)
	if err := allowed(oldFresh); err == nil {
		t.Errorf("a token of the rotated-out key was allowed")
	}

	// Outage: every fetch fails. An unknown kid asks for fetches until
	// one has failed; tokens of the last good set, even ones never seen,
	// still pass.
	srv.failing.Store(true)
	unknownKid := newSigner(t, "rsa-unknown", false).token(t, "eve")
	secrets = append(secrets, unknownKid)
	series := fmt.Sprintf(`floodgate_auth_jwks_loads_total{issuer=%q,result="error"}`, authIssuer)
	eventually(t, 40*time.Second, "a failed JWKS fetch", func() error {
		time.Sleep(200 * time.Millisecond)
		allowed(unknownKid)
		if n, err := s.metric(series); err != nil || n < 1 {
			return fmt.Errorf("%s = %v (%v)", series, n, err)
		}
		return nil
	})
	during := rsaNew.token(t, "dave")
	secrets = append(secrets, during)
	for _, tok := range []string{newTok, during} {
		if err := allowed(tok); err != nil {
			t.Errorf("a token of the last good set during the outage: %v", err)
		}
	}
	if !s.running() {
		t.Fatal("the sidecar exited during the JWKS outage")
	}
	noSecretsLogged(t, s, secrets...)
}

func ptr[T any](v T) *T { return &v }

// TestAuthTwoSidecarsShareTierLimit: two sidecars on one Redis admit,
// between them, exactly the tier's limit, under concurrent clients.
func TestAuthTwoSidecarsShareTierLimit(t *testing.T) {
	t.Parallel()
	redis := redistest.Shared(t)
	const limit = 40
	tenant := fmt.Sprintf("shared-%d", time.Now().UnixNano())
	key := newAPIKey(t, "k-shared", tenant)
	limits, auth, keys := fmt.Sprintf(authLimits, limit), authConfig("", 0), keysYAML(key)
	a, _ := startAuthSidecar(t, "auth-redis-a", limits, auth, keys, "--redis-url", redis.URL)
	b, _ := startAuthSidecar(t, "auth-redis-b", limits, auth, keys, "--redis-url", redis.URL)
	windowHeadroom(t, time.Minute, 20*time.Second)

	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	const perClient = 15
	for i := 0; i < 8; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perClient; j++ {
				resp, err := s.check("192.0.2.1", map[string]string{"x-api-key": key.key})
				if err != nil {
					t.Errorf("%s: %v", s.name, err)
					return
				}
				switch answerCode(resp) {
				case codes.OK:
					admitted.Add(1)
				case codes.ResourceExhausted:
					refused.Add(1)
				default:
					t.Errorf("%s: answer %v", s.name, resp.GetStatus())
					return
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != limit || refused.Load() != 8*perClient-limit {
		t.Errorf("admitted %d, refused %d; want exactly %d and %d", admitted.Load(), refused.Load(), limit, 8*perClient-limit)
	}
	noSecretsLogged(t, a, key.key)
	noSecretsLogged(t, b, key.key)
}

// exampleAuth is the README tour's auth config, for the limits in
// examples/limits (domain api) that envoy/authz-proxy.yaml is written for.
var (
	exampleAuth   = filepath.Join(moduleRoot, "examples", "auth.yaml")
	exampleLimits = filepath.Join(moduleRoot, "examples", "limits")
)

// TestAuthExample: the README tour's step: examples/auth.yaml beside
// examples/limits admits a TEST ONLY key of examples/keys.yaml with its
// tier's limit, and refuses a request without one.
func TestAuthExample(t *testing.T) {
	t.Parallel()
	const demoKey = "fgk_nvYjpyVSHE7bLTVK8lhjKzCQBLUyFFVxqjoayZkYXFs" // k-acme-pro, printed in examples/keys.yaml
	s := startSidecar(t, "auth-example", "--config", exampleLimits, "--auth-config", exampleAuth, "--log-level", "debug")
	resp := s.mustCheck("192.0.2.1", map[string]string{"x-api-key": demoKey})
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("the example key: %v, want allowed", resp)
	}
	if got := headerValue(ok.ResponseHeadersToAdd, "RateLimit-Policy"); got != `"tenant-pro";q=1200;w=120` {
		t.Errorf("RateLimit-Policy %q, want the api domain's tenant-pro", got)
	}
	if got := headerValue(ok.Headers, "x-floodgate-user"); got != "billing-bot" {
		t.Errorf("x-floodgate-user %q", got)
	}
	if resp := s.mustCheck("192.0.2.1", nil); answerCode(resp) != codes.Unauthenticated {
		t.Errorf("no key: %v, want 401", resp)
	}
	noSecretsLogged(t, s, demoKey)
}
