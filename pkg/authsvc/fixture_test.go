package authsvc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/authsvc"
	"github.com/floodgate/floodgate/pkg/quota"
)

// The fixture's config is real: authconfig.Parse compiles it from YAML
// text, with a keys file of digests and a JWKS file written once per test
// binary in testDir; tokens are signed here and verified by jwtauth.

// The keys the fixture knows (the keys themselves, as clients send them).
const (
	keyFree    = "free-key-0123456789abcdef0123456789abcdef"
	keyPro     = "pro-key-0123456789abcdef0123456789abcdef"
	keyPro2    = "pro2-key-0123456789abcdef0123456789abcdef"
	keyGold    = "gold-key-0123456789abcdef0123456789abcdef"
	keyExpired = "old-key-0123456789abcdef0123456789abcdef"
	// tokenDown is what downVerifier fails on, as a verifier fails on its
	// own (not the token's) account.
	tokenDown = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkb3duIn0.ZG93bg"
)

const testIssuer = "https://id.example.com"

var (
	testDir string
	// tokenGood is alice's (tenant initech, tier pro, region eu), signed
	// by the JWKS's RSA key; tokenBad the same claims signed by another
	// key under the same kid; tokenES alice's signed with ES256.
	tokenGood, tokenBad, tokenES string
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "authsvc-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	testDir = dir
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return 0, err
	}
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return 0, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, err
	}
	set := jwk.NewSet()
	for kid, pub := range map[string]any{"rsa-1": &rsaKey.PublicKey, "ec-1": &ecKey.PublicKey} {
		k, err := jwk.Import(pub)
		if err != nil {
			return 0, err
		}
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return 0, err
		}
		if err := set.AddKey(k); err != nil {
			return 0, err
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return 0, err
	}
	claims := map[string]any{"iss": testIssuer, "aud": "api", "sub": "alice", "org": "initech", "plan": "pro",
		"region": "eu", "level": 3, "iat": start.Unix(), "exp": start.Add(24 * time.Hour).Unix()}
	if tokenGood, err = signToken(jwa.RS256(), rsaKey, "rsa-1", claims); err != nil {
		return 0, err
	}
	if tokenBad, err = signToken(jwa.RS256(), forger, "rsa-1", claims); err != nil {
		return 0, err
	}
	if tokenES, err = signToken(jwa.ES256(), ecKey, "ec-1", claims); err != nil {
		return 0, err
	}
	var keys strings.Builder
	keys.WriteString("keys:\n")
	for _, k := range []struct{ key, id, tenant, tier, user, expires string }{
		{keyFree, "k-free", "acme", "free", "", ""},
		{keyPro, "k-pro", "acme", "pro", "billing-bot", ""},
		{keyPro2, "k-pro2", "acme", "pro", "report-bot", ""},
		{keyGold, "k-gold", "initech", "gold", "", ""},
		{keyExpired, "k-old", "acme", "pro", "", start.Add(-time.Hour).UTC().Format(time.RFC3339)},
	} {
		fmt.Fprintf(&keys, "  - {id: %s, sha256: %s, tenant: %s, tier: %s", k.id, authconfig.Digest(k.key), k.tenant, k.tier)
		if k.user != "" {
			fmt.Fprintf(&keys, ", user: %s", k.user)
		}
		if k.expires != "" {
			fmt.Fprintf(&keys, ", expires: %q", k.expires)
		}
		keys.WriteString("}\n")
	}
	for name, data := range map[string][]byte{"keys.yaml": []byte(keys.String()), "jwks.json": jwks} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return 0, err
		}
	}
	return m.Run(), nil
}

func signToken(alg jwa.SignatureAlgorithm, key any, kid string, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", err
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	return string(tok), err
}

// testPolicies are the policies of most tests.
const testPolicies = `
  - name: docs
    match: {path_prefix: /docs/}
    auth: none
    rate_limit: {domain: api, descriptors: [[{key: client_ip, value: "%client_ip%"}]]}
  - name: keys
    match: {path_prefix: /keys/}
    auth: api_key
  - name: jwt
    match: {path_prefix: /jwt/}
    auth: jwt
    rate_limit: {domain: api, descriptors: [[{key: user, value: "%user%"}]]}
  - name: api
    match: {hosts: [api.example.com, "*.api.example.com"], path_prefix: /v1/, methods: [GET, POST]}
    auth: any
    tiers: [free, pro]
    strip_credentials: true
    rate_limit:
      domain: api
      descriptors:
        - [{key: tenant, value: "%tenant%"}, {key: tier, value: "%tier%"}]
        - [{key: user, value: "%user%"}]
  - name: claims
    match: {path_prefix: /claims/}
    auth: any
    strip_credentials: true
    rate_limit:
      domain: api
      descriptors: [[{key: region, value: "%claim:region%"}, {key: client, value: "%header:x-client%-%method%"}]]
  - name: race
    match: {path_prefix: /race}
    auth: api_key
    rate_limit: {domain: api, descriptors: [[{key: race, value: "%tenant%"}]]}
`

// testConfig is the auth config of most tests.
func testConfig(failed *quota.Limit, hops int) *authconfig.Config {
	return parseConfig(failed, hops, testPolicies)
}

// parseConfig compiles the fixture's auth file with the policies given
// (YAML list items), failed_auth_limit (in minutes or seconds) and
// trusted_hops.
func parseConfig(failed *quota.Limit, hops int, policies string) *authconfig.Config {
	var b strings.Builder
	fmt.Fprintf(&b, `api_keys:
  header: X-API-Key
  files: [keys.yaml]
jwt:
  - issuer: %s
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [RS256, ES256]
    claims: {tenant: org, tier: plan, user: sub}
client_address: {trusted_hops: %d}
`, testIssuer, hops)
	if failed != nil {
		unit := "minute"
		if failed.Unit == time.Second {
			unit = "second"
		}
		fmt.Fprintf(&b, "failed_auth_limit: {unit: %s, requests_per_unit: %d}\n", unit, failed.Requests)
	}
	b.WriteString("policies:\n" + strings.TrimPrefix(policies, "\n"))
	cfg, err := authconfig.Parse(filepath.Join(testDir, "auth.yaml"), []byte(b.String()), nil)
	if err != nil {
		panic(fmt.Sprintf("the fixture's auth config: %v\n%s", err, b.String()))
	}
	return cfg
}

// downVerifier is the real verifier, but fails on tokenDown as a
// verifier fails on its own account (a JWKS it cannot load), which the
// door must not hold against the client.
type downVerifier struct{ authsvc.TokenVerifier }

func (v downVerifier) Verify(ctx context.Context, token string) (*authsvc.TokenResult, error) {
	if token == tokenDown {
		return nil, errors.New("jwks: no key set loaded")
	}
	return v.TokenVerifier.Verify(ctx, token)
}
