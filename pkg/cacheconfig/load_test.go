package cacheconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/yamlconf"
)

func TestLoadFull(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "valid", "full.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []*Rule{
		{Name: "users", Hosts: []string{"::1", "api.example.com", "api.example.com.au"}, PathPrefix: "/v1/users/",
			Scope: User, TTL: time.Minute, MaxTTL: 10 * time.Minute, KeyHeaders: []string{"accept", "accept-language"},
			IgnoreQuery: []string{"fbclid", "utm_source"}, Invalidates: []string{"/v1/orgs/", "/v1/teams/"}, File: path, Line: 2},
		{Name: "teams", PathPrefix: "/v1/teams/", Scope: Tenant, MaxTTL: DefaultMaxTTL, File: path, Line: 10},
		{Name: "docs", Hosts: []string{"docs.example.com"}, PathPrefix: "/", Scope: Public, MaxTTL: DefaultMaxTTL, File: path, Line: 13},
		{Name: "all", PathPrefix: "/", MaxTTL: DefaultMaxTTL, File: path, Line: 16},
	}
	if !reflect.DeepEqual(cfg.Rules, want) {
		for i, r := range cfg.Rules {
			t.Errorf("rule %d: %+v", i, *r)
		}
	}
	if !reflect.DeepEqual(cfg.Files, []string{path}) {
		t.Errorf("Files %q", cfg.Files)
	}
	if got, want := cfg.Summary(), "cache config: 4 rules (2 public, 1 tenant, 1 user) from "+path; got != want {
		t.Errorf("Summary %q, want %q", got, want)
	}
}

func TestAnchors(t *testing.T) {
	t.Parallel()
	cfg, err := Load(filepath.Join("testdata", "valid", "anchors.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rules) != 2 {
		t.Fatalf("%d rules", len(cfg.Rules))
	}
	me := cfg.Rules[1]
	if me.Name != "me" || me.PathPrefix != "/v1/me" || me.Scope != User || me.TTL != 30*time.Second {
		t.Errorf("merged rule %+v", *me)
	}
}

func TestEmpty(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"", "# nothing\n", "rules: []\n", "rules:\n", "null\n"} {
		cfg, err := Parse("c.yaml", []byte(src))
		if err != nil || len(cfg.Rules) != 0 || cfg.Match("a", "/") != nil {
			t.Errorf("Parse(%q) = %v, %v", src, cfg, err)
		}
	}
	if got := (*Config)(nil).Match("a", "/"); got != nil {
		t.Errorf("nil config matched %v", got)
	}
	// A zero-byte file is refused by Load: it is most likely one caught
	// mid-write, and refusing it keeps the rules in force.
	path := filepath.Join(t.TempDir(), "cache.yaml")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path+": the file is empty") {
		t.Errorf("Load(empty file) = %v, want an error naming it", err)
	}
}

// Every problem of a config, exactly as `sidecar validate` prints them,
// in line order.
func TestProblemsExact(t *testing.T) {
	t.Parallel()
	src := `rules:
  - name: users
    match: {hosts: ["api.example.com:8443"], path_prefix: v1/users}
    scope: User
    ttl: 2h
    key_headers: [x-floodgate-user, upgrade]
  - name: users
    ttls: 1m
  - match: {}
`
	_, err := Parse("cache.yaml", []byte(src))
	want := []string{
		`cache.yaml:3: rules[0].match.hosts[0]: "api.example.com:8443" has a port; give the host alone (any port matches)`,
		`cache.yaml:3: rules[0].match.path_prefix: must start with '/', found "v1/users"`,
		`cache.yaml:4: rules[0].scope: unknown scope "User" (did you mean "user"?); allowed: public, tenant, user (default public)`,
		`cache.yaml:5: rules[0].ttl: 2h0m0s is more than max_ttl, which defaults to 1h0m0s; raise max_ttl too`,
		`cache.yaml:6: rules[0].key_headers[0]: x-floodgate-user is an identity header: a user or tenant rule keys on the verified identity from the ext_authz metadata, never on request headers (a client could set them); use scope: user or scope: tenant`,
		`cache.yaml:6: rules[0].key_headers[1]: upgrade is a hop-by-hop header: it is not forwarded end to end, so it cannot key a cached response`,
		`cache.yaml:8: rules[1].ttls: unknown field "ttls" in a cache rule (did you mean "ttl"?); allowed: name, match, scope, ttl, max_ttl, key_headers, ignore_query, invalidates`,
		`cache.yaml:9: rules[2].name: missing; every rule needs a unique name (its metrics label)`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	// A duplicate name is reported once both rules parse.
	_, err = Parse("cache.yaml", []byte("rules:\n  - name: a\n  - name: a\n"))
	if got, want := errString(err), `cache.yaml:3: rules[1].name: duplicate rule name "a", first at line 2; rule names must be unique (they label metrics)`; got != want {
		t.Errorf("duplicate: %q, want %q", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	_, err := Load(missing)
	var probs yamlconf.Problems
	if !errors.As(err, &probs) || len(probs) != 1 || !errors.Is(err, fs.ErrNotExist) ||
		!strings.HasPrefix(err.Error(), missing+": cannot read cache config: ") {
		t.Errorf("missing file: %v", err)
	}
	_, err = Load(dir)
	if got, want := errString(err), dir+": cannot read cache config: a directory; --cache-config takes one YAML file (its rules are tried in order)"; got != want {
		t.Errorf("directory: %q, want %q", got, want)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, yamlconf.MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, yamlconf.ErrTooLarge) {
		t.Errorf("big file: %v", err)
	}
}
