package authconfig

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func keySet(t *testing.T, keys string) *KeySet {
	t.Helper()
	cfg := mustParse(t, "api_keys: {files: [keys.yaml]}\n", map[string]string{"keys.yaml": keys})
	return cfg.APIKeys.Keys
}

func TestLookup(t *testing.T) {
	t.Parallel()
	ks := keySet(t, `keys:
  - {id: live, sha256: `+Digest("fg_live")+`, tenant: acme, tier: pro}
  - {id: old, sha256: `+Digest("fg_old")+`, tenant: acme, tier: free, expires: "2026-01-01T00:00:00Z"}
`)
	expiry := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		key    string
		now    time.Time
		wantID string
	}{
		{"fg_live", expiry, "live"},
		{"fg_old", expiry.Add(-time.Second), "old"},
		{"fg_old", expiry, "old"}, // valid up to the instant, invalid past it
		{"fg_old", expiry.Add(time.Nanosecond), ""},
		{"fg_unknown", expiry, ""},
		{"", expiry, ""},
		{"FG_LIVE", expiry, ""},
	}
	for _, tt := range tests {
		k, ok := ks.Lookup(tt.key, tt.now)
		gotID := ""
		if ok {
			gotID = k.ID
		}
		if gotID != tt.wantID || ok != (k != nil) {
			t.Errorf("Lookup(%q, %v) = %v, %v; want id %q", tt.key, tt.now, k, ok, tt.wantID)
		}
	}
	if ks.Len() != 2 {
		t.Errorf("Len %d", ks.Len())
	}
	var none *KeySet
	if _, ok := none.Lookup("x", expiry); ok || none.Len() != 0 {
		t.Error("nil KeySet found a key")
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k, KeyPrefix))
	if !strings.HasPrefix(k, KeyPrefix) || err != nil || len(raw) != 32 {
		t.Errorf("key %q: %d bytes, %v", k, len(raw), err)
	}
	k2, _ := GenerateKey(rand.Reader)
	if k == k2 {
		t.Error("two keys alike")
	}
	if _, err := GenerateKey(bytes.NewReader(make([]byte, 5))); err == nil {
		t.Error("GenerateKey with too few random bytes succeeded")
	}
	if Digest("hello") != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Error("Digest is not hex SHA-256")
	}
}

// No problem message ever holds a key or its digest, whatever the
// mistake: a key pasted as its own digest, a digest given twice, a digest
// of the wrong length or type.
func TestSecretsNeverInErrors(t *testing.T) {
	t.Parallel()
	key := "fg_" + strings.Repeat("s3cr3t", 6)
	digest := Digest(key)
	upper := strings.ToUpper(digest)
	cases := map[string]string{
		"key as digest":     "keys:\n  - {id: a, sha256: " + key + ", tenant: t, tier: x}\n",
		"duplicate digest":  "keys:\n  - {id: a, sha256: " + digest + ", tenant: t, tier: x}\n  - {id: b, sha256: " + upper + ", tenant: t, tier: x}\n",
		"digest too long":   "keys:\n  - {id: a, sha256: " + digest + "0, tenant: t, tier: x}\n",
		"digest not hex":    "keys:\n  - {id: a, sha256: " + digest[:63] + "g, tenant: t, tier: x}\n",
		"digest as list":    "keys:\n  - {id: a, sha256: [" + digest + "], tenant: t, tier: x}\n",
		"digest as mapping": "keys:\n  - {id: a, sha256: {" + key + ": 1}, tenant: t, tier: x}\n",
		"key as expires":    "keys:\n  - {id: a, sha256: " + digest + ", tenant: t, tier: x, expires: " + key + "}\n",
		"key as field name": "keys:\n  - {id: a, " + key + ": " + digest + ", tenant: t, tier: x}\n",
		"broken yaml":       "keys:\n  - {id: a, sha256: " + key + ", tenant: [t, tier: x}\n",
	}
	for name, keys := range cases {
		_, err := Parse("auth.yaml", []byte("api_keys: {files: [keys.yaml]}\n"), files(map[string]string{"keys.yaml": keys}))
		if err == nil {
			t.Errorf("%s: Parse succeeded", name)
			continue
		}
		msg := strings.ToLower(err.Error())
		for _, secret := range []string{key, digest, digest[:40], key[:20]} {
			if strings.Contains(msg, strings.ToLower(secret)) {
				if name == "key as field name" && secret != digest && secret != digest[:40] {
					// A field name is shown when unknown; only the
					// digest must stay out.
					continue
				}
				t.Errorf("%s: the error shows a secret: %s", name, err)
			}
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	key := "fg_" + strings.Repeat("k", 43)
	ks := keySet(t, "keys:\n  - {id: a, sha256: "+Digest(key)+", tenant: t, tier: x}\n")
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		ks.Lookup(key, now)
		ks.Lookup("fg_other", now)
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per run", allocs)
	}
}

func TestKeySetKeys(t *testing.T) {
	cfg, err := Parse("auth.yaml", []byte("api_keys: {files: [keys.yaml]}\n"), func(string) ([]byte, error) {
		return []byte("keys:\n  - {id: b, sha256: " + Digest("kb") + ", tenant: t, tier: x}\n  - {id: a, sha256: " + Digest("ka") + ", tenant: t, tier: x}\n"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range cfg.APIKeys.Keys.Keys() {
		ids = append(ids, k.ID)
	}
	if strings.Join(ids, ",") != "a,b" {
		t.Errorf("Keys: %v, want a,b", ids)
	}
	if (*KeySet)(nil).Keys() != nil {
		t.Error("a nil KeySet has keys")
	}
}
