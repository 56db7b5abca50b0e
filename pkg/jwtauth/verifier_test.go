package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestVerifyValid(t *testing.T) {
	t.Parallel()
	keys(t)
	for _, tc := range []struct {
		name string
		key  *testKey
		file bool
	}{
		{"RS256 url", rsaA, false},
		{"ES256 url", ecA, false},
		{"EdDSA url", edA, false},
		{"RS256 file", rsaA, true},
		{"ES256 file", ecA, true},
		{"EdDSA file", edA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := jwksOf(t, rsaA, ecA, edA)
			cfg := issuerFor("", "")
			if tc.file {
				cfg.JWKSFile = writeJWKS(t, body)
			} else {
				cfg.JWKSURL = newJWKSServer(t, body).URL + "/jwks.json"
			}
			clock := newClock()
			v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now})
			res, err := v.Verify(context.Background(), sign(t, tc.key, true, claims(clock.Now())))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Result{Issuer: testIssuer, Subject: "user-1", Tenant: "acme", Tier: "pro", User: "user-1",
				Expiry: clock.Now().Add(time.Hour)}
			if res.Issuer != want.Issuer || res.Subject != want.Subject || res.Tenant != want.Tenant ||
				res.Tier != want.Tier || res.User != want.User || !res.Expiry.Equal(want.Expiry) {
				t.Errorf("got %+v, want %+v", *res, want)
			}
			if got := res.Claim("n"); got != "42" {
				t.Errorf("Claim(n) = %q, want 42", got)
			}
			if got := res.Claim("aud"); got != "" {
				t.Errorf("Claim(aud) = %q, want empty (not a string)", got)
			}
		})
	}
}

