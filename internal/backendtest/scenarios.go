package backendtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

// Factory builds a fresh, empty backend that reads time from clock. It
// registers its own cleanup with t.
type Factory func(t *testing.T, clock *Clock) quota.Limiter

// Base is the instant every scenario starts at: 2023-11-14T22:13:20Z. Its
// offsets into the epoch-aligned windows used below are:
//
//	7 s:      1_700_000_000 mod 7     = 6      (1 s to the next window)
//	minute:   1_700_000_000 mod 60    = 20     (40 s to the next window)
//	hour:     1_700_000_000 mod 3600  = 800    (2800 s to the next window)
//	day:      1_700_000_000 mod 86400 = 80000  (6400 s to the next window)
var Base = time.Unix(1_700_000_000, 0).UTC()

// Tag is the hash-tag prefix shared by the keys of every multi-key batch in
// the suite, so that a clustered backend may decide each batch on one node;
// except in the "spread/" scenarios, whose keys have tags of their own.
const Tag = "scn"

// key builds a suite key: Tag followed by name, with TagLen covering Tag.
func key(name string) (string, int) { return Tag + "/" + name, len(Tag) }

func hit(name string, l quota.Limit, n uint64) quota.Hit {
	k, tl := key(name)
	return quota.Hit{Key: k, TagLen: tl, Limit: l, N: n}
}

func shadow(name string, l quota.Limit, n uint64) quota.Hit {
	h := hit(name, l, n)
	h.Shadow = true
	return h
}

// quotaHit is a hit in quota mode (quota.Hit.Quota).
func quotaHit(name string, l quota.Limit, n uint64) quota.Hit {
	h := hit(name, l, n)
	h.Quota = true
	return h
}

// counted is hit with the given counting (quota.Hit.Counting).
func counted(h quota.Hit, c quota.Counting) quota.Hit {
	h.Counting = c
	return h
}

// always is a hit taken in full whatever it decides (an overdraw rule's,
// or any under the reference's counting).
func always(name string, l quota.Limit, n uint64) quota.Hit {
	return counted(hit(name, l, n), quota.Always)
}

// spread is a hit whose key has a hash tag of its own, tag, instead of Tag:
// a clustered backend places it by that tag, so a batch of spread hits with
// different tags may be decided on several nodes, and must still answer as
// one batch. With quota, it is in quota mode.
func spread(tag, name string, l quota.Limit, n uint64, quotaMode bool) quota.Hit {
	return quota.Hit{Key: tag + "/" + name, TagLen: len(tag), Limit: l, N: n, Quota: quotaMode}
}

func ok(remaining uint64, resetAfter time.Duration) quota.Decision {
	return quota.Decision{Fits: true, Remaining: remaining, ResetAfter: resetAfter}
}

func over(resetAfter time.Duration) quota.Decision {
	return quota.Decision{ResetAfter: resetAfter}
}

func fixed(requests uint64, unit time.Duration) quota.Limit {
	return quota.Limit{Algorithm: quota.FixedWindow, Requests: requests, Unit: unit}
}

func sliding(requests uint64, unit time.Duration) quota.Limit {
	return quota.Limit{Algorithm: quota.SlidingWindow, Requests: requests, Unit: unit}
}

func bucket(requests uint64, unit time.Duration, burst uint64) quota.Limit {
	return quota.Limit{Algorithm: quota.TokenBucket, Requests: requests, Unit: unit, Burst: burst}
}

// step is one batch: move the clock by advance, then Take hits and expect
// want (one decision per hit).
type step struct {
	advance time.Duration
	hits    []quota.Hit
	want    []quota.Decision
}

// scenario is a sequence of batches against one fresh backend whose clock
// starts at Base.
type scenario struct {
	name  string
	steps []step
}

// one is a step of a single hit.
func one(advance time.Duration, h quota.Hit, want quota.Decision) step {
	return step{advance: advance, hits: []quota.Hit{h}, want: []quota.Decision{want}}
}

const (
	sec    = time.Second
	minute = time.Minute
	us     = time.Microsecond
)

