package jwtauth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentVerify(t *testing.T) {
	t.Parallel()
	keys(t)
	base := jwksOf(t, rsaA, ecA, edA)
	rotated := jwksOf(t, rsaA, ecA, edA, rsaB)
	srv := newJWKSServer(t, base)
	clock := newClock()
	v := newVerifierT(t, []IssuerConfig{issuerFor(srv.URL, "")}, Options{Now: clock.Now, CacheSize: 16})
	now := clock.Now()
	var valid, bad []string
	for i, k := range []*testKey{rsaA, ecA, edA} {
		for j := range 12 {
			c := claims(now)
			c["n"] = i*100 + j
			valid = append(valid, sign(t, k, j%2 == 0, c))
		}
	}
	for _, k := range []*testKey{rsaA, ecA, edA} {
		c := claims(now)
		c["aud"] = "nobody"
		bad = append(bad, sign(t, k, true, c))
	}
	bad = append(bad, craft(t, map[string]any{"alg": "RS256", "kid": "nope"}, claims(now), func([]byte) []byte { return []byte("x") }))

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // the issuer rotates, and the verifier refreshes, meanwhile
		// At most 300 rotations of MinFetchInterval each: the clock stays
		// well inside the tokens' hour, however fast this loop runs.
		for i := 0; i < 300; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				srv.set(rotated)
			} else {
				srv.set(base)
			}
			clock.Advance(MinFetchInterval)
			v.refreshNow(testIssuer)
		}
	})
	var workers sync.WaitGroup
	for g := range 64 {
		workers.Go(func() {
			ctx := context.Background()
			for i := range 100 {
				tok := valid[(g+i)%len(valid)]
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Errorf("valid token: %v", err)
					return
				}
				if i%10 == 0 {
					if _, err := v.Verify(ctx, bad[(g+i)%len(bad)]); !errors.Is(err, ErrInvalid) {
						t.Errorf("bad token: %v", err)
						return
					}
				}
			}
		})
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	if n := v.cache.len(); n > 16 {
		t.Errorf("cache holds %d entries, over its size 16", n)
	}
}

// TestNoSecretsInLogs runs every path that logs, at debug level, and looks
// for the tokens, or any of their parts, in what was written.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	keys(t)
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := newJWKSServer(t, jwksOf(t, rsaA, ecA))
	clock := newClock()
	cfg := issuerFor(srv.URL, "")
	cfg.Tenants = []string{"acme"}
	v := newVerifierT(t, []IssuerConfig{cfg}, Options{Now: clock.Now, Log: log})
	ctx := context.Background()
	now := clock.Now()

	good := sign(t, rsaA, true, claims(now))
	var tokens []string
	tokens = append(tokens, good)
	edit := func(k *testKey, kid bool, f func(c map[string]any)) string {
		c := claims(now)
		f(c)
		tok := sign(t, k, kid, c)
		tokens = append(tokens, tok)
		return tok
	}
	for _, tok := range []string{
		edit(rsaA, true, func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }),
		edit(ecA, true, func(c map[string]any) { c["aud"] = "secret-audience-value" }),
		edit(ecA, false, func(c map[string]any) { c["iss"] = "https://secret-issuer.example" }),
		edit(edA, true, func(c map[string]any) {}), // unknown kid: a refresh
		edit(rsaA, true, func(c map[string]any) { delete(c, "org") }),
		edit(rsaA, true, func(c map[string]any) { c["org"] = "secret-tenant" }),
	} {
		if _, err := v.Verify(ctx, tok); err == nil {
			t.Fatal("a bad token verified")
		}
	}
	p := strings.Split(good, ".")
	tampered := p[0] + "." + p[1] + "." + p[2][:len(p[2])-4] + "AAAA"
	tokens = append(tokens, tampered)
	if _, err := v.Verify(ctx, tampered); err == nil {
		t.Fatal("a tampered token verified")
	}
	for range 2 {
		if _, err := v.Verify(ctx, good); err != nil {
			t.Fatal(err)
		}
	}
	srv.mode.Store(serve500)
	clock.Advance(MinFetchInterval)
	v.refreshNow(testIssuer)

	out := buf.String()
	if !strings.Contains(out, "jwt rejected") || !strings.Contains(out, "jwks fetch failed") {
		t.Fatalf("the logger saw nothing; the test proves nothing:\n%s", out)
	}
	for _, tok := range tokens {
		for i, part := range append([]string{tok}, strings.Split(tok, ".")...) {
			if strings.Contains(out, part) {
				t.Errorf("log holds part %d of a token", i)
			}
		}
	}
	for _, s := range []string{"secret-audience-value", "secret-issuer", "secret-tenant"} {
		if strings.Contains(out, s) {
			t.Errorf("log holds the claim value %q", s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func BenchmarkVerifyCached(b *testing.B) {
	keys(b)
	clock := newClock()
	v := newVerifierT(b, []IssuerConfig{issuerFor("", writeJWKS(b, jwksOf(b, rsaA)))}, Options{Now: clock.Now})
	tok := sign(b, rsaA, true, claims(clock.Now()))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	var failed atomic.Bool
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				failed.Store(true)
			}
		}
	})
	if failed.Load() {
		b.Error("a cached Verify failed")
	}
}

// BenchmarkVerifyUncached measures what a cache miss costs: the parse,
// the signature and the claim checks (v.verify, without the cache).
func BenchmarkVerifyUncached(b *testing.B) {
	keys(b)
	for _, k := range []*testKey{rsaA, ecA, edA} {
		b.Run(k.alg.String(), func(b *testing.B) {
			clock := newClock()
			v := newVerifierT(b, []IssuerConfig{issuerFor("", writeJWKS(b, jwksOf(b, rsaA, ecA, edA)))}, Options{Now: clock.Now})
			tok := sign(b, k, true, claims(clock.Now()))
			now := clock.Now()
			var failed atomic.Bool
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, _, _, err := v.verify(ctx, tok, now); err != nil {
						failed.Store(true)
					}
				}
			})
			if failed.Load() {
				b.Error("an uncached Verify failed")
			}
		})
	}
}