// rejectCase builds a token (given the clock's now) that must be refused.
type rejectCase struct {
	name   string
	token  func(t *testing.T, now time.Time) string
	cfg    func(c *IssuerConfig) // optional change of the issuer
	reason string                // in the error's text
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	keys(t)
	withClaims := func(k *testKey, edit func(c map[string]any)) func(t *testing.T, now time.Time) string {
		return func(t *testing.T, now time.Time) string {
			c := claims(now)
			edit(c)
			return sign(t, k, true, c)
		}
	}
	rsaPubPEM := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(rsaA.pub)
		if err != nil {
			panic(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	rsaSigner := func(input []byte) []byte {
		h := sha256.Sum256(input)
		s, err := rsa.SignPKCS1v15(rand.Reader, rsaA.priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
		if err != nil {
			panic(err)
		}
		return s
	}
	ecSigner := func(input []byte) []byte {
		h := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, ecA.priv.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			panic(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
	cases := []rejectCase{
		{name: "alg none", reason: "algorithm not allowed", token: func(t *testing.T, now time.Time) string {
			return craft(t, map[string]any{"alg": "none", "kid": "rsa-a"}, claims(now), nil)
		}},
		{name: "alg none even if the issuer had none configured by a bypass", reason: "algorithm not allowed",
			cfg: func(c *IssuerConfig) { c.Algorithms = []string{"RS256"} },
			token: func(t *testing.T, now time.Time) string {
				return craft(t, map[string]any{"alg": "none"}, claims(now), nil)
			}},
		{name: "HS256 signed with the RSA public key bytes", reason: "algorithm not allowed", token: func(t *testing.T, now time.Time) string {
			return craft(t, map[string]any{"alg": "HS256", "kid": "rsa-a", "typ": "JWT"}, claims(now), func(in []byte) []byte {
				m := hmac.New(sha256.New, rsaPubPEM())
				m.Write(in)
				return m.Sum(nil)
			})
		}},
		{name: "alg not in the allow-list", reason: "algorithm not allowed",
			cfg:   func(c *IssuerConfig) { c.Algorithms = []string{"ES256"} },
			token: withClaims(rsaA, func(map[string]any) {})},
		{name: "RS256 token naming an EC key", reason: "fits", token: func(t *testing.T, now time.Time) string {
			return craft(t, map[string]any{"alg": "RS256", "kid": "ec-a"}, claims(now), rsaSigner)
		}},
		{name: "ES256 token naming an RSA key", reason: "fits", token: func(t *testing.T, now time.Time) string {
			return craft(t, map[string]any{"alg": "ES256", "kid": "rsa-a"}, claims(now), ecSigner)
		}},
		{name: "EdDSA token naming an EC key", reason: "fits", token: func(t *testing.T, now time.Time) string {
			tok := sign(t, edA, false, claims(now))
			// Re-sign the same claims with ed but claim the EC kid.
			_ = tok
			return craft(t, map[string]any{"alg": "EdDSA", "kid": "ec-a"}, claims(now), func(in []byte) []byte {
				return edSign(in)
			})
		}},
		{name: "bad signature", reason: "bad signature", token: func(t *testing.T, now time.Time) string {
			tok := sign(t, rsaA, true, claims(now))
			other := sign(t, rsaA, true, map[string]any{"iss": testIssuer, "aud": "api", "exp": now.Add(2 * time.Hour).Unix(), "org": "acme", "plan": "pro", "sub": "x"})
			p := strings.Split(tok, ".")
			q := strings.Split(other, ".")
			return p[0] + "." + q[1] + "." + p[2]
		}},
		{name: "expired beyond skew", reason: "expired", token: withClaims(rsaA, func(c map[string]any) {
			c["exp"] = t0.Add(-31 * time.Second).Unix()
		})},
		{name: "expired at exactly the skew", reason: "expired", token: withClaims(rsaA, func(c map[string]any) {
			c["exp"] = t0.Add(-30 * time.Second).Unix()
		})},
		{name: "no exp", reason: "no exp", token: withClaims(ecA, func(c map[string]any) { delete(c, "exp") })},
		{name: "exp not a number", reason: "exp is not", token: withClaims(ecA, func(c map[string]any) { c["exp"] = "tomorrow" })},
		{name: "nbf beyond skew", reason: "not yet valid", token: withClaims(edA, func(c map[string]any) {
			c["nbf"] = t0.Add(31 * time.Second).Unix()
		})},
		{name: "wrong iss", reason: "unknown issuer", token: withClaims(rsaA, func(c map[string]any) { c["iss"] = "https://evil.example.com" })},
		{name: "iss differing in case", reason: "unknown issuer", token: withClaims(rsaA, func(c map[string]any) { c["iss"] = "https://ID.example.com" })},
		{name: "no iss", reason: "no iss", token: withClaims(rsaA, func(c map[string]any) { delete(c, "iss") })},
		{name: "wrong aud", reason: "aud", token: withClaims(rsaA, func(c map[string]any) { c["aud"] = []string{"web"} })},
		{name: "no aud", reason: "aud", token: withClaims(rsaA, func(c map[string]any) { delete(c, "aud") })},
		{name: "missing tenant claim", reason: "claim org", token: withClaims(rsaA, func(c map[string]any) { delete(c, "org") })},
		{name: "tier claim not a string", reason: "claim plan", token: withClaims(rsaA, func(c map[string]any) { c["plan"] = 3 })},
		{name: "empty user claim", reason: "claim sub", token: withClaims(rsaA, func(c map[string]any) { c["sub"] = "" })},
		{name: "tenant not in the allow-list", reason: "tenant not allowed",
			cfg:   func(c *IssuerConfig) { c.Tenants = []string{"initech"} },
			token: withClaims(rsaA, func(map[string]any) {})},
		{name: "malformed", reason: "malformed", token: func(*testing.T, time.Time) string { return "not.a.jwt" }},
		{name: "two parts", reason: "malformed", token: func(*testing.T, time.Time) string { return "abc.def" }},
		{name: "JSON serialization", reason: "malformed", token: func(*testing.T, time.Time) string {
			return `{"payload":"e30","signatures":[{"protected":"e30","signature":"AA"}]}`
		}},
		{name: "crit header", reason: "unsupported", token: func(t *testing.T, now time.Time) string {
			return craft(t, map[string]any{"alg": "RS256", "kid": "rsa-a", "crit": []string{"exp"}, "exp": 1}, claims(now), rsaSigner)
		}},
		{name: "too large", reason: "too large", token: func(*testing.T, time.Time) string { return strings.Repeat("a", DefaultMaxTokenBytes+1) }},
	}
	srv := newJWKSServer(t, jwksOf(t, rsaA, ecA, edA))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := issuerFor(srv.URL, "")
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			clock := newClock()
			v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now})
			tok := tc.token(t, clock.Now())
			res, err := v.Verify(context.Background(), tok)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalid", res, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not say %q", err, tc.reason)
			}
			assertNoTokenParts(t, err.Error(), tok)
		})
	}
}

