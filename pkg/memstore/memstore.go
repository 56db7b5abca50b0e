// Package memstore is the embedded counter backend: counters live in this
// process's memory, decided with quota.Evaluate.
//
// Counters are spread over shards by a seeded hash of their key, each shard a
// map and a dense slice of slots under one mutex. A batch locks every shard it
// touches, in ascending order and each once, so it is atomic (all-or-nothing
// across its hits) and two batches can never deadlock.
//
// Memory is bounded by Options.MaxKeys. Each shard holds at most
// MaxKeys/shards counters; to make room it evicts the first expired counter
// it finds near its sweep hand, or else the one among those that expires
// soonest (an approximation of least recently written that costs a fixed
// number of steps).
//
// Expired counters are reclaimed without a background goroutine, so a Store
// needs no Close and tests driven by a fake clock stay deterministic:
//
//   - lazily: an expired counter reads as a fresh one, which quota.Evaluate
//     guarantees behaves the same;
//   - by amortised sweeping: every Take advances the sweep hand of each shard
//     it locked by sweepPerTake slots, removing the expired ones; and about
//     one Take in idleSweepEvery also sweeps idleSweepSlots slots of a random
//     shard, so shards whose keys went quiet are emptied while any traffic
//     flows. An idle process keeps its (bounded) memory until traffic
//     resumes.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

var _ quota.Limiter = (*Store)(nil)

const (
	// DefaultMaxKeys is Options.MaxKeys when unset. A counter takes about
	// 130 bytes plus its key (measured), so the default bounds the store
	// near 200 MB with 64-byte keys.
	DefaultMaxKeys = 1_000_000
	// DefaultShards is Options.Shards when unset: enough partitions that
	// goroutines on many cores rarely wait for one another.
	DefaultShards = 64
	// maxShards bounds Options.Shards.
	maxShards = 1 << 16

	// smallBatch is the largest batch decided without heap allocation; the
	// service's requests rarely carry more descriptors.
	smallBatch = 8
	// evictScan is how many slots from the sweep hand a full shard inspects
	// for a counter to evict.
	evictScan = 16
	// sweepPerTake is how many slots each locked shard's sweep hand
	// advances per Take.
	sweepPerTake = 2
	// idleSweepEvery and idleSweepSlots pace the sweep of a random shard:
	// on average one slot per Take.
	idleSweepEvery = 32
	idleSweepSlots = 32
)

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// Now returns the current time. Default time.Now; tests inject a fake
	// clock.
	Now func() time.Time
	// MaxKeys bounds the number of counters held. Default DefaultMaxKeys.
	// The bound is split evenly over the shards, so a shard that receives
	// more than its share of keys starts evicting before the total reaches
	// MaxKeys.
	MaxKeys int
	// Shards is the number of independently locked partitions, rounded up
	// to a power of two, at most 65536. Default DefaultShards. It is
	// lowered when MaxKeys is smaller, so that every shard holds at least
	// one counter.
	Shards int
	// OnEvict, when set, is called with the number of live (not expired)
	// counters that one Take evicted because the store was full. The
	// counters lose their state early, which a metric should show.
	// Reclaiming expired counters is not counted. It is called without any
	// lock held, on the goroutine that called Take.
	OnEvict func(n int)
}

// Store is an in-memory quota backend. It is safe for concurrent use; the
// zero value is not usable, call New.
type Store struct {
	now      func() time.Time
	onEvict  func(int)
	seed     maphash.Seed
	shards   []shard
	mask     uint64
	perShard int
}

// shard is one lock's worth of counters. Slots are dense so that the sweep
// hand can walk them in order; index maps a key to its slot.
type shard struct {
	mu    sync.Mutex
	index map[string]int32
	slots []slot
	// hand is the next slot the sweep inspects.
	hand int
	// Keep neighbouring shards' mutexes off one cache line.
	_ [64]byte
}

// slot is one counter.
type slot struct {
	key   string
	state quota.State
	// expires is when the counter becomes equivalent to a fresh one (µs
	// since the epoch): now + the TTL quota.Evaluate gave when it was last
	// written.
	expires int64
}

// pending is a hit's next state, kept until the batch is known to commit.
type pending struct {
	state quota.State
	ttl   time.Duration
}

