package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

const testIssuer = "https://id.example.com"

// t0 is the fake clock's start.
var t0 = time.Unix(1_800_000_000, 0)

// testKey is a real key pair with the kid and algorithm it signs with.
type testKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv any
	pub  any
}

var (
	keysOnce                           sync.Once
	rsaA, rsaB, ecA, ecB, edA, rsaWeak *testKey
)

// keys generates the test keys once per test binary (RSA is slow).
func keys(tb testing.TB) {
	tb.Helper()
	keysOnce.Do(func() {
		mustRSA := func(bits int) *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			return k
		}
		mustEC := func() *ecdsa.PrivateKey {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			return k
		}
		ra, rb := mustRSA(2048), mustRSA(2048)
		ea, eb := mustEC(), mustEC()
		edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		rw := mustRSA(1024)
		rsaA = &testKey{kid: "rsa-a", alg: jwa.RS256(), priv: ra, pub: &ra.PublicKey}
		rsaB = &testKey{kid: "rsa-b", alg: jwa.RS256(), priv: rb, pub: &rb.PublicKey}
		ecA = &testKey{kid: "ec-a", alg: jwa.ES256(), priv: ea, pub: &ea.PublicKey}
		ecB = &testKey{kid: "ec-b", alg: jwa.ES256(), priv: eb, pub: &eb.PublicKey}
		edA = &testKey{kid: "ed-a", alg: jwa.EdDSA(), priv: edPriv, pub: edPub}
		rsaWeak = &testKey{kid: "rsa-weak", alg: jwa.RS256(), priv: rw, pub: &rw.PublicKey}
	})
}

// jwksOf is a JWKS document holding the public keys.
func jwksOf(tb testing.TB, ks ...*testKey) []byte {
	tb.Helper()
	set := jwk.NewSet()
	for _, k := range ks {
		jk, err := jwk.Import(k.pub)
		if err != nil {
			tb.Fatal(err)
		}
		if err := jk.Set(jwk.KeyIDKey, k.kid); err != nil {
			tb.Fatal(err)
		}
		if err := set.AddKey(jk); err != nil {
			tb.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// claims returns a valid claims set for testIssuer; edit the map to
// break it.
func claims(now time.Time) map[string]any {
	return map[string]any{
		"iss":  testIssuer,
		"aud":  []string{"other", "api"},
		"sub":  "user-1",
		"exp":  now.Add(time.Hour).Unix(),
		"iat":  now.Unix(),
		"org":  "acme",
		"plan": "pro",
		"n":    42,
	}
}

// sign signs c with k using the library; withKID puts k's kid in the
// header.
func sign(tb testing.TB, k *testKey, withKID bool, c map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(c)
	if err != nil {
		tb.Fatal(err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		tb.Fatal(err)
	}
	if withKID {
		if err := hdr.Set(jws.KeyIDKey, k.kid); err != nil {
			tb.Fatal(err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(k.alg, k.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatal(err)
	}
	return string(tok)
}

// craft builds a compact token from a raw header and claims, with sig
// computing the signature over the signing input (nil: empty signature).
func craft(tb testing.TB, header, c map[string]any, sig func(input []byte) []byte) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := json.Marshal(c)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	var s []byte
	if sig != nil {
		s = sig([]byte(input))
	}
	return input + "." + enc.EncodeToString(s)
}

// fakeClock is an injected clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Server modes.
const (
	serveOK int32 = iota
	serve500
	serveClose
	serveSlow
)

// jwksServer is a real HTTP server on loopback serving a swappable JWKS
// and counting every request it gets.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	mode    atomic.Int32
	fetches atomic.Int64
}

func newJWKSServer(tb testing.TB, body []byte) *jwksServer {
	tb.Helper()
	s := &jwksServer{}
	s.set(body)
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		switch s.mode.Load() {
		case serve500:
			http.Error(w, "down", http.StatusInternalServerError)
		case serveClose:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		case serveSlow:
			<-r.Context().Done()
		default:
			w.Header().Set("Content-Type", "application/jwk-set+json")
			_, _ = w.Write(*s.body.Load())
		}
	}))
	// No keep-alive: net/http retries a GET once on a reused connection
	// that the server closed, which would make fetch counts depend on the
	// transport.
	s.Config.SetKeepAlivesEnabled(false)
	s.Start()
	if host, _, _ := net.SplitHostPort(s.Listener.Addr().String()); !net.ParseIP(host).IsLoopback() {
		tb.Fatalf("test server not on loopback: %s", host)
	}
	tb.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.body.Store(&body) }

// issuerFor is a valid IssuerConfig with a URL or a file.
func issuerFor(jwksURL, jwksFile string) IssuerConfig {
	return IssuerConfig{
		Issuer:    testIssuer,
		Audiences: []string{"api"},
		JWKSURL:   jwksURL,
		JWKSFile:  jwksFile,
		ClockSkew: 30 * time.Second,
		Claims:    ClaimNames{Tenant: "org", Tier: "plan", User: "sub"},
		File:      "/etc/floodgate/auth.yaml",
		Line:      7,
	}
}

// writeJWKS writes a JWKS file into a test directory.
func writeJWKS(tb testing.TB, body []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "jwks.json")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// newVerifierT builds a Verifier closed at the test's end.
func newVerifierT(tb testing.TB, issuers []IssuerConfig, opts Options) *Verifier {
	tb.Helper()
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	v, err := New(issuers, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// checks counts signature verifications of v.
func checks(v *Verifier) *atomic.Int64 {
	n := new(atomic.Int64)
	v.onSignatureCheck = func() { n.Add(1) }
	return n
}

// src is the key source of testIssuer.
func (v *Verifier) srcOf(iss string) *keySource { return v.issuers[iss].src }

// refreshNow runs an interval refresh as the loop would, and waits for it.
func (v *Verifier) refreshNow(iss string) {
	if done := v.startFetch(v.srcOf(iss), reasonInterval); done != nil {
		<-done
	}
}

func redirectHandler(to string) http.Handler {
	return http.RedirectHandler(to, http.StatusFound)
}

// edSign signs with the test Ed25519 key.
func edSign(in []byte) []byte { return ed25519.Sign(edA.priv.(ed25519.PrivateKey), in) }
