// Package quota holds the value types shared by the rate-limit service and its
// counter backends, and the reference arithmetic of the three algorithms.
//
// The in-memory backend runs Evaluate directly; the Redis backend runs Lua
// scripts that implement the same formulas line for line (pkg/lua). A
// scenario table runs against both and must give the same answers.
//
// Time is counted in whole microseconds since the Unix epoch, because that is
// what Redis's TIME gives inside a script; float64 holds such values exactly
// (they stay below 2^53 until the year 2255).
package quota

import (
	"context"
	"math"
	"strings"
	"time"
)

// Algorithm selects how a limit counts.
type Algorithm uint8

const (
	// SlidingWindow is the sliding-window counter: the previous fixed window's
	// count weighted by how much of it still overlaps the sliding window, plus
	// the current window's count. The default.
	SlidingWindow Algorithm = iota
	// FixedWindow counts per window aligned to the Unix epoch, as
	// envoyproxy/ratelimit does.
	FixedWindow
	// TokenBucket refills Requests tokens per Unit up to Burst; fractional
	// tokens are kept.
	TokenBucket
)

// String returns the config name of the algorithm.
func (a Algorithm) String() string {
	switch a {
	case SlidingWindow:
		return "sliding_window"
	case FixedWindow:
		return "fixed_window"
	case TokenBucket:
		return "token_bucket"
	}
	return "unknown"
}

// ParseAlgorithm maps a config name to an Algorithm.
func ParseAlgorithm(s string) (Algorithm, bool) {
	switch s {
	case "sliding_window":
		return SlidingWindow, true
	case "fixed_window":
		return FixedWindow, true
	case "token_bucket":
		return TokenBucket, true
	}
	return 0, false
}

// Limit is one configured (or Envoy-overridden) limit.
type Limit struct {
	Algorithm Algorithm
	// Requests is the number of hits allowed per Unit (the refill rate of a
	// token bucket). 0 rejects every hit.
	Requests uint64
	// Unit is the window length (or refill period); a whole number of seconds.
	Unit time.Duration
	// Burst is the token bucket's capacity; 0 means Requests. Ignored by the
	// window algorithms.
	Burst uint64
}

// Capacity is the most hits the limit can admit at once.
func (l Limit) Capacity() uint64 {
	if l.Algorithm == TokenBucket && l.Burst > 0 {
		return l.Burst
	}
	return l.Requests
}

// Hit asks to take N hits from the counter named Key under Limit.
type Hit struct {
	// Key names the counter. It is unique per domain, descriptor entries
	// (after share_threshold folding), algorithm and unit, and may hold any
	// byte. Backends may prefix or hash it but must keep distinct keys apart.
	Key string
	// TagLen is the length of the prefix of Key (domain and first entry) that
	// a clustered backend uses to place counters: hits whose keys share that
	// prefix may be decided together on one node.
	TagLen int
	Limit  Limit
	// N is the number of hits to take; 0 checks without taking.
	N uint64
	// Shadow marks a limit in shadow mode: it is reported but never causes
	// the request to be rejected.
	Shadow bool
	// Quota marks a limit in quota mode (envoyproxy/ratelimit's quota_mode):
	// one that does not fit rejects the batch only when every Quota hit of
	// the batch does not fit. Ignored when Shadow is set.
	Quota bool
	// Counting says when the hit is taken (see Taken); the zero value is
	// AllOrNothing.
	Counting Counting
}

// Counting says when a hit is taken from its counter. It changes what is
// written, never a decision: Fits is the same under every Counting.
type Counting uint8

const (
	// AllOrNothing takes a hit when it fits and its batch is not rejected
	// (Rejects). The default.
	AllOrNothing Counting = iota
	// Always takes a hit in full whatever the decisions: also when it does
	// not fit (a window's count goes past the limit, a bucket below zero:
	// a debt that later hits must wait out) and when its batch is
	// rejected. An `overdraw` rule's hits, and every hit under the
	// reference's counting (--count-rejected).
	Always
	// UnlessOtherOver takes a hit in full when it does not fit and, when it
	// fits, only if every hit of its batch fits: envoyproxy/ratelimit's
	// counting with STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT, where a
	// request that one descriptor rejects adds nothing to its others.
	UnlessOtherOver
)

