package backendtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

const (
	// racersPerInstance goroutines race through each of the two instances.
	racersPerInstance = 64
	// attemptsPerRacer is how many batches each goroutine sends: 2×64×8 =
	// 1024 attempts, well over the limits below.
	attemptsPerRacer = 8
	raceLimit        = 500
	racePairLimit    = 300
)

// raceLimits are the limits of the races, one per algorithm. The clock stays
// frozen during a race, so no window rolls and no token refills: exactly the
// limit's capacity can be admitted. A backend on a clock of its own
// (ownClock) cannot be frozen: its buckets refill requests per day instead
// of per hour, less than one token in the minutes a race may take.
func raceLimits(requests uint64, ownClock bool) []quota.Limit {
	refill := time.Hour
	if ownClock {
		refill = 24 * time.Hour
	}
	return []quota.Limit{
		fixed(requests, time.Hour),
		sliding(requests, time.Hour),
		bucket(requests, refill, 0),
	}
}

// RunConcurrent races goroutines through two backend instances that share one
// store (built by newShared; for an in-process store both may be the same
// value), for each algorithm:
//
//   - one key, limit 500: 64 goroutines per instance send 8 single hits
//     each; exactly 500 must be admitted, and a check afterwards must find
//     none left.
//   - two keys, limits 300 and 500: the goroutines send both in one batch
//     (half of them in reverse order, to provoke lock-order deadlocks), and
//     every other attempt a single hit on the second key too. Batches are
//     all-or-nothing, so afterwards the first key has 300 - pairs left and
//     the second exactly none (its 1536 attempts exceed 500).
func RunConcurrent(t *testing.T, newShared func(t *testing.T, clock *Clock) (a, b quota.Limiter)) {
	t.Helper()
	runConcurrent(t, false, newShared)
}

// RunConcurrentOwnClock is RunConcurrent for backends that decide on a clock
// of their own (Redis's TIME), which a test cannot freeze. The windows are
// an hour long and the buckets refill their limit per day; a race during
// which the hour turns (the wall clock tells) is skipped, not judged.
// newShared must ignore its clock.
func RunConcurrentOwnClock(t *testing.T, newShared func(t *testing.T) (a, b quota.Limiter)) {
	t.Helper()
	runConcurrent(t, true, func(t *testing.T, _ *Clock) (a, b quota.Limiter) { return newShared(t) })
}

func runConcurrent(t *testing.T, ownClock bool, newShared func(t *testing.T, clock *Clock) (a, b quota.Limiter)) {
	t.Helper()
	// A backend on its own clock counts in real hour-long windows: a race
	// must not straddle an hour's end, or the windows roll over under it.
	// So a race that would start in the last two minutes of an hour waits
	// for the next one (at most once an hour, never a timed assertion), and
	// judge fails plainly should a race still outlast that margin.
	const margin = 2 * time.Minute
	begin := func() time.Time {
		now := time.Now()
		if left := now.Truncate(time.Hour).Add(time.Hour).Sub(now); ownClock && left < margin {
			time.Sleep(left + time.Second)
		}
		return time.Now()
	}
	judge := func(t *testing.T, start time.Time) {
		t.Helper()
		if ownClock && !time.Now().Truncate(time.Hour).Equal(start.Truncate(time.Hour)) {
			t.Fatalf("the race started %s and outlasted the hour's end (over %s): its windows rolled over", start.Format(time.TimeOnly), margin)
		}
	}
	for _, l := range raceLimits(raceLimit, ownClock) {
		t.Run(l.Algorithm.String()+"/one key", func(t *testing.T) {
			clock := NewClock(Base)
			a, b := newShared(t, clock)
			h := hit("race-one", l, 1)
			var admitted atomic.Int64
			start := begin()
			Race(t, a, b, func(lim quota.Limiter, g, i int) {
				out := make([]quota.Decision, 1)
				if err := lim.Take(context.Background(), []quota.Hit{h}, out); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				if out[0].Fits {
					admitted.Add(1)
				}
			})
			left := check(t, a, h)
			judge(t, start)
			if got := admitted.Load(); got != raceLimit {
				t.Errorf("admitted %d hits, want exactly %d", got, raceLimit)
			}
			if left != 0 {
				t.Errorf("after the race a check finds %d left, want 0", left)
			}
		})
	}
	pairLimits := raceLimits(racePairLimit, ownClock)
	for i, lb := range raceLimits(raceLimit, ownClock) {
		la := pairLimits[i]
		t.Run(la.Algorithm.String()+"/two keys all or nothing", func(t *testing.T) {
			clock := NewClock(Base)
			a, b := newShared(t, clock)
			ha, hb := hit("race-pair/a", la, 1), hit("race-pair/b", lb, 1)
			var pairs, singles atomic.Int64
			start := begin()
			Race(t, a, b, func(lim quota.Limiter, g, i int) {
				batch := []quota.Hit{ha, hb}
				if g%2 == 1 {
					batch = []quota.Hit{hb, ha}
				}
				out := make([]quota.Decision, 2)
				if err := lim.Take(context.Background(), batch, out); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				if out[0].Fits && out[1].Fits {
					pairs.Add(1)
				}
				if i%2 == 0 {
					if err := lim.Take(context.Background(), []quota.Hit{hb}, out[:1]); err != nil {
						t.Errorf("Take: %v", err)
						return
					}
					if out[0].Fits {
						singles.Add(1)
					}
				}
			})
			leftA, leftB := check(t, b, ha), check(t, a, hb)
			judge(t, start)
			p, s := pairs.Load(), singles.Load()
			if p+s != raceLimit {
				t.Errorf("admitted %d pairs + %d singles on the second key, want %d in all", p, s, raceLimit)
			}
			if want := uint64(racePairLimit - p); leftA != want {
				t.Errorf("first key has %d left after %d admitted pairs, want %d", leftA, p, want)
			}
			if leftB != 0 {
				t.Errorf("second key has %d left after %d pairs + %d singles, want 0", leftB, p, s)
			}
		})
	}
}

