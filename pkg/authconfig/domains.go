package authconfig

import (
	"fmt"
	"strings"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// CheckDomains checks that every policy's rate_limit.domain is a domain of
// the limits config. The error, when not nil, is descriptors.Problems:
// FILE:LINE: policies[i].rate_limit.domain: unknown domain "x"; known: a, b.
// A nil limits config knows no domain.
func (c *Config) CheckDomains(limits *descriptors.Config) error {
	if c == nil {
		return nil
	}
	var known []string
	for _, d := range limits.Domains() { // sorted by name
		known = append(known, d.Name)
	}
	knownText := strings.Join(known, ", ")
	if knownText == "" {
		knownText = "none"
	}
	var problems descriptors.Problems
	for _, p := range c.Policies {
		if p.RateLimit == nil || limits.Domain(p.RateLimit.Domain) != nil {
			continue
		}
		problems = append(problems, descriptors.Problem{File: p.File, Line: p.RateLimit.line,
			Field: fmt.Sprintf("policies[%d].rate_limit.domain", p.index),
			Msg:   fmt.Sprintf("unknown domain %q; known: %s", p.RateLimit.Domain, knownText)})
	}
	if len(problems) == 0 {
		return nil
	}
	return problems
}

// Summary is the one-line description `sidecar validate` prints for a
// valid auth config, e.g. "auth config: 2 policies, 3 API keys, 1 JWT
// issuer from auth.yaml, keys.yaml, jwks.json".
func (c *Config) Summary() string {
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	return fmt.Sprintf("auth config: %s, %s, %s from %s",
		plural(len(c.Policies), "policy", "policies"),
		plural(c.APIKeys.Keys.Len(), "API key", "API keys"),
		plural(len(c.JWT), "JWT issuer", "JWT issuers"),
		strings.Join(c.Files, ", "))
}