// TakesInFull reports whether h is taken even though d says it does not
// fit: a hit of Always or UnlessOtherOver counting that takes something.
// Such a hit is taken whatever the rest of its batch decides.
func TakesInFull(h *Hit, d *Decision) bool {
	return !d.Fits && h.N > 0 && h.Counting != AllOrNothing
}

// Taken reports whether hit h, decided d, is taken from its counter, given
// whether its batch is rejected (Rejects) and whether every hit of the
// batch fits (AllFit). A check (N = 0) takes nothing.
func Taken(h *Hit, d *Decision, rejected, allFit bool) bool {
	if h.N == 0 {
		return false
	}
	switch h.Counting {
	case Always:
		return true
	case UnlessOtherOver:
		return !d.Fits || allFit
	}
	return d.Fits && !rejected
}

// AllFit reports whether every decision of ds fits.
func AllFit(ds []Decision) bool {
	for i := range ds {
		if !ds[i].Fits {
			return false
		}
	}
	return true
}

// Chains reports whether a later hit on h's key in the same batch is
// decided on the state h leaves: whether h is taken if its batch is
// admitted and every hit fits. (A hit that fits is not taken when the batch
// turns out rejected, or, under UnlessOtherOver, when another hit does not
// fit; the later hits on its key were still decided as if it were, but what
// is written is only the taken hits' effect.)
func Chains(h *Hit, d *Decision) bool {
	return h.N > 0 && (d.Fits || h.Counting != AllOrNothing)
}

// Decision is a backend's answer for one Hit.
type Decision struct {
	// Fits reports whether this limit alone had room for the hit's N.
	Fits bool
	// Remaining is the number of hits left after this decision (0 when the
	// hit did not fit).
	Remaining uint64
	// ResetAfter is, when Fits, the time until the current window ends (window
	// algorithms) or until the bucket is full again (token bucket); when not,
	// the time until a hit of this size would be admitted.
	ResetAfter time.Duration
	// FromCache reports that a near-cache answered, without asking the
	// backend (envoyproxy/ratelimit's over_limit_with_local_cache).
	FromCache bool
}

// Rejects reports whether a batch whose decisions are ds is rejected: some
// limit that is in neither shadow nor quota mode lacks room, or the batch
// has quota-mode limits and none of them has room. A rejected batch takes
// nothing from any of its limits (all-or-nothing).
func Rejects(hits []Hit, ds []Decision) bool {
	quotas, quotaFits := false, false
	for i := range ds {
		h := &hits[i]
		switch {
		case h.Shadow:
		case h.Quota:
			quotas = true
			quotaFits = quotaFits || ds[i].Fits
		case !ds[i].Fits:
			return true
		}
	}
	return quotas && !quotaFits
}

// Limiter keeps counters and decides batches of hits. Backends (memory,
// Redis) implement it in their own packages; the decision engine consumes it.
type Limiter interface {
	// Take decides hits as one batch and writes out[i] for hits[i]
	// (len(out) == len(hits)). Hit i is taken exactly when Taken(&hits[i],
	// &out[i], Rejects(hits, out), AllFit(out)): for the default
	// AllOrNothing counting, nothing is taken if the batch is rejected and
	// otherwise every hit that fits. A hit taken although it does not fit
	// is decided by EvaluateHit. Hits that share a Key are decided in
	// order, each seeing the earlier ones that Chains says it does; what
	// is written is the taken hits' next states (Evaluate) applied in
	// order to the stored counter. An error means no decision was made and
	// nothing was taken.
	Take(ctx context.Context, hits []Hit, out []Decision) error
}

// Pinger is a backend that can say whether it is able to decide now (for
// readiness).
type Pinger interface {
	Ping(ctx context.Context) error
}

// State is the stored state of one counter. The meaning of the fields depends
// on the algorithm:
//
//	fixed_window:   Window = window start (µs), Cur = hits in it
//	sliding_window: Window = current window start (µs), Cur = hits in it,
//	                Prev = hits in the window before it
//	token_bucket:   Window = time of the last update (µs), Tokens = tokens then
//
// The zero State is a counter that has never been hit.
type State struct {
	Window int64
	Cur    uint64
	Prev   uint64
	Tokens float64
	// Set is false for a counter that does not exist yet.
	Set bool
}

