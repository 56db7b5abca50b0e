package statuspage

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"sync"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Tracker bounds.
const (
	// DefaultCapacity is how many keys a Tracker follows when
	// TrackerOptions.Capacity is 0.
	DefaultCapacity = 64
	// MaxCapacity bounds TrackerOptions.Capacity: every over-limit
	// decision scans the whole table.
	MaxCapacity = 1024
	// maxKeys is how many descriptor keys a tracked entry keeps for
	// display; a descriptor with more shows the first ones and a count.
	maxKeys = 8
	// maxHashed bounds the bytes of a descriptor that are hashed: the
	// engine's own bounds (4 KiB per key or value, 32 entries) make a
	// descriptor at most a few hundred KiB, which must not be copied per
	// decision; what is past this is left out of the key's identity.
	maxHashed = 16 << 10
	// HashChars is the length of the hash a key's values are shown as.
	HashChars = 12
)

// Tracker finds the descriptors most often answered over their limit, in
// bounded memory, with the space-saving algorithm (Metwally, Agrawal and
// El Abbadi, 2005): it follows at most Capacity keys; an untracked key
// takes the place of the one with the smallest count and inherits that
// count, recorded as the new key's error. So a reported count is never
// below the true one and exceeds it by at most its error, and every key
// seen more than N/Capacity times (N over-limit answers in all) is tracked.
//
// A key is the request's domain and the descriptor's entries. It is
// identified by an HMAC-SHA-256 under a key drawn at random when the
// Tracker is made; only the domain, the descriptor's keys and that hash
// are kept, never a value, so that no credential, address or other personal
// value can be read from the page (a plain hash of an IP address or a
// short id could be reversed by trying every value).
//
// It is an engine.Observer; its methods are safe for concurrent use and
// allocate nothing.
type Tracker struct {
	ipad, opad [sha256.BlockSize]byte

	mu    sync.Mutex
	slots []slot // len ≤ cap(slots) = capacity
	total uint64 // over-limit answers seen
}

// slot is one tracked key. Its strings are the config's or the request's
// (copied headers, no allocation): domain and descriptor keys name what is
// limited, they are not values.
type slot struct {
	id     [16]byte // the HMAC's first bytes
	count  uint64
	err    uint64
	domain string
	rule   string // the limit's ID
	shadow bool
	keys   [maxKeys]string
	nkeys  int // entries of the descriptor (may exceed maxKeys)
}

// TrackerOptions configure a Tracker; the zero value gives the defaults.
type TrackerOptions struct {
	// Capacity is the number of keys followed; 0 means DefaultCapacity.
	// At most MaxCapacity.
	Capacity int
	// Key is the HMAC key; nil draws one at random (tests set it so that
	// hashes are known).
	Key []byte
}

// NewTracker returns an empty Tracker.
func NewTracker(o TrackerOptions) *Tracker {
	n := o.Capacity
	if n <= 0 {
		n = DefaultCapacity
	}
	n = min(n, MaxCapacity)
	key := o.Key
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key) // never fails (crypto/rand's documented contract)
	}
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	t := &Tracker{slots: make([]slot, 0, n)}
	copy(t.ipad[:], key)
	copy(t.opad[:], key)
	for i := range t.ipad {
		t.ipad[i] ^= 0x36
		t.opad[i] ^= 0x5c
	}
	return t
}

// Capacity is the number of keys the Tracker follows at most.
func (t *Tracker) Capacity() int { return cap(t.slots) }

var _ engine.Observer = (*Tracker)(nil)

// Prepare keeps no state per rule.
func (t *Tracker) Prepare(string, *descriptors.Rule) any { return nil }

