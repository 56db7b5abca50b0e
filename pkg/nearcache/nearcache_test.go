package nearcache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/nearcache"
	"github.com/floodgate/floodgate/pkg/quota"
)

// counting counts the batches that reach the real backend.
type counting struct {
	quota.Limiter
	calls atomic.Int64
}

func (c *counting) Take(ctx context.Context, hits []quota.Hit, out []quota.Decision) error {
	c.calls.Add(1)
	return c.Limiter.Take(ctx, hits, out)
}

func newStore(t testing.TB, clock *backendtest.Clock) *memstore.Store {
	t.Helper()
	st, err := memstore.New(memstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newCache wraps inner, failing the test on bad options.
func newCache(t testing.TB, inner quota.Limiter, opts nearcache.Options) *nearcache.Cache {
	t.Helper()
	c, err := nearcache.New(inner, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func take(t testing.TB, l quota.Limiter, hits ...quota.Hit) []quota.Decision {
	t.Helper()
	out := make([]quota.Decision, len(hits))
	if err := l.Take(context.Background(), hits, out); err != nil {
		t.Fatal(err)
	}
	return out
}

var limits = map[string]quota.Limit{
	"fixed_window":   {Algorithm: quota.FixedWindow, Requests: 3, Unit: time.Minute},
	"sliding_window": {Algorithm: quota.SlidingWindow, Requests: 3, Unit: time.Minute},
	"token_bucket":   {Algorithm: quota.TokenBucket, Requests: 3, Unit: time.Minute, Burst: 5},
}

// TestLeavesCacheExactlyWhenAllowed: once rejected, hits are answered from
// the cache, without a backend call, until the instant the backend admits
// them again, and not one nanosecond longer.
func TestLeavesCacheExactlyWhenAllowed(t *testing.T) {
	t.Parallel()
	for name, lim := range limits {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clock := backendtest.NewClock(backendtest.Base)
			inner := &counting{Limiter: newStore(t, clock)}
			var hits atomic.Int64
			c := newCache(t, inner, nearcache.Options{Now: clock.Now, OnHit: func(n int) { hits.Add(int64(n)) }})
			h := quota.Hit{Key: "k", Limit: lim, N: 1}
			for take(t, c, h)[0].Fits {
			}
			calls := inner.calls.Load()
			d := take(t, c, h)[0]
			if d.Fits || inner.calls.Load() != calls || hits.Load() != 1 {
				t.Fatalf("second rejection: fits=%v, backend calls +%d, cache hits %d; want answered by the cache",
					d.Fits, inner.calls.Load()-calls, hits.Load())
			}
			wait := d.ResetAfter
			clock.Advance(wait - time.Microsecond)
			if d := take(t, c, h)[0]; d.Fits || inner.calls.Load() != calls {
				t.Fatalf("1µs before the reset: fits=%v, backend calls +%d", d.Fits, inner.calls.Load()-calls)
			}
			// The backend agrees it is still over (checked without the cache).
			if d := take(t, inner.Limiter, quota.Hit{Key: "k", Limit: lim, N: 0})[0]; d.Remaining != 0 {
				t.Fatalf("backend says %d remain before the reset", d.Remaining)
			}
			clock.Advance(time.Microsecond)
			if d := take(t, c, h)[0]; !d.Fits || inner.calls.Load() != calls+1 {
				t.Fatalf("at the reset: fits=%v, backend calls +%d; want admitted by the backend", d.Fits, inner.calls.Load()-calls)
			}
		})
	}
}

func TestSmallerHitsAndNewLimitsGoToTheBackend(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	inner := &counting{Limiter: newStore(t, clock)}
	c := newCache(t, inner, nearcache.Options{Now: clock.Now})
	lim := quota.Limit{Algorithm: quota.FixedWindow, Requests: 3, Unit: time.Hour}
	take(t, c, quota.Hit{Key: "k", Limit: lim, N: 2})
	if d := take(t, c, quota.Hit{Key: "k", Limit: lim, N: 2})[0]; d.Fits {
		t.Fatal("N=2 over a limit of 3 with 2 taken: fits")
	}
	calls := inner.calls.Load()
	if d := take(t, c, quota.Hit{Key: "k", Limit: lim, N: 1})[0]; !d.Fits || inner.calls.Load() != calls+1 {
		t.Fatalf("N=1 after N=2 was rejected: fits=%v, backend calls +%d; want the backend to admit it", d.Fits, inner.calls.Load()-calls)
	}
	// A raised limit (config reload) is not answered from the old entry.
	take(t, c, quota.Hit{Key: "k", Limit: lim, N: 1}) // cache: N>=1 over
	raised := lim
	raised.Requests = 10
	if d := take(t, c, quota.Hit{Key: "k", Limit: raised, N: 1})[0]; !d.Fits {
		t.Fatal("raised limit answered from the cache")
	}
	// A shadow hit is never answered from the cache.
	calls = inner.calls.Load()
	take(t, c, quota.Hit{Key: "k", Limit: lim, N: 5, Shadow: true})
	take(t, c, quota.Hit{Key: "k", Limit: lim, N: 5, Shadow: true})
	if inner.calls.Load() != calls+2 {
		t.Fatal("shadow hits answered from the cache")
	}
}

// TestQuotaHitsPassThrough: a quota-mode hit over its limit is neither
// answered from the cache nor remembered: the next batch may hold another
// quota hit that fits, and then it is admitted.
func TestQuotaHitsPassThrough(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	inner := &counting{Limiter: newStore(t, clock)}
	c := newCache(t, inner, nearcache.Options{Now: clock.Now})
	full := quota.Limit{Algorithm: quota.FixedWindow, Requests: 0, Unit: time.Hour}
	roomy := quota.Limit{Algorithm: quota.FixedWindow, Requests: 10, Unit: time.Hour}
	over := quota.Hit{Key: "over", Limit: full, N: 1, Quota: true}
	for i := 0; i < 3; i++ {
		if d := take(t, c, over)[0]; d.Fits {
			t.Fatal("a quota hit over a limit of 0 fits")
		}
	}
	if got := inner.calls.Load(); got != 3 || c.Len() != 0 {
		t.Fatalf("%d backend calls and %d entries after 3 quota hits over their limit, want 3 and 0", got, c.Len())
	}
	// With a second quota hit that fits, the batch is admitted and takes
	// that hit.
	ds := take(t, c, over, quota.Hit{Key: "roomy", Limit: roomy, N: 1, Quota: true})
	if ds[0].Fits || !ds[1].Fits || quota.Rejects([]quota.Hit{over, {Quota: true}}, ds) {
		t.Fatalf("quota batch: %+v, want admitted by its second hit", ds)
	}
	if d := take(t, c, quota.Hit{Key: "roomy", Limit: roomy})[0]; d.Remaining != 9 {
		t.Fatalf("roomy has %d left, want 9", d.Remaining)
	}
	// A cached normal hit still rejects a batch with quota hits in it,
	// and the quota hit that fits takes nothing.
	normal := quota.Hit{Key: "normal", Limit: full, N: 1}
	take(t, c, normal)
	calls := inner.calls.Load()
	ds = take(t, c, normal, quota.Hit{Key: "roomy", Limit: roomy, N: 1, Quota: true})
	if ds[0].Fits || !ds[1].Fits || inner.calls.Load() != calls+1 {
		t.Fatalf("cached normal beside a quota hit: %+v, backend calls +%d", ds, inner.calls.Load()-calls)
	}
	if d := take(t, c, quota.Hit{Key: "roomy", Limit: roomy})[0]; d.Remaining != 9 {
		t.Fatalf("roomy has %d left after a rejected batch, want 9", d.Remaining)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	st := newStore(t, backendtest.NewClock(backendtest.Base))
	for _, tt := range []struct {
		name  string
		inner quota.Limiter
		opts  nearcache.Options
		want  string // a part of the error; "" for none
	}{
		{"zero", st, nearcache.Options{}, ""},
		{"nil inner", nil, nearcache.Options{}, "inner"},
		{"negative entries", st, nearcache.Options{MaxEntries: -1}, "MaxEntries"},
		{"negative bytes", st, nearcache.Options{MaxBytes: -1}, "MaxBytes"},
	} {
		c, err := nearcache.New(tt.inner, tt.opts)
		switch {
		case tt.want == "" && (err != nil || c == nil):
			t.Errorf("%s: New = %v, %v", tt.name, c, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || c != nil):
			t.Errorf("%s: New = %v, %v; want an error about %s", tt.name, c, err, tt.want)
		}
	}
}

// TestCountingScenarios: in front of a store, the cache answers the
// scenarios of debts and of hits counted whatever they decide exactly as
// the store alone does: it never admits during a debt, never keeps a
// charge from the store, and the checks it answers wait as long.
func TestCountingScenarios(t *testing.T) {
	t.Parallel()
	backendtest.RunCountingScenarios(t, func(t *testing.T, clock *backendtest.Clock) quota.Limiter {
		return newCache(t, newStore(t, clock), nearcache.Options{Now: clock.Now})
	})
}

// TestConcurrent races two caches (two sidecars) in front of one store.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	backendtest.RunConcurrent(t, func(t *testing.T, clock *backendtest.Clock) (a, b quota.Limiter) {
		st := newStore(t, clock)
		return newCache(t, st, nearcache.Options{Now: clock.Now}), newCache(t, st, nearcache.Options{Now: clock.Now})
	})
}

