package quota

import (
	"math"
	"testing"
	"time"
)

// The instants below: base is 2023-11-14T22:13:20Z in µs, 20 s into its
// minute. w0 is that minute's start, w1 and w2 the next minutes'.
const (
	base = int64(1_700_000_000_000_000)
	w0   = base - 20_000_000
	w1   = w0 + 60_000_000
	w2   = w1 + 60_000_000
	sec  = int64(1_000_000)
)

func fixedLimit(r uint64, unit time.Duration) Limit {
	return Limit{Algorithm: FixedWindow, Requests: r, Unit: unit}
}

func slidingLimit(r uint64, unit time.Duration) Limit {
	return Limit{Algorithm: SlidingWindow, Requests: r, Unit: unit}
}

func bucketLimit(r uint64, unit time.Duration, burst uint64) Limit {
	return Limit{Algorithm: TokenBucket, Requests: r, Unit: unit, Burst: burst}
}

type evalCase struct {
	name     string
	l        Limit
	s        State
	now      int64
	hits     uint64
	want     Decision
	wantNext State // compared only when want.Fits; Tokens to within 1e-9
	wantTTL  time.Duration
}

func runEval(t *testing.T, tests []evalCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, next, ttl := Evaluate(tt.l, tt.s, tt.now, tt.hits)
			if d != tt.want {
				t.Errorf("decision: got %+v, want %+v", d, tt.want)
			}
			if ttl != tt.wantTTL {
				t.Errorf("ttl: got %v, want %v", ttl, tt.wantTTL)
			}
			if !tt.want.Fits {
				return
			}
			gotTokens, wantTokens := next.Tokens, tt.wantNext.Tokens
			next.Tokens, tt.wantNext.Tokens = 0, 0
			if next != tt.wantNext || math.Abs(gotTokens-wantTokens) > 1e-9 {
				next.Tokens, tt.wantNext.Tokens = gotTokens, wantTokens
				t.Errorf("next: got %+v, want %+v", next, tt.wantNext)
			}
		})
	}
}

func TestFixedWindow(t *testing.T) {
	t.Parallel()
	l := fixedLimit(3, time.Minute)
	runEval(t, []evalCase{
		{
			name: "fresh", l: l, now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 2, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Cur: 1, Set: true}, wantTTL: 40 * time.Second,
		},
		{
			name: "same window", l: l, s: State{Window: w0, Cur: 2, Set: true}, now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Cur: 3, Set: true}, wantTTL: 40 * time.Second,
		},
		{
			name: "full", l: l, s: State{Window: w0, Cur: 3, Set: true}, now: base, hits: 1,
			want: Decision{ResetAfter: 40 * time.Second}, wantTTL: 40 * time.Second,
		},
		{
			name: "check on full", l: l, s: State{Window: w0, Cur: 3, Set: true}, now: base, hits: 0,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Cur: 3, Set: true}, wantTTL: 40 * time.Second,
		},
		{
			name: "previous window is forgotten", l: l, s: State{Window: w0, Cur: 3, Set: true}, now: w1 + 1, hits: 1,
			want:     Decision{Fits: true, Remaining: 2, ResetAfter: 60*time.Second - time.Microsecond},
			wantNext: State{Window: w1, Cur: 1, Set: true}, wantTTL: 60*time.Second - time.Microsecond,
		},
		{
			name: "last microsecond of the window", l: l, now: w1 - 1, hits: 3,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: time.Microsecond},
			wantNext: State{Window: w0, Cur: 3, Set: true}, wantTTL: time.Microsecond,
		},
		{
			// 1_700_000_000 s mod 1.5 s = 0.5 s: 1 s left.
			name: "unit of 1.5 s", l: fixedLimit(3, 1500*time.Millisecond), now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 2, ResetAfter: time.Second},
			wantNext: State{Window: base - 500_000, Cur: 1, Set: true}, wantTTL: time.Second,
		},
		{
			// A 0 unit falls back to one second.
			name: "unit 0", l: fixedLimit(3, 0), now: base + 250_000, hits: 1,
			want:     Decision{Fits: true, Remaining: 2, ResetAfter: 750 * time.Millisecond},
			wantNext: State{Window: base, Cur: 1, Set: true}, wantTTL: 750 * time.Millisecond,
		},
		{
			name: "N above the limit", l: l, now: base, hits: 4,
			want: Decision{ResetAfter: 40 * time.Second}, wantTTL: 40 * time.Second,
		},
		{
			name: "requests 0 rejects a hit", l: fixedLimit(0, time.Minute), now: base, hits: 1,
			want: Decision{ResetAfter: 40 * time.Second}, wantTTL: 40 * time.Second,
		},
		{
			name: "requests 0 admits a check", l: fixedLimit(0, time.Minute), now: base, hits: 0,
			want:     Decision{Fits: true, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Set: true}, wantTTL: 40 * time.Second,
		},
		{
			name: "uint32 extremes", l: fixedLimit(math.MaxUint32, time.Minute),
			s: State{Window: w0, Cur: math.MaxUint32 - 1, Set: true}, now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Cur: math.MaxUint32, Set: true}, wantTTL: 40 * time.Second,
		},
		{
			// count+hits would wrap around to 0 in uint64.
			name: "huge N does not wrap", l: l, s: State{Window: w0, Cur: 1, Set: true}, now: base, hits: math.MaxUint64,
			want: Decision{ResetAfter: 40 * time.Second}, wantTTL: 40 * time.Second,
		},
		{
			name: "huge limit", l: fixedLimit(math.MaxUint64, time.Minute), s: State{Window: w0, Cur: 1, Set: true}, now: base, hits: math.MaxUint64 - 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Cur: math.MaxUint64, Set: true}, wantTTL: 40 * time.Second,
		},
		{
			name: "daily window aligned to the epoch", l: fixedLimit(3, 24*time.Hour), now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 2, ResetAfter: 6400 * time.Second},
			wantNext: State{Window: base - 80_000*sec, Cur: 1, Set: true}, wantTTL: 6400 * time.Second,
		},
	})
}

