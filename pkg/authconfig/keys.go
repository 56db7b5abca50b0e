package authconfig

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Lookup returns the key whose digest is the SHA-256 of key, when there is
// one and it has not expired at now. The map is indexed by digest (so the
// secret itself is never compared), and the digest found is compared again
// in constant time. The Key returned is shared and must not be modified.
// Lookup on a nil KeySet finds nothing.
func (s *KeySet) Lookup(key string, now time.Time) (*Key, bool) {
	if s == nil || len(s.byDigest) == 0 {
		return nil, false
	}
	// A stack buffer for keys of usual length, so that a lookup does not
	// allocate (a longer one is copied to the heap).
	var buf [128]byte
	d := sha256.Sum256(append(buf[:0], key...))
	k, ok := s.byDigest[d]
	if !ok || subtle.ConstantTimeCompare(k.digest[:], d[:]) != 1 {
		return nil, false
	}
	if k.Expired(now) {
		return nil, false
	}
	return k, true
}

// Len is the number of keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byDigest)
}

// Keys returns the keys sorted by ID, for descriptions (/debug/config):
// an entry holds no secret, its digest is not exported. The Keys are
// shared and must not be modified.
func (s *KeySet) Keys() []*Key {
	if s == nil {
		return nil
	}
	out := make([]*Key, 0, len(s.byDigest))
	for _, k := range s.byDigest {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *Key) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Expired says whether the key is past its expires at now.
func (k *Key) Expired(now time.Time) bool {
	return !k.Expires.IsZero() && now.After(k.Expires)
}

// KeyPrefix starts every key that GenerateKey makes, so that a leaked key
// is recognisable (secret scanners, logs).
const KeyPrefix = "fg_"

// keyBytes is the random bytes in a generated key.
const keyBytes = 32

// GenerateKey returns a new API key: KeyPrefix and 32 bytes from random,
// base64url without padding.
func GenerateKey(random io.Reader) (string, error) {
	b := make([]byte, keyBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Digest returns the hex SHA-256 of a key, as a keys file's sha256 holds it.
func Digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}
