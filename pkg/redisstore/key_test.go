package redisstore

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/redistest"
)

// adversarialKeys are quota.Hit keys that naive encodings (joining with a
// separator, truncating, raw hash tags) would map onto each other.
func adversarialKeys() []string {
	long := strings.Repeat("v", maxRawKey)
	return []string{
		"", "\x00", "\x00\x00", "=", "#", "a", "a\x00", "a\x00b", "a:b", "a:b:", "a|b",
		"{a}", "{a}b", "a}b{", "}{", "{", "}", "{}", "=a", "#a", "\xff\xfe", "ä",
		long, long + "v", long[:maxRawKey-1], long + "\x00", "v" + long,
		// A raw key that looks like a hashed body.
		"#" + strings.Repeat("A", 43),
	}
}

func TestKeysNeverCollide(t *testing.T) {
	t.Parallel()
	b := keyBuilder{prefix: DefaultKeyPrefix}
	type input struct {
		key    string
		tagEnd int
	}
	seen := map[string]input{}
	add := func(in input) {
		t.Helper()
		k, _ := b.build(in.key, in.tagEnd)
		if prev, ok := seen[k]; ok && prev.key != in.key {
			t.Fatalf("keys %q and %q both map to %q", prev.key, in.key, k)
		}
		seen[k] = in
		if max := len(b.prefix) + tagLen + 1 + maxRawKey; len(k) > max {
			t.Fatalf("key %q: %d bytes, want at most %d", in.key, len(k), max)
		}
		// The hash tag must be the braces the builder put there.
		open := strings.IndexByte(k, '{')
		closing := strings.IndexByte(k[open:], '}')
		if open != len(b.prefix) || closing != tagLen-1 {
			t.Fatalf("key %q: hash tag at %d..%d, want %d..%d", k, open, open+closing, len(b.prefix), len(b.prefix)+tagLen-1)
		}
	}
	for _, k := range adversarialKeys() {
		for _, tl := range []int{0, 1, len(k), -1, len(k) + 5} {
			add(input{k, tl})
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := "ab{}:=#\x00"
	for i := 0; i < 20000; i++ {
		n := rng.IntN(2 * maxRawKey)
		if i%2 == 0 {
			n = rng.IntN(6)
		}
		var sb strings.Builder
		for j := 0; j < n; j++ {
			sb.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		add(input{sb.String(), rng.IntN(n + 1)})
	}
}

func TestTagGroupsByPrefix(t *testing.T) {
	t.Parallel()
	b := keyBuilder{prefix: "p:"}
	k1, s1 := b.build("domain\x00tenant\x00acme\x00user\x00u1", 18)
	k2, s2 := b.build("domain\x00tenant\x00acme\x00path\x00/x", 18)
	k3, _ := b.build("domain\x00tenant\x00other", 19)
	if s1 != s2 || k1[:len("p:")+tagLen] != k2[:len("p:")+tagLen] {
		t.Errorf("keys sharing a tag got different tags: %q %q", k1, k2)
	}
	if k1[:len("p:")+tagLen] == k3[:len("p:")+tagLen] {
		t.Errorf("keys with different tags share one: %q %q", k1, k3)
	}
}

func TestCRC16(t *testing.T) {
	t.Parallel()
	// The check value of CRC-16/XMODEM, and Redis's own examples.
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
}

// TestSlotsMatchRedis asks a real Redis for the slot of keys and wants the
// one the store computed.
func TestSlotsMatchRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.SharedCluster(t).Nodes[0]
	b := keyBuilder{prefix: DefaultKeyPrefix}
	for i, k := range append(adversarialKeys(), "x", "domain\x00a", strconv.Itoa(12345)) {
		key, slot := b.build(k, len(k)/2)
		reply, err := srv.Do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		if reply != fmt.Sprint(slot) {
			t.Errorf("key %d %q: slot %d, Redis says %s", i, key, slot, reply)
		}
	}
}