// epsilon absorbs float rounding in the sliding-window estimate and in
// fractional tokens, so that exact arithmetic on paper (3 × 1/3 = 1) never
// rejects a hit.
const epsilon = 1e-9

// Micros converts a time to whole microseconds since the Unix epoch.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// Evaluate decides hits from limit l at time now (µs since the epoch) given
// the counter's state s. It returns the decision and the state the counter
// has if the hits are taken in full, whether or not they fit (a window's
// count past the limit, a bucket below zero). TTL is how long the counter
// must outlive now after being written with next: past it, a fresh counter
// behaves the same as the stored one would.
func Evaluate(l Limit, s State, now int64, hits uint64) (d Decision, next State, ttl time.Duration) {
	unit := l.Unit.Microseconds()
	if unit <= 0 {
		unit = 1_000_000
	}
	switch l.Algorithm {
	case FixedWindow:
		return fixedWindow(l, s, now, unit, hits)
	case TokenBucket:
		return tokenBucket(l, s, now, unit, hits)
	default:
		return slidingWindow(l, s, now, unit, hits)
	}
}

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

func fixedWindow(l Limit, s State, now, unit int64, hits uint64) (Decision, State, time.Duration) {
	start := now - now%unit
	var count uint64
	if s.Set && s.Window == start {
		count = s.Cur
	}
	end := start + unit
	next := State{Window: start, Cur: addSat(count, hits), Set: true}
	d := Decision{ResetAfter: micros(end - now)}
	// Written so that a huge hits cannot wrap count+hits around.
	if hits <= l.Requests && count <= l.Requests-hits {
		d.Fits = true
		d.Remaining = l.Requests - count - hits
	}
	return d, next, micros(end - now)
}

func slidingWindow(l Limit, s State, now, unit int64, hits uint64) (Decision, State, time.Duration) {
	start := now - now%unit
	var cur, prev uint64
	if s.Set {
		switch s.Window {
		case start:
			cur, prev = s.Cur, s.Prev
		case start - unit:
			prev = s.Cur
		}
	}
	elapsed := now - start
	end := start + unit
	limit := float64(l.Requests)
	// The share of the previous window still inside the sliding window.
	weight := float64(unit-elapsed) / float64(unit)
	estimate := float64(prev)*weight + float64(cur)
	next := State{Window: start, Cur: addSat(cur, hits), Prev: prev, Set: true}
	// The counter must hold Cur through the next window, where it is Prev.
	ttl := micros(end + unit - now)
	after := estimate + float64(hits)
	if after <= limit+epsilon {
		left := math.Floor(limit - after + epsilon)
		if left < 0 {
			left = 0
		}
		return Decision{Fits: true, Remaining: uint64(left), ResetAfter: micros(end - now)}, next, ttl
	}
	return Decision{ResetAfter: micros(slidingWait(l.Requests, cur, prev, hits, now, start, unit))}, next, ttl
}

// slidingWait is the time from now until a hit of size hits would fit a
// sliding window whose current window started at start and holds cur, with
// prev in the window before.
func slidingWait(limit, cur, prev, hits uint64, now, start, unit int64) int64 {
	end := start + unit
	if hits > limit {
		// Never fits; answer with the time until both windows have passed,
		// after which the counter is empty.
		return end + unit - now
	}
	room := float64(limit - hits) // what the estimate may be
	if cur <= limit-hits && prev > 0 {
		// Within this window the previous window's weight falls until
		// prev*(unit-e)/unit + cur <= room.
		e := float64(unit) - (room-float64(cur))*float64(unit)/float64(prev)
		at := start + int64(math.Ceil(e))
		if at > now && at <= end {
			return at - now
		}
	}
	// In the next window, this window's cur becomes prev and its weight falls
	// from 1: cur*(unit-e)/unit <= room.
	if cur == 0 || float64(cur) <= room {
		return end - now
	}
	e := float64(unit) - room*float64(unit)/float64(cur)
	return end + int64(math.Ceil(e)) - now
}

