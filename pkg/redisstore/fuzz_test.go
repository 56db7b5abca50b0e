package redisstore

import (
	"strings"
	"testing"
)

// FuzzKeyBuilder checks the counter key encoding on any two hits' keys:
// distinct keys never share a Redis key (whatever their tag lengths) and
// one key with one tag always gets the same, the
// key keeps the hash tag the builder put there (Redis Cluster hashes the
// first {…}), keys with one tag prefix share a slot, the slot is the CRC16
// of the tag, and the length stays bounded.
func FuzzKeyBuilder(f *testing.F) {
	long := strings.Repeat("v", maxRawKey)
	for _, k := range adversarialKeys() {
		f.Add(k, len(k)/2, k+"x", len(k)/2)
	}
	f.Add("domain\x00tenant\x00acme\x00user\x00u1", 18, "domain\x00tenant\x00acme\x00path\x00/x", 18)
	f.Add(long, 3, "#"+strings.Repeat("A", 43), 1)
	f.Add("{a}", -1, "{a}", 99)
	b := keyBuilder{prefix: DefaultKeyPrefix}
	f.Fuzz(func(t *testing.T, k1 string, tag1 int, k2 string, tag2 int) {
		r1, s1 := b.build(k1, tag1)
		r2, s2 := b.build(k2, tag2)
		// Distinct keys never share a Redis key; one key with one tag
		// (the engine derives the tag from the key) always gives the same.
		end := func(k string, n int) int {
			if n < 0 || n > len(k) {
				return len(k)
			}
			return n
		}
		if k1 != k2 && r1 == r2 || k1 == k2 && end(k1, tag1) == end(k2, tag2) && r1 != r2 {
			t.Fatalf("keys %q (tag %d) and %q (tag %d) map to %q and %q", k1, tag1, k2, tag2, r1, r2)
		}
		for _, r := range []string{r1, r2} {
			if max := len(b.prefix) + tagLen + 1 + maxRawKey; len(r) > max {
				t.Fatalf("key %q: %d bytes, want at most %d", r, len(r), max)
			}
			if !strings.HasPrefix(r, b.prefix+"{") || strings.IndexByte(r, '{') != len(b.prefix) ||
				strings.IndexByte(r, '}') != len(b.prefix)+tagLen-1 {
				t.Fatalf("key %q: the hash tag is not the builder's", r)
			}
		}
		tag := func(r string) string { return r[len(b.prefix)+1 : len(b.prefix)+tagLen-1] }
		if s1 != crc16([]byte(tag(r1)))%16384 {
			t.Fatalf("key %q: slot %d, not the tag's", r1, s1)
		}
		if e1, e2 := end(k1, tag1), end(k2, tag2); k1[:e1] == k2[:e2] && (tag(r1) != tag(r2) || s1 != s2) {
			t.Fatalf("keys %q and %q with tag %q: tags %q and %q, slots %d and %d", k1, k2, k1[:e1], tag(r1), tag(r2), s1, s2)
		}
	})
}
