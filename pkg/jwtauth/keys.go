package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// minRSABits is the smallest RSA modulus a key set may use (RFC 7518
// section 3.3 asks for 2048); smaller keys are skipped at load.
const minRSABits = 2048

// algorithms are the signature algorithms a config may allow, each with
// the key family it needs. `none` and HS* are absent on purpose: New
// refuses them by name.
var algorithms = map[string]algSpec{
	"RS256": {alg: jwa.RS256(), family: familyRSA},
	"RS384": {alg: jwa.RS384(), family: familyRSA},
	"RS512": {alg: jwa.RS512(), family: familyRSA},
	"PS256": {alg: jwa.PS256(), family: familyRSA},
	"PS384": {alg: jwa.PS384(), family: familyRSA},
	"PS512": {alg: jwa.PS512(), family: familyRSA},
	"ES256": {alg: jwa.ES256(), family: familyP256},
	"ES384": {alg: jwa.ES384(), family: familyP384},
	"ES512": {alg: jwa.ES512(), family: familyP521},
	"EdDSA": {alg: jwa.EdDSA(), family: familyEd25519},
}

// DefaultAlgorithms are allowed when an IssuerConfig lists none.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

type algSpec struct {
	alg    jwa.SignatureAlgorithm
	family keyFamily
}

// keyFamily is a key's type, and for EC its curve: what decides which
// algorithms it may verify.
type keyFamily uint8

const (
	familyNone keyFamily = iota
	familyRSA
	familyP256
	familyP384
	familyP521
	familyEd25519
)

// key is one usable public key of a set.
type key struct {
	kid    string
	hasKID bool
	family keyFamily
	// alg is the JWK's own "alg", or "": then any algorithm of its family.
	alg string
	// pub is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	pub any
}

// fits says whether k may verify a token signed with alg: the family must
// match, and a key that names its algorithm serves only that one.
func (k *key) fits(alg string) bool {
	spec, ok := algorithms[alg]
	if !ok || spec.family != k.family {
		return false
	}
	return k.alg == "" || k.alg == alg
}

// keySet is one loaded JWKS, immutable. Its identity (the pointer) stands
// for its content: a refresh that returns the same bytes keeps the same
// *keySet, so cached tokens verified with it stay valid.
type keySet struct {
	keys  []*key
	byKID map[string][]*key
}

// parseKeySet parses a JWKS document ({"keys": [...]}) and keeps the keys
// that can verify a signature. Each key is parsed on its own, so a key the
// library refuses (a weak RSA key, an unknown type) or one that cannot
// verify (symmetric, encryption-only) is skipped and logged rather than
// failing the set: an issuer that adds a key of a new kind must not lock
// out the tokens of its other keys. A set left with no usable key is an
// error, so a refresh never replaces working keys with none.
func parseKeySet(body []byte, log *slog.Logger, issuer string) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("not a JWKS document (a JSON object with keys)")
	}
	ks := &keySet{byKID: make(map[string][]*key)}
	for i, raw := range doc.Keys {
		jk, err := jwk.ParseKey(raw)
		if err != nil {
			log.Warn("jwks key skipped", "issuer", issuer, "index", i, "why", err.Error())
			continue
		}
		k, why := usableKey(jk)
		if k == nil {
			kid, _ := jk.KeyID()
			log.Warn("jwks key skipped", "issuer", issuer, "index", i, "kid", kid, "why", why)
			continue
		}
		ks.keys = append(ks.keys, k)
		if k.hasKID {
			ks.byKID[k.kid] = append(ks.byKID[k.kid], k)
		}
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("JWKS has no usable signature key (RSA of 2048 bits or more, EC P-256/P-384/P-521, or Ed25519)")
	}
	return ks, nil
}

// usableKey turns a JWK into a key, or says why it cannot verify.
func usableKey(jk jwk.Key) (*key, string) {
	if use, ok := jk.KeyUsage(); ok && use != "sig" {
		return nil, "use is not sig"
	}
	if jk.KeyType() == jwa.OctetSeq() {
		// A symmetric key in a published set would let anyone who reads
		// the set forge tokens; never use one.
		return nil, "symmetric key"
	}
	k := &key{}
	k.kid, k.hasKID = jk.KeyID()
	if a, ok := jk.Algorithm(); ok {
		k.alg = a.String()
		if _, known := algorithms[k.alg]; !known {
			return nil, "alg " + k.alg + " is not a supported signature algorithm"
		}
	}
	pubJWK, err := jwk.PublicKeyOf(jk)
	if err != nil {
		return nil, "no public key"
	}
	var raw any
	if err := jwk.Export(pubJWK, &raw); err != nil {
		return nil, "cannot export key"
	}
	switch pub := raw.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, "RSA key under 2048 bits"
		}
		k.family = familyRSA
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			k.family = familyP256
		case elliptic.P384():
			k.family = familyP384
		case elliptic.P521():
			k.family = familyP521
		default:
			return nil, "unsupported curve"
		}
	case ed25519.PublicKey:
		k.family = familyEd25519
	default:
		return nil, "unsupported key type"
	}
	k.pub = raw
	if k.alg != "" && algorithms[k.alg].family != k.family {
		return nil, "alg does not fit the key type"
	}
	return k, ""
}
