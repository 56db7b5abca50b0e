// Package engine decides rate-limit requests, whatever door they came in by.
//
// A door (Envoy's RateLimitService, ext_authz Check, ...) turns its own
// request into a Request of this package's types, calls Decide, and turns
// the Outcome into its own answer. The engine owns everything in between:
// the compiled plan (one resolved Limit per rule, built at config load),
// matching, Envoy's limit overrides, `replaces`, the counter keys, the
// all-or-nothing take through the backend (quota.Limiter), the per-rule
// metrics and the headers' values. It imports no transport.
package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Entry is one entry of a request descriptor.
type Entry = descriptors.Entry

// Override is a limit given with the request (Envoy's per-descriptor
// `limit`), which replaces the configured one.
type Override struct {
	// Requests is the number of hits allowed per Unit.
	Requests uint64
	// Unit is the window length, a whole number of seconds.
	Unit time.Duration
}

// Descriptor is one descriptor of a request.
type Descriptor struct {
	Entries []Entry
	// Hits, when HasHits, is this descriptor's hit count instead of the
	// request's; present and 0, the descriptor is checked without counting.
	Hits    uint64
	HasHits bool
	// Override, when HasOverride, replaces the configured limit.
	Override    Override
	HasOverride bool
	// Limit, when set, is the door's own limit for this descriptor (made
	// once with Engine.NewLimit), decided in the same batch as the
	// config's: the descriptor is not matched against the config, and its
	// counter is named by the limit's namespace instead of the request's
	// domain. Override does not apply to it.
	Limit *Limit
}

// Request asks for a decision on every descriptor of one request.
type Request struct {
	Domain      string
	Descriptors []Descriptor
	// Hits is the request's hit count for every descriptor without its
	// own; 0 counts as 1.
	Hits uint64
}

// Code is a decision.
type Code uint8

const (
	// OK admits.
	OK Code = iota
	// OverLimit rejects.
	OverLimit
)

// Status is the decision for one descriptor.
type Status struct {
	Code Code
	// Limit is the limit that applied, nil when none did: no rule matched
	// and no override was given, the rule is unlimited, another matched
	// rule replaced it, or the domain is unknown.
	Limit *Limit
	// Rule is the rule the descriptor matched when its limit (or its
	// unlimited answer) came from one, else nil.
	Rule *descriptors.Rule
	// Unlimited is set when the descriptor matched an unlimited rule.
	Unlimited bool
	// Remaining is the hits left after this decision (0 when over).
	Remaining uint64
	// ResetAfter is in whole seconds, rounded up: on an OK answer the time
	// until the window ends or the bucket is full; over the limit the time
	// until this request would be admitted, at least a second.
	ResetAfter time.Duration
	// Hits is the number of hits asked of the limit.
	Hits uint64
}

// Outcome is the decision for a whole request.
type Outcome struct {
	// Code is OverLimit when the request is rejected.
	Code Code
	// KnownDomain is false when no config defines the request's domain
	// (every status is then OK).
	KnownDomain bool
	// Statuses has one entry per request descriptor, in order.
	Statuses []Status
}

// DefaultNearLimitRatio is Options.NearLimitRatio when unset, as the
// reference's NEAR_LIMIT_RATIO default.
const DefaultNearLimitRatio = 0.8

// ErrUnavailable is returned by Decide when the backend could not decide.
// The cause is logged, never returned: answers carry no internals.
var ErrUnavailable = errors.New("rate-limit backend unavailable")

