// Package authconfig loads, validates and compiles the auth config of the
// ext_authz door (../shared/CONTRACT.md, "Authorization"): API keys held as
// digests, JWT issuers, the client-address rule, failed_auth_limit and the
// policies, with their rate_limit descriptor templates compiled once.
//
// Every problem is reported as FILE:LINE: field: message, as the limits
// loader (pkg/descriptors) does. A compiled Config is immutable and safe
// for concurrent use.
package authconfig

import (
	"time"

	"github.com/floodgate/floodgate/pkg/jwtauth"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Config is a compiled auth config.
type Config struct {
	// APIKeys is the API-key credential: its header and the keys.
	APIKeys APIKeys
	// JWT are the trusted issuers, in file order.
	JWT []jwtauth.IssuerConfig
	// TrustedHops is client_address.trusted_hops.
	TrustedHops int
	// FailedAuthLimit is failed_auth_limit, or nil when not configured.
	FailedAuthLimit *quota.Limit
	// Policies in file order; the first that matches a request applies.
	Policies []*Policy
	// Files are every file the config was read from (the auth files, the
	// keys files, JWKS files), so a watcher can reload when one changes.
	Files []string
}

// APIKeys is the api_keys section.
type APIKeys struct {
	// Header is the header carrying the key, lower case (default
	// x-api-key). `Authorization: ApiKey <key>` is accepted too.
	Header string
	// Keys are the known keys, by digest.
	Keys *KeySet
}

// Key is one API key's entry; the key itself is never held, only its
// SHA-256 digest.
type Key struct {
	// ID is public: logged and sent upstream.
	ID     string
	Tenant string
	Tier   string
	User   string
	// Expires is when the key stops being valid; zero: never.
	Expires time.Time
	digest  [32]byte
}

// KeySet holds keys by digest for O(1) lookup.
type KeySet struct {
	byDigest map[[32]byte]*Key
}

// Auth says which credential a policy takes.
type Auth uint8

const (
	// AuthNone looks at no credential.
	AuthNone Auth = iota
	// AuthAPIKey takes an API key.
	AuthAPIKey
	// AuthJWT takes a JWT (Authorization: Bearer).
	AuthJWT
	// AuthAny takes either; a request with both is judged by the API key.
	AuthAny
)

// String returns the config name.
func (a Auth) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthAPIKey:
		return "api_key"
	case AuthJWT:
		return "jwt"
	case AuthAny:
		return "any"
	}
	return "unknown"
}

// Policy is one compiled policy.
type Policy struct {
	Name string
	// Hosts match the request's host (exact, or "*.example.com": one or
	// more labels below it, not the apex; port ignored; case-insensitive).
	// Empty: any host.
	Hosts []string
	// PathPrefix must start the path (without its query); "" matches all.
	PathPrefix string
	// Methods, upper case; empty: any method.
	Methods []string
	Auth    Auth
	// Tiers allowed; nil: every tier.
	Tiers map[string]bool
	// StripCredentials drops the credential header (or authorization)
	// upstream.
	StripCredentials bool
	// RateLimit is the policy's limits, or nil.
	RateLimit *RateLimit
	// File and Line say where the policy is configured.
	File string
	Line int

	// Hosts precompiled for Match: exact names, and the suffixes of
	// wildcards ("*.example.com" gives ".example.com").
	exactHosts, hostSuffixes []string
	// index is the policy's place in its file's list, for field paths.
	index int
}

// RateLimit is a policy's rate_limit: a domain of the limits config and
// descriptor templates.
type RateLimit struct {
	Domain      string
	Descriptors [][]Template
	line        int // of domain, for CheckDomains
}

// Template is one descriptor entry: a key and a compiled value template.
type Template struct {
	Key   string
	parts []part
	src   string // the configured value, for String
}

// Field is what a template part (or an identity field) names.
type Field uint8

// The template fields: identity fields first, then request fields.
const (
	FieldLiteral Field = iota
	FieldTenant
	FieldTier
	FieldUser
	FieldKeyID
	FieldSubject
	FieldIssuer
	FieldClientIP
	FieldAuth
	FieldMethod
	FieldHost
	FieldPath
	FieldHeader // %header:NAME%, NAME lower case
	FieldClaim  // %claim:NAME%
)

// part is a literal, or a field (with a name for header and claim).
type part struct {
	field Field
	text  string // the literal, or the header or claim name
}

// Identity is a verified identity (or, for auth: none, just the client).
type Identity struct {
	Tenant, Tier, User string
	KeyID              string // API keys
	Subject, Issuer    string // JWT sub and iss
	ClientIP           string
	Auth               string // "api_key", "jwt" or "none"
}

// Vars are what templates are rendered from.
type Vars struct {
	Identity *Identity
	Method   string
	Host     string
	Path     string // without the query
	// Header returns a request header's value by lower-case name.
	Header func(name string) string
	// Claim returns a JWT claim as a string ("" when absent or not a JWT).
	Claim func(name string) string
}