// TestConcurrentCounting races two caches in front of one store with hits
// counted whatever they decide: none is ever answered by a cache.
func TestConcurrentCounting(t *testing.T) {
	t.Parallel()
	backendtest.RunConcurrentCounting(t, func(t *testing.T, clock *backendtest.Clock) (a, b quota.Limiter) {
		st := newStore(t, clock)
		return newCache(t, st, nearcache.Options{Now: clock.Now}), newCache(t, st, nearcache.Options{Now: clock.Now})
	})
}

// TestRejectedBatchTakesNothing: with one cached hit in a batch, the others
// are only checked, not taken.
func TestRejectedBatchTakesNothing(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	store := newStore(t, clock)
	c := newCache(t, store, nearcache.Options{Now: clock.Now})
	over := quota.Hit{Key: "over", Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 1, Unit: time.Hour}, N: 1}
	other := quota.Hit{Key: "other", Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 10, Unit: time.Hour}, N: 1}
	take(t, c, over)
	take(t, c, over) // now cached
	for i := 0; i < 5; i++ {
		ds := take(t, c, over, other)
		if !quota.Rejects([]quota.Hit{over, other}, ds) {
			t.Fatal("batch with a cached over-limit hit not rejected")
		}
		if !ds[1].Fits || ds[1].Remaining != 9 {
			t.Fatalf("other: %+v, want fits with remaining 9 (as if taken)", ds[1])
		}
	}
	if d := take(t, store, quota.Hit{Key: "other", Limit: other.Limit})[0]; d.Remaining != 10 {
		t.Fatalf("other has %d left, want 10: a rejected batch took quota", d.Remaining)
	}
}