// Options configure an Engine. The zero value of each field is its default.
type Options struct {
	// Limiter keeps the counters. Required.
	Limiter quota.Limiter
	// FailOpen admits (and counts it) when the Limiter fails, instead of
	// returning ErrUnavailable.
	FailOpen bool
	// ShadowMode never rejects: statuses still say OverLimit, the outcome
	// is OK, and every limit that had room takes its hits (the
	// reference's SHADOW_MODE).
	ShadowMode bool
	// QuotaMode treats every limit as quota_mode (the reference's
	// QUOTA_MODE).
	QuotaMode bool
	// CountRejected counts as envoyproxy/ratelimit does: every hit is taken
	// from its counter whatever the outcome, rejected ones and those of a
	// rejected request too (quota.Always), instead of all or nothing. A
	// descriptor is still over its limit when its hits do not fit.
	CountRejected bool
	// StopIncrementOverLimit, with CountRejected, takes nothing from the
	// descriptors that had room when another descriptor of the request is
	// over its limit (quota.UnlessOtherOver; the reference's
	// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT). Without CountRejected it
	// changes nothing: a rejected request takes nothing anyway.
	StopIncrementOverLimit bool
	// NearLimitRatio is the share of a limit past which admitted hits
	// count as near_limit in the metrics (the reference's
	// NEAR_LIMIT_RATIO); 0 means DefaultNearLimitRatio. It must be in
	// (0, 1].
	NearLimitRatio float64
	// Metrics receives counters; nil keeps them unregistered.
	Metrics *Metrics
	// Log receives backend failures (at most one line a second); nil
	// discards them.
	Log *slog.Logger
	// Observer, when set, is told of every decision (see Observer).
	Observer Observer
	// TraceID, when set, names the sampled trace a call's context belongs
	// to (ok false when none): a timed call of a sampled trace records
	// its latency with the trace ID as the exemplar (label trace_id). The
	// engine knows nothing of tracing itself; nil costs nothing.
	TraceID func(ctx context.Context) (id string, ok bool)
}

// Engine decides requests against the config in force. It is safe for
// concurrent use; SetConfig swaps the config while calls are in flight.
type Engine struct {
	limiter    quota.Limiter
	failOpen   bool
	shadowMode bool
	quotaMode  bool
	counting   quota.Counting // of every hit of a rule without overdraw
	nearRatio  float32
	metrics    *Metrics
	observer   Observer
	traceID    func(context.Context) (string, bool)
	errLog     rateLimitedLog

	plan    atomic.Pointer[plan]
	scratch sync.Pool
}

// New returns an Engine with no config: until SetConfig every domain is
// unknown and every request is admitted.
func New(opts Options) (*Engine, error) {
	if opts.Limiter == nil {
		return nil, errors.New("engine: Options.Limiter is required")
	}
	ratio := opts.NearLimitRatio
	if ratio == 0 {
		ratio = DefaultNearLimitRatio
	}
	if !(ratio > 0 && ratio <= 1) {
		return nil, fmt.Errorf("engine: Options.NearLimitRatio is %g, want more than 0 and at most 1", opts.NearLimitRatio)
	}
	e := &Engine{
		limiter:    opts.Limiter,
		failOpen:   opts.FailOpen,
		shadowMode: opts.ShadowMode,
		quotaMode:  opts.QuotaMode,
		nearRatio:  float32(ratio),
		metrics:    opts.Metrics,
		observer:   opts.Observer,
		traceID:    opts.TraceID,
		errLog:     rateLimitedLog{log: opts.Log},
	}
	switch {
	case opts.CountRejected && opts.StopIncrementOverLimit:
		e.counting = quota.UnlessOtherOver
	case opts.CountRejected:
		e.counting = quota.Always
	}
	if e.metrics == nil {
		e.metrics = NewMetrics(nil)
	}
	e.scratch.New = func() any { return new(scratch) }
	return e, nil
}

// Metrics are the engine's collectors.
func (e *Engine) Metrics() *Metrics { return e.metrics }

// scratch is one call's working memory, pooled so a call allocates little.
type scratch struct {
	hits   []quota.Hit
	decs   []quota.Decision
	slot   []int // per descriptor: index into hits, or -1
	limits []*Limit
	rules  []*descriptors.Rule
	key    []byte
}

