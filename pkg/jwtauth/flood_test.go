package jwtauth

import (
	"context"
	"errors"
	"runtime"
	"testing"
)

// TestFloodDistinctTokens verifies a flood of distinct tokens, valid ones
// (ten times the cache's size) and invalid ones (forged signatures, wrong
// audiences, made-up kids, garbage): the verified-token cache never holds
// more than CacheSize, invalid tokens leave nothing behind, the made-up
// kids cost at most one JWKS fetch, and the heap after the flood is bounded
// by the cache's size (a wide 8 KiB an entry), not by the flood.
func TestFloodDistinctTokens(t *testing.T) {
	// Not parallel: the heap figure must be this test's alone.
	keys(t)
	const size, valid, invalid = 100, 1000, 1000
	clock := newClock()
	srv := newJWKSServer(t, jwksOf(t, edA))
	v := newVerifierT(t, []IssuerConfig{issuerFor(srv.URL, "")}, Options{Now: clock.Now, CacheSize: size})
	ctx := context.Background()

	// Sign before measuring, so that the tokens are not counted.
	good := make([]string, valid)
	for i := range good {
		c := claims(clock.Now())
		c["n"] = i
		good[i] = sign(t, edA, true, c)
	}
	bad := make([]string, invalid)
	for i := range bad {
		c := claims(clock.Now())
		c["n"] = i
		switch i % 4 {
		case 0: // a forged signature under edA's kid
			bad[i] = craft(t, map[string]any{"alg": "EdDSA", "kid": edA.kid}, c, func(in []byte) []byte { return append(in[:0:0], "not a signature"...) })
		case 1: // a wrong audience, well signed
			c["aud"] = "web"
			bad[i] = sign(t, edA, true, c)
		case 2: // a kid the JWKS does not have
			bad[i] = craft(t, map[string]any{"alg": "EdDSA", "kid": "made-up-" + string(rune('a'+i%26)) + c["sub"].(string)}, c, edSign)
		default: // not a token at all
			bad[i] = "garbage." + good[i][:20] + ".x"
		}
	}

	// The first valid token waits for the first JWKS fetch; count from there.
	if _, err := v.Verify(ctx, good[0]); err != nil {
		t.Fatal(err)
	}
	fetches := srv.fetches.Load()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range good {
		if _, err := v.Verify(ctx, good[i]); err != nil {
			t.Fatalf("valid token %d: %v", i, err)
		}
		if _, err := v.Verify(ctx, bad[i]); !errors.Is(err, ErrInvalid) {
			t.Fatalf("invalid token %d: err = %v, want ErrInvalid", i, err)
		}
		if i%500 == 0 {
			if n := v.cache.len(); n > size {
				t.Fatalf("after %d tokens the cache holds %d, more than %d", 2*(i+1), n, size)
			}
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	if n := v.cache.len(); n > size || n < size/2 {
		t.Errorf("the cache holds %d entries, want at most %d (and most of them used)", n, size)
	}
	if got := srv.fetches.Load() - fetches; got > 1 {
		t.Errorf("%d JWKS fetches for a flood of made-up kids on a frozen clock, want at most 1", got)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if bound := int64(size) * 8 << 10; grown > bound {
		t.Errorf("heap grew %d bytes over the flood, more than %d (8 KiB per cache entry)", grown, bound)
	}
	t.Logf("%d valid and %d invalid distinct tokens: cache %d of %d, heap grew %.2f MiB", valid, invalid, v.cache.len(), size, float64(grown)/(1<<20))
	runtime.KeepAlive(good)
	runtime.KeepAlive(bad)
}
