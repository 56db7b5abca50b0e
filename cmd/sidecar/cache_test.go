package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/cacheconfig"
)

func TestValidateCacheConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	limits := filepath.Join(dir, "limits.yaml")
	writeFile(t, limits, "domain: api\ndescriptors:\n  - key: tenant\n    rate_limit: {unit: minute, requests_per_unit: 10}\n")
	badLimits := filepath.Join(dir, "bad-limits.yaml")
	writeFile(t, badLimits, "domain: api\npolicies: []\n")
	auth := filepath.Join(dir, "auth.yaml")
	writeFile(t, auth, "policies:\n  - name: web\n    auth: none\n")
	good := filepath.Join(dir, "cache.yaml")
	writeFile(t, good, "rules:\n  - name: docs\n    match: {path_prefix: /docs/}\n    ttl: 1m\n")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "rules:\n  - name: me\n    scope: user\n    key_headers: [x-floodgate-user]\n  - name: me\n    ttl: 2h\n")
	example := filepath.Join("..", "..", "examples", "cache.yaml")

	tests := []struct {
		name  string
		args  []string
		code  int
		lines []string // stdout, each line exactly
	}{
		{"example", []string{"--cache-config", example}, 0,
			[]string{"cache config: 3 rules (1 public, 1 tenant, 1 user) from " + example}},
		// Alone: ./config is not read.
		{"alone", []string{"--cache-config", good}, 0,
			[]string{"cache config: 1 rule (1 public, 0 tenant, 0 user) from " + good}},
		{"with limits", []string{"--cache-config", good, "--config", limits}, 0,
			[]string{"domain api: 1 rule from " + limits, "cache config: 1 rule (1 public, 0 tenant, 0 user) from " + good}},
		{"with auth", []string{"--auth-config", auth, "--cache-config", good}, 0,
			[]string{"auth config: 1 policy, 0 API keys, 0 JWT issuers from " + auth, "cache config: 1 rule (1 public, 0 tenant, 0 user) from " + good}},
		{"bad", []string{"--cache-config", bad}, 1, []string{
			bad + ":4: rules[0].key_headers[0]: x-floodgate-user is an identity header: a user or tenant rule keys on the verified identity from the ext_authz metadata, never on request headers (a client could set them); use scope: user or scope: tenant",
			bad + ":6: rules[1].ttl: 2h0m0s is more than max_ttl, which defaults to 1h0m0s; raise max_ttl too",
		}},
		{"missing", []string{"--cache-config", filepath.Join(dir, "none.yaml")}, 1, []string{
			filepath.Join(dir, "none.yaml") + ": cannot read cache config: stat " + filepath.Join(dir, "none.yaml") + ": no such file or directory",
		}},
		// Every config named is checked, whichever fails.
		{"bad limits, good cache", []string{"--cache-config", good, "--config", badLimits}, 1, []string{
			badLimits + `:2: policies: unknown field "policies" in the top level of the file; allowed: domain, algorithm, descriptors`,
			"cache config: 1 rule (1 public, 0 tenant, 0 user) from " + good,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCmd(t, append([]string{"validate"}, tt.args...)...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code != tt.code || strings.Join(lines, "\n") != strings.Join(tt.lines, "\n") {
				t.Errorf("exit %d, stdout:\n%s\nstderr: %s\nwant exit %d and stdout:\n%s", code, out, errOut, tt.code, strings.Join(tt.lines, "\n"))
			}
		})
	}
}

// The example's user and tenant rules sit under auth policies that verify
// an identity (a rule on an auth: none path would always bypass), and its
// public rule under one that takes none.
func TestCacheExampleFitsAuthExample(t *testing.T) {
	t.Parallel()
	cache, err := cacheconfig.Load(filepath.Join("..", "..", "examples", "cache.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := authconfig.Load(filepath.Join("..", "..", "examples", "auth.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range cache.Rules {
		pol := auth.Match("localhost:10000", r.PathPrefix+"x", "GET")
		if pol == nil {
			t.Errorf("cache rule %s (%s): no auth policy matches its paths (they would get 403)", r.Name, r.PathPrefix)
			continue
		}
		if identified := pol.Auth != authconfig.AuthNone; identified != (r.Scope != cacheconfig.Public) {
			t.Errorf("cache rule %s (scope %v) is under auth policy %s (auth %v)", r.Name, r.Scope, pol.Name, pol.Auth)
		}
	}
}