// Decided counts d when the backend answered it over its limit (shadow
// mode included: the page says which). Everything else returns at once.
func (t *Tracker) Decided(domain string, d *engine.Descriptor, l *engine.Limit, hit *quota.Hit, dec *quota.Decision) {
	if dec == nil || dec.Fits {
		return
	}
	id := t.digest(domain, d.Entries)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	minAt := -1
	for i := range t.slots {
		s := &t.slots[i]
		if s.id == id {
			s.count++
			s.rule, s.shadow = l.ID, l.Shadow
			return
		}
		if minAt < 0 || s.count < t.slots[minAt].count {
			minAt = i
		}
	}
	var s *slot
	if len(t.slots) < cap(t.slots) {
		t.slots = t.slots[:len(t.slots)+1]
		s = &t.slots[len(t.slots)-1]
		*s = slot{count: 1}
	} else {
		s = &t.slots[minAt]
		*s = slot{count: s.count + 1, err: s.count}
	}
	s.id, s.domain, s.rule, s.shadow, s.nkeys = id, domain, l.ID, l.Shadow, len(d.Entries)
	for i := range min(len(d.Entries), maxKeys) {
		s.keys[i] = d.Entries[i].Key
	}
}

// UnknownDomain is not tracked.
func (t *Tracker) UnknownDomain(string, int) {}

// BackendFailed is not tracked.
func (t *Tracker) BackendFailed() {}

// ShadowAdmitted is not tracked.
func (t *Tracker) ShadowAdmitted() {}

// digest is HMAC-SHA-256(key, domain, entries) with every string length
// prefixed, computed in a buffer on the stack (it grows to the heap only
// for a descriptor longer than it) so that nothing is allocated and no lock
// is held; the first 16 bytes identify the key, the first 6 are shown.
func (t *Tracker) digest(domain string, entries []engine.Entry) [16]byte {
	var stack [1024]byte
	b := append(stack[:0], t.ipad[:]...)
	b = appendString(b, domain)
	for i := range entries {
		if len(b) > sha256.BlockSize+maxHashed {
			break
		}
		b = appendString(b, entries[i].Key)
		b = appendString(b, entries[i].Value)
	}
	if len(b) > sha256.BlockSize+maxHashed {
		b = b[:sha256.BlockSize+maxHashed]
	}
	inner := sha256.Sum256(b)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], t.opad[:])
	copy(outer[sha256.BlockSize:], inner[:])
	sum := sha256.Sum256(outer[:])
	var id [16]byte
	copy(id[:], sum[:])
	return id
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// TopKey is one tracked key, as the page shows it.
type TopKey struct {
	Domain string `json:"domain"`
	// Rule is the ID of the limit it was last over (rate_limit.name, else
	// the rule's stat name).
	Rule string `json:"rule"`
	// Shadow is set when that limit is in shadow mode (answered over, not
	// rejected).
	Shadow bool `json:"shadow,omitempty"`
	// Keys are the descriptor's keys in order; MoreKeys counts those past
	// the ones kept.
	Keys     []string `json:"keys"`
	MoreKeys int      `json:"more_keys,omitempty"`
	// Hash is the first HashChars hex digits of the key's HMAC: the
	// same descriptor always shows the same hash in this process.
	Hash string `json:"hash"`
	// OverLimit is the count of over-limit answers; the true count is
	// between OverLimit-MaxError and OverLimit.
	OverLimit uint64 `json:"over_limit"`
	MaxError  uint64 `json:"max_error"`
}

// Top returns the n keys with the highest counts, highest first (ties by
// hash), and the number of over-limit answers seen in all.
func (t *Tracker) Top(n int) ([]TopKey, uint64) {
	t.mu.Lock()
	slots := slices.Clone(t.slots)
	total := t.total
	t.mu.Unlock()
	slices.SortFunc(slots, func(a, b slot) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return slices.Compare(a.id[:], b.id[:])
	})
	if n >= 0 && len(slots) > n {
		slots = slots[:n]
	}
	out := make([]TopKey, 0, len(slots))
	for _, s := range slots {
		k := TopKey{
			Domain: s.domain, Rule: s.rule, Shadow: s.shadow,
			Keys:      slices.Clone(s.keys[:min(s.nkeys, maxKeys)]),
			MoreKeys:  max(0, s.nkeys-maxKeys),
			Hash:      hex.EncodeToString(s.id[:HashChars/2]),
			OverLimit: s.count, MaxError: s.err,
		}
		out = append(out, k)
	}
	return out, total
}

// Hash is the hash Top shows for a descriptor of domain with entries, for
// tests and for an operator who holds the Tracker's key.
func (t *Tracker) Hash(domain string, entries []engine.Entry) string {
	id := t.digest(domain, entries)
	return hex.EncodeToString(id[:HashChars/2])
}
