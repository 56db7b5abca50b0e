package authconfig

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/quota"
)

// files is a readFile over an in-memory set of files.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := m[name]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
}

func mustParse(t *testing.T, src string, more map[string]string) *Config {
	t.Helper()
	cfg, err := Parse("auth.yaml", []byte(src), files(more))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestLoadFull(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "valid", "full")
	cfg, err := Load(filepath.Join(dir, "auth.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.APIKeys.Header, "x-api-key"; got != want {
		t.Errorf("header %q, want %q (lower case)", got, want)
	}
	if got := cfg.APIKeys.Keys.Len(); got != 2 {
		t.Errorf("%d keys, want 2", got)
	}
	wantFiles := []string{filepath.Join(dir, "auth.yaml"), filepath.Join(dir, "keys", "keys.yaml"), filepath.Join(dir, "jwks.json")}
	if !slices.Equal(cfg.Files, wantFiles) {
		t.Errorf("Files %q, want %q", cfg.Files, wantFiles)
	}
	if len(cfg.JWT) != 3 {
		t.Fatalf("%d issuers, want 3", len(cfg.JWT))
	}
	iss := cfg.JWT[0]
	abs, _ := filepath.Abs(filepath.Join(dir, "jwks.json"))
	if iss.JWKSFile != abs || !filepath.IsAbs(iss.JWKSFile) {
		t.Errorf("JWKSFile %q, want %q", iss.JWKSFile, abs)
	}
	if !slices.Equal(iss.Algorithms, []string{"RS256", "ES256"}) || iss.ClockSkew != 30*time.Second ||
		iss.Claims.Tenant != "org" || iss.Claims.Tier != "plan" || iss.Claims.User != "sub" ||
		!slices.Equal(iss.Tenants, []string{"acme", "initech"}) || !slices.Equal(iss.Audiences, []string{"api"}) {
		t.Errorf("issuer 0: %+v", iss)
	}
	if iss.File != filepath.Join(dir, "auth.yaml") || iss.Line != 6 {
		t.Errorf("issuer 0 at %s:%d", iss.File, iss.Line)
	}
	other := cfg.JWT[1]
	if other.Refresh != time.Minute || other.JWKSURL == "" || other.JWKSFile != "" {
		t.Errorf("issuer 1: %+v", other)
	}
	if !slices.Equal(other.Algorithms, DefaultAlgorithms) || other.ClockSkew != DefaultClockSkew || cfg.JWT[2].Refresh != DefaultJWKSRefresh {
		t.Errorf("defaults not applied: %+v", other)
	}
	if cfg.TrustedHops != 1 {
		t.Errorf("trusted hops %d", cfg.TrustedHops)
	}
	if want := (quota.Limit{Algorithm: quota.FixedWindow, Requests: 20, Unit: time.Minute}); cfg.FailedAuthLimit == nil || *cfg.FailedAuthLimit != want {
		t.Errorf("failed_auth_limit %+v, want %+v", cfg.FailedAuthLimit, want)
	}
	if len(cfg.Policies) != 2 {
		t.Fatalf("%d policies", len(cfg.Policies))
	}
	api := cfg.Policies[1]
	if api.Name != "api" || api.Auth != AuthAny || !api.StripCredentials || !api.Tiers["pro"] || api.Tiers["gold"] ||
		!slices.Equal(api.Methods, []string{"GET", "POST"}) || api.PathPrefix != "/v1/" ||
		!slices.Equal(api.Hosts, []string{"api.example.com", "*.api.example.com"}) {
		t.Errorf("policy api: %+v", api)
	}
	if api.RateLimit == nil || api.RateLimit.Domain != "api" || len(api.RateLimit.Descriptors) != 3 {
		t.Fatalf("rate_limit %+v", api.RateLimit)
	}
	if docs := cfg.Policies[0]; docs.Auth != AuthNone || docs.Tiers != nil || docs.RateLimit != nil {
		t.Errorf("policy docs: %+v", docs)
	}
	k, ok := cfg.APIKeys.Keys.Lookup("password", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	if !ok || k.ID != "k-7f3a" || k.Tenant != "acme" || k.Tier != "pro" || k.User != "billing-bot" ||
		!k.Expires.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Lookup(password) = %+v, %v", k, ok)
	}
	if k, ok := cfg.APIKeys.Keys.Lookup("hello", time.Now()); !ok || k.ID != "k-free" {
		t.Errorf("Lookup(hello) (upper-case digest) = %+v, %v", k, ok)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "", nil)
	if cfg.APIKeys.Header != DefaultHeader || cfg.APIKeys.Keys == nil || cfg.APIKeys.Keys.Len() != 0 ||
		cfg.TrustedHops != 0 || cfg.FailedAuthLimit != nil || len(cfg.Policies) != 0 || len(cfg.JWT) != 0 {
		t.Errorf("empty config: %+v", cfg)
	}
	if p := cfg.Match("a", "/", "GET"); p != nil {
		t.Errorf("no policies, Match = %v", p)
	}
	if !slices.Equal(cfg.Files, []string{"auth.yaml"}) {
		t.Errorf("Files %q", cfg.Files)
	}
}

// Paths named in the auth file are relative to it; readFile gets them so.
func TestRelativePaths(t *testing.T) {
	t.Parallel()
	keys := "keys:\n  - {id: a, sha256: " + Digest("k") + ", tenant: t, tier: x}\n"
	src := `
api_keys: {files: [keys.yaml, /abs/more.yaml]}
jwt:
  - {issuer: i, audiences: [a], jwks_file: ../jwks/set.json, claims: {tenant: t, tier: x}}
`
	cfg, err := Parse("conf/auth/auth.yaml", []byte(src), files(map[string]string{
		"conf/auth/keys.yaml": keys,
		"/abs/more.yaml":      "keys: []\n",
		"conf/jwks/set.json":  `{"keys":[]}`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"conf/auth/auth.yaml", "conf/auth/keys.yaml", "/abs/more.yaml", "conf/jwks/set.json"}
	if !slices.Equal(cfg.Files, want) {
		t.Errorf("Files %q, want %q", cfg.Files, want)
	}
	abs, _ := filepath.Abs("conf/jwks/set.json")
	if cfg.JWT[0].JWKSFile != abs {
		t.Errorf("JWKSFile %q, want %q", cfg.JWT[0].JWKSFile, abs)
	}
}

// In a directory, auth files merge in name order and a keys file beside
// them that api_keys.files names is read as a keys file only.
func TestLoadDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("20-web.yaml", "policies:\n  - {name: web, auth: none}\n")
	write("10-api.yaml", "api_keys: {files: [keys.yaml]}\npolicies:\n  - {name: api, auth: api_key, match: {path_prefix: /v1/}}\n")
	write("keys.yaml", "keys:\n  - {id: a, sha256: "+Digest("secret")+", tenant: t, tier: x}\n")
	write(".hidden.yaml", "garbage: [")
	write("notes.txt", "garbage: [")
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range cfg.Policies {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"api", "web"}) {
		t.Errorf("policies %q, want api, web", names)
	}
	want := []string{filepath.Join(dir, "10-api.yaml"), filepath.Join(dir, "20-web.yaml"), filepath.Join(dir, "keys.yaml")}
	if !slices.Equal(cfg.Files, want) {
		t.Errorf("Files %q, want %q", cfg.Files, want)
	}
	if _, ok := cfg.APIKeys.Keys.Lookup("secret", time.Now()); !ok {
		t.Error("key not found")
	}
}

func TestLoadMissing(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	var ps descriptors.Problems
	if !errors.As(err, &ps) || len(ps) != 1 || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

// All problems are reported, sorted by file order and line, in the
// FILE:LINE: field: message form.
func TestProblemsFormat(t *testing.T) {
	t.Parallel()
	src := `api_keys:
  files: [k.yaml]
policies:
  - name: a
    auth: bogus
  - name: b
    auth: jwt
`
	_, err := Parse("auth.yaml", []byte(src), files(map[string]string{"k.yaml": "keys:\n  - {id: x}\n"}))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`auth.yaml:5: policies[0].auth: unknown auth "bogus"; allowed: none, api_key, jwt, any`,
		`auth.yaml:7: policies[1].auth: auth: jwt needs at least one jwt issuer`,
		`k.yaml:2: keys[0].sha256: missing; the hex SHA-256 of the key (sidecar keys new prints it)`,
		`k.yaml:2: keys[0].tenant: missing; the tenant the key belongs to`,
		`k.yaml:2: keys[0].tier: missing; the key's tier`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckDomains(t *testing.T) {
	t.Parallel()
	limits, err := descriptors.Build([]descriptors.Source{
		{Name: "a.yaml", Data: []byte("domain: b\ndescriptors: []\n")},
		{Name: "b.yaml", Data: []byte("domain: a\ndescriptors: []\n")},
	}, descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := `api_keys: {}
policies:
  - name: ok
    auth: api_key
    rate_limit: {domain: a, descriptors: [[{key: t, value: "%tenant%"}]]}
  - name: none
    auth: none
  - name: bad
    auth: api_key
    rate_limit:
      descriptors: [[{key: t, value: "%tenant%"}]]
      domain: x
`
	cfg := mustParse(t, src, nil)
	err = cfg.CheckDomains(limits)
	want := `auth.yaml:12: policies[2].rate_limit.domain: unknown domain "x"; known: a, b`
	if err == nil || err.Error() != want {
		t.Errorf("CheckDomains = %v, want %s", err, want)
	}
	var ps descriptors.Problems
	if !errors.As(err, &ps) {
		t.Errorf("error is %T, want descriptors.Problems", err)
	}
	if err := cfg.CheckDomains(nil); err == nil || !strings.Contains(err.Error(), "known: none") {
		t.Errorf("CheckDomains(nil) = %v", err)
	}
	good := mustParse(t, "api_keys: {}\npolicies:\n  - {name: ok, auth: api_key, rate_limit: {domain: b, descriptors: [[{key: t, value: x}]]}}\n", nil)
	if err := good.CheckDomains(limits); err != nil {
		t.Errorf("CheckDomains = %v", err)
	}
}

// Null sections are absent (or empty), not errors.
func TestNullSections(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "api_keys:\njwt:\nclient_address:\nfailed_auth_limit:\npolicies:\n  - {name: a, auth: api_key, match: null, rate_limit: null}\n", nil)
	if cfg.FailedAuthLimit != nil || len(cfg.Policies) != 1 || cfg.Policies[0].RateLimit != nil || cfg.APIKeys.Header != DefaultHeader {
		t.Errorf("%+v", cfg)
	}
}
