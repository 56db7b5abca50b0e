// Command jwtsign writes the JWTs and the JWKS that hack/bench/check.sh
// sends to the sidecar's Check door: a fresh RSA-2048 key (kid "bench-rs",
// RS256) and a fresh P-256 key (kid "bench-es", ES256), public halves in
// DIR/jwks.json, and tokens signed with them, one per line:
//
//	DIR/cached.txt       one RS256 token, to be sent again and again (cache hits)
//	DIR/rs256-R.txt      COUNT distinct RS256 tokens for round R (1..ROUNDS)
//	DIR/es256-R.txt      COUNT distinct ES256 tokens for round R
//
//	go run ./hack/bench/jwtsign --dir DIR --count 20000 --rounds 3
//
// Every token has iss --issuer, aud "api", org --tenant, plan --tier,
// sub "bench-user-N", a jti unique across all files, and exp two hours
// from now. The private keys are never written: the tokens are for one
// benchmark run. Only the standard library signs, so the benchmark does
// not depend on the verifier's own JOSE library to make its input.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

var b64 = base64.RawURLEncoding

type signer struct {
	alg, kid string
	sign     func(digest []byte) ([]byte, error)
}

func main() {
	dir := flag.String("dir", "", "output `directory` (required)")
	count := flag.Int("count", 20000, "distinct tokens per algorithm and round")
	rounds := flag.Int("rounds", 3, "rounds of distinct tokens")
	issuer := flag.String("issuer", "https://bench.example", "the tokens' iss")
	tenant := flag.String("tenant", "bench", "the org claim")
	tier := flag.String("tier", "pro", "the plan claim")
	flag.Parse()
	if *dir == "" || *count < 1 || *rounds < 1 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*dir, *count, *rounds, *issuer, *tenant, *tier); err != nil {
		fmt.Fprintf(os.Stderr, "jwtsign: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string, count, rounds int, issuer, tenant, tier string) error {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	rs := signer{alg: "RS256", kid: "bench-rs", sign: func(d []byte) ([]byte, error) {
		return rsa.SignPKCS1v15(nil, rk, crypto.SHA256, d)
	}}
	es := signer{alg: "ES256", kid: "bench-es", sign: func(d []byte) ([]byte, error) {
		r, s, err := ecdsa.Sign(rand.Reader, ek, d)
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64) // JWS: r and s, 32 bytes each, big-endian
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	}}
	fixed := func(n *big.Int) string { b := make([]byte, 32); n.FillBytes(b); return b64.EncodeToString(b) }
	jwks := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": rs.kid, "use": "sig", "alg": rs.alg,
			"n": b64.EncodeToString(rk.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": es.kid, "use": "sig", "alg": es.alg, "crv": "P-256",
			"x": fixed(ek.X), "y": fixed(ek.Y)},
	}}
	b, err := json.MarshalIndent(jwks, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	exp := time.Now().Add(2 * time.Hour).Unix()
	claims := func(jti int) map[string]any {
		return map[string]any{"iss": issuer, "aud": "api", "exp": exp, "org": tenant, "plan": tier,
			"sub": fmt.Sprintf("bench-user-%d", jti%1000), "jti": fmt.Sprintf("bench-%d", jti)}
	}
	jti := 0
	write := func(name string, s signer, n int) error {
		toks, err := signAll(s, claims, jti, n)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		jti += n
		return os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(toks, "\n")+"\n"), 0o600)
	}
	if err := write("cached.txt", rs, 1); err != nil {
		return err
	}
	for r := 1; r <= rounds; r++ {
		if err := write(fmt.Sprintf("rs256-%d.txt", r), rs, count); err != nil {
			return err
		}
		if err := write(fmt.Sprintf("es256-%d.txt", r), es, count); err != nil {
			return err
		}
	}
	return nil
}

// signAll signs n tokens with jti from first on, on every core.
func signAll(s signer, claims func(int) map[string]any, first, n int) ([]string, error) {
	hdr, err := json.Marshal(map[string]string{"alg": s.alg, "kid": s.kid, "typ": "JWT"})
	if err != nil {
		return nil, err
	}
	h := b64.EncodeToString(hdr)
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				payload, err := json.Marshal(claims(first + i))
				if err != nil {
					errs[i] = err
					continue
				}
				input := h + "." + b64.EncodeToString(payload)
				d := sha256.Sum256([]byte(input))
				sig, err := s.sign(d[:])
				if err != nil {
					errs[i] = err
					continue
				}
				toks[i] = input + "." + b64.EncodeToString(sig)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return toks, nil
}