// New returns an empty Store configured by opts.
func New(opts Options) (*Store, error) {
	if opts.MaxKeys < 0 {
		return nil, fmt.Errorf("memstore: MaxKeys is %d, want 0 (default %d) or more", opts.MaxKeys, DefaultMaxKeys)
	}
	if opts.Shards < 0 || opts.Shards > maxShards {
		return nil, fmt.Errorf("memstore: Shards is %d, want 0 (default %d) to %d", opts.Shards, DefaultShards, maxShards)
	}
	maxKeys := opts.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	want := opts.Shards
	if want == 0 {
		want = DefaultShards
	}
	n := 1
	for n < want {
		n <<= 1
	}
	for n > maxKeys {
		n >>= 1
	}
	s := &Store{
		now:      opts.Now,
		onEvict:  opts.OnEvict,
		seed:     maphash.MakeSeed(),
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
		perShard: maxKeys / n,
	}
	if s.now == nil {
		s.now = time.Now
	}
	for i := range s.shards {
		s.shards[i].index = make(map[string]int32)
	}
	return s, nil
}

// ErrBatchShape is returned by Take when out and hits differ in length.
var ErrBatchShape = errors.New("decisions and hits differ in length")

// Take decides hits as one batch, all or nothing unless the hits' Counting
// says otherwise; see quota.Limiter.
// It fails only when ctx is already done or out is not as long as hits.
func (s *Store) Take(ctx context.Context, hits []quota.Hit, out []quota.Decision) error {
	if len(out) != len(hits) {
		return fmt.Errorf("memstore: take %d hits into %d decisions: %w", len(hits), len(out), ErrBatchShape)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: take: %w", err)
	}
	if len(hits) == 0 {
		return nil
	}

	// Fixed arrays keep a small batch's bookkeeping on the stack.
	var (
		shardBuf [smallBatch]uint32
		orderBuf [smallBatch]uint32
		pendBuf  [smallBatch]pending
	)
	shardOf, order, pend := shardBuf[:0], orderBuf[:0], pendBuf[:0]
	if len(hits) > smallBatch {
		shardOf = make([]uint32, 0, len(hits))
		order = make([]uint32, 0, len(hits))
		pend = make([]pending, 0, len(hits))
	}
	for i := range hits {
		si := s.shardIndex(hits[i].Key)
		shardOf = append(shardOf, si)
		order = insertSorted(order, si)
	}
	pend = pend[:len(hits)]

	for _, si := range order {
		s.shards[si].mu.Lock()
	}
	// Read the clock under the locks, so that the writes to one counter
	// carry non-decreasing times.
	now := quota.Micros(s.now())

	for i := range hits {
		h := &hits[i]
		st, seen := quota.State{}, false
		// A key already decided in this batch is seen as the latest earlier
		// hit on it that would be taken (quota.Chains) left it. A batch is
		// small, so a scan beats a map.
		for j := i - 1; j >= 0; j-- {
			if hits[j].Key == h.Key && quota.Chains(&hits[j], &out[j]) {
				st, seen = pend[j].state, true
				break
			}
		}
		if !seen {
			st = s.shards[shardOf[i]].load(h.Key, now)
		}
		d, next, ttl := quota.EvaluateHit(h, st, now)
		out[i] = d
		pend[i] = pending{state: next, ttl: ttl}
	}

	evicted := 0
	rejected, allFit := quota.Rejects(hits, out), quota.AllFit(out)
	// When some hit is not taken, a later hit on its key may have been
	// decided on a state that counted it: such hits are re-applied to the
	// state the taken ones leave (quota.Limiter: what is written is the
	// taken hits' effect, in order).
	exact := rejected || !allFit
	for i := range hits {
		// A check (N=0) changes nothing that a fresh read would not
		// recompute, so it writes nothing: check floods use no memory.
		if !quota.Taken(&hits[i], &out[i], rejected, allFit) {
			continue
		}
		if exact {
			s.retake(hits, out, pend, shardOf[i], i, now, rejected, allFit)
		}
		expires := now + pend[i].ttl.Microseconds()
		evicted += s.shards[shardOf[i]].store(hits[i].Key, pend[i].state, expires, now, s.perShard)
	}
	for _, si := range order {
		s.shards[si].sweep(now, sweepPerTake)
	}
	for k := len(order) - 1; k >= 0; k-- {
		s.shards[order[k]].mu.Unlock()
	}

	if rand.Uint32()%idleSweepEvery == 0 {
		sh := &s.shards[rand.Uint64()&s.mask]
		sh.mu.Lock()
		sh.sweep(now, idleSweepSlots)
		sh.mu.Unlock()
	}
	if evicted > 0 && s.onEvict != nil {
		s.onEvict(evicted)
	}
	return nil
}

