// Package nearcache remembers, in each sidecar, which counters are over their
// limit and until when, so that an abusive client that keeps hitting a
// counter it has exhausted costs no backend round trip.
//
// It wraps a Limiter. Its one correctness rule: it only ever rejects what the
// backend would reject. A cached entry says "a hit of size N on this counter
// under this limit is rejected until T". Until T, the backend can only answer
// the same for hits of size N or more: counts only grow inside a window (and
// tokens only refill at the rate that T already accounts for), so a hit of
// at least N cannot fit before T. Smaller hits, other limits (after a config
// reload), shadow-mode hits and quota-mode hits go to the backend: a quota
// hit over its limit rejects its batch only when every quota hit of the
// batch is over, so its being over proves nothing about the next batch.
//
// Hits counted whatever they decide (quota.Always, quota.UnlessOtherOver:
// overdraw rules, the reference's counting) reach the backend, which must
// take them, unless their limit is a fixed window: a fixed window's count
// starts again at 0 when its window ends, whatever it reached, so what a
// hit over it would have added is never seen, and the cache answers it as
// envoyproxy/ratelimit's local cache does (without incrementing). On other
// algorithms the cache never answers them. Checks (N = 0) are answered
// and remembered: a check is refused only by a counter in debt (over its
// limit), and an entry for N = 0 says every hit on the counter is refused
// until the debt is paid. A debt only grows before then, so the cache never
// admits, nor refuses for longer than the backend would; and since a charge
// that reaches the backend may have made it grow, it drops its counter's
// entry, so that the next check learns the new wait from the backend
// (Retry-After tells the whole debt, not what was owed before the charge).
package nearcache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

// Defaults of Options.
const (
	DefaultMaxEntries = 100_000
	DefaultMaxBytes   = 64 << 20
	shards            = 32
)

// Options configure a Cache. The zero value of every field is its
// documented default; a negative number is an error.
type Options struct {
	// MaxEntries bounds the entries held; default DefaultMaxEntries.
	MaxEntries int
	// MaxBytes bounds the bytes of the keys held; default DefaultMaxBytes.
	MaxBytes int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnHit is called with the number of hits answered from the cache.
	OnHit func(n int)
}

// Cache is a Limiter that answers known over-limit hits itself and passes
// everything else to the wrapped Limiter.
type Cache struct {
	inner     quota.Limiter
	now       func() time.Time
	onHit     func(int)
	seed      maphash.Seed
	maxEntry  int // per shard
	maxBytes  int // per shard
	shards    [shards]shard
	checkPool sync.Pool

	hits, misses atomic.Uint64 // lookups answered, and not, from the cache
}

var _ quota.Limiter = (*Cache)(nil)

type shard struct {
	mu      sync.Mutex
	entries map[string]entry
	bytes   int
	_       [40]byte // keep neighbouring shards' locks off one cache line
}

// entry: hits of at least n under limit are rejected until the time until.
type entry struct {
	until int64 // unix nanoseconds
	n     uint64
	limit quota.Limit
}

// New wraps inner in a cache configured by opts.
func New(inner quota.Limiter, opts Options) (*Cache, error) {
	switch {
	case inner == nil:
		return nil, errors.New("nearcache: the inner Limiter is nil")
	case opts.MaxEntries < 0:
		return nil, fmt.Errorf("nearcache: MaxEntries is %d, want 0 (default %d) or more", opts.MaxEntries, DefaultMaxEntries)
	case opts.MaxBytes < 0:
		return nil, fmt.Errorf("nearcache: MaxBytes is %d, want 0 (default %d) or more", opts.MaxBytes, DefaultMaxBytes)
	}
	c := &Cache{inner: inner, now: opts.Now, onHit: opts.OnHit, seed: maphash.MakeSeed()}
	if c.now == nil {
		c.now = time.Now
	}
	maxEntries, maxBytes := opts.MaxEntries, opts.MaxBytes
	if maxEntries == 0 {
		maxEntries = DefaultMaxEntries
	}
	if maxBytes == 0 {
		maxBytes = DefaultMaxBytes
	}
	c.maxEntry = max(1, maxEntries/shards)
	c.maxBytes = max(1, maxBytes/shards)
	for i := range c.shards {
		c.shards[i].entries = make(map[string]entry)
	}
	c.checkPool.New = func() any { return new(checkScratch) }
	return c, nil
}