// TestSameDecisionsAsTheBackend runs one random sequence through a plain
// store and a cached one: every hit must fit in both or in neither.
func TestSameDecisionsAsTheBackend(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { sameDecisions(t, seed) })
	}
}

func sameDecisions(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	clockA := backendtest.NewClock(backendtest.Base)
	clockB := backendtest.NewClock(backendtest.Base)
	plain := newStore(t, clockA)
	cached := newCache(t, newStore(t, clockB), nearcache.Options{Now: clockB.Now, MaxEntries: 64})
	names := []string{"fixed_window", "sliding_window", "token_bucket"}
	for step := 0; step < 20000; step++ {
		if rng.IntN(10) == 0 {
			d := time.Duration(rng.IntN(5000)) * time.Millisecond
			clockA.Advance(d)
			clockB.Advance(d)
		}
		n := 1 + rng.IntN(3)
		hits := make([]quota.Hit, n)
		for i := range hits {
			lim := limits[names[rng.IntN(len(names))]]
			hits[i] = quota.Hit{
				Key:    fmt.Sprintf("%s/%d", lim.Algorithm, rng.IntN(4)),
				Limit:  lim,
				N:      uint64(rng.IntN(4)),
				Shadow: rng.IntN(8) == 0,
				Quota:  rng.IntN(6) == 0,
			}
		}
		a, b := take(t, plain, hits...), take(t, cached, hits...)
		for i := range hits {
			if a[i].Fits != b[i].Fits {
				t.Fatalf("step %d hit %d (%+v): backend fits=%v, cached fits=%v", step, i, hits[i], a[i].Fits, b[i].Fits)
			}
		}
		if quota.Rejects(hits, a) != quota.Rejects(hits, b) {
			t.Fatalf("step %d (%+v): backend rejects=%v, cached rejects=%v", step, hits, quota.Rejects(hits, a), quota.Rejects(hits, b))
		}
	}
}