// assertNoTokenParts fails when text holds the token or any of its parts.
func assertNoTokenParts(t *testing.T, text, tok string) {
	t.Helper()
	for _, p := range append([]string{tok}, strings.Split(tok, ".")...) {
		if len(p) >= 8 && strings.Contains(text, p) {
			t.Errorf("text holds part of the token: %q", text)
		}
	}
}

func TestSkew(t *testing.T) {
	t.Parallel()
	keys(t)
	cfg := issuerFor("", writeJWKS(t, jwksOf(t, rsaA)))
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now})
	for _, tc := range []struct {
		name string
		edit func(c map[string]any)
	}{
		{"expired within skew", func(c map[string]any) { c["exp"] = t0.Add(-29 * time.Second).Unix() }},
		{"nbf within skew", func(c map[string]any) { c["nbf"] = t0.Add(29 * time.Second).Unix() }},
		{"nbf past", func(c map[string]any) { c["nbf"] = t0.Add(-time.Hour).Unix() }},
		{"fractional exp", func(c map[string]any) { c["exp"] = float64(t0.Unix()) + 0.5 }},
		{"aud as a string", func(c map[string]any) { c["aud"] = "api" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claims(clock.Now())
			tc.edit(c)
			if _, err := v.Verify(context.Background(), sign(t, rsaA, true, c)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	keys(t)
	file := writeJWKS(t, jwksOf(t, rsaA))
	onlyHS := writeJWKS(t, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`))
	for _, tc := range []struct {
		name string
		edit func(c *IssuerConfig)
		opts Options
		want string
	}{
		{name: "HS256", edit: func(c *IssuerConfig) { c.Algorithms = []string{"RS256", "HS256"} }, want: "HS256 is never allowed"},
		{name: "none", edit: func(c *IssuerConfig) { c.Algorithms = []string{"none"} }, want: "none is never allowed"},
		{name: "unknown alg", edit: func(c *IssuerConfig) { c.Algorithms = []string{"RS257"} }, want: "unknown algorithm"},
		{name: "no audiences", edit: func(c *IssuerConfig) { c.Audiences = nil }, want: "audiences"},
		{name: "file and url", edit: func(c *IssuerConfig) { c.JWKSURL = "https://id.example.com/jwks" }, want: "exactly one"},
		{name: "http not loopback", edit: func(c *IssuerConfig) { c.JWKSFile, c.JWKSURL = "", "http://id.example.com/jwks" }, want: "loopback"},
		{name: "ftp", edit: func(c *IssuerConfig) { c.JWKSFile, c.JWKSURL = "", "ftp://127.0.0.1/jwks" }, want: "scheme"},
		{name: "missing file", edit: func(c *IssuerConfig) { c.JWKSFile = "/nonexistent/jwks.json" }, want: "jwks_file /nonexistent/jwks.json"},
		{name: "file with only a symmetric key", edit: func(c *IssuerConfig) { c.JWKSFile = onlyHS }, want: "no usable signature key"},
		{name: "tenants without a tenant claim", edit: func(c *IssuerConfig) { c.Tenants = []string{"a"}; c.Claims.Tenant = "" }, want: "claims.tenant"},
		{name: "negative skew", edit: func(c *IssuerConfig) { c.ClockSkew = -time.Second }, want: "clock_skew"},
		{name: "negative CacheSize", opts: Options{CacheSize: -1}, want: "Options.CacheSize"},
		{name: "negative MaxJWKSBytes", opts: Options{MaxJWKSBytes: -1}, want: "Options.MaxJWKSBytes"},
		{name: "negative FetchTimeout", opts: Options{FetchTimeout: -1}, want: "Options.FetchTimeout"},
		{name: "negative MaxTokenBytes", opts: Options{MaxTokenBytes: -1}, want: "Options.MaxTokenBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := issuerFor("", file)
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			tc.opts.Log = slog.New(slog.DiscardHandler)
			v, err := New([]IssuerConfig{cfg}, tc.opts)
			if err == nil {
				v.Close()
				t.Fatalf("New succeeded; want an error saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.edit != nil && !strings.HasPrefix(err.Error(), "/etc/floodgate/auth.yaml:7: ") {
				t.Errorf("error %q does not start with FILE:LINE", err)
			}
		})
	}
	t.Run("duplicate issuer", func(t *testing.T) {
		t.Parallel()
		_, err := New([]IssuerConfig{issuerFor("", file), issuerFor("", file)}, Options{})
		if err == nil || !strings.Contains(err.Error(), "twice") {
			t.Fatalf("err = %v, want a duplicate issuer error", err)
		}
	})
}

func TestKeySetSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	keys(t)
	// A weak RSA key and a symmetric key beside a good one: only the good
	// one verifies.
	weakN := base64.RawURLEncoding.EncodeToString(rsaWeak.pub.(*rsa.PublicKey).N.Bytes())
	body := []byte(`{"keys":[{"kty":"RSA","kid":"rsa-weak","n":"` + weakN + `","e":"AQAB"},` +
		strings.TrimSuffix(strings.TrimPrefix(string(jwksOf(t, ecA)), `{"keys":[`), `]}`) +
		`,{"kty":"oct","kid":"hs","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},{"kty":"ML-DSA","kid":"pq"}]}`)
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor("", writeJWKS(t, body))}, Options{Now: clock.Now})
	if _, err := v.Verify(context.Background(), sign(t, ecA, true, claims(clock.Now()))); err != nil {
		t.Fatalf("ES256: %v", err)
	}
	_, err := v.Verify(context.Background(), sign(t, rsaWeak, true, claims(clock.Now())))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "unknown kid") {
		t.Fatalf("1024-bit RSA: %v, want unknown kid (the key is skipped)", err)
	}
	hs := craft(t, map[string]any{"alg": "HS256", "kid": "hs"}, claims(clock.Now()), func(in []byte) []byte {
		m := hmac.New(sha256.New, []byte("secretsecretsecretsecret"))
		m.Write(in)
		return m.Sum(nil)
	})
	if _, err := v.Verify(context.Background(), hs); !errors.Is(err, ErrInvalid) {
		t.Fatalf("HS256 with a published oct key: %v, want ErrInvalid", err)
	}
}

func TestUnknownKIDRotationAndFetchBound(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwksOf(t, rsaA))
	clock := newClock()
	m := NewMetrics(prometheus.NewRegistry())
	v := newVerifierT(t, []IssuerConfig{issuerFor(srv.URL, "")}, Options{Now: clock.Now, Metrics: m})
	ctx := context.Background()
	wantFetches := func(n int64) {
		t.Helper()
		if got := srv.fetches.Load(); got != n {
			t.Fatalf("fetches = %d, want %d", got, n)
		}
	}
	wantFetches(1) // New's first fetch, at t0

	oldTok := sign(t, rsaA, true, claims(clock.Now()))
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("old key: %v", err)
	}
	// The issuer rotates to rsa-b.
	srv.set(jwksOf(t, rsaB))
	newTok := sign(t, rsaB, true, claims(clock.Now()))

	clock.Advance(9 * time.Second)
	if _, err := v.Verify(ctx, newTok); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "unknown kid") {
		t.Fatalf("9s after the first fetch: %v, want unknown kid without a fetch", err)
	}
	wantFetches(1)
	v.refreshNow(testIssuer) // an interval refresh is bound by the same 10 s
	wantFetches(1)

	clock.Advance(time.Second) // 10 s since the first fetch
	if _, err := v.Verify(ctx, newTok); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	wantFetches(2)
	if got := testutil.ToFloat64(m.refreshes.WithLabelValues(testIssuer, reasonUnknownKID)); got != 1 {
		t.Errorf("unknown_kid refreshes = %v, want 1", got)
	}
	// The old token was cached, but its key set is gone: not served from
	// cache, and its kid is now unknown.
	if _, err := v.Verify(ctx, oldTok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token of the retired key: %v, want ErrInvalid", err)
	}
	wantFetches(2) // still within 10 s of the last fetch

	// A flood of made-up kids costs at most one fetch per 10 s.
	for i := range 100 {
		clock.Advance(time.Second / 2)
		c := claims(clock.Now())
		tok := craft(t, map[string]any{"alg": "RS256", "kid": "made-up"}, c, func([]byte) []byte { return []byte("forged") })
		if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrInvalid) {
			t.Fatalf("made-up kid %d: %v", i, err)
		}
	}
	// 50 s passed since the fetch at t0+10s: fetches at +20, +30, +40, +50, +60.
	wantFetches(2 + 5)

	clock.Advance(10 * time.Second)
	v.refreshNow(testIssuer)
	wantFetches(8)
	if got := testutil.ToFloat64(m.refreshes.WithLabelValues(testIssuer, reasonInterval)); got != 1 {
		t.Errorf("interval refreshes = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.loads.WithLabelValues(testIssuer, resultOK)); got != 8 {
		t.Errorf("ok loads = %v, want 8", got)
	}
}

func TestNoKID(t *testing.T) {
	t.Parallel()
	keys(t)
	clock := newClock()
	cfg := issuerFor("", writeJWKS(t, jwksOf(t, rsaA, ecA, rsaB, edA)))
	cfg.Algorithms = []string{"RS256", "ES256"}
	v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now})
	n := checks(v)
	ctx := context.Background()

	// ES256 without kid: only the EC key fits, one check.
	if _, err := v.Verify(ctx, sign(t, ecA, false, claims(clock.Now()))); err != nil {
		t.Fatalf("ES256 no kid: %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("checks = %d, want 1 (only the EC key fits ES256)", n.Load())
	}
	// RS256 signed by the second RSA key: both RSA keys are tried, never
	// the EC or Ed25519 key.
	n.Store(0)
	if _, err := v.Verify(ctx, sign(t, rsaB, false, claims(clock.Now()))); err != nil {
		t.Fatalf("RS256 no kid: %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("checks = %d, want 2", n.Load())
	}
	// EdDSA is not allowed for this issuer, even though a key fits.
	if _, err := v.Verify(ctx, sign(t, edA, false, claims(clock.Now()))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("EdDSA not allowed: %v", err)
	}
}

func TestOutageKeepsLastGoodKeys(t *testing.T) {
	t.Parallel()
	keys(t)
	for _, tc := range []struct {
		name string
		mode int32
		body []byte // served instead of the set, when not nil
	}{
		{name: "500", mode: serve500},
		{name: "connection closed", mode: serveClose},
		{name: "slow past the timeout", mode: serveSlow},
		{name: "oversized body", body: append(append([]byte(`{"keys":[]`), make([]byte, 8<<10)...), '}')},
		{name: "not JSON", body: []byte("<html>")},
		{name: "no usable key", body: []byte(`{"keys":[]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, jwksOf(t, ecA))
			clock := newClock()
			m := NewMetrics(nil)
			v := newVerifierT(t, []IssuerConfig{issuerFor(srv.URL, "")},
				// 3 s: on a loaded machine a 1 s timeout can expire before the
				// server even runs the handler, and the fetch would not count.
				Options{Now: clock.Now, Metrics: m, FetchTimeout: 3 * time.Second, MaxJWKSBytes: 4 << 10})
			ks := v.srcOf(testIssuer).keys.Load()
			if ks == nil {
				t.Fatal("no keys after the first fetch")
			}
			srv.mode.Store(tc.mode)
			if tc.body != nil {
				for i := range tc.body {
					if tc.body[i] == 0 {
						tc.body[i] = ' '
					}
				}
				srv.set(tc.body)
			}
			clock.Advance(MinFetchInterval)
			v.refreshNow(testIssuer)
			if srv.fetches.Load() != 2 {
				t.Fatalf("fetches = %d, want 2", srv.fetches.Load())
			}
			if got := testutil.ToFloat64(m.loads.WithLabelValues(testIssuer, resultError)); got != 1 {
				t.Errorf("failed loads = %v, want 1", got)
			}
			if v.srcOf(testIssuer).keys.Load() != ks {
				t.Fatal("a failed refresh replaced the key set")
			}
			if _, err := v.Verify(context.Background(), sign(t, ecA, true, claims(clock.Now()))); err != nil {
				t.Fatalf("Verify during the outage: %v", err)
			}
		})
	}
}

func TestFirstFetchFailsIsNotFatal(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwksOf(t, edA))
	srv.mode.Store(serve500)
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor(srv.URL, "")}, Options{Now: clock.Now})
	tok := sign(t, edA, true, claims(clock.Now()))
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no key set") {
		t.Fatalf("before any key set: %v", err)
	}
	srv.mode.Store(serveOK)
	clock.Advance(MinFetchInterval)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the issuer came back: %v", err)
	}
	if srv.fetches.Load() != 2 {
		t.Errorf("fetches = %d, want 2", srv.fetches.Load())
	}
}

func TestNewFromCarriesKeysThroughAnOutage(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwksOf(t, rsaA))
	clock := newClock()
	cfg := issuerFor(srv.URL, "")
	prev := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now})
	srv.mode.Store(serve500)

	cfg.Audiences = []string{"api", "web"} // the reload changes something
	next, err := NewFrom(prev, []IssuerConfig{cfg}, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	prev.Close()
	if srv.fetches.Load() != 1 {
		t.Errorf("fetches = %d, want 1 (the reload reuses the keys and the 10 s bound)", srv.fetches.Load())
	}
	c := claims(clock.Now())
	c["aud"] = "web"
	if _, err := next.Verify(context.Background(), sign(t, rsaA, true, c)); err != nil {
		t.Fatalf("Verify after a reload during an outage: %v", err)
	}
	// A new URL is fetched afresh.
	other := newJWKSServer(t, jwksOf(t, ecA))
	cfg.JWKSURL = other.URL
	third, err := NewFrom(next, []IssuerConfig{cfg}, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if other.fetches.Load() != 1 {
		t.Errorf("new URL fetches = %d, want 1", other.fetches.Load())
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	keys(t)
	clock := newClock()
	m := NewMetrics(nil)
	cfg := issuerFor("", writeJWKS(t, jwksOf(t, rsaA)))
	cfg.ClockSkew = 0
	v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now, Metrics: m})
	n := checks(v)
	c := claims(clock.Now())
	c["exp"] = clock.Now().Add(time.Minute).Unix()
	tok := sign(t, rsaA, true, c)
	ctx := context.Background()
	first, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := v.Verify(ctx, tok)
		if err != nil || res != first {
			t.Fatalf("cached Verify = %p, %v; want the first result", res, err)
		}
	}
	if n.Load() != 1 {
		t.Errorf("signature checks = %d, want 1", n.Load())
	}
	if hits, misses := testutil.ToFloat64(m.cacheHits), testutil.ToFloat64(m.cacheMisses); hits != 3 || misses != 1 {
		t.Errorf("hits, misses = %v, %v; want 3, 1", hits, misses)
	}
	clock.Advance(59 * time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second) // at exp
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("at exp: %v, want ErrInvalid", err)
	}
	if n.Load() != 2 {
		t.Errorf("signature checks = %d, want 2 (the entry dropped at exp)", n.Load())
	}
	// Digest keys: the token is not a key of the cache.
	for i := range v.cache.shards {
		for k := range v.cache.shards[i].m {
			if strings.Contains(string(k[:]), tok) {
				t.Fatal("cache holds the token")
			}
		}
	}
}

// TestCached: Cached answers only from the cache, verifying nothing.
func TestCached(t *testing.T) {
	t.Parallel()
	keys(t)
	clock := newClock()
	m := NewMetrics(nil)
	cfg := issuerFor("", writeJWKS(t, jwksOf(t, rsaA)))
	cfg.ClockSkew = 0
	v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now, Metrics: m})
	n := checks(v)
	c := claims(clock.Now())
	c["exp"] = clock.Now().Add(time.Minute).Unix()
	tok := sign(t, rsaA, true, c)
	if res, ok := v.Cached(tok); ok || res != nil {
		t.Fatalf("Cached before Verify = %v, %v; want a miss", res, ok)
	}
	if n.Load() != 0 || testutil.ToFloat64(m.cacheMisses) != 0 {
		t.Errorf("a Cached miss checked a signature or counted a miss")
	}
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := v.Cached(tok); !ok || res != first {
		t.Errorf("Cached after Verify = %p, %v; want the verified result", res, ok)
	}
	if testutil.ToFloat64(m.cacheHits) != 1 || n.Load() != 1 {
		t.Errorf("hits %v, checks %d; want 1, 1", testutil.ToFloat64(m.cacheHits), n.Load())
	}
	if _, ok := v.Cached(sign(t, rsaA, true, claims(clock.Now()))); ok {
		t.Error("Cached holds a token never verified")
	}
	clock.Advance(time.Minute) // at exp
	if _, ok := v.Cached(tok); ok {
		t.Error("Cached at exp")
	}
}

func TestCacheWithinSkewIsNotServedFromCache(t *testing.T) {
	t.Parallel()
	keys(t)
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor("", writeJWKS(t, jwksOf(t, ecA)))}, Options{Now: clock.Now})
	n := checks(v)
	c := claims(clock.Now())
	c["exp"] = clock.Now().Add(time.Minute).Unix()
	tok := sign(t, ecA, true, c)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute + 10*time.Second) // past exp, within the 30 s skew
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n.Load() != 3 {
		t.Errorf("signature checks = %d, want 3 (past exp nothing is cached)", n.Load())
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	keys(t)
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor("", writeJWKS(t, jwksOf(t, edA)))}, Options{Now: clock.Now, CacheSize: 8})
	for i := range 100 {
		c := claims(clock.Now())
		c["n"] = i
		if _, err := v.Verify(context.Background(), sign(t, edA, true, c)); err != nil {
			t.Fatal(err)
		}
	}
	if got := v.cache.len(); got > 8 || got == 0 {
		t.Errorf("cache holds %d entries, want 1..8", got)
	}
}

func TestInvalidTokensAreNotCached(t *testing.T) {
	t.Parallel()
	keys(t)
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor("", writeJWKS(t, jwksOf(t, rsaA)))}, Options{Now: clock.Now})
	c := claims(clock.Now())
	c["aud"] = "web"
	tok := sign(t, rsaA, true, c)
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalid) {
			t.Fatal(err)
		}
	}
	if v.cache.len() != 0 {
		t.Errorf("cache holds %d entries, want 0", v.cache.len())
	}
}

func TestRedirectToPlainHTTPRefused(t *testing.T) {
	t.Parallel()
	keys(t)
	// A loopback http URL that redirects to a non-loopback http URL.
	target := newJWKSServer(t, jwksOf(t, rsaA))
	redirect := newJWKSServer(t, nil)
	redirect.Config.Handler = redirectHandler("http://id.example.com" + target.Listener.Addr().String()[len("127.0.0.1"):])
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor(redirect.URL, "")}, Options{Now: clock.Now})
	if v.srcOf(testIssuer).keys.Load() != nil {
		t.Fatal("keys loaded through a redirect to plain http off loopback")
	}
}

func TestRefreshLoopFetchesOnItsInterval(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwksOf(t, rsaA))
	fetched := make(chan struct{}, 16)
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		fetched <- struct{}{}
	})
	clock := newClock()
	cfg := issuerFor(srv.URL, "")
	cfg.Refresh = time.Millisecond
	m := NewMetrics(nil)
	v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now, Metrics: m})
	<-fetched // New's
	srv.set(jwksOf(t, rsaB))
	// The loop's timer fires every millisecond, but by the injected clock
	// no 10 s have passed: no fetch until the clock moves.
	clock.Advance(MinFetchInterval)
	select {
	case <-fetched:
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh loop did not fetch")
	}
	// The server has answered; wait for the fetch to take the body in
	// (its in-flight channel was set before the request went out).
	src := v.srcOf(testIssuer)
	src.mu.Lock()
	done := src.inflight
	src.mu.Unlock()
	if done != nil {
		<-done
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
	if got := testutil.ToFloat64(m.refreshes.WithLabelValues(testIssuer, reasonInterval)); got != 1 {
		t.Errorf("interval refreshes = %v, want 1", got)
	}
	if _, err := v.Verify(context.Background(), sign(t, rsaB, true, claims(clock.Now()))); err != nil {
		t.Fatalf("key of the refreshed set: %v", err)
	}
}

func TestUnknownKIDWaitEndsWithTheRequest(t *testing.T) {
	t.Parallel()
	keys(t)
	srv := newJWKSServer(t, jwksOf(t, rsaA))
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor(srv.URL, "")}, Options{Now: clock.Now})
	srv.mode.Store(serveSlow) // the issuer hangs from now on
	clock.Advance(MinFetchInterval)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := v.Verify(ctx, sign(t, rsaB, true, claims(clock.Now())))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify = %v, want ErrInvalid wrapping context.Canceled", err)
	}
	// The old key still works while the fetch hangs; Close ends the fetch.
	if _, err := v.Verify(context.Background(), sign(t, rsaA, true, claims(clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
}