// scenarios returns the table. Every expected number is derived in the
// comments from the formulas of docs/algorithms.md:
//
//	fixed:   start = now - now mod unit; fits if count+N <= R;
//	         Remaining = R - count - N; ResetAfter = start + unit - now.
//	sliding: estimate = prev*(unit-elapsed)/unit + cur; fits if
//	         estimate+N <= R + 1e-9; Remaining = floor(R - estimate - N + 1e-9);
//	         ResetAfter = end of window on OK, else the wait until it fits.
//	bucket:  tokens refill at R/unit up to capacity (Burst or R); fits if
//	         tokens + 1e-9 >= N; Remaining = floor(tokens - N + 1e-9);
//	         ResetAfter = ceil((capacity - left)/rate) on OK, ceil((N -
//	         tokens)/rate) when over, one unit when it can never fit.
func scenarios() []scenario {
	fw3 := fixed(3, minute)
	sw3 := sliding(3, minute)
	sw10 := sliding(10, minute)
	tb3 := bucket(3, sec, 0)   // 3 tokens per second, capacity 3: one token per 333_333.3 µs
	tb1b5 := bucket(1, sec, 5) // 1 token per second, capacity 5

	long := strings.Repeat("x", 64<<10)
	oddKeys := []string{
		"", "\x00", "\x00\x00", "a", "a\x00", "a\x00b", "a:b", "a:b:", "a|b", "a b",
		"a\nb", "a\r\nb", "{a}", "{a}b", "a}b{", "}{", "\xff\xfe\xfd", "ä", "a\\b", "a%00b",
		long, long + "y", "y" + long, long[:len(long)-1] + "y",
	}
	lim1 := fixed(1, minute)
	var allOnce, allAgain []quota.Hit
	var allOnceWant, allAgainWant []quota.Decision
	for _, k := range oddKeys {
		allOnce = append(allOnce, hit(k, lim1, 1))
		allOnceWant = append(allOnceWant, ok(0, 40*sec))
		allAgain = append(allAgain, hit(k, lim1, 0))
		allAgainWant = append(allAgainWant, ok(0, 40*sec))
	}
	// Keys whose own tag holds the odd bytes: each hit is its own batch,
	// so the tag need not be shared.
	var ownTag []step
	for _, k := range []string{"{", "}", "{}", "\x00", "\x00\x00", "a\x00", "a\x00b", "{a\x00}"} {
		h := quota.Hit{Key: k, TagLen: len(k), Limit: lim1, N: 1}
		ownTag = append(ownTag, one(0, h, ok(0, 40*sec)))
	}
	for _, k := range []string{"{", "}", "{}", "\x00", "\x00\x00", "a\x00", "a\x00b", "{a\x00}"} {
		h := quota.Hit{Key: k, TagLen: len(k), Limit: lim1, N: 1}
		ownTag = append(ownTag, one(0, h, over(40*sec)))
	}

	return append(countingScenarios(), []scenario{
		{
			// Base is 20 s into its minute: the window ends in 40 s.
			name: "fixed/exact limit then reject",
			steps: []step{
				one(0, hit("f", fw3, 1), ok(2, 40*sec)),
				one(0, hit("f", fw3, 1), ok(1, 40*sec)),
				one(0, hit("f", fw3, 1), ok(0, 40*sec)),
				// 3+1 > 3: over until the window ends.
				one(0, hit("f", fw3, 1), over(40*sec)),
				one(39*sec, hit("f", fw3, 1), over(1*sec)),
				// The rejected hits took nothing: still 3 in the window.
				one(999_999*us, hit("f", fw3, 0), ok(0, 1*us)),
			},
		},
		{
			name: "fixed/window rollover",
			steps: []step{
				one(0, hit("f", fw3, 3), ok(0, 40*sec)),
				one(0, hit("f", fw3, 1), over(40*sec)),
				// At the window boundary the count starts again.
				one(40*sec, hit("f", fw3, 1), ok(2, 60*sec)),
				// Two windows later the old count is gone.
				one(120*sec, hit("f", fw3, 0), ok(3, 60*sec)),
				one(59*sec+999_999*us, hit("f", fw3, 2), ok(1, 1*us)),
				one(1*us, hit("f", fw3, 0), ok(3, 60*sec)),
			},
		},
		{
			name: "fixed/epoch alignment",
			steps: []step{
				one(0, hit("h", fixed(3, time.Hour), 1), ok(2, 2800*sec)),
				one(0, hit("d", fixed(3, 24*time.Hour), 1), ok(2, 6400*sec)),
				// 7 s windows: Base mod 7 = 6, so 1 s is left.
				one(0, hit("7", fixed(2, 7*sec), 2), ok(0, 1*sec)),
				one(0, hit("7", fixed(2, 7*sec), 1), over(1*sec)),
				// Sub-second offsets keep microseconds: 40 s - 0.25 s.
				one(250*time.Millisecond, hit("m", fw3, 1), ok(2, 39750*time.Millisecond)),
				// Base+0.25 s+0.75 s = Base+1 s: a new 7 s window begins.
				one(750*time.Millisecond, hit("7", fixed(2, 7*sec), 1), ok(1, 7*sec)),
			},
		},
		{
			// Limit 3/min. Base is 20 s into window W0 (W1 starts 40 s later).
			name: "sliding/exact limit then reject and rollover",
			steps: []step{
				one(0, hit("s", sw3, 1), ok(2, 40*sec)),
				one(0, hit("s", sw3, 1), ok(1, 40*sec)),
				one(0, hit("s", sw3, 1), ok(0, 40*sec)),
				// cur=3: the estimate can only fall after W0 ends, when 3 is
				// weighted (60-e)/60: 3(60-e)/60 <= 3-1 at e = 20 s,
				// so the wait is 40 s + 20 s.
				one(0, hit("s", sw3, 1), over(60*sec)),
				// At W1+0: prev=3, cur=0, estimate 3; it fits at e = 20 s.
				one(40*sec, hit("s", sw3, 1), over(20*sec)),
				// At W1+20 s: 3*40/60 + 0 + 1 = 3 <= 3 (the epsilon absorbs
				// the float rounding of 40/60).
				one(20*sec, hit("s", sw3, 1), ok(0, 40*sec)),
				// At W1+120 s = W3+0 the counter (last written in W1) is
				// two windows old: empty.
				one(100*sec, hit("s", sw3, 0), ok(3, 60*sec)),
			},
		},
		{
			// Limit 10/min. 8 hits in W0, then checks at offsets e into W1:
			// estimate = 8*(60-e)/60.
			name: "sliding/weighted estimate at offsets",
			steps: []step{
				one(0, hit("s", sw10, 8), ok(2, 40*sec)),
				one(40*sec, hit("s", sw10, 0), ok(2, 60*sec)), // e=0:  8
				one(15*sec, hit("s", sw10, 0), ok(4, 45*sec)), // e=15: 6
				one(15*sec, hit("s", sw10, 0), ok(6, 30*sec)), // e=30: 4
				one(15*sec, hit("s", sw10, 0), ok(8, 15*sec)), // e=45: 2
				one(14*sec, hit("s", sw10, 0), ok(9, 1*sec)),  // e=59: 0.133, floor(9.867)
				one(1*sec, hit("s", sw10, 0), ok(10, 60*sec)), // W2: prev = W1's 0
				one(0, hit("s", sw10, 3), ok(7, 60*sec)),      // 0 + 3
				one(30*sec, hit("s", sw10, 2), ok(5, 30*sec)), // 0 + 3 + 2: no prev
				one(30*sec, hit("s", sw10, 0), ok(5, 60*sec)), // W3+0: 5*60/60 = 5
				one(6*sec, hit("s", sw10, 1), ok(4, 54*sec)),  // 5*54/60 + 1 = 5.5: floor(4.5)
				one(0, hit("s", sw10, 0), ok(4, 54*sec)),      // 4.5 + 1 = 5.5
				one(12*sec, hit("s", sw10, 0), ok(5, 42*sec)), // e=18: 5*42/60 + 1 = 4.5
			},
		},
		{
			// Limit 10/min, 8 hits in W0, 6 more at W1+30 s (estimate
			// 8*30/60 + 6 = 10).
			name: "sliding/over-limit wait inside the window",
			steps: []step{
				one(0, hit("s", sw10, 8), ok(2, 40*sec)),
				one(70*sec, hit("s", sw10, 6), ok(0, 30*sec)),
				// One more fits when 8(60-e)/60 + 6 <= 9: e = 37.5 s, 7.5 s on.
				one(0, hit("s", sw10, 1), over(7500*time.Millisecond)),
				// Two more fit when 8(60-e)/60 + 6 <= 8: e = 45 s, 15 s on.
				one(0, hit("s", sw10, 2), over(15*sec)),
				// 1 µs early it still does not fit.
				one(7500*time.Millisecond-1*us, hit("s", sw10, 1), over(1*us)),
				one(1*us, hit("s", sw10, 1), ok(0, 22500*time.Millisecond)),
			},
		},
		{
			// Limit 10/min, all 10 taken at W0+20 s (40 s before W1).
			name: "sliding/over-limit wait beyond one unit",
			steps: []step{
				one(0, hit("s", sw10, 10), ok(0, 40*sec)),
				// In W1, 10(60-e)/60 <= 10-N:
				// N=1: e = 6 s, wait 40+6 = 46 s.
				one(0, hit("s", sw10, 1), over(46*sec)),
				// N=9: e = 54 s, wait 94 s: more than one unit.
				one(0, hit("s", sw10, 9), over(94*sec)),
				// N=10: e = 60 s, wait 100 s (W2 start).
				one(0, hit("s", sw10, 10), over(100*sec)),
				// N=11 > R never fits: the time until the counter is empty,
				// end of W1 = 100 s.
				one(0, hit("s", sw10, 11), over(100*sec)),
				// At W1+5.999999 s the weight is 54.000001/60: still over.
				one(46*sec-1*us, hit("s", sw10, 1), over(1*us)),
				// At W1+6 s: 10*54/60 + 1 = 10 fits.
				one(1*us, hit("s", sw10, 1), ok(0, 54*sec)),
			},
		},
		{
			// 1 token/s, capacity 5 (rate 1e-6 per µs).
			name: "bucket/burst and refill",
			steps: []step{
				one(0, hit("b", tb1b5, 0), ok(5, 0)),
				// A fresh bucket is full: the whole burst at once.
				one(0, hit("b", tb1b5, 5), ok(0, 5*sec)),
				// Empty: 1 token takes 1 s.
				one(0, hit("b", tb1b5, 1), over(1*sec)),
				// 2.5 s later 2.5 tokens: 3 need 0.5 s more.
				one(2500*time.Millisecond, hit("b", tb1b5, 3), over(500*time.Millisecond)),
				// The rejected hits took nothing: 3 tokens at 3 s.
				one(500*time.Millisecond, hit("b", tb1b5, 3), ok(0, 5*sec)),
				one(0, hit("b", tb1b5, 0), ok(0, 5*sec)),
				// Refill stops at capacity.
				one(time.Hour, hit("b", tb1b5, 0), ok(5, 0)),
				one(0, hit("b", tb1b5, 2), ok(3, 2*sec)),
			},
		},
		{
			// 3 tokens/s: rate 3e-6 per µs, one token per 333_333.33 µs.
			name: "bucket/fractional refill",
			steps: []step{
				// left 2: ceil(1/3e-6) = 333_334 µs until full.
				one(0, hit("b", tb3, 1), ok(2, 333_334*us)),
				// left 0: ceil(3/3e-6) = 1 s.
				one(0, hit("b", tb3, 2), ok(0, 1*sec)),
				// 333_333 µs refill 0.999999 tokens: 1e-6 short, which
				// takes ceil(1e-6/3e-6) = 1 µs.
				one(333_333*us, hit("b", tb3, 1), over(1*us)),
				// 1.000002 tokens: fits, left 0.000002 -> Remaining 0,
				// ceil(2.999998/3e-6) = ceil(999_999.33) µs until full.
				one(1*us, hit("b", tb3, 1), ok(0, 1*sec)),
				// Another 333_333 µs: 1.000001 tokens.
				one(333_333*us, hit("b", tb3, 0), ok(1, 666_667*us)),
				// 3 need 1.999999 more: ceil(1.999999 × 1e6/3) = ceil(666_666.33) µs.
				one(0, hit("b", tb3, 3), over(666_667*us)),
			},
		},
		{
			// Rates that are inexact in binary: 1 token per 7 s is
			// 1/7e6 per µs, and 7e6 µs of it sums to 0.9999999999999999 in
			// float64; the epsilon admits the token all the same. Times are
			// computed as tokens × unit / requests, so a whole number of µs
			// on paper stays whole: 1 × 7e6 / 1 = 7 s exactly.
			name: "bucket/epsilon keeps exact refills",
			steps: []step{
				one(0, hit("b", bucket(1, 7*sec, 0), 1), ok(0, 7*sec)),
				one(7*sec, hit("b", bucket(1, 7*sec, 0), 1), ok(0, 7*sec)),
				one(7*sec, hit("b", bucket(1, 7*sec, 0), 1), ok(0, 7*sec)),
				// 7 per 3 s: 7 × 3e6 / 7 = 3 s to refill them all.
				one(0, hit("c", bucket(7, 3*sec, 0), 7), ok(0, 3*sec)),
				one(3*sec, hit("c", bucket(7, 3*sec, 0), 7), ok(0, 3*sec)),
			},
		},
		{
			name: "all/check only takes nothing",
			steps: []step{
				{
					hits: []quota.Hit{hit("f", fw3, 0), hit("s", sw3, 0), hit("b", tb3, 0)},
					want: []quota.Decision{ok(3, 40*sec), ok(3, 40*sec), ok(3, 0)},
				},
				{
					hits: []quota.Hit{hit("f", fw3, 0), hit("s", sw3, 0), hit("b", tb3, 0)},
					want: []quota.Decision{ok(3, 40*sec), ok(3, 40*sec), ok(3, 0)},
				},
				{
					hits: []quota.Hit{hit("f", fw3, 3), hit("s", sw3, 3), hit("b", tb3, 3)},
					want: []quota.Decision{ok(0, 40*sec), ok(0, 40*sec), ok(0, 1*sec)},
				},
				// A check on an exhausted limit still fits, with nothing left.
				{
					hits: []quota.Hit{hit("f", fw3, 0), hit("s", sw3, 0), hit("b", tb3, 0)},
					want: []quota.Decision{ok(0, 40*sec), ok(0, 40*sec), ok(0, 1*sec)},
				},
			},
		},
		{
			// N larger than the limit can ever admit.
			name: "all/N above capacity",
			steps: []step{
				one(0, hit("f", fw3, 4), over(40*sec)),
				// Sliding: the time until both windows holding hits pass.
				one(0, hit("s", sw3, 4), over(100*sec)),
				// Bucket: one unit, as for requests_per_unit 0.
				one(0, hit("b", tb1b5, 6), over(1*sec)),
				one(0, hit("b", tb1b5, 1000), over(1*sec)),
				// Nothing was taken by the rejections.
				{
					hits: []quota.Hit{hit("f", fw3, 3), hit("s", sw3, 3), hit("b", tb1b5, 5)},
					want: []quota.Decision{ok(0, 40*sec), ok(0, 40*sec), ok(0, 5*sec)},
				},
				// Partly drained bucket: still one unit.
				one(2*sec, hit("b", tb1b5, 6), over(1*sec)),
			},
		},
		{
			name: "all/requests_per_unit 0 blocks all",
			steps: []step{
				one(0, hit("f", fixed(0, minute), 1), over(40*sec)),
				// Sliding: N=1 > 0 never fits: end of the next window.
				one(0, hit("s", sliding(0, minute), 1), over(100*sec)),
				// Bucket: nothing ever refills, whatever the burst: one unit.
				one(0, hit("b", bucket(0, minute, 5), 1), over(60*sec)),
				// Checks fit with nothing left.
				{
					hits: []quota.Hit{hit("f", fixed(0, minute), 0), hit("s", sliding(0, minute), 0), hit("b", bucket(0, minute, 5), 0)},
					want: []quota.Decision{ok(0, 40*sec), ok(0, 40*sec), ok(0, 60*sec)},
				},
			},
		},
		{
			// fw3, sw3, a bucket of 1/s capacity 2, and x: fixed 1/min.
			name: "all/all or nothing and shadow",
			steps: []step{
				{
					// x: 2 > 1 rejects the batch; the others report what they
					// would have left.
					hits: []quota.Hit{hit("f", fw3, 1), hit("s", sw3, 1), hit("b", bucket(1, sec, 2), 1), hit("x", fixed(1, minute), 2)},
					want: []quota.Decision{ok(2, 40*sec), ok(2, 40*sec), ok(1, 1*sec), over(40 * sec)},
				},
				{
					// Nothing was taken.
					hits: []quota.Hit{hit("f", fw3, 0), hit("s", sw3, 0), hit("b", bucket(1, sec, 2), 0), hit("x", fixed(1, minute), 0)},
					want: []quota.Decision{ok(3, 40*sec), ok(3, 40*sec), ok(2, 0), ok(1, 40*sec)},
				},
				{
					// A shadow hit over its limit does not reject the batch.
					hits: []quota.Hit{hit("f", fw3, 1), hit("s", sw3, 1), hit("b", bucket(1, sec, 2), 1), shadow("x", fixed(1, minute), 2)},
					want: []quota.Decision{ok(2, 40*sec), ok(2, 40*sec), ok(1, 1*sec), over(40 * sec)},
				},
				{
					// The others were taken; the shadow hit took nothing itself.
					hits: []quota.Hit{hit("f", fw3, 0), hit("s", sw3, 0), hit("b", bucket(1, sec, 2), 0), hit("x", fixed(1, minute), 0)},
					want: []quota.Decision{ok(2, 40*sec), ok(2, 40*sec), ok(1, 1*sec), ok(1, 40*sec)},
				},
				{
					// The bucket holds 1 token: 2 need 1 s; the batch is rejected.
					hits: []quota.Hit{hit("f", fw3, 1), hit("b", bucket(1, sec, 2), 2)},
					want: []quota.Decision{ok(1, 40*sec), over(1 * sec)},
				},
				{
					hits: []quota.Hit{hit("f", fw3, 0), hit("b", bucket(1, sec, 2), 0)},
					want: []quota.Decision{ok(2, 40*sec), ok(1, 1*sec)},
				},
				{
					// A shadow hit that fits is taken.
					hits: []quota.Hit{shadow("x", fixed(1, minute), 1), hit("f", fw3, 1)},
					want: []quota.Decision{ok(0, 40*sec), ok(1, 40*sec)},
				},
				{
					hits: []quota.Hit{hit("x", fixed(1, minute), 0), hit("f", fw3, 0)},
					want: []quota.Decision{ok(0, 40*sec), ok(1, 40*sec)},
				},
				{
					// Only shadow hits over their limits: not rejected, and
					// the fitting non-shadow hit is taken.
					hits: []quota.Hit{shadow("x", fixed(1, minute), 1), shadow("s", sw3, 5), hit("f", fw3, 1)},
					want: []quota.Decision{over(40 * sec), over(100 * sec), ok(0, 40*sec)},
				},
				{
					hits: []quota.Hit{hit("x", fixed(1, minute), 0), hit("s", sw3, 0), hit("f", fw3, 0)},
					want: []quota.Decision{ok(0, 40*sec), ok(2, 40*sec), ok(0, 40*sec)},
				},
			},
		},
		{
			// Quota mode (envoyproxy/ratelimit's quota_mode): a batch is
			// rejected when every quota hit in it is over, or when a
			// normal hit is. q1: fixed 1/min, q2: fixed 2/min, both quota;
			// n: fixed 5/min, normal. Base is 40 s before its minute ends.
			name: "quota/rejected only when every quota hit is over",
			steps: []step{
				{
					// Everything fits: taken. q1 1 of 1, q2 1 of 2, n 1 of 5.
					hits: []quota.Hit{quotaHit("q1", fixed(1, minute), 1), quotaHit("q2", fixed(2, minute), 1), hit("n", fixed(5, minute), 1)},
					want: []quota.Decision{ok(0, 40*sec), ok(1, 40*sec), ok(4, 40*sec)},
				},
				{
					// q1 is over (1+1 > 1) but q2 fits (1+1 <= 2): admitted;
					// q2 and n are taken, q1 takes nothing.
					hits: []quota.Hit{quotaHit("q1", fixed(1, minute), 1), quotaHit("q2", fixed(2, minute), 1), hit("n", fixed(5, minute), 1)},
					want: []quota.Decision{over(40 * sec), ok(0, 40*sec), ok(3, 40*sec)},
				},
				{
					// Both quota hits over: rejected, though n would fit
					// (2+1 <= 5, 2 left).
					hits: []quota.Hit{quotaHit("q1", fixed(1, minute), 1), quotaHit("q2", fixed(2, minute), 1), hit("n", fixed(5, minute), 1)},
					want: []quota.Decision{over(40 * sec), over(40 * sec), ok(2, 40*sec)},
				},
				{
					// n holds the 2 of the two admitted batches: 3 left.
					hits: []quota.Hit{hit("q1", fixed(1, minute), 0), hit("q2", fixed(2, minute), 0), hit("n", fixed(5, minute), 0)},
					want: []quota.Decision{ok(0, 40*sec), ok(0, 40*sec), ok(3, 40*sec)},
				},
				{
					// The next window: q1 has room again, n starts from 0.
					advance: 40 * sec,
					hits:    []quota.Hit{quotaHit("q1", fixed(1, minute), 1), hit("n", fixed(5, minute), 1)},
					want:    []quota.Decision{ok(0, 60*sec), ok(4, 60*sec)},
				},
				// A lone quota hit over its limit: rejected.
				one(0, quotaHit("q1", fixed(1, minute), 1), over(60*sec)),
			},
		},
		{
			// r: fixed 3/min in quota mode; x: fixed 1/min, normal; s: fixed
			// 1/min in shadow mode.
			name: "quota/a normal hit over rejects; shadow hits never count",
			steps: []step{
				{
					// r fits (2 left), x does not (2 > 1): rejected.
					hits: []quota.Hit{quotaHit("r", fixed(3, minute), 1), hit("x", fixed(1, minute), 2)},
					want: []quota.Decision{ok(2, 40*sec), over(40 * sec)},
				},
				one(0, hit("r", fixed(3, minute), 0), ok(3, 40*sec)),
				{
					// s is over (5 > 1) but in shadow mode; r, the only quota
					// hit, fits: admitted, r taken.
					hits: []quota.Hit{shadow("s", fixed(1, minute), 5), quotaHit("r", fixed(3, minute), 1)},
					want: []quota.Decision{over(40 * sec), ok(2, 40*sec)},
				},
				{
					// Shadow wins over quota: a hit with both set is a
					// shadow hit, so the batch has no quota hit over and r
					// (normal here) fits: admitted, r taken (1 left).
					hits: []quota.Hit{func() quota.Hit { h := shadow("s", fixed(1, minute), 5); h.Quota = true; return h }(), hit("r", fixed(3, minute), 1)},
					want: []quota.Decision{over(40 * sec), ok(1, 40*sec)},
				},
				{
					hits: []quota.Hit{hit("r", fixed(3, minute), 0), hit("s", fixed(1, minute), 0), hit("x", fixed(1, minute), 0)},
					want: []quota.Decision{ok(1, 40*sec), ok(1, 40*sec), ok(1, 40*sec)},
				},
			},
		},
		{
			// Hits whose keys have tags of their own (qa, qb, ...), so that a
			// clustered backend decides them on several nodes (and refunds
			// what a node took when the batch is rejected). qa, qb: quota,
			// fixed 1/min; qd: quota, fixed 2/min; nc: normal, fixed 5/min;
			// be: normal bucket 1/s, capacity 5; nx: normal, fixed 0/min.
			name: "spread/quota and all or nothing across tags",
			steps: []step{
				{
					hits: []quota.Hit{spread("qa", "a", fixed(1, minute), 1, true), spread("qb", "b", fixed(1, minute), 1, true), spread("qc", "c", fixed(5, minute), 1, false)},
					want: []quota.Decision{ok(0, 40*sec), ok(0, 40*sec), ok(4, 40*sec)},
				},
				{
					// Both quota hits over: rejected. nc and be would fit
					// (be: 5 tokens, 4 left, full again in 1 s) but take
					// nothing.
					hits: []quota.Hit{spread("qa", "a", fixed(1, minute), 1, true), spread("qb", "b", fixed(1, minute), 1, true), spread("qc", "c", fixed(5, minute), 1, false), spread("qe", "e", bucket(1, sec, 5), 1, false)},
					want: []quota.Decision{over(40 * sec), over(40 * sec), ok(3, 40*sec), ok(4, 1*sec)},
				},
				{
					// nc still holds 1; be is full.
					hits: []quota.Hit{spread("qc", "c", fixed(5, minute), 0, false), spread("qe", "e", bucket(1, sec, 5), 0, false)},
					want: []quota.Decision{ok(4, 40*sec), ok(5, 0)},
				},
				{
					// qa over, qd fits: admitted; qd, nc and na (normal,
					// fixed 5/min, on qa's tag: a node that sees only qa
					// over must not reject on its own) taken.
					hits: []quota.Hit{spread("qa", "a", fixed(1, minute), 1, true), spread("qd", "d", fixed(2, minute), 1, true), spread("qc", "c", fixed(5, minute), 1, false), spread("qa", "n", fixed(5, minute), 1, false)},
					want: []quota.Decision{over(40 * sec), ok(1, 40*sec), ok(3, 40*sec), ok(4, 40*sec)},
				},
				{
					hits: []quota.Hit{spread("qa", "a", fixed(1, minute), 0, false), spread("qd", "d", fixed(2, minute), 0, false), spread("qc", "c", fixed(5, minute), 0, false), spread("qa", "n", fixed(5, minute), 0, false)},
					want: []quota.Decision{ok(0, 40*sec), ok(1, 40*sec), ok(3, 40*sec), ok(4, 40*sec)},
				},
				{
					// qd fits, but nx (normal, limit 0) is over: rejected.
					hits: []quota.Hit{spread("qd", "d", fixed(2, minute), 1, true), spread("qx", "x", fixed(0, minute), 1, false)},
					want: []quota.Decision{ok(0, 40*sec), over(40 * sec)},
				},
				one(0, spread("qd", "d", fixed(2, minute), 0, false), ok(1, 40*sec)),
				{
					// Without quota hits: nc fits, nx is over: rejected.
					hits: []quota.Hit{spread("qc", "c", fixed(5, minute), 2, false), spread("qx", "x", fixed(0, minute), 1, false)},
					want: []quota.Decision{ok(1, 40*sec), over(40 * sec)},
				},
				one(0, spread("qc", "c", fixed(5, minute), 0, false), ok(3, 40*sec)),
			},
		},
		{
			name: "all/same key twice in one batch",
			steps: []step{
				{
					// The second hit sees the first.
					hits: []quota.Hit{hit("f", fw3, 2), hit("f", fw3, 1)},
					want: []quota.Decision{ok(1, 40*sec), ok(0, 40*sec)},
				},
				one(0, hit("f", fw3, 0), ok(0, 40*sec)),
				{
					// 2 then 2 more: the second is over, so neither is taken.
					hits: []quota.Hit{hit("g", fw3, 2), hit("g", fw3, 2)},
					want: []quota.Decision{ok(1, 40*sec), over(40 * sec)},
				},
				one(0, hit("g", fw3, 0), ok(3, 40*sec)),
				{
					// A hit that does not fit takes nothing, so the next
					// one on the key sees the full count; the batch is still
					// rejected by the first.
					hits: []quota.Hit{hit("g", fw3, 5), hit("g", fw3, 1)},
					want: []quota.Decision{over(40 * sec), ok(2, 40*sec)},
				},
				one(0, hit("g", fw3, 0), ok(3, 40*sec)),
				{
					// Sliding: the 4th sees cur=3; it fits when
					// 3(60-e)/60 <= 2 in the next window: 40 s + 20 s.
					hits: []quota.Hit{hit("s", sw3, 1), hit("s", sw3, 1), hit("s", sw3, 1), hit("s", sw3, 1)},
					want: []quota.Decision{ok(2, 40*sec), ok(1, 40*sec), ok(0, 40*sec), over(60 * sec)},
				},
				one(0, hit("s", sw3, 0), ok(3, 40*sec)),
				{
					// Bucket 3/s: left 2 then 1; full in ceil(1/3e-6) and
					// ceil(2/3e-6) µs.
					hits: []quota.Hit{hit("b", tb3, 1), hit("b", tb3, 1)},
					want: []quota.Decision{ok(2, 333_334*us), ok(1, 666_667*us)},
				},
				one(0, hit("b", tb3, 0), ok(1, 666_667*us)),
				{
					// A shadow hit over its limit takes nothing, and the next
					// hit on the key sees that.
					hits: []quota.Hit{shadow("x", fixed(1, minute), 2), hit("x", fixed(1, minute), 1)},
					want: []quota.Decision{over(40 * sec), ok(0, 40*sec)},
				},
				one(0, hit("x", fixed(1, minute), 0), ok(0, 40*sec)),
			},
		},
		{
			// Every key is distinct from every other: each takes its own one
			// hit, then each is exhausted while the others still are too.
			name: "keys/arbitrary bytes stay distinct",
			steps: append([]step{
				{hits: allOnce, want: allOnceWant},
				{hits: allAgain, want: allAgainWant},
			}, ownTag...),
		},
	}...)
}

