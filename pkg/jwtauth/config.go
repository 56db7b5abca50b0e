// Package jwtauth verifies JSON Web Tokens against issuers' key sets (JWKS
// from a file or a URL) and turns a verified token into identity fields.
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