func TestBoundedEntries(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	c := newCache(t, newStore(t, clock), nearcache.Options{Now: clock.Now, MaxEntries: 320})
	lim := quota.Limit{Algorithm: quota.FixedWindow, Requests: 0, Unit: time.Hour}
	for i := 0; i < 10000; i++ {
		take(t, c, quota.Hit{Key: fmt.Sprint(i), Limit: lim, N: 1})
	}
	if n := c.Len(); n > 320 || n == 0 {
		t.Fatalf("%d entries, want 1..320", n)
	}
}

func TestBoundedBytes(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	const maxBytes = 32 * 1024 // 1 KiB per shard
	c := newCache(t, newStore(t, clock), nearcache.Options{Now: clock.Now, MaxEntries: 1 << 20, MaxBytes: maxBytes})
	lim := quota.Limit{Algorithm: quota.FixedWindow, Requests: 0, Unit: time.Hour}
	key := strings.Repeat("k", 100)
	for i := 0; i < 5000; i++ {
		take(t, c, quota.Hit{Key: fmt.Sprint(key, i), Limit: lim, N: 1})
	}
	if b := c.Bytes(); b > maxBytes || b == 0 {
		t.Fatalf("%d key bytes held, want 1..%d", b, maxBytes)
	}
	// Every entry's key is 101-104 bytes: the count follows from the bytes.
	if n, b := c.Len(), c.Bytes(); n*101 > b || n*104 < b {
		t.Fatalf("%d entries for %d bytes", n, b)
	}
}