// retake recomputes pend[i] for taken hit i from the state the earlier taken
// hits on its key leave (pend of the latest, already retaken, else the
// stored state), when an earlier hit on the key chained into its decision.
func (s *Store) retake(hits []quota.Hit, out []quota.Decision, pend []pending, shard uint32, i int, now int64, rejected, allFit bool) {
	h := &hits[i]
	prior, base, seen := false, quota.State{}, false
	for j := i - 1; j >= 0; j-- {
		if hits[j].Key != h.Key || !quota.Chains(&hits[j], &out[j]) {
			continue
		}
		prior = true
		if quota.Taken(&hits[j], &out[j], rejected, allFit) {
			base, seen = pend[j].state, true
			break
		}
	}
	if !prior {
		return
	}
	if !seen {
		base = s.shards[shard].load(h.Key, now)
	}
	_, next, ttl := quota.Evaluate(h.Limit, base, now, h.N)
	pend[i] = pending{state: next, ttl: ttl}
}

// Ping reports that the store can decide; memory is always there.
func (s *Store) Ping(context.Context) error { return nil }

// Len returns the number of counters held, expired or not (for tests and a
// gauge; it locks every shard in turn).
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.slots)
		sh.mu.Unlock()
	}
	return n
}

func (s *Store) shardIndex(key string) uint32 {
	if s.mask == 0 {
		return 0
	}
	return uint32(maphash.String(s.seed, key) & s.mask)
}

// insertSorted adds v to the ascending, duplicate-free list order.
func insertSorted(order []uint32, v uint32) []uint32 {
	i := len(order)
	for i > 0 && order[i-1] > v {
		i--
	}
	if i > 0 && order[i-1] == v {
		return order
	}
	order = append(order, 0)
	copy(order[i+1:], order[i:])
	order[i] = v
	return order
}

// load returns key's state, or the zero State when it is absent or expired.
func (sh *shard) load(key string, now int64) quota.State {
	i, ok := sh.index[key]
	if !ok || sh.slots[i].expires <= now {
		return quota.State{}
	}
	return sh.slots[i].state
}

// store writes key's state, making room first when the shard holds limit
// counters. It returns how many live counters it evicted.
func (sh *shard) store(key string, st quota.State, expires, now int64, limit int) int {
	if i, ok := sh.index[key]; ok {
		sh.slots[i].state, sh.slots[i].expires = st, expires
		return 0
	}
	evicted := 0
	if len(sh.slots) >= limit {
		evicted = sh.evictOne(now)
	}
	// Clone so that the store never pins a caller's larger buffer.
	key = strings.Clone(key)
	sh.index[key] = int32(len(sh.slots))
	sh.slots = append(sh.slots, slot{key: key, state: st, expires: expires})
	return evicted
}

// evictOne removes one counter: the first expired one within evictScan
// slots of the hand, else the one among them that expires soonest. It
// returns 1 when that counter was live.
func (sh *shard) evictOne(now int64) int {
	victim := -1
	for range min(evictScan, len(sh.slots)) {
		if sh.hand >= len(sh.slots) {
			sh.hand = 0
		}
		if sh.slots[sh.hand].expires <= now {
			sh.remove(sh.hand)
			return 0
		}
		if victim < 0 || sh.slots[sh.hand].expires < sh.slots[victim].expires {
			victim = sh.hand
		}
		sh.hand++
	}
	if victim < 0 {
		return 0
	}
	sh.remove(victim)
	return 1
}

// sweep inspects up to budget slots from the hand and removes the expired
// ones.
func (sh *shard) sweep(now int64, budget int) {
	for ; budget > 0 && len(sh.slots) > 0; budget-- {
		if sh.hand >= len(sh.slots) {
			sh.hand = 0
		}
		if sh.slots[sh.hand].expires <= now {
			// The last slot moves into the hand's place; inspect it next.
			sh.remove(sh.hand)
			continue
		}
		sh.hand++
	}
}

// remove deletes slot i, moving the last slot into its place.
func (sh *shard) remove(i int) {
	delete(sh.index, sh.slots[i].key)
	last := len(sh.slots) - 1
	if i != last {
		sh.slots[i] = sh.slots[last]
		sh.index[sh.slots[i].key] = int32(i)
	}
	sh.slots[last] = slot{} // drop the key for the collector
	sh.slots = sh.slots[:last]
}
