// Package cacheconfig reads the response cache's rules (--cache-config):
// which requests are cached, how they are keyed and scoped, for how long,
// and what their writes invalidate.
package cacheconfig

import "time"

// Scope is whose entries a rule's responses are.
type Scope int

const (
	// Public entries are shared by every client.
	Public Scope = iota
	// Tenant entries are shared within a verified tenant.
	Tenant
	// User entries belong to one verified user.
	User
)

// String returns the config name: public, tenant or user.
func (s Scope) String() string {
	switch s {
	case Tenant:
		return "tenant"
	case User:
		return "user"
	}
	return "public"
}

// Defaults of a rule's fields.
const (
	// DefaultMaxTTL is max_ttl when a rule gives none.
	DefaultMaxTTL = time.Hour
	// DefaultScope is scope when a rule gives none.
	DefaultScope = Public
	// DefaultPathPrefix is match.path_prefix when a rule gives none.
	DefaultPathPrefix = "/"
)

// Bounds on a rule's durations; beyond them a value is a mistake.
const (
	// MaxMaxTTL is the largest max_ttl (and so ttl): a week.
	MaxMaxTTL = 7 * 24 * time.Hour
	// MinMaxTTL is the smallest max_ttl.
	MinMaxTTL = time.Second
)

// Rule is one cache rule, as compiled: names lower case, lists sorted
// where order does not matter.
type Rule struct {
	Name string
	// Hosts the rule matches (lower case, no port, sorted; empty = any
	// host) and PathPrefix ("/" when not given).
	Hosts      []string
	PathPrefix string
	Scope      Scope
	// TTL is the freshness of a response that gives none (0, the
	// default: such responses are not stored); MaxTTL caps every
	// freshness (default DefaultMaxTTL). TTL <= MaxTTL.
	TTL, MaxTTL time.Duration
	// KeyHeaders are request headers in the key, lower case, sorted,
	// never hop-by-hop nor x-floodgate-*.
	KeyHeaders []string
	// IgnoreQuery are query parameter names left out of the key (as
	// decoded), sorted; pass them to httpcache.CanonicalQuery.
	IgnoreQuery []string
	// Invalidates are path prefixes (each starting with '/') that a
	// successful write on this rule invalidates, sorted.
	Invalidates []string
	// File and Line are where the rule was defined.
	File string
	Line int
}

// Config is a loaded cache config. It is immutable once loaded and safe
// for concurrent use.
type Config struct {
	// Rules in file order; the first that matches a request applies
	// (Match). None is shadowed by an earlier one.
	Rules []*Rule
	// Files the config was read from, so a watcher can reload when one
	// changes.
	Files []string
}