func TestSlidingWindow(t *testing.T) {
	t.Parallel()
	l := slidingLimit(10, time.Minute)
	runEval(t, []evalCase{
		{
			// The counter must outlive this window and the next, where
			// its count is prev: 40 s + 60 s.
			name: "fresh", l: l, now: base, hits: 3,
			want:     Decision{Fits: true, Remaining: 7, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Cur: 3, Set: true}, wantTTL: 100 * time.Second,
		},
		{
			// 8 × 45/60 = 6.
			name: "weighted previous window", l: l, s: State{Window: w0, Cur: 8, Set: true}, now: w1 + 15*sec, hits: 0,
			want:     Decision{Fits: true, Remaining: 4, ResetAfter: 45 * time.Second},
			wantNext: State{Window: w1, Prev: 8, Set: true}, wantTTL: 105 * time.Second,
		},
		{
			// 8 × 1/60 = 0.133: floor(10 - 0.133) = 9.
			name: "remaining rounds down", l: l, s: State{Window: w0, Cur: 8, Set: true}, now: w1 + 59*sec, hits: 0,
			want:     Decision{Fits: true, Remaining: 9, ResetAfter: time.Second},
			wantNext: State{Window: w1, Prev: 8, Set: true}, wantTTL: 61 * time.Second,
		},
		{
			// 8 × 30/60 + 2 + 3 = 9: Remaining 1.
			name: "current and previous", l: l, s: State{Window: w1, Cur: 2, Prev: 8, Set: true}, now: w1 + 30*sec, hits: 3,
			want:     Decision{Fits: true, Remaining: 1, ResetAfter: 30 * time.Second},
			wantNext: State{Window: w1, Cur: 5, Prev: 8, Set: true}, wantTTL: 90 * time.Second,
		},
		{
			name: "two windows old is forgotten", l: l, s: State{Window: w0, Cur: 10, Set: true}, now: w2, hits: 1,
			want:     Decision{Fits: true, Remaining: 9, ResetAfter: 60 * time.Second},
			wantNext: State{Window: w2, Cur: 1, Set: true}, wantTTL: 120 * time.Second,
		},
		{
			// 3 × 40/60 + 1 = 3 on paper; 40/60 is inexact in binary.
			name: "epsilon admits an exact fit", l: slidingLimit(3, time.Minute), s: State{Window: w0, Cur: 3, Set: true}, now: w1 + 20*sec, hits: 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w1, Cur: 1, Prev: 3, Set: true}, wantTTL: 100 * time.Second,
		},
		{
			// 8 × 30/60 + 6 + 1 = 11 > 10; fits when 8(60-e)/60 + 6 <= 9,
			// at e = 37.5 s.
			name: "wait within the window", l: l, s: State{Window: w1, Cur: 6, Prev: 8, Set: true}, now: w1 + 30*sec, hits: 1,
			want: Decision{ResetAfter: 7500 * time.Millisecond}, wantTTL: 90 * time.Second,
		},
		{
			// cur 10 alone is over 9: in the next window 10(60-e)/60 <= 9
			// at e = 6 s: 40 s + 6 s.
			name: "wait into the next window", l: l, s: State{Window: w0, Cur: 10, Set: true}, now: base, hits: 1,
			want: Decision{ResetAfter: 46 * time.Second}, wantTTL: 100 * time.Second,
		},
		{
			// 10(60-e)/60 <= 1 at e = 54 s: 94 s, more than one unit.
			name: "wait longer than a unit", l: l, s: State{Window: w0, Cur: 10, Set: true}, now: base, hits: 9,
			want: Decision{ResetAfter: 94 * time.Second}, wantTTL: 100 * time.Second,
		},
		{
			// prev 10 and cur 0 at e = 30: 5 + 6 > 10. In this window,
			// 10(60-e)/60 <= 4 at e = 36 s.
			name: "wait with an empty current window", l: l, s: State{Window: w0, Cur: 10, Set: true}, now: w1 + 30*sec, hits: 6,
			want: Decision{ResetAfter: 6 * time.Second}, wantTTL: 90 * time.Second,
		},
		{
			// Never fits: until both windows holding hits have passed.
			name: "N above the limit", l: l, now: base, hits: 11,
			want: Decision{ResetAfter: 100 * time.Second}, wantTTL: 100 * time.Second,
		},
		{
			name: "requests 0 admits a check", l: slidingLimit(0, time.Minute), now: base, hits: 0,
			want:     Decision{Fits: true, ResetAfter: 40 * time.Second},
			wantNext: State{Window: w0, Set: true}, wantTTL: 100 * time.Second,
		},
		{
			// 1_700_000_000 s mod 7 s = 6 s: window started 6 s ago;
			// prev 7 weighted 1/7: 1 + 5 = 6 of 7.
			name: "unit of 7 s", l: slidingLimit(7, 7*time.Second), s: State{Window: base - 13*sec, Cur: 7, Set: true}, now: base, hits: 5,
			want:     Decision{Fits: true, Remaining: 1, ResetAfter: time.Second},
			wantNext: State{Window: base - 6*sec, Cur: 5, Prev: 7, Set: true}, wantTTL: 8 * time.Second,
		},
		{
			// prev 2^32-1 weighted 1/2, cur 0: estimate 2147483647.5, then
			// 2^31 more: 4294967295.5 > 4294967295.
			name: "uint32 extremes over", l: slidingLimit(math.MaxUint32, time.Minute),
			s: State{Window: w0, Cur: math.MaxUint32, Set: true}, now: w1 + 30*sec, hits: 1 << 31,
			// Fits when (2^32-1)(60-e)/60 <= 2^31-1: e = 60 - 60(2^31-1)/(2^32-1)
			// = 30.0000000069 s: ceil to 30.000001 s, 1 µs away.
			want: Decision{ResetAfter: time.Microsecond}, wantTTL: 90 * time.Second,
		},
		{
			name: "uint32 extremes fit", l: slidingLimit(math.MaxUint32, time.Minute),
			s: State{Window: w0, Cur: math.MaxUint32, Set: true}, now: w1 + 30*sec, hits: 1<<31 - 1,
			// floor(4294967295 - 2147483647.5 - 2147483647 + 1e-9) = 0.
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 30 * time.Second},
			wantNext: State{Window: w1, Cur: 1<<31 - 1, Prev: math.MaxUint32, Set: true}, wantTTL: 90 * time.Second,
		},
	})
}

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	l := bucketLimit(3, time.Second, 0) // 3 per second, capacity 3
	runEval(t, []evalCase{
		{
			// A fresh bucket is full. Left 2: ceil(1 × 1e6/3) µs to full;
			// the TTL adds a second.
			name: "fresh", l: l, now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 2, ResetAfter: 333_334 * time.Microsecond},
			wantNext: State{Window: base, Tokens: 2, Set: true}, wantTTL: 1_333_334 * time.Microsecond,
		},
		{
			// 0.5 + 0.5 s × 3/s = 2 tokens; left 0.
			name: "refill", l: l, s: State{Window: base - 500_000, Tokens: 0.5, Set: true}, now: base, hits: 2,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: time.Second},
			wantNext: State{Window: base, Tokens: 0, Set: true}, wantTTL: 2 * time.Second,
		},
		{
			name: "refill stops at capacity", l: l, s: State{Window: base - 3600*sec, Tokens: 0, Set: true}, now: base, hits: 0,
			want:     Decision{Fits: true, Remaining: 3, ResetAfter: 0},
			wantNext: State{Window: base, Tokens: 3, Set: true}, wantTTL: time.Second,
		},
		{
			// 1.5 tokens: Remaining floor(0.5) = 0, ceil(2.5e6/3) µs to full.
			name: "fractional tokens kept", l: l, s: State{Window: base, Tokens: 1.5, Set: true}, now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 833_334 * time.Microsecond},
			wantNext: State{Window: base, Tokens: 0.5, Set: true}, wantTTL: 1_833_334 * time.Microsecond,
		},
		{
			// 0.5 tokens, 2 needed: ceil(1.5e6/3) = 500 ms.
			name: "over", l: l, s: State{Window: base, Tokens: 0.5, Set: true}, now: base, hits: 2,
			// The TTL is the overdrawn state's (0.5 - 2 = -1.5 tokens): full
			// in 4.5 tokens × 1e6/3 = 1_500_000 µs, plus 1 s.
			want: Decision{ResetAfter: 500 * time.Millisecond}, wantTTL: 2_500_000 * time.Microsecond,
		},
		{
			// 0.9999995 tokens: the 5e-7 short takes ceil(5e-7 × 1e6/3) =
			// ceil(0.17) = 1 µs; full in ceil(2.0000005e6/3) = 666_667 µs.
			name: "just short", l: l, s: State{Window: base, Tokens: 0.9999995, Set: true}, now: base, hits: 1,
			// Overdrawn, -5e-7 tokens: full in ceil(3.0000005e6/3) = 1_000_001 µs, plus 1 s.
			want: Decision{ResetAfter: time.Microsecond}, wantTTL: 2_000_001 * time.Microsecond,
		},
		{
			// 1 per 7 s: 7e6 µs × 1/7e6 is 0.9999999999999999 in float64.
			name: "epsilon admits an exact refill", l: bucketLimit(1, 7*time.Second, 0), s: State{Window: base - 7*sec, Tokens: 0, Set: true}, now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 7 * time.Second},
			wantNext: State{Window: base, Tokens: 0, Set: true}, wantTTL: 8 * time.Second,
		},
		{
			// 1 × 7e6 / 1 is exactly 7 s; 1/(1/7e6) would be 7.000001 s.
			name: "times stay whole", l: bucketLimit(1, 7*time.Second, 0), now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 7 * time.Second},
			wantNext: State{Window: base, Tokens: 0, Set: true}, wantTTL: 8 * time.Second,
		},
		{
			name: "burst above the rate", l: bucketLimit(1, time.Second, 5), now: base, hits: 5,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: 5 * time.Second},
			wantNext: State{Window: base, Tokens: 0, Set: true}, wantTTL: 6 * time.Second,
		},
		{
			// Never fits: one unit, not (1000-5) s.
			name: "N above capacity", l: bucketLimit(1, time.Second, 5), now: base, hits: 1000,
			// Overdrawn, 5 - 1000 = -995 tokens: full in 1000 s, plus 1 s.
			want: Decision{ResetAfter: time.Second}, wantTTL: 1001 * time.Second,
		},
		{
			name: "requests 0 rejects a hit whatever the burst", l: bucketLimit(0, time.Minute, 5), now: base, hits: 1,
			want: Decision{ResetAfter: time.Minute}, wantTTL: time.Minute,
		},
		{
			name: "requests 0 admits a check with nothing left", l: bucketLimit(0, time.Minute, 5), now: base, hits: 0,
			want:     Decision{Fits: true, ResetAfter: time.Minute},
			wantNext: State{Window: base, Tokens: 5, Set: true}, wantTTL: time.Minute,
		},
		{
			// A clock that stepped back refills nothing.
			name: "time going backwards", l: l, s: State{Window: base + sec, Tokens: 1, Set: true}, now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: time.Second},
			wantNext: State{Window: base, Tokens: 0, Set: true}, wantTTL: 2 * time.Second,
		},
		{
			// 1 per 1.5 s: 1.5 s to refill the one token taken.
			name: "unit of 1.5 s", l: bucketLimit(1, 1500*time.Millisecond, 2), now: base, hits: 1,
			want:     Decision{Fits: true, Remaining: 1, ResetAfter: 1500 * time.Millisecond},
			wantNext: State{Window: base, Tokens: 1, Set: true}, wantTTL: 2500 * time.Millisecond,
		},
		{
			name: "uint32 extremes", l: bucketLimit(math.MaxUint32, time.Second, 0), now: base, hits: math.MaxUint32,
			want:     Decision{Fits: true, Remaining: 0, ResetAfter: time.Second},
			wantNext: State{Window: base, Tokens: 0, Set: true}, wantTTL: 2 * time.Second,
		},
	})
}

