package jwtauth

import (
	"sync"
	"time"
)

// maxShards bounds the cache's lock striping.
const maxShards = 64

// tokenCache holds verified tokens by the SHA-256 of the token (never the
// token itself), each until the token's exp. It is bounded: a full shard
// drops an expired entry if the first few it looks at include one, else a
// random one (Go's map iteration starts at a random place), which is cheap
// and good enough for a cache whose misses cost one signature check.
type tokenCache struct {
	shards   []cacheShard
	mask     uint64
	perShard int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]cacheEntry
}

type cacheEntry struct {
	res *Result
	// expires is the token's exp in Unix nanoseconds.
	expires int64
	// keys is the key set the token was verified with: the entry is only
	// good while its issuer still has that set.
	keys *keySet
	src  *keySource
}

func newTokenCache(size int) *tokenCache {
	n := 1
	for n*2 <= maxShards && n*2 <= size {
		n *= 2
	}
	c := &tokenCache{shards: make([]cacheShard, n), mask: uint64(n - 1), perShard: size / n}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(h *[32]byte) *cacheShard {
	// The digest is uniform; its first byte picks the shard (maxShards <= 256).
	return &c.shards[uint64(h[0])&c.mask]
}

// get returns the live entry for h; an expired one is removed.
func (c *tokenCache) get(h *[32]byte, now time.Time) (cacheEntry, bool) {
	s := c.shard(h)
	s.mu.RLock()
	e, ok := s.m[*h]
	s.mu.RUnlock()
	if !ok {
		return cacheEntry{}, false
	}
	if now.UnixNano() >= e.expires {
		c.remove(h)
		return cacheEntry{}, false
	}
	return e, true
}

func (c *tokenCache) remove(h *[32]byte) {
	s := c.shard(h)
	s.mu.Lock()
	delete(s.m, *h)
	s.mu.Unlock()
}

// put stores e under h, evicting one entry when the shard is full.
func (c *tokenCache) put(h *[32]byte, e cacheEntry, now time.Time) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*h]; !ok && len(s.m) >= c.perShard {
		nowNano := now.UnixNano()
		var victim [32]byte
		looked := 0
		for k, old := range s.m {
			victim = k
			looked++
			if old.expires <= nowNano || looked >= 8 {
				break
			}
		}
		delete(s.m, victim)
	}
	s.m[*h] = e
}

// len is the number of entries held, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