// RunConcurrentCounting races goroutines as RunConcurrent does, through two
// instances sharing one store on a frozen clock, for hits counted other
// than all or nothing (a separate call, so that a backend's variants, such
// as its batching settings, need not all run it):
//
//   - one key, limit 500, every hit counted whatever (quota.Always): exactly
//     500 fit, and on a frozen clock a check afterwards shows every one of
//     the 1024 hits counted, by the wait its debt of 524 implies;
//   - two keys, limits 300 and 500, in batches counted unless another hit
//     is over (quota.UnlessOtherOver), with singles on the second: as
//     under all or nothing, the pairs both fit and the singles admitted
//     add up to exactly 500, and the first key has 300 - pairs left;
//   - the same pairs counted whatever: exactly 300 fits on the first key
//     and 500 on the second, whatever the interleaving.
func RunConcurrentCounting(t *testing.T, newShared func(t *testing.T, clock *Clock) (a, b quota.Limiter)) {
	t.Helper()
	const ownClock = false
	begin := time.Now
	judge := func(*testing.T, time.Time) {}
	// Base is 800 s into its hour: 2800 s to the window's end. What a
	// check waits after 1024 hits on a limit of 500 an hour:
	debtWait := map[quota.Algorithm]time.Duration{
		// The count starts again when the window ends.
		quota.FixedWindow: 2800 * time.Second,
		// cur = 1024 must weigh 500 in the next window: 1024 × (3600 s -
		// e)/3600 s = 500 at e = 3600 - 500 × 3600/1024 = 1842.1875 s.
		quota.SlidingWindow: 2800*time.Second + 1842187500*time.Microsecond,
		// 500 - 1024 = -524 tokens, at 500 an hour: 524 × 7.2 s.
		quota.TokenBucket: 3772800 * time.Millisecond,
	}
	for _, l := range raceLimits(raceLimit, ownClock) {
		t.Run(l.Algorithm.String()+"/one key counted whatever", func(t *testing.T) {
			clock := NewClock(Base)
			a, b := newShared(t, clock)
			h := counted(hit("race-always", l, 1), quota.Always)
			var admitted atomic.Int64
			start := begin()
			Race(t, a, b, func(lim quota.Limiter, g, i int) {
				out := make([]quota.Decision, 1)
				if err := lim.Take(context.Background(), []quota.Hit{h}, out); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				if out[0].Fits {
					admitted.Add(1)
				}
			})
			h.N = 0
			out := make([]quota.Decision, 1)
			if err := a.Take(context.Background(), []quota.Hit{h}, out); err != nil {
				t.Fatalf("check: %v", err)
			}
			judge(t, start)
			if got := admitted.Load(); got != raceLimit {
				t.Errorf("admitted %d hits, want exactly %d", got, raceLimit)
			}
			if out[0].Fits {
				t.Errorf("after the race a check fits (%+v), want over: 524 more than the limit were counted", out[0])
			}
			if want := debtWait[l.Algorithm]; !ownClock && out[0].ResetAfter != want {
				t.Errorf("after the race a check waits %v, want %v (all 1024 hits counted)", out[0].ResetAfter, want)
			}
		})
	}
	pairLimits := raceLimits(racePairLimit, ownClock)
	for i, lb := range raceLimits(raceLimit, ownClock) {
		la := pairLimits[i]
		for _, c := range []quota.Counting{quota.UnlessOtherOver, quota.Always} {
			name := "unless another is over"
			if c == quota.Always {
				name = "counted whatever"
			}
			t.Run(la.Algorithm.String()+"/two keys "+name, func(t *testing.T) {
				clock := NewClock(Base)
				a, b := newShared(t, clock)
				ha := counted(hit("race-count/a", la, 1), c)
				hb := counted(hit("race-count/b", lb, 1), c)
				var pairs, singles, fitsA, fitsB atomic.Int64
				start := begin()
				Race(t, a, b, func(lim quota.Limiter, g, i int) {
					batch := []quota.Hit{ha, hb}
					ia, ib := 0, 1
					if g%2 == 1 {
						batch, ia, ib = []quota.Hit{hb, ha}, 1, 0
					}
					out := make([]quota.Decision, 2)
					if err := lim.Take(context.Background(), batch, out); err != nil {
						t.Errorf("Take: %v", err)
						return
					}
					if out[ia].Fits {
						fitsA.Add(1)
					}
					if out[ib].Fits {
						fitsB.Add(1)
					}
					if out[0].Fits && out[1].Fits {
						pairs.Add(1)
					}
					if i%2 == 0 {
						if err := lim.Take(context.Background(), []quota.Hit{hb}, out[:1]); err != nil {
							t.Errorf("Take: %v", err)
							return
						}
						if out[0].Fits {
							singles.Add(1)
							fitsB.Add(1)
						}
					}
				})
				leftA, leftB := check(t, b, ha), check(t, a, hb)
				judge(t, start)
				p, s := pairs.Load(), singles.Load()
				if c == quota.Always {
					if got := fitsA.Load(); got != racePairLimit {
						t.Errorf("first key: %d hits fit, want exactly %d", got, racePairLimit)
					}
					if got := fitsB.Load(); got != raceLimit {
						t.Errorf("second key: %d hits fit, want exactly %d", got, raceLimit)
					}
					if leftA != 0 || leftB != 0 {
						t.Errorf("left after the race: %d and %d, want 0 and 0", leftA, leftB)
					}
					return
				}
				if p+s != raceLimit {
					t.Errorf("admitted %d pairs + %d singles on the second key, want %d in all", p, s, raceLimit)
				}
				if want := uint64(racePairLimit - p); leftA != want {
					t.Errorf("first key has %d left after %d admitted pairs, want %d", leftA, p, want)
				}
				if leftB != 0 {
					t.Errorf("second key has %d left after %d pairs + %d singles, want 0", leftB, p, s)
				}
			})
		}
	}
}

// Race runs do in 64 goroutines per instance (racersPerInstance), 8 times
// each (attemptsPerRacer), all released together, and returns when every
// one is done; g numbers the goroutine (0-63 use a, 64-127 b), i the
// attempt. RunConcurrent's races are built on it; a test with other
// expectations (a cluster's cross-slot requests) can race the same way.
// do may call t.Error, not t.Fatal.
func Race(t testing.TB, a, b quota.Limiter, do func(lim quota.Limiter, g, i int)) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 2 * racersPerInstance {
		lim := a
		if g >= racersPerInstance {
			lim = b
		}
		wg.Go(func() {
			<-start
			for i := range attemptsPerRacer {
				do(lim, g, i)
			}
		})
	}
	close(start)
	wg.Wait()
}

// check returns the Remaining of a check-only (N=0) hit on h's key.
func check(t *testing.T, lim quota.Limiter, h quota.Hit) uint64 {
	t.Helper()
	h.N = 0
	out := make([]quota.Decision, 1)
	if err := lim.Take(context.Background(), []quota.Hit{h}, out); err != nil {
		t.Fatalf("check: %v", err)
	}
	return out[0].Remaining
}
