package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// FuzzVerify checks Verify on any token: it is accepted (a Result with the
// configured issuer and every mapped identity field) or rejected with an
// error that wraps ErrInvalid and does not repeat the token; never a panic.
// An accepted token is served again from the cache with the same Result.
// The seeds are valid tokens of each algorithm and crafted broken ones.
func FuzzVerify(f *testing.F) {
	keys(f)
	now := t0
	file := writeJWKS(f, jwksOf(f, rsaA, ecA, edA))
	cfg := issuerFor("", file)
	cfg.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	v := newVerifierT(f, []IssuerConfig{cfg}, Options{Now: func() time.Time { return now }})
	for _, k := range []*testKey{rsaA, ecA, edA, rsaB} {
		f.Add(sign(f, k, true, claims(now)))
		f.Add(sign(f, k, false, claims(now)))
	}
	expired := claims(now)
	expired["exp"] = now.Add(-time.Hour).Unix()
	f.Add(sign(f, rsaA, true, expired))
	f.Add(craft(f, map[string]any{"alg": "none"}, claims(now), nil))
	f.Add(craft(f, map[string]any{"alg": "HS256", "kid": "rsa-a"}, claims(now), func(in []byte) []byte { return in[:8] }))
	f.Add(craft(f, map[string]any{"alg": "RS256", "crit": []string{"b64"}, "b64": false}, claims(now), nil))
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, token string) {
		res, err := v.Verify(ctx, token)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify(%q): %v does not wrap ErrInvalid", token, err)
			}
			if len(token) >= 12 && strings.Contains(err.Error(), token) {
				t.Fatalf("Verify(%q): the error %q repeats the token", token, err)
			}
			return
		}
		if res.Issuer != testIssuer || res.Tenant == "" || res.Tier == "" || res.User == "" || !res.Expiry.After(now.Add(-cfg.ClockSkew)) {
			t.Fatalf("Verify(%q) = %+v", token, res)
		}
		if again, ok := v.Cached(token); !ok || again != res {
			t.Fatalf("Verify(%q) = %p, but Cached gives %p, %v", token, res, again, ok)
		}
	})
}

// FuzzJWKS checks parseKeySet on any document: it fails with an error, or
// keeps only keys that can verify (RSA of 2048 bits or more, EC on a
// supported curve, Ed25519; never symmetric), each of a family that fits
// its own alg, and indexed by its kid.
func FuzzJWKS(f *testing.F) {
	keys(f)
	f.Add(jwksOf(f, rsaA, ecA, edA))
	f.Add(jwksOf(f, rsaB, ecB))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"},{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA","use":"sig","kid":"e"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","alg":"ES256"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[]`))
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, doc []byte) {
		ks, err := parseKeySet(doc, log, testIssuer)
		if err != nil {
			if ks != nil || err.Error() == "" {
				t.Fatalf("parseKeySet: %v, %v", ks, err)
			}
			return
		}
		if len(ks.keys) == 0 {
			t.Fatal("a key set without keys")
		}
		n := 0
		for _, k := range ks.keys {
			var fam keyFamily
			switch pub := k.pub.(type) {
			case *rsa.PublicKey:
				if pub.N.BitLen() < minRSABits {
					t.Fatalf("kept an RSA key of %d bits", pub.N.BitLen())
				}
				fam = familyRSA
			case *ecdsa.PublicKey:
				fam = map[int]keyFamily{256: familyP256, 384: familyP384, 521: familyP521}[pub.Curve.Params().BitSize]
			case ed25519.PublicKey:
				if len(pub) != ed25519.PublicKeySize {
					t.Fatalf("kept an Ed25519 key of %d bytes", len(pub))
				}
				fam = familyEd25519
			default:
				t.Fatalf("kept a key of type %T", k.pub)
			}
			if fam == familyNone || fam != k.family {
				t.Fatalf("key %q: family %d for a %T", k.kid, k.family, k.pub)
			}
			fitsOne := false
			for alg, spec := range algorithms {
				if k.fits(alg) {
					fitsOne = true
					if spec.family != k.family || (k.alg != "" && k.alg != alg) {
						t.Fatalf("key %q (alg %q) fits %s", k.kid, k.alg, alg)
					}
				}
			}
			if !fitsOne {
				t.Fatalf("key %q (alg %q) fits no algorithm", k.kid, k.alg)
			}
			if k.hasKID {
				n++
				found := false
				for _, o := range ks.byKID[k.kid] {
					found = found || o == k
				}
				if !found {
					t.Fatalf("key %q not indexed by its kid", k.kid)
				}
			}
		}
		m := 0
		for _, l := range ks.byKID {
			m += len(l)
		}
		if m != n {
			t.Fatalf("%d keys with a kid, %d indexed", n, m)
		}
	})
}