// TestHugeInputs: no input panics, and no limit admits more than its
// capacity in one hit.
func TestHugeInputs(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, TokenBucket} {
		for _, r := range []uint64{0, 1, math.MaxUint32, 1 << 53, math.MaxUint64} {
			for _, unit := range []time.Duration{0, time.Microsecond, time.Second, 365 * 24 * time.Hour} {
				l := Limit{Algorithm: alg, Requests: r, Unit: unit}
				for _, s := range []State{{}, {Window: base, Cur: math.MaxUint64, Prev: math.MaxUint64, Tokens: math.MaxFloat64, Set: true}} {
					for _, n := range []uint64{0, 1, math.MaxUint32, math.MaxUint64} {
						d, _, ttl := Evaluate(l, s, base, n)
						if d.Fits && n > l.Capacity() {
							t.Errorf("%v R=%d unit=%v N=%d: admitted more than capacity", alg, r, unit, n)
						}
						if ttl < 0 || d.ResetAfter < 0 {
							t.Errorf("%v R=%d unit=%v N=%d: negative time %v / %v", alg, r, unit, n, d.ResetAfter, ttl)
						}
					}
				}
			}
		}
	}
}

func TestRejects(t *testing.T) {
	t.Parallel()
	okD, overD := Decision{Fits: true}, Decision{}
	tests := []struct {
		name string
		hits []Hit
		ds   []Decision
		want bool
	}{
		{"empty", nil, nil, false},
		{"all fit", []Hit{{}, {}}, []Decision{okD, okD}, false},
		{"one over", []Hit{{}, {}}, []Decision{okD, overD}, true},
		{"shadow over", []Hit{{}, {Shadow: true}}, []Decision{okD, overD}, false},
		{"shadow and real over", []Hit{{Shadow: true}, {}}, []Decision{overD, overD}, true},
	}
	for _, tt := range tests {
		if got := Rejects(tt.hits, tt.ds); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAlgorithmNames(t *testing.T) {
	t.Parallel()
	for _, a := range []Algorithm{SlidingWindow, FixedWindow, TokenBucket} {
		got, ok := ParseAlgorithm(a.String())
		if !ok || got != a {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v, true", a.String(), got, ok, a)
		}
	}
	if _, ok := ParseAlgorithm("leaky_bucket"); ok {
		t.Error("ParseAlgorithm accepted leaky_bucket")
	}
	if got := Algorithm(99).String(); got != "unknown" {
		t.Errorf("Algorithm(99).String() = %q, want unknown", got)
	}
	if Algorithm(0) != SlidingWindow {
		t.Error("the zero Algorithm must be the default, sliding_window")
	}
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		l    Limit
		want uint64
	}{
		{bucketLimit(3, time.Second, 0), 3},
		{bucketLimit(3, time.Second, 10), 10},
		{fixedLimit(3, time.Second), 3},
		{Limit{Algorithm: SlidingWindow, Requests: 3, Burst: 10}, 3},
	}
	for _, tt := range tests {
		if got := tt.l.Capacity(); got != tt.want {
			t.Errorf("%+v.Capacity() = %d, want %d", tt.l, got, tt.want)
		}
	}
	if got, want := Micros(time.Unix(1_700_000_000, 1500)), base+1; got != want {
		t.Errorf("Micros: got %d, want %d", got, want)
	}
}

// TestTaken: which hits a batch takes under each counting.
func TestTaken(t *testing.T) {
	t.Parallel()
	fits, over := Decision{Fits: true}, Decision{}
	tests := []struct {
		counting         Counting
		n                uint64
		d                Decision
		rejected, allFit bool
		want             bool
	}{
		{AllOrNothing, 1, fits, false, true, true},
		{AllOrNothing, 1, fits, true, false, false},
		{AllOrNothing, 1, fits, false, false, true}, // a shadow hit elsewhere is over
		{AllOrNothing, 1, over, false, false, false},
		{Always, 1, over, true, false, true},
		{Always, 1, fits, true, false, true},
		{UnlessOtherOver, 1, over, true, false, true},
		{UnlessOtherOver, 1, fits, true, false, false},
		{UnlessOtherOver, 1, fits, false, true, true},
		{Always, 0, over, true, false, false}, // a check takes nothing
		{UnlessOtherOver, 0, over, true, false, false},
	}
	for _, tt := range tests {
		h := Hit{N: tt.n, Counting: tt.counting}
		if got := Taken(&h, &tt.d, tt.rejected, tt.allFit); got != tt.want {
			t.Errorf("Taken(counting %d, N=%d, fits %v, rejected %v, allFit %v) = %v, want %v",
				tt.counting, tt.n, tt.d.Fits, tt.rejected, tt.allFit, got, tt.want)
		}
	}
}

// TestEvaluateHitDebt: a hit taken in full although it does not fit leaves
// the counter past its limit, and its reset is counted from there.
func TestEvaluateHitDebt(t *testing.T) {
	t.Parallel()
	// 100 an hour: a token per 36 s. Full bucket, a charge of 150.
	l := bucketLimit(100, time.Hour, 0)
	h := Hit{Limit: l, N: 150, Counting: Always}
	d, next, ttl := EvaluateHit(&h, State{}, base)
	if d.Fits || d.Remaining != 0 || d.ResetAfter != time.Hour {
		t.Errorf("charge of 150 on 100: %+v, want over; never fits a bucket of 100: one unit", d)
	}
	if next.Tokens != -50 || next.Window != base {
		t.Errorf("next %+v, want -50 tokens at base", next)
	}
	// Full after 150 tokens (5400 s), plus 1 s.
	if ttl != 5401*time.Second {
		t.Errorf("ttl %v, want 1h30m1s", ttl)
	}
	// Owing 50: a check waits 30 minutes, a hit of 10 32 minutes.
	if d, _, _ := EvaluateHit(&Hit{Limit: l}, next, base); d.Fits || d.ResetAfter != 30*time.Minute {
		t.Errorf("check owing 50: %+v, want over for 30m", d)
	}
	ten := Hit{Limit: l, N: 10, Counting: Always}
	d, next, _ = EvaluateHit(&ten, next, base)
	// Taken: -60; another 10 then needs 70 tokens: 42 minutes.
	if d.Fits || d.ResetAfter != 42*time.Minute || next.Tokens != -60 {
		t.Errorf("a charge of 10 owing 50: %+v, next %+v, want over for 42m, -60 tokens", d, next)
	}
	// The same hit counted all or nothing reports the wait from before it.
	ten.Counting = AllOrNothing
	if d, _, _ := EvaluateHit(&ten, State{Window: base, Tokens: -50, Set: true}, base); d.ResetAfter != 36*time.Minute {
		t.Errorf("all or nothing, owing 50: %+v, want over for 36m", d)
	}
	// Windows: the count goes past the limit, saturating.
	fw := Limit{Algorithm: FixedWindow, Requests: 3, Unit: time.Minute}
	if _, next, _ := Evaluate(fw, State{Window: base - base%60_000_000, Cur: math.MaxUint64 - 1, Set: true}, base, 5); next.Cur != math.MaxUint64 {
		t.Errorf("saturating count: %d", next.Cur)
	}
}