func (sc *scratch) reset(n int) {
	sc.hits = sc.hits[:0]
	sc.decs = sc.decs[:0]
	sc.slot = grow(sc.slot, n)
	sc.limits = grow(sc.limits, n)
	sc.rules = grow(sc.rules, n)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// latencySample is how many calls there are per call timed for the latency
// histogram: reading the clock twice and updating the histogram (whose
// atomics every core shares) was a third of the handler's own CPU.
const latencySample = 8

// Decide decides req and writes the outcome into out, reusing its Statuses.
// It returns ErrUnavailable when the backend failed (unless FailOpen), or
// the context's error when ctx ended first; out is then not meaningful.
func (e *Engine) Decide(ctx context.Context, req *Request, out *Outcome) error {
	// A random draw (per-thread state, no shared counter) picks the calls
	// to time, so that which are timed owes nothing to traffic patterns.
	if rand.Uint32N(latencySample) != 0 {
		return e.decide(ctx, req, out)
	}
	start := time.Now()
	err := e.decide(ctx, req, out)
	e.metrics.observeLatency(ctx, time.Since(start), e.traceID)
	return err
}

func (e *Engine) decide(ctx context.Context, req *Request, out *Outcome) error {
	ds := req.Descriptors
	out.Code, out.KnownDomain = OK, false
	out.Statuses = grow(out.Statuses, len(ds))
	p := e.plan.Load()
	var dom *descriptors.Domain
	if p != nil {
		dom = p.cfg.Domain(req.Domain)
	}
	if dom == nil {
		// A door's own batch (the auth door's failed-auth counter) names
		// no domain and brings every limit: no client asked for an unknown
		// domain.
		if req.Domain != "" || !allOwnLimits(ds) {
			e.metrics.unknownDomain.Inc()
			if e.observer != nil {
				e.observer.UnknownDomain(req.Domain, len(ds))
			}
		}
		if !hasOwnLimits(ds) {
			return nil
		}
	} else {
		out.KnownDomain = true
	}

	sc := e.scratch.Get().(*scratch)
	defer e.scratch.Put(sc)
	sc.reset(len(ds))

	// Resolve every descriptor's limit first: `replaces` needs them all.
	for i := range ds {
		d := &ds[i]
		sc.slot[i] = -1
		if d.Limit != nil {
			sc.limits[i] = d.Limit
			continue
		}
		if dom == nil {
			continue
		}
		r := dom.Match(d.Entries)
		if r != nil {
			sc.rules[i] = r
		}
		switch {
		case d.HasOverride:
			sc.limits[i] = p.override(req.Domain, r, d.Override, e.quotaMode)
		case r != nil && !r.Unlimited:
			sc.limits[i] = p.limits[r]
		case r != nil:
			out.Statuses[i].Unlimited = true
		}
	}
	applyReplaces(sc.limits, sc.rules)

	defHits := req.Hits
	if defHits == 0 {
		defHits = 1
	}
	for i := range ds {
		lim := sc.limits[i]
		if lim == nil {
			continue
		}
		d := &ds[i]
		n := defHits
		if d.HasHits {
			n = d.Hits
		}
		var shared []string
		if lim.rule != nil && !lim.Override {
			shared = lim.rule.SharedValue
		}
		namespace := req.Domain
		if lim.namespace != "" {
			namespace = lim.namespace
		}
		var tagLen int
		sc.key, tagLen = appendKey(sc.key[:0], namespace, d.Entries, shared, lim.Quota)
		counting := e.counting
		switch {
		case lim.Overdraw:
			counting = quota.Always
		case lim.namespace != "":
			// A door's own limit (the auth door's failed-auth counter)
			// keeps its door's rule: the reference's counting is about
			// the config's limits.
			counting = quota.AllOrNothing
		}
		sc.slot[i] = len(sc.hits)
		sc.hits = append(sc.hits, quota.Hit{
			Key:      string(sc.key),
			TagLen:   tagLen,
			Limit:    lim.Quota,
			N:        n,
			Shadow:   lim.Shadow || e.shadowMode,
			Quota:    lim.QuotaMode,
			Counting: counting,
		})
	}
	for i := range ds {
		if sc.slot[i] >= 0 || out.Statuses[i].Unlimited {
			out.Statuses[i].Rule = sc.rules[i]
		}
	}
	if len(sc.hits) == 0 {
		return nil
	}
	sc.decs = grow(sc.decs, len(sc.hits))
	if err := e.limiter.Take(ctx, sc.hits, sc.decs); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		e.metrics.backendErrs.Inc()
		if e.observer != nil {
			e.observer.BackendFailed()
			for i, h := range sc.slot {
				if h >= 0 {
					e.observer.Decided(req.Domain, &ds[i], sc.limits[i], &sc.hits[h], nil)
				}
			}
		}
		e.errLog.backendFailed(err)
		if e.failOpen {
			e.metrics.failOpen.Inc()
			for i := range out.Statuses {
				out.Statuses[i] = Status{Unlimited: out.Statuses[i].Unlimited, Rule: out.Statuses[i].Rule}
			}
			return nil
		}
		return ErrUnavailable
	}
	rejected, allFit := quota.Rejects(sc.hits, sc.decs), quota.AllFit(sc.decs)
	if rejected {
		out.Code = OverLimit
	}
	if e.observer != nil && e.shadowMode && !rejected && wouldReject(sc.hits, sc.decs, sc.limits, sc.slot) {
		e.observer.ShadowAdmitted()
	}
	for i := range ds {
		h := sc.slot[i]
		if h < 0 {
			continue
		}
		hit, dec := &sc.hits[h], &sc.decs[h]
		lim := sc.limits[i]
		st := &out.Statuses[i]
		st.Limit = lim
		st.Hits = hit.N
		if !dec.Fits && !lim.Shadow {
			st.Code = OverLimit
		}
		if e.observer != nil {
			e.observer.Decided(req.Domain, &ds[i], lim, hit, dec)
		}
		taken := quota.Taken(hit, dec, rejected, allFit)
		if dec.Fits && !taken && hit.N > 0 {
			untake(hit, dec)
		}
		st.Remaining = dec.Remaining
		st.ResetAfter = wholeSeconds(dec.ResetAfter, !dec.Fits)
		lim.counters.count(hit, dec, dec.Fits && !taken, e.nearRatio)
	}
	return nil
}