func BenchmarkCachedRejection(b *testing.B) {
	clock := backendtest.NewClock(backendtest.Base)
	c := newCache(b, newStore(b, clock), nearcache.Options{Now: clock.Now})
	h := []quota.Hit{{Key: "hot", Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 0, Unit: time.Hour}, N: 1}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]quota.Decision, 1)
		for pb.Next() {
			if err := c.Take(context.Background(), h, out); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestDebt: a check refused by a debt is remembered and answered without
// the backend until the debt is paid, while every charge of an overdraw
// rule still reaches the backend (which must take it), alone or beside a
// remembered refusal.
func TestDebt(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	inner := &counting{Limiter: newStore(t, clock)}
	c := newCache(t, inner, nearcache.Options{Now: clock.Now})
	l := quota.Limit{Algorithm: quota.TokenBucket, Requests: 100, Unit: time.Hour} // a token per 36 s
	charge := quota.Hit{Key: "tokens", Limit: l, N: 150, Counting: quota.Always}
	check := quota.Hit{Key: "tokens", Limit: l}

	// 100 - 150: a debt of 50, 30 minutes at 100 an hour.
	if d := take(t, c, charge)[0]; d.Fits {
		t.Fatalf("charge of 150 on 100: %+v, want over", d)
	}
	if d := take(t, c, check)[0]; d.Fits || d.ResetAfter != 30*time.Minute {
		t.Fatalf("check after the charge: %+v, want over for 30m", d)
	}
	calls := inner.calls.Load()
	clock.Advance(10 * time.Minute)
	if d := take(t, c, check)[0]; d.Fits || d.ResetAfter != 20*time.Minute {
		t.Errorf("check 10m later: %+v, want over for 20m", d)
	}
	normal := check
	normal.N = 1
	if d := take(t, c, normal)[0]; d.Fits {
		t.Errorf("a normal hit during the debt: %+v, want over", d)
	}
	if got := inner.calls.Load(); got != calls {
		t.Errorf("the refused check and hit cost %d backend calls, want 0", got-calls)
	}
	// A charge always reaches the backend, which takes it: 50 + 10 owed.
	small := charge
	small.N = 10
	if d := take(t, c, small)[0]; d.Fits {
		t.Errorf("charge during the debt: %+v, want over", d)
	}
	if got := inner.calls.Load(); got != calls+1 {
		t.Errorf("a charge made %d backend calls, want 1", got-calls)
	}
	// The charge dropped the remembered refusal: the next check asks the
	// backend and tells the whole debt (60 owed at the first charge's time:
	// 36 minutes from it, 26 from now), not the 20 minutes remembered.
	if d := take(t, c, check)[0]; d.Fits || d.ResetAfter != 26*time.Minute {
		t.Errorf("check after a charge during the debt: %+v, want over for 26m", d)
	}
	if got := inner.calls.Load(); got != calls+2 {
		t.Errorf("the check after a charge made %d backend calls in all, want 2", got-calls)
	}
	// Beside a remembered refusal too (the batch is then rejected).
	other := quota.Hit{Key: "other", Limit: l, N: 5, Counting: quota.Always}
	take(t, c, check, other)
	if got := inner.calls.Load(); got != calls+3 {
		t.Errorf("a batch with a charge made %d backend calls in all, want 3", got-calls)
	}
	// The other counter took its 5 although the batch was rejected.
	if d := take(t, c, quota.Hit{Key: "other", Limit: l})[0]; d.Remaining != 95 {
		t.Errorf("other after its charge: %+v, want 95 left", d)
	}
	// 60 owed at the first charge's time take 36 minutes to repay.
	clock.Advance(20 * time.Minute)
	if d := take(t, c, check)[0]; d.Fits {
		t.Errorf("check 30m after the first charge, with 10 more owed: %+v, want over", d)
	}
	clock.Advance(6 * time.Minute)
	if d := take(t, c, check)[0]; !d.Fits {
		t.Errorf("check once 60 owed are repaid (36m): %+v, want OK", d)
	}
}

// TestCountedFixedWindowAnswered: under the reference's counting (every hit
// counted, rejected ones too) a fixed window known to be over is answered
// from the cache, as envoyproxy/ratelimit's local cache answers it: the
// count it would have added past the limit ends with the window anyway. A
// hit sent beside it is still decided, and counted, by the backend. On a
// sliding window such a hit still reaches the backend: its count past the
// limit weighs on the next window.
func TestCountedFixedWindowAnswered(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	inner := &counting{Limiter: newStore(t, clock)}
	c := newCache(t, inner, nearcache.Options{Now: clock.Now})
	fixed := quota.Limit{Algorithm: quota.FixedWindow, Requests: 2, Unit: time.Hour}
	hot := quota.Hit{Key: "hot", Limit: fixed, N: 1, Counting: quota.Always}
	side := quota.Hit{Key: "side", Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 10, Unit: time.Minute}, N: 1, Counting: quota.Always}

	for i, want := range []bool{true, true, false} { // 2 fit, the 3rd is over (and remembered)
		if d := take(t, c, hot)[0]; d.Fits != want || d.FromCache {
			t.Fatalf("hit %d: %+v, want fits=%v from the backend", i+1, d, want)
		}
	}
	if h, m := c.Lookups(); h != 0 || m != 3 {
		t.Fatalf("lookups after 3 hits: %d answered, %d not; want 0 and 3", h, m)
	}
	calls := inner.calls.Load()
	d := take(t, c, hot)[0]
	if d.Fits || !d.FromCache || inner.calls.Load() != calls {
		t.Fatalf("4th hit: %+v, backend calls +%d; want over, from the cache, no call", d, inner.calls.Load()-calls)
	}
	// Beside the remembered one: rejected, the side hit counted by the backend.
	ds := take(t, c, hot, side)
	if ds[0].Fits || !ds[0].FromCache || !ds[1].Fits || ds[1].FromCache || ds[1].Remaining != 9 {
		t.Fatalf("hot+side: %+v; want hot over from the cache, side within (9 left) from the backend", ds)
	}
	if d := take(t, inner.Limiter, quota.Hit{Key: "side", Limit: side.Limit})[0]; d.Remaining != 9 {
		t.Errorf("side after the batch: %d left, want 9 (its hit taken)", d.Remaining)
	}
	if h, m := c.Lookups(); h != 2 || m != 4 {
		t.Errorf("lookups: %d answered, %d not; want 2 and 4", h, m)
	}

	sliding := hot
	sliding.Key, sliding.Limit.Algorithm = "slid", quota.SlidingWindow
	for range 3 {
		take(t, c, sliding)
	}
	calls = inner.calls.Load()
	if d := take(t, c, sliding)[0]; d.Fits || d.FromCache || inner.calls.Load() != calls+1 {
		t.Errorf("sliding window over, counted: %+v, backend calls +%d; want over from the backend", d, inner.calls.Load()-calls)
	}
}
