// Package jwtauth verifies JSON Web Tokens against issuers' key sets (JWKS
// from a file or a URL) and turns a verified token into identity fields
// (../shared/CONTRACT.md, "Authorization").
//
// The cryptography is github.com/lestrrat-go/jwx/v3 rather than
// golang-jwt/jwt/v5: jwx parses JWKS itself (RSA, EC and OKP keys, so
// EdDSA with Ed25519 comes without extra code), verifies a compact JWS
// against one key under one algorithm that the caller names
// (jws.WithKey), refuses a key whose type does not fit that algorithm,
// and checks that the protected header's alg is the one verified
// (WithAlgorithmMatch) and its crit list (WithCritValidation). golang-jwt
// would need a separate JWKS parser and a key-lookup callback that must
// do its own algorithm checks.
//
// The package does not rely on the library alone for the security rules:
// it picks the issuer by the exact, still unverified `iss`, allows only
// the issuer's configured algorithms (never `none` nor HS*, refused in
// New), matches the algorithm to the key's type and curve itself
// (RS and PS to RSA keys of 2048 bits or more, ES256/ES384/ES512 to
// P-256/P-384/P-521, EdDSA to Ed25519), ignores symmetric (`oct`) keys in
// a JWKS, and validates exp, nbf, aud and the claim mapping with its own
// clock. A token without `exp` is rejected: a bearer token that never
// expires is too dangerous to accept from a misconfigured issuer.
package jwtauth

import "time"

// IssuerConfig is one trusted issuer, as the auth config's `jwt` list
// gives it (pkg/authconfig fills it in, paths made absolute, defaults
// applied).
type IssuerConfig struct {
	// Issuer is the exact `iss` a token must carry.
	Issuer string
	// Audiences: the token's `aud` must contain one of them (never empty).
	Audiences []string
	// JWKSFile is the key set's file (absolute), or "" when JWKSURL is set.
	JWKSFile string
	// JWKSURL is the key set's URL (https, or http to loopback only).
	JWKSURL string
	// Refresh is how often JWKSURL is fetched again (default 5m).
	Refresh time.Duration
	// Algorithms allowed for this issuer's tokens (default RS256, ES256,
	// EdDSA); never `none` nor HS*.
	Algorithms []string
	// ClockSkew is allowed on exp and nbf (default 30s).
	ClockSkew time.Duration
	// Claims names the claim that gives each identity field; "" means the
	// field is not taken from the token.
	Claims ClaimNames
	// Tenants, when not empty, are the only tenants this issuer's tokens
	// may name.
	Tenants []string
	// File and Line say where the entry is configured, for messages.
	File string
	Line int
}

// ClaimNames maps identity fields to claim names.
type ClaimNames struct {
	Tenant, Tier, User string
}