func hasOwnLimits(ds []Descriptor) bool {
	for i := range ds {
		if ds[i].Limit != nil {
			return true
		}
	}
	return false
}

// allOwnLimits says whether ds is not empty and every descriptor brings
// its own limit.
func allOwnLimits(ds []Descriptor) bool {
	for i := range ds {
		if ds[i].Limit == nil {
			return false
		}
	}
	return len(ds) > 0
}

// wholeSeconds rounds d up to whole seconds, and to at least one second
// over the limit: Envoy truncates duration_until_reset to seconds for its
// x-ratelimit-reset header, so 0.2 s would tell a blocked client 0.
func wholeSeconds(d time.Duration, over bool) time.Duration {
	s := (d + time.Second - 1) / time.Second * time.Second
	if over && s < time.Second {
		s = time.Second
	}
	return s
}

// untake turns a backend's answer for a hit that fit, given as if taken,
// into the answer for a hit that was not (its request was rejected, or
// another descriptor was over under StopIncrementOverLimit): the hits are
// still there, and a token bucket holding them is full sooner.
func untake(hit *quota.Hit, dec *quota.Decision) {
	dec.Remaining += hit.N
	if l := hit.Limit; l.Algorithm == quota.TokenBucket && l.Requests > 0 {
		refill := time.Duration(math.Ceil(float64(hit.N) * float64(l.Unit) / float64(l.Requests)))
		dec.ResetAfter = max(dec.ResetAfter-refill, 0)
	}
}

// applyReplaces drops every limit whose name another resolved limit lists
// under `replaces`, as envoyproxy/ratelimit does. Overrides have no name and
// replace nothing.
func applyReplaces(limits []*Limit, rules []*descriptors.Rule) {
	for _, l := range limits {
		if l == nil || l.Override || l.rule == nil || len(l.rule.Replaces) == 0 {
			continue
		}
		for _, name := range l.rule.Replaces {
			for j, other := range limits {
				if other != nil && other != l && !other.Override && other.rule != nil && other.Name == name {
					limits[j] = nil
					rules[j] = nil
				}
			}
		}
	}
}

// appendKey encodes the counter key: the domain, each entry's key and value
// (the configured pattern instead of the value where share_threshold folds
// values), then the algorithm and unit. Every part is length-prefixed, so
// distinct descriptors never collide whatever bytes they hold. tagLen is the
// length of the domain and first entry, by which clustered backends place keys.
func appendKey(b []byte, domain string, entries []Entry, shared []string, lim quota.Limit) ([]byte, int) {
	b = appendString(b, domain)
	tagLen := 0
	for i, e := range entries {
		v := e.Value
		if i < len(shared) && shared[i] != "" {
			v = shared[i]
		}
		b = appendString(b, e.Key)
		b = appendString(b, v)
		if i == 0 {
			tagLen = len(b)
		}
	}
	b = append(b, byte(lim.Algorithm))
	b = binary.AppendUvarint(b, uint64(lim.Unit/time.Second))
	return b, tagLen
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// rateLimitedLog logs backend failures at most once a second, with the
// number of failures since the last line, so a Redis outage under load
// does not flood the log.
type rateLimitedLog struct {
	log        *slog.Logger
	next       atomic.Int64 // unix nanoseconds before which lines are dropped
	suppressed atomic.Int64
}

func (l *rateLimitedLog) backendFailed(err error) {
	if l.log == nil {
		return
	}
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(time.Second)) {
		l.suppressed.Add(1)
		return
	}
	l.log.Error("backend failed to decide", "err", err.Error(), "failures_not_logged", l.suppressed.Swap(0))
}
