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
	DefaultMaxTTL = time.Hour
)

// Rule is one cache rule, as compiled: names lower case, lists sorted
// where order does not matter.
type Rule struct {
	Name string
	// Hosts the rule matches (lower case, no port; empty = any host) and
	// PathPrefix ("/" when not given).
	Hosts      []string
	PathPrefix string
	Scope      Scope
	// TTL is the freshness of a response that gives none (0 = such
	// responses are not stored); MaxTTL caps every freshness.
	TTL, MaxTTL time.Duration
	KeyHeaders  []string // lower case
	IgnoreQuery []string
	Invalidates []string // path prefixes
	// File and Line are where the rule was defined.
	File string
	Line int
}

// Config is a loaded cache config.
type Config struct {
	Rules []*Rule
	// Files the config was read from.
	Files []string
}

// Match is the first rule for a request to host (lower case, port
// removed) and path (no query), or nil.
func (c *Config) Match(host, path string) *Rule { panic("todo") }

// Load reads a cache config file.
func Load(path string) (*Config, error) { panic("todo") }

// Parse reads a cache config from data; file names it in errors.
func Parse(file string, data []byte) (*Config, error) { panic("todo") }