// RunScenarios runs every scenario of the suite against fresh backends
// built by f, each on a clock that starts at Base.
func RunScenarios(t *testing.T, f Factory) {
	t.Helper()
	runScenarios(t, f, scenarios())
}

// RunCountingScenarios runs only the scenarios of hits counted other than
// all or nothing (overdraw debts, the reference's counting, the token-quota
// examples), for a wrapper such as the near-cache, which may answer other
// scenarios' over-limit waits more briefly than its backend, by design.
func RunCountingScenarios(t *testing.T, f Factory) {
	t.Helper()
	runScenarios(t, f, countingScenarios())
}

func runScenarios(t *testing.T, f Factory, list []scenario) {
	t.Helper()
	for _, sc := range list {
		t.Run(sc.name, func(t *testing.T) {
			clock := NewClock(Base)
			lim := f(t, clock)
			for i, st := range sc.steps {
				clock.Advance(st.advance)
				got := make([]quota.Decision, len(st.hits))
				if err := lim.Take(context.Background(), st.hits, got); err != nil {
					t.Fatalf("step %d: Take: %v", i, err)
				}
				for j := range st.want {
					got[j].FromCache = false // where an answer came from is not the backend's concern
					if got[j] != st.want[j] {
						t.Errorf("step %d (at Base+%v) hit %d (key %s, %v %d/%v, N=%d): got %s, want %s",
							i, clock.Now().Sub(Base), j, printable(st.hits[j].Key), st.hits[j].Limit.Algorithm,
							st.hits[j].Limit.Requests, st.hits[j].Limit.Unit, st.hits[j].N, show(got[j]), show(st.want[j]))
					}
				}
			}
		})
	}
}

func show(d quota.Decision) string {
	verdict := "OVER"
	if d.Fits {
		verdict = "OK"
	}
	return fmt.Sprintf("%s remaining=%d resetAfter=%v", verdict, d.Remaining, d.ResetAfter)
}

// printable shortens and quotes a key for a failure message.
func printable(k string) string {
	if len(k) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", k[:20], len(k))
	}
	return strconv.Quote(k)
}
