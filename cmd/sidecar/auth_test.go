package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/authconfig"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestValidateAuthConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	limits := filepath.Join(dir, "limits.yaml")
	writeFile(t, limits, "domain: api\ndescriptors:\n  - key: tenant\n    rate_limit: {unit: minute, requests_per_unit: 10}\n")
	good := filepath.Join(dir, "auth.yaml")
	writeFile(t, good, "api_keys: {files: [keys.yaml]}\npolicies:\n  - name: api\n    auth: api_key\n    rate_limit: {domain: api, descriptors: [[{key: tenant, value: \"%tenant%\"}]]}\n")
	writeFile(t, filepath.Join(dir, "keys.yaml"), "keys: []\n")
	otherDomain := filepath.Join(dir, "other.yaml")
	writeFile(t, otherDomain, "policies:\n  - name: web\n    auth: none\n    rate_limit:\n      domain: web\n      descriptors: [[{key: ip, value: \"%client_ip%\"}]]\n")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "policies:\n  - name: a\n    auth: apikey\n  - name: b\n    auth: none\n    tiers: [pro]\n")

	tests := []struct {
		name     string
		args     []string
		code     int
		outLines []string // each a prefix of one stdout line, in order
	}{
		{"auth alone", []string{"--auth-config", good}, 0,
			[]string{"auth config: 1 policy, 0 API keys, 0 JWT issuers from " + good + ", " + filepath.Join(dir, "keys.yaml")}},
		// Alone, the domain is not checked (and ./config is not read).
		{"unknown domain alone", []string{"--auth-config", otherDomain}, 0, []string{"auth config: 1 policy"}},
		{"both", []string{"--auth-config", good, "--config", limits}, 0,
			[]string{"domain api: 1 rule from " + limits, "auth config: 1 policy"}},
		{"unknown domain", []string{"--config", limits, "--auth-config", otherDomain}, 1,
			[]string{"domain api: 1 rule", otherDomain + `:5: policies[0].rate_limit.domain: unknown domain "web"; known: api`}},
		{"bad", []string{"--auth-config", bad}, 1, []string{
			bad + `:3: policies[0].auth: unknown auth "apikey"`,
			bad + ":6: policies[1].tiers: not allowed with auth: none",
		}},
		{"missing", []string{"--auth-config", filepath.Join(dir, "none.yaml")}, 1, []string{filepath.Join(dir, "none.yaml") + ": cannot read auth config"}},
		{"bad limits, good auth", []string{"--auth-config", good, "--config", bad}, 1, []string{bad + `:1: policies: unknown field "policies"`, bad + ":1: domain: missing", "auth config: 1 policy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCmd(t, append([]string{"validate"}, tt.args...)...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			ok := code == tt.code && len(lines) >= len(tt.outLines)
			for i := 0; ok && i < len(tt.outLines); i++ {
				ok = strings.HasPrefix(lines[i], tt.outLines[i])
			}
			if !ok {
				t.Errorf("exit %d, stdout:\n%s\nstderr: %s\nwant exit %d and lines starting %q", code, out, errOut, tt.code, tt.outLines)
			}
			if tt.code == 0 && len(lines) != len(tt.outLines) {
				t.Errorf("stdout has %d lines, want %d:\n%s", len(lines), len(tt.outLines), out)
			}
		})
	}
}

func TestKeysNew(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCmd(t, "keys", "new", "--id", "k-1", "--tenant", "acme", "--tier", "pro", "--user", "billing bot", "--expires", "2099-06-30T00:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	key, item, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(key, authconfig.KeyPrefix) || len(key) < len(authconfig.KeyPrefix)+43 {
		t.Errorf("first line %q is not a key", key)
	}
	if strings.Contains(item, key) || strings.Contains(errOut, key) {
		t.Error("the key is printed beyond the first line")
	}
	if !strings.HasPrefix(item, "  - id: k-1\n") || !strings.Contains(item, "sha256: "+authconfig.Digest(key)) {
		t.Errorf("item:\n%s", item)
	}
	// Appended under keys:, the item loads and the key is found by it.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys.yaml"), "keys:\n"+item)
	writeFile(t, filepath.Join(dir, "auth.yaml"), "api_keys: {files: [keys.yaml]}\n")
	cfg, err := authconfig.Load(filepath.Join(dir, "auth.yaml"))
	if err != nil {
		t.Fatalf("the printed item does not load: %v\n%s", err, item)
	}
	k, ok := cfg.APIKeys.Keys.Lookup(key, time.Now())
	if !ok || k.ID != "k-1" || k.Tenant != "acme" || k.Tier != "pro" || k.User != "billing bot" ||
		!k.Expires.Equal(time.Date(2099, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Lookup = %+v, %v", k, ok)
	}

	// Values YAML would read as other types stay strings.
	code, out, _ = runCmd(t, "keys", "new", "--id", "true", "--tenant", "123", "--tier", ": x #y")
	_, item, _ = strings.Cut(out, "\n")
	writeFile(t, filepath.Join(dir, "keys.yaml"), "keys:\n"+item)
	if cfg, err := authconfig.Load(filepath.Join(dir, "auth.yaml")); code != 0 || err != nil {
		t.Errorf("exit %d, %v", code, err)
	} else if k, _ := cfg.APIKeys.Keys.Lookup(strings.SplitN(out, "\n", 2)[0], time.Now()); k == nil || k.ID != "true" || k.Tenant != "123" || k.Tier != ": x #y" {
		t.Errorf("round trip: %+v", k)
	}
}

func TestKeysNewErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"keys"}, "usage: sidecar keys new"},
		{[]string{"keys", "old"}, `unknown command "old"`},
		{[]string{"keys", "new", "--tenant", "a", "--tier", "b"}, "--id is required"},
		{[]string{"keys", "new", "--id", "a", "--tier", "b"}, "--tenant is required"},
		{[]string{"keys", "new", "--id", "a", "--tenant", "b"}, "--tier is required"},
		{[]string{"keys", "new", "--id", "a", "--tenant", "b", "--tier", "c", "--expires", "2027-06-30"}, "not an RFC 3339 time"},
		{[]string{"keys", "new", "--id", "a", "--tenant", "b", "--tier", "c", "--expires", "2001-01-01T00:00:00Z"}, "already past"},
		{[]string{"keys", "new", "--id", "a\nb", "--tenant", "b", "--tier", "c"}, "--id must not hold control characters"},
		{[]string{"keys", "new", "--id", "a", "--tenant", "b", "--tier", "c", "extra"}, `unexpected argument "extra"`},
		{[]string{"keys", "new", "--bogus"}, "bogus"},
	} {
		code, out, errOut := runCmd(t, tt.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and …%s…", tt.args, code, out, errOut, tt.want)
		}
	}
}
