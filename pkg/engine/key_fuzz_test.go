package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

// fuzzEntries reads entries from KEY=VALUE lines; a value ending in "*"
// is also taken as the shared (share_threshold) pattern of its level.
func fuzzEntries(text string) ([]Entry, []string) {
	var es []Entry
	var shared []string
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(line, "=")
		es = append(es, Entry{Key: k, Value: v})
		if strings.HasSuffix(v, "*") {
			shared = append(shared, v[:len(v)-1]+"*")
		} else {
			shared = append(shared, "")
		}
	}
	return es, shared
}

// FuzzAppendKey checks the counter key encoding on any two descriptors:
// their keys are equal exactly when the domain, every entry's key and
// counted value (the shared pattern where one is set), the algorithm and
// the unit are, whatever bytes they hold; and the tag, what clustered
// backends place the key by, is the encoding of the domain and first entry
// alone, so descriptors that share them share it.
func FuzzAppendKey(f *testing.F) {
	f.Add("api", "a=b", uint8(0), int64(60), "api", "a=b\nc=d", uint8(0), int64(60))
	f.Add("a", "b=c", uint8(1), int64(1), "ab", "=c", uint8(1), int64(1))
	f.Add("api", "path=/x*", uint8(2), int64(3600), "api", "path=/y*", uint8(2), int64(3600))
	f.Add("api", "k=\x01\x00", uint8(0), int64(1), "api", "k=\x01\n\x00=", uint8(0), int64(1))
	f.Add("", "=", uint8(0), int64(0), "", "", uint8(0), int64(0))
	f.Fuzz(func(t *testing.T, d1, e1 string, a1 uint8, u1 int64, d2, e2 string, a2 uint8, u2 int64) {
		if u1 < 0 || u2 < 0 || u1 > 1<<32 || u2 > 1<<32 {
			return // units are whole seconds, a year at most in configs
		}
		es1, sh1 := fuzzEntries(e1)
		es2, sh2 := fuzzEntries(e2)
		l1 := quota.Limit{Algorithm: quota.Algorithm(a1 % 3), Unit: time.Duration(u1) * time.Second}
		l2 := quota.Limit{Algorithm: quota.Algorithm(a2 % 3), Unit: time.Duration(u2) * time.Second}
		k1, tag1 := appendKey(nil, d1, es1, sh1, l1)
		k2, tag2 := appendKey(nil, d2, es2, sh2, l2)
		counted := func(es []Entry, sh []string) []string {
			var out []string
			for i, e := range es {
				v := e.Value
				if sh[i] != "" {
					v = sh[i]
				}
				out = append(out, e.Key, v)
			}
			return out
		}
		c1, c2 := counted(es1, sh1), counted(es2, sh2)
		same := d1 == d2 && l1 == l2 && len(c1) == len(c2)
		for i := 0; same && i < len(c1); i++ {
			same = c1[i] == c2[i]
		}
		if same != (string(k1) == string(k2)) {
			t.Fatalf("descriptors %q/%q %v and %q/%q %v: same %v, keys %q and %q", d1, c1, l1, d2, c2, l2, same, k1, k2)
		}
		if tag1 <= 0 || tag1 > len(k1) || tag2 <= 0 || tag2 > len(k2) {
			t.Fatalf("tags %d of %q and %d of %q", tag1, k1, tag2, k2)
		}
		if d1 == d2 && c1[0] == c2[0] && c1[1] == c2[1] && string(k1[:tag1]) != string(k2[:tag2]) {
			t.Fatalf("descriptors sharing their domain and first entry got tags %q and %q", k1[:tag1], k2[:tag2])
		}
		if t1, _ := appendKey(nil, d1, es1[:1], sh1[:1], quota.Limit{}); string(t1[:tag1]) != string(k1[:tag1]) {
			t.Fatalf("the tag %q is not the domain and first entry's %q", k1[:tag1], t1)
		}
		// Appending to a buffer writes the same key after it.
		if k, _ := appendKey([]byte("pre"), d1, es1, sh1, l1); string(k) != "pre"+string(k1) {
			t.Fatalf("appendKey to a buffer: %q, want %q", k, "pre"+string(k1))
		}
	})
}
