package memstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/quota"
)

func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	return s
}

func TestScenarios(t *testing.T) {
	t.Parallel()
	// One shard puts every key of a batch behind one lock; the default
	// spreads them.
	for _, shards := range []int{1, 0} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			t.Parallel()
			backendtest.RunScenarios(t, func(t *testing.T, clock *backendtest.Clock) quota.Limiter {
				return newStore(t, Options{Now: clock.Now, Shards: shards})
			})
		})
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{2, 0} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			t.Parallel()
			backendtest.RunConcurrent(t, func(t *testing.T, clock *backendtest.Clock) (a, b quota.Limiter) {
				s := newStore(t, Options{Now: clock.Now, Shards: shards})
				return s, s
			})
		})
	}
}

// TestConcurrentCounting races hits counted whatever they decide and
// unless another is over: exact fits, exact debts.
func TestConcurrentCounting(t *testing.T) {
	t.Parallel()
	backendtest.RunConcurrentCounting(t, func(t *testing.T, clock *backendtest.Clock) (a, b quota.Limiter) {
		s := newStore(t, Options{Now: clock.Now, Shards: 2})
		return s, s
	})
}

func take(t *testing.T, s *Store, hits ...quota.Hit) []quota.Decision {
	t.Helper()
	out := make([]quota.Decision, len(hits))
	if err := s.Take(context.Background(), hits, out); err != nil {
		t.Fatalf("Take: %v", err)
	}
	return out
}

var (
	perMinute = quota.Limit{Algorithm: quota.FixedWindow, Requests: 1, Unit: time.Minute}
	perHour   = quota.Limit{Algorithm: quota.FixedWindow, Requests: 10, Unit: time.Hour}
)

func TestNewOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts         Options
		wantErr      bool
		wantShards   int
		wantPerShard int
	}{
		{opts: Options{}, wantShards: DefaultShards, wantPerShard: DefaultMaxKeys / DefaultShards},
		{opts: Options{Shards: 5, MaxKeys: 100}, wantShards: 8, wantPerShard: 12},
		{opts: Options{Shards: 64, MaxKeys: 10}, wantShards: 8, wantPerShard: 1},
		{opts: Options{MaxKeys: 1}, wantShards: 1, wantPerShard: 1},
		{opts: Options{MaxKeys: -1}, wantErr: true},
		{opts: Options{Shards: -1}, wantErr: true},
		{opts: Options{Shards: maxShards + 1}, wantErr: true},
	}
	for _, tt := range tests {
		s, err := New(tt.opts)
		if (err != nil) != tt.wantErr {
			t.Errorf("New(%+v): err = %v, want error: %v", tt.opts, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if len(s.shards) != tt.wantShards || s.perShard != tt.wantPerShard {
			t.Errorf("New(%+v): %d shards of %d, want %d of %d", tt.opts, len(s.shards), s.perShard, tt.wantShards, tt.wantPerShard)
		}
	}
}

func TestTakeErrors(t *testing.T) {
	t.Parallel()
	s := newStore(t, Options{})
	h := quota.Hit{Key: "k", Limit: perMinute, N: 1}
	if err := s.Take(context.Background(), []quota.Hit{h}, nil); !errors.Is(err, ErrBatchShape) {
		t.Errorf("Take with short out: err = %v, want ErrBatchShape", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Take(ctx, []quota.Hit{h}, make([]quota.Decision, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Take with a cancelled context: err = %v, want context.Canceled", err)
	}
	if err := s.Take(context.Background(), nil, nil); err != nil {
		t.Errorf("Take of no hits: %v", err)
	}
	if s.Len() != 0 {
		t.Errorf("failed Takes stored %d counters", s.Len())
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestEvictionBound floods a small store with distinct keys that never
// expire (the clock is frozen): it must never hold more than MaxKeys, and
// OnEvict must count every counter it dropped.
func TestEvictionBound(t *testing.T) {
	t.Parallel()
	const maxKeys, flood = 1000, 20_000
	clock := backendtest.NewClock(backendtest.Base)
	var evicted atomic.Int64
	s := newStore(t, Options{Now: clock.Now, MaxKeys: maxKeys, Shards: 8, OnEvict: func(n int) { evicted.Add(int64(n)) }})
	for i := range flood {
		take(t, s, quota.Hit{Key: "flood/" + strconv.Itoa(i), Limit: perHour, N: 1})
		if n := s.Len(); n > maxKeys {
			t.Fatalf("after %d keys the store holds %d, more than MaxKeys %d", i+1, n, maxKeys)
		}
	}
	n := s.Len()
	if got, want := evicted.Load(), int64(flood-n); got != want {
		t.Errorf("OnEvict counted %d, want %d (%d inserted, %d held)", got, want, flood, n)
	}
	// The per-shard split lets a skewed shard evict early, but not much.
	if n < maxKeys*3/4 {
		t.Errorf("store holds only %d of %d keys", n, maxKeys)
	}
}

// TestEvictionBoundConcurrent floods from many goroutines, for the race
// detector and the bound under contention.
func TestEvictionBoundConcurrent(t *testing.T) {
	t.Parallel()
	const maxKeys, goroutines, each = 256, 16, 500
	var evicted atomic.Int64
	s := newStore(t, Options{MaxKeys: maxKeys, Shards: 4, OnEvict: func(n int) { evicted.Add(int64(n)) }})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			out := make([]quota.Decision, 2)
			for i := range each {
				hits := []quota.Hit{
					{Key: fmt.Sprintf("c/%d/%d/a", g, i), Limit: perHour, N: 1},
					{Key: fmt.Sprintf("c/%d/%d/b", g, i), Limit: perHour, N: 1},
				}
				if err := s.Take(context.Background(), hits, out); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	n := s.Len()
	if n > maxKeys {
		t.Errorf("store holds %d, more than MaxKeys %d", n, maxKeys)
	}
	if got, want := evicted.Load(), int64(goroutines*each*2-n); got != want {
		t.Errorf("OnEvict counted %d, want %d", got, want)
	}
}

// TestEvictionPrefersExpired: when the store is full of expired counters,
// new keys reclaim those and OnEvict counts nothing.
func TestEvictionPrefersExpired(t *testing.T) {
	t.Parallel()
	const maxKeys = 100
	clock := backendtest.NewClock(backendtest.Base)
	var evicted atomic.Int64
	s := newStore(t, Options{Now: clock.Now, MaxKeys: maxKeys, Shards: 1, OnEvict: func(n int) { evicted.Add(int64(n)) }})
	for i := range maxKeys {
		take(t, s, quota.Hit{Key: "old/" + strconv.Itoa(i), Limit: perMinute, N: 1})
	}
	clock.Advance(40 * time.Second) // Base is 40 s before its minute ends.
	for i := range maxKeys {
		take(t, s, quota.Hit{Key: "new/" + strconv.Itoa(i), Limit: perMinute, N: 1})
	}
	if n := s.Len(); n != maxKeys {
		t.Errorf("store holds %d, want %d", n, maxKeys)
	}
	if got := evicted.Load(); got != 0 {
		t.Errorf("OnEvict counted %d live evictions, want 0", got)
	}
}

// TestEvictionSoonestExpiring: of live counters, the one expiring soonest
// goes first, so a long-lived counter survives short-lived ones.
func TestEvictionSoonestExpiring(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	s := newStore(t, Options{Now: clock.Now, MaxKeys: 4, Shards: 1})
	keep := quota.Hit{Key: "hourly", Limit: perHour, N: 1} // expires in 2800 s
	take(t, s, keep)
	for i := range 10 {
		take(t, s, quota.Hit{Key: "minutely/" + strconv.Itoa(i), Limit: perMinute, N: 1}) // 40 s
	}
	check := keep
	check.N = 0
	if got := take(t, s, check)[0]; got.Remaining != 9 {
		t.Errorf("long-lived counter was evicted: remaining %d, want 9", got.Remaining)
	}
}

// TestExpiryReclaimed: expired counters are reclaimed by the sweep that
// Takes on other keys drive, with no background goroutine.
func TestExpiryReclaimed(t *testing.T) {
	t.Parallel()
	const keys = 100
	clock := backendtest.NewClock(backendtest.Base)
	s := newStore(t, Options{Now: clock.Now, Shards: 1})
	for i := range keys {
		take(t, s, quota.Hit{Key: "k/" + strconv.Itoa(i), Limit: perMinute, N: 1})
	}
	if n := s.Len(); n != keys {
		t.Fatalf("store holds %d, want %d", n, keys)
	}
	// Not yet expired: a Take sweeps but keeps them.
	take(t, s, quota.Hit{Key: "other", Limit: perHour, N: 1})
	if n := s.Len(); n != keys+1 {
		t.Fatalf("store holds %d before expiry, want %d", n, keys+1)
	}
	clock.Advance(40 * time.Second)
	// Each Take advances the hand by sweepPerTake slots: keys+1 slots are
	// swept within (keys+1)/sweepPerTake + 1 Takes.
	for range (keys+1)/sweepPerTake + 1 {
		take(t, s, quota.Hit{Key: "other", Limit: perHour, N: 1})
	}
	if n := s.Len(); n != 1 {
		t.Errorf("store holds %d after expiry and sweeping, want 1", n)
	}
}

// TestExpiryIdleShards: shards no Take touches are swept too, while any
// traffic flows.
func TestExpiryIdleShards(t *testing.T) {
	t.Parallel()
	const keys = 400
	clock := backendtest.NewClock(backendtest.Base)
	s := newStore(t, Options{Now: clock.Now, Shards: 4})
	for i := range keys {
		take(t, s, quota.Hit{Key: "k/" + strconv.Itoa(i), Limit: perMinute, N: 1})
	}
	clock.Advance(40 * time.Second)
	hot := quota.Hit{Key: "hot", Limit: perHour, N: 0}
	// Each Take sweeps idleSweepSlots slots of a random shard with
	// probability 1/idleSweepEvery: 20000 Takes visit each shard about 156
	// times, where 4 visits would do.
	for i := 0; i < 20_000 && s.Len() > 0; i++ {
		take(t, s, hot)
	}
	if n := s.Len(); n != 0 {
		t.Errorf("store holds %d expired counters, want 0", n)
	}
}

// TestExpiredReadsFresh: an expired counter that has not been swept yet
// reads as a fresh one.
func TestExpiredReadsFresh(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	s := newStore(t, Options{Now: clock.Now, Shards: 1})
	tb := quota.Limit{Algorithm: quota.TokenBucket, Requests: 1, Unit: time.Second, Burst: 3}
	take(t, s, quota.Hit{Key: "b", Limit: tb, N: 3})
	// The TTL is the time until full (3 s) plus 1 s.
	clock.Advance(4 * time.Second)
	if n := s.Len(); n != 1 {
		t.Fatalf("store holds %d, want 1 (not swept yet)", n)
	}
	got := take(t, s, quota.Hit{Key: "b", Limit: tb, N: 0})[0]
	if want := (quota.Decision{Fits: true, Remaining: 3}); got != want {
		t.Errorf("expired counter: got %+v, want %+v", got, want)
	}
}

// TestCheckOnlyStoresNothing: N=0 hits never create counters.
func TestCheckOnlyStoresNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t, Options{})
	for i := range 100 {
		take(t, s, quota.Hit{Key: "check/" + strconv.Itoa(i), Limit: perMinute, N: 0})
	}
	if n := s.Len(); n != 0 {
		t.Errorf("checks stored %d counters, want 0", n)
	}
}

func benchmarkTake(b *testing.B, batch int) {
	s := newStore(b, Options{})
	const keys = 4096
	names := make([]string, keys)
	for i := range names {
		names[i] = "bench/tenant/" + strconv.Itoa(i)
	}
	lim := quota.Limit{Algorithm: quota.SlidingWindow, Requests: 1 << 30, Unit: time.Minute}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		hits := make([]quota.Hit, batch)
		out := make([]quota.Decision, batch)
		ctx := context.Background()
		for pb.Next() {
			for j := range hits {
				hits[j] = quota.Hit{Key: names[(i+j)%keys], Limit: lim, N: 1}
			}
			i++
			if err := s.Take(ctx, hits, out); err != nil {
				// Not Fatal: it may only be called from the benchmark's
				// own goroutine.
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkTake1(b *testing.B) { benchmarkTake(b, 1) }
func BenchmarkTake3(b *testing.B) { benchmarkTake(b, 3) }