func tokenBucket(l Limit, s State, now, unit int64, hits uint64) (Decision, State, time.Duration) {
	capacity := float64(l.Capacity())
	// Refill rate in tokens per microsecond.
	rate := float64(l.Requests) / float64(unit)
	tokens := capacity
	if s.Set {
		tokens = s.Tokens
		if elapsed := now - s.Window; elapsed > 0 {
			tokens += float64(elapsed) * rate
		}
		if tokens > capacity {
			tokens = capacity
		}
	}
	need := float64(hits)
	next := State{Window: now, Tokens: tokens, Set: true}
	if l.Requests == 0 {
		// Nothing ever refills: report one unit, as the window algorithms
		// do. A check (hits 0) takes nothing, so it fits, with nothing left,
		// as it does under the window algorithms.
		return Decision{Fits: hits == 0, ResetAfter: micros(unit)}, next, micros(unit)
	}
	if tokens+epsilon >= need {
		left := tokens - need
		if left < 0 {
			left = 0
		}
		untilFull := refillMicros(capacity-left, l.Requests, unit)
		next.Tokens = left
		rem := math.Floor(left + epsilon)
		return Decision{Fits: true, Remaining: uint64(rem), ResetAfter: micros(untilFull)}, next, micros(untilFull) + time.Second
	}
	// Taken in full anyway (overdraw), the bucket goes below zero: a debt
	// that refills at the same rate before anything fits again.
	next.Tokens = tokens - need
	untilFull := refillMicros(capacity-next.Tokens, l.Requests, unit)
	if need > capacity {
		// Never fits, however long one waits: report one unit, as for a
		// limit of 0, rather than a wait after which it still fails.
		return Decision{ResetAfter: micros(unit)}, next, micros(untilFull) + time.Second
	}
	wait := refillMicros(need-tokens, l.Requests, unit)
	return Decision{ResetAfter: micros(wait)}, next, micros(untilFull) + time.Second
}

// EvaluateHit is Evaluate for hit h, and what a backend calls: for a hit
// taken in full although it does not fit (TakesInFull), ResetAfter is the
// wait until a hit of its size would fit on the state the charge leaves,
// so that it tells the debt, not the state before it.
func EvaluateHit(h *Hit, s State, now int64) (d Decision, next State, ttl time.Duration) {
	d, next, ttl = Evaluate(h.Limit, s, now, h.N)
	if TakesInFull(h, &d) {
		after, _, _ := Evaluate(h.Limit, next, now, h.N)
		d.ResetAfter = after.ResetAfter
	}
	return d, next, ttl
}

// refillMicros is the time, in whole microseconds rounded up, that refills
// tokens at requests per unit. It multiplies by unit before dividing by
// requests, instead of dividing by the rounded rate, so that a time that is a
// whole number of microseconds on paper is not rounded up by one (1 token at
// 1 per 7 s takes 7_000_000 µs, where tokens/rate gives 7_000_000.000000001).
func refillMicros(tokens float64, requests uint64, unit int64) int64 {
	return int64(math.Min(math.Ceil(tokens*float64(unit)/float64(requests)), maxWait))
}

// maxWait caps a refill time, in µs: 100 years (of 365 days), so that a
// debt from an absurd charge cannot overflow a time.Duration. Every real
// wait is far below it.
const maxWait = 100 * 365 * 24 * 3600 * 1e6

// addSat is a + b, saturating at the largest uint64 instead of wrapping,
// so that a huge charge taken in full cannot wrap a count back to little.
func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// units are the units a limit is counted in: the config names (lower case)
// and lengths of the units of Envoy's RateLimitResponse.RateLimit.Unit,
// whose enum names are these names in upper case. A month and a year have
// fixed lengths, as counters need a fixed window. The one table of units.
var units = [...]struct {
	name   string
	length time.Duration
}{
	{"second", time.Second},
	{"minute", time.Minute},
	{"hour", time.Hour},
	{"day", 24 * time.Hour},
	{"week", 7 * 24 * time.Hour},
	{"month", 30 * 24 * time.Hour},
	{"year", 365 * 24 * time.Hour},
}

// AllowedUnits lists the unit names, for error messages.
const AllowedUnits = "second, minute, hour, day, week, month, year (any letter case)"

// ParseUnit returns the length of the unit named name, in any letter case.
func ParseUnit(name string) (time.Duration, bool) {
	for _, u := range units {
		if strings.EqualFold(u.name, name) {
			return u.length, true
		}
	}
	return 0, false
}

// UnitName returns the lower-case name of a unit length, or "" when d is
// not one of the units.
func UnitName(d time.Duration) string {
	for _, u := range units {
		if u.length == d {
			return u.name
		}
	}
	return ""
}