// Len is the number of entries held, expired ones included until dropped.
func (c *Cache) Len() int {
	n, _ := c.size()
	return n
}

// Bytes is the bytes of the keys held, the quantity MaxBytes bounds.
func (c *Cache) Bytes() int {
	_, b := c.size()
	return b
}

// size sums the entries and key bytes of every shard.
func (c *Cache) size() (entries, bytes int) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		entries += len(sh.entries)
		bytes += sh.bytes
		sh.mu.Unlock()
	}
	return entries, bytes
}

// Ping asks the wrapped Limiter.
func (c *Cache) Ping(ctx context.Context) error {
	if p, ok := c.inner.(quota.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *Cache) shard(key string) *shard {
	return &c.shards[maphash.String(c.seed, key)%shards]
}

// Lookups reports how many hits the cache answered and how many it looked
// up without answering (envoyproxy/ratelimit's localcache hitCount and
// missCount). Hits it never answers are not looked up.
func (c *Cache) Lookups() (hits, misses uint64) {
	return c.hits.Load(), c.misses.Load()
}

// passes reports whether h is never answered nor remembered by the cache:
// a hit in shadow or quota mode (which rejects no batch on its own), or one
// that the backend takes whatever it decides, unless on a fixed window
// (whose count past its limit is never seen: see the package comment).
func passes(h *quota.Hit) bool {
	return h.Shadow || h.Quota ||
		(h.N > 0 && h.Counting != quota.AllOrNothing && h.Limit.Algorithm != quota.FixedWindow)
}

// lookup reports whether hit h is known to be rejected at now, and for how
// much longer.
func (c *Cache) lookup(h *quota.Hit, now int64) (time.Duration, bool) {
	if passes(h) {
		return 0, false
	}
	sh := c.shard(h.Key)
	sh.mu.Lock()
	e, ok := sh.entries[h.Key]
	if ok && now >= e.until {
		delete(sh.entries, h.Key)
		sh.bytes -= len(h.Key)
		ok = false
	}
	sh.mu.Unlock()
	if !ok || h.N < e.n || e.limit != h.Limit {
		c.misses.Add(1)
		return 0, false
	}
	c.hits.Add(1)
	return time.Duration(e.until - now), true
}

// charge reports whether h is a charge the backend takes whatever it
// decides, which may add to a debt the cache remembers. On a fixed window
// it cannot: whatever the count, the wait is until the window ends, so
// such a hit's rejection is remembered like any other.
func charge(h *quota.Hit) bool {
	return h.N > 0 && h.Counting != quota.AllOrNothing && h.Limit.Algorithm != quota.FixedWindow
}

// forget drops the entry of h's counter, if any: h was taken by the
// backend and may have made its debt (and so the wait) longer.
func (c *Cache) forget(h *quota.Hit) {
	sh := c.shard(h.Key)
	sh.mu.Lock()
	if _, ok := sh.entries[h.Key]; ok {
		delete(sh.entries, h.Key)
		sh.bytes -= len(h.Key)
	}
	sh.mu.Unlock()
}

// remember records a backend's rejection of h, answered at now.
func (c *Cache) remember(h *quota.Hit, d *quota.Decision, now int64) {
	if passes(h) || d.Fits || d.ResetAfter <= 0 {
		return
	}
	e := entry{until: now + int64(d.ResetAfter), n: h.N, limit: h.Limit}
	sh := c.shard(h.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.entries[h.Key]; ok {
		if old.limit == e.limit && old.n < e.n && old.until > now {
			// Keep the entry that covers smaller hits.
			return
		}
		sh.entries[h.Key] = e
		return
	}
	for len(sh.entries) >= c.maxEntry || sh.bytes+len(h.Key) > c.maxBytes {
		if !sh.dropOne(now) {
			return
		}
	}
	sh.entries[h.Key] = e
	sh.bytes += len(h.Key)
}

// dropOne removes an expired entry if the first few looked at include one,
// else any entry (map order is random). It reports whether one was removed.
func (sh *shard) dropOne(now int64) bool {
	looked := 0
	var victim string
	found := false
	for k, e := range sh.entries {
		if !found || e.until <= now {
			victim, found = k, true
		}
		looked++
		if e.until <= now || looked >= 8 {
			break
		}
	}
	if found {
		delete(sh.entries, victim)
		sh.bytes -= len(victim)
	}
	return found
}

// checkScratch holds the batch sent for the hits the cache cannot answer
// when the request is rejected anyway.
type checkScratch struct {
	hits []quota.Hit
	decs []quota.Decision
	idx  []int
	key  []byte
}

// rejectSuffix ends the companion key of a rejected batch. Its limit is 0,
// so it never fits and is never written; it is only read.
const rejectSuffix = "\xff\xfffloodgate-nearcache-reject"

// Take answers from the cache when any hit in neither shadow nor quota
// mode is known to be over its limit: the request is then rejected and
// nothing may be taken but what is counted whatever (quota.Always, or
// quota.UnlessOtherOver hits that do not fit), so the backend is asked
// only for the other hits' answers, in a batch made sure to be rejected
// and to have a hit over, or not at all when the cache knows every hit.
// Otherwise it passes the batch on and remembers the rejections in the
// answer.
func (c *Cache) Take(ctx context.Context, hits []quota.Hit, out []quota.Decision) error {
	now := c.now().UnixNano()
	sc := c.checkPool.Get().(*checkScratch)
	defer c.checkPool.Put(sc)
	sc.hits, sc.idx = sc.hits[:0], sc.idx[:0]
	for i := range hits {
		if wait, ok := c.lookup(&hits[i], now); ok {
			out[i] = quota.Decision{ResetAfter: wait, FromCache: true}
			continue
		}
		sc.idx = append(sc.idx, i)
	}
	cached := len(hits) - len(sc.idx)
	if cached == 0 {
		if err := c.inner.Take(ctx, hits, out); err != nil {
			return err
		}
		for i := range hits {
			if charge(&hits[i]) {
				c.forget(&hits[i])
			} else if !repeated(hits, i) {
				c.remember(&hits[i], &out[i], now)
			}
		}
		return nil
	}
	if c.onHit != nil {
		c.onHit(cached)
	}
	if len(sc.idx) == 0 {
		return nil
	}
	// The request is rejected, so nothing may be taken, but the other hits'
	// answers still come from the backend: sent with a companion hit that
	// can never fit, the batch is rejected there too (taking nothing), and
	// each answer is exactly what the backend would give in this batch,
	// repeated keys included.
	for _, i := range sc.idx {
		sc.hits = append(sc.hits, hits[i])
	}
	first := &hits[sc.idx[0]]
	sc.key = append(append(sc.key[:0], first.Key[:first.TagLen]...), rejectSuffix...)
	sc.hits = append(sc.hits, quota.Hit{
		Key:    string(sc.key),
		TagLen: first.TagLen, // same node as the first hit, where it can be
		Limit:  quota.Limit{Algorithm: quota.FixedWindow, Unit: time.Second},
		N:      1,
	})
	if cap(sc.decs) < len(sc.hits) {
		sc.decs = make([]quota.Decision, len(sc.hits))
	}
	sc.decs = sc.decs[:len(sc.hits)]
	if err := c.inner.Take(ctx, sc.hits, sc.decs); err != nil {
		return err
	}
	for j, i := range sc.idx {
		out[i] = sc.decs[j]
		if charge(&hits[i]) {
			c.forget(&hits[i])
		}
	}
	return nil
}

// repeated reports whether hits[i]'s key came earlier in the batch. Such a
// hit was decided as if the earlier one had been taken, which a rejected
// batch did not do, so its answer says nothing about the stored counter.
func repeated(hits []quota.Hit, i int) bool {
	for j := 0; j < i; j++ {
		if hits[j].Key == hits[i].Key {
			return true
		}
	}
	return false
}
