// Package ratelimitsvc implements Envoy's envoy.service.ratelimit.v3
// RateLimitService on top of compiled descriptor config and a Limiter.
package ratelimitsvc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Default request bounds (see Options).
const (
	DefaultMaxDescriptors = 64
	DefaultMaxEntries     = 32
	DefaultMaxValueBytes  = 4096
)

// Options configure a Service. The zero value of each field is its default.
type Options struct {
	// Limiter keeps the counters. Required.
	Limiter quota.Limiter
	// FailOpen answers OK (and counts it) when the Limiter fails, instead of
	// gRPC UNAVAILABLE.
	FailOpen bool
	// NoHeaders turns off the RateLimit, RateLimit-Policy and Retry-After
	// response headers.
	NoHeaders bool
	// MaxDescriptors bounds descriptors per request (default 64).
	MaxDescriptors int
	// MaxEntries bounds entries per descriptor (default 32).
	MaxEntries int
	// MaxValueBytes bounds the bytes of each entry key and value (default 4096).
	MaxValueBytes int
	// Metrics receives counters; nil keeps them unregistered.
	Metrics *Metrics
	// ShadowMode is the reference's SHADOW_MODE: overall_code is always OK,
	// statuses still say OVER_LIMIT.
	ShadowMode bool
	// QuotaMode is the reference's QUOTA_MODE: every rule is in quota_mode.
	QuotaMode bool
	// DynamicMetadata is the reference's RESPONSE_DYNAMIC_METADATA: answers
	// carry the domain, descriptors, hits and matched rules' metadata.
	DynamicMetadata bool
}

// Service answers ShouldRateLimit. It is safe for concurrent use; SetConfig
// swaps the config atomically while calls are in flight.
type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer

	limiter  quota.Limiter
	failOpen bool
	headers  bool
	maxDesc  int
	maxEntry int
	maxBytes int
	metrics  *Metrics

	plan    atomic.Pointer[plan]
	scratch sync.Pool
}

var _ rlsv3.RateLimitServiceServer = (*Service)(nil)

// New returns a Service with no config loaded: until SetConfig, every
// domain is unknown and every call is answered OK.
func New(opts Options) *Service {
	s := &Service{
		limiter:  opts.Limiter,
		failOpen: opts.FailOpen,
		headers:  !opts.NoHeaders,
		maxDesc:  orDefault(opts.MaxDescriptors, DefaultMaxDescriptors),
		maxEntry: orDefault(opts.MaxEntries, DefaultMaxEntries),
		maxBytes: orDefault(opts.MaxValueBytes, DefaultMaxValueBytes),
		metrics:  opts.Metrics,
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	s.scratch.New = func() any { return new(scratch) }
	return s
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// plan is a config compiled for answering: per rule, everything a decision
// needs that does not depend on the request.
type plan struct {
	cfg   *descriptors.Config
	rules map[*descriptors.Rule]*ruleInfo
	// overrides holds, per domain, the counters for Envoy's limit overrides
	// on descriptors that match no rule.
	overrides map[string]ruleCounters
}

type ruleInfo struct {
	rule     *descriptors.Rule
	header   string // the RateLimit list member name, quoted
	limit    *rlsv3.RateLimitResponse_RateLimit
	counters ruleCounters
	policy   string // RateLimit-Policy member
}

// SetConfig compiles cfg and makes it the config answering new calls.
func (s *Service) SetConfig(cfg *descriptors.Config) {
	p := &plan{
		cfg:       cfg,
		rules:     make(map[*descriptors.Rule]*ruleInfo),
		overrides: make(map[string]ruleCounters),
	}
	for _, d := range cfg.Domains() {
		p.overrides[d.Name] = s.metrics.forRule(d.Name, "envoy_override")
		for _, r := range d.Rules() {
			name := r.Name
			if name == "" {
				name = r.StatName
			}
			ri := &ruleInfo{
				rule:     r,
				header:   quoteSF(name),
				counters: s.metrics.forRule(d.Name, r.StatName),
			}
			if !r.Unlimited {
				ri.limit = currentLimit(r.Name, r.Limit)
				ri.policy = policyMember(ri.header, r.Limit)
			}
			p.rules[r] = ri
		}
	}
	s.plan.Store(p)
}

// Config returns the config in force, or nil before the first SetConfig.
func (s *Service) Config() *descriptors.Config {
	if p := s.plan.Load(); p != nil {
		return p.cfg
	}
	return nil
}

// scratch is per-call working memory, pooled so a call allocates little.
type scratch struct {
	hits  []quota.Hit
	decs  []quota.Decision
	slot  []int // per descriptor: index into hits, or -1
	infos []*ruleInfo
	ovr   []*rlsv3.RateLimitResponse_RateLimit // per descriptor: Envoy override, or nil
	key   []byte
	// headers builds the header values; its buffers are reused.
	headers headerBuilder
}

func (sc *scratch) reset(n int) {
	sc.hits = sc.hits[:0]
	sc.decs = sc.decs[:0]
	sc.slot = grow(sc.slot, n)
	sc.infos = grow(sc.infos, n)
	sc.ovr = grow(sc.ovr, n)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// errInvalid marks a malformed request; the message is the reason.
type errInvalid struct{ msg string }

func (e errInvalid) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return errInvalid{fmt.Sprintf(format, args...)}
}

// latencySample is how many calls there are per call timed for the latency
// histogram: reading the clock twice and updating the histogram (whose
// atomics every core shares) was a third of the handler's own CPU.
const latencySample = 8

// ShouldRateLimit decides a request: see the contract's API section.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	// A random draw (per-thread state, no shared counter) picks the calls
	// to time, so that which are timed owes nothing to traffic patterns.
	if rand.Uint32N(latencySample) != 0 {
		resp, err := s.decide(ctx, req)
		return resp, toStatus(err)
	}
	start := time.Now()
	resp, err := s.decide(ctx, req)
	s.metrics.latency.Observe(time.Since(start).Seconds())
	return resp, toStatus(err)
}

// toStatus maps the service's errors to gRPC codes; the only place that does.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var inv errInvalid
	switch {
	case errors.As(err, &inv):
		return status.Error(codes.InvalidArgument, inv.msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, "rate-limit backend: "+err.Error())
}

func (s *Service) validate(req *rlsv3.RateLimitRequest) error {
	if req.GetDomain() == "" {
		return invalidf("domain: must not be empty")
	}
	if len(req.Domain) > s.maxBytes {
		return invalidf("domain: %d bytes, at most %d allowed", len(req.Domain), s.maxBytes)
	}
	ds := req.GetDescriptors()
	if len(ds) == 0 {
		return invalidf("descriptors: must not be empty")
	}
	if len(ds) > s.maxDesc {
		return invalidf("descriptors: %d given, at most %d allowed", len(ds), s.maxDesc)
	}
	for i, d := range ds {
		es := d.GetEntries()
		if len(es) == 0 {
			return invalidf("descriptors[%d].entries: must not be empty", i)
		}
		if len(es) > s.maxEntry {
			return invalidf("descriptors[%d].entries: %d given, at most %d allowed", i, len(es), s.maxEntry)
		}
		for j, e := range es {
			if e.GetKey() == "" {
				return invalidf("descriptors[%d].entries[%d].key: must not be empty", i, j)
			}
			if len(e.Key) > s.maxBytes {
				return invalidf("descriptors[%d].entries[%d].key: %d bytes, at most %d allowed", i, j, len(e.Key), s.maxBytes)
			}
			if len(e.GetValue()) > s.maxBytes {
				return invalidf("descriptors[%d].entries[%d].value: %d bytes, at most %d allowed", i, j, len(e.Value), s.maxBytes)
			}
		}
		if d.GetIsNegativeHits() {
			return invalidf("descriptors[%d].is_negative_hits: not supported", i)
		}
	}
	return nil
}

func (s *Service) decide(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := s.validate(req); err != nil {
		s.metrics.invalid.Inc()
		return nil, err
	}
	ds := req.Descriptors
	out := newResponse(len(ds))
	resp, statuses := out.resp, out.statuses
	p := s.plan.Load()
	var dom *descriptors.Domain
	if p != nil {
		dom = p.cfg.Domain(req.Domain)
	}
	if dom == nil {
		s.metrics.unknownDomain.Inc()
		return resp, nil
	}

	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	sc.reset(len(ds))

	// Match every descriptor first: `replaces` needs to see them all.
	for i, d := range ds {
		sc.slot[i] = -1
		if r := dom.Match(d.Entries); r != nil {
			sc.infos[i] = p.rules[r]
		}
		if o := d.GetLimit(); o != nil {
			sc.ovr[i] = overrideLimit(o)
		}
	}
	applyReplaces(sc.infos)

	defHits := uint64(req.HitsAddend)
	if defHits == 0 {
		defHits = 1
	}
	for i, d := range ds {
		ri := sc.infos[i]
		var lim quota.Limit
		switch {
		case sc.ovr[i] != nil:
			lim = quota.Limit{
				Requests: uint64(sc.ovr[i].RequestsPerUnit),
				Unit:     unitDuration(sc.ovr[i]),
			}
			if ri != nil {
				lim.Algorithm = ri.rule.Limit.Algorithm
				lim.Burst = ri.rule.Limit.Burst
				if lim.Burst != 0 && lim.Burst < lim.Requests {
					lim.Burst = lim.Requests
				}
			}
		case ri == nil || ri.rule.Unlimited:
			continue
		default:
			lim = ri.rule.Limit
		}
		n := defHits
		if h := d.GetHitsAddend(); h != nil {
			n = h.Value
		}
		var shared []string
		var shadow bool
		if ri != nil {
			shared = ri.rule.SharedValue
			shadow = ri.rule.Shadow
		}
		var tagLen int
		sc.key, tagLen = appendKey(sc.key[:0], req.Domain, d.Entries, shared, lim)
		sc.slot[i] = len(sc.hits)
		sc.hits = append(sc.hits, quota.Hit{
			Key:    string(sc.key),
			TagLen: tagLen,
			Limit:  lim,
			N:      n,
			Shadow: shadow,
		})
	}
	if len(sc.hits) == 0 {
		return resp, nil
	}
	sc.decs = grow(sc.decs, len(sc.hits))
	if err := s.limiter.Take(ctx, sc.hits, sc.decs); err != nil {
		s.metrics.backendErrs.Inc()
		if s.failOpen && ctx.Err() == nil {
			s.metrics.failOpen.Inc()
			return resp, nil
		}
		return nil, err
	}
	rejected := quota.Rejects(sc.hits, sc.decs)
	if rejected {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}

	hb := &sc.headers
	hb.reset()
	for i := range ds {
		h := sc.slot[i]
		if h < 0 {
			continue
		}
		hit, dec := &sc.hits[h], &sc.decs[h]
		ri := sc.infos[i]
		st := &statuses[i]
		if !dec.Fits && !hit.Shadow {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if rejected && dec.Fits {
			untake(hit, dec)
		}
		st.LimitRemaining = clamp32(dec.Remaining)
		st.DurationUntilReset = out.duration(i, dec.ResetAfter)
		name := `"envoy_override"`
		if ri != nil {
			name = ri.header
		}
		if sc.ovr[i] != nil {
			st.CurrentLimit = sc.ovr[i]
			if ri != nil {
				sc.ovr[i].Name = ri.rule.Name
			}
		} else {
			st.CurrentLimit = ri.limit
		}
		var counters ruleCounters
		if ri != nil {
			counters = ri.counters
		} else {
			counters = p.overrides[req.Domain]
		}
		s.count(counters, hit, dec, rejected)
		if s.headers {
			policy := ""
			if ri != nil && sc.ovr[i] == nil {
				policy = ri.policy
			} else {
				policy = policyMember(name, hit.Limit)
			}
			hb.add(name, policy, dec, st.Code == rlsv3.RateLimitResponse_OVER_LIMIT)
		}
	}
	if s.headers {
		resp.ResponseHeadersToAdd = hb.headers(out, rejected)
	}
	return resp, nil
}

// untake turns a backend's answer for a hit that fit, given as if taken,
// into the answer for a rejected request, where nothing was taken: the hits
// are still there, and a token bucket holding them is full sooner.
func untake(hit *quota.Hit, dec *quota.Decision) {
	dec.Remaining += hit.N
	if l := hit.Limit; l.Algorithm == quota.TokenBucket && l.Requests > 0 {
		refill := time.Duration(math.Ceil(float64(hit.N) * float64(l.Unit) / float64(l.Requests)))
		dec.ResetAfter = max(dec.ResetAfter-refill, 0)
	}
}

// count records one hit's outcome in its rule's counters.
func (s *Service) count(c ruleCounters, hit *quota.Hit, dec *quota.Decision, rejected bool) {
	n := float64(hit.N)
	c.total.Add(n)
	switch {
	case !dec.Fits && hit.Shadow:
		c.shadow.Add(n)
	case !dec.Fits:
		c.over.Add(n)
	case rejected:
		// This rule had room, but another rejected the request.
	case dec.Remaining*5 < hit.Limit.Capacity():
		c.near.Add(n)
	default:
		c.within.Add(n)
	}
}

// applyReplaces drops every matched rule whose name another matched rule
// lists under `replaces`, as envoyproxy/ratelimit does.
func applyReplaces(infos []*ruleInfo) {
	for _, ri := range infos {
		if ri == nil || len(ri.rule.Replaces) == 0 {
			continue
		}
		for _, name := range ri.rule.Replaces {
			for j, other := range infos {
				if other != nil && other != ri && other.rule.Name == name {
					infos[j] = nil
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
func appendKey(b []byte, domain string, entries []*rlv3.RateLimitDescriptor_Entry, shared []string, lim quota.Limit) ([]byte, int) {
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

func clamp32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

var unitSeconds = map[typev3.RateLimitUnit]int64{
	typev3.RateLimitUnit_SECOND: 1,
	typev3.RateLimitUnit_MINUTE: 60,
	typev3.RateLimitUnit_HOUR:   3600,
	typev3.RateLimitUnit_DAY:    86400,
	typev3.RateLimitUnit_MONTH:  30 * 86400,
	typev3.RateLimitUnit_YEAR:   365 * 86400,
}

// overrideLimit turns Envoy's per-descriptor limit into the current_limit we
// answer with; nil when its unit is unknown (the override is then ignored, as
// envoyproxy/ratelimit does).
func overrideLimit(o *rlv3.RateLimitDescriptor_RateLimitOverride) *rlsv3.RateLimitResponse_RateLimit {
	if _, ok := unitSeconds[o.Unit]; !ok {
		return nil
	}
	l := &rlsv3.RateLimitResponse_RateLimit{
		RequestsPerUnit: o.RequestsPerUnit,
		// The two enums share their numbers for SECOND..YEAR.
		Unit: rlsv3.RateLimitResponse_RateLimit_Unit(o.Unit),
	}
	if m := o.GetUnitMultiplier(); m != nil && m.Value > 1 {
		l.UnitMultiplier = m
	}
	return l
}

func unitDuration(l *rlsv3.RateLimitResponse_RateLimit) time.Duration {
	secs := int64(1)
	for u, s := range unitSeconds {
		if rlsv3.RateLimitResponse_RateLimit_Unit(u) == l.Unit {
			secs = s
		}
	}
	if m := l.GetUnitMultiplier(); m != nil && m.Value > 1 {
		secs *= int64(m.Value)
	}
	return time.Duration(secs) * time.Second
}

// currentLimit is the current_limit answered for a configured limit.
func currentLimit(name string, l quota.Limit) *rlsv3.RateLimitResponse_RateLimit {
	out := &rlsv3.RateLimitResponse_RateLimit{Name: name, RequestsPerUnit: clamp32(l.Requests)}
	switch secs := int64(l.Unit / time.Second); secs {
	case 1:
		out.Unit = rlsv3.RateLimitResponse_RateLimit_SECOND
	case 60:
		out.Unit = rlsv3.RateLimitResponse_RateLimit_MINUTE
	case 3600:
		out.Unit = rlsv3.RateLimitResponse_RateLimit_HOUR
	case 86400:
		out.Unit = rlsv3.RateLimitResponse_RateLimit_DAY
	case 7 * 86400:
		out.Unit = rlsv3.RateLimitResponse_RateLimit_WEEK
	case 30 * 86400:
		out.Unit = rlsv3.RateLimitResponse_RateLimit_MONTH
	case 365 * 86400:
		out.Unit = rlsv3.RateLimitResponse_RateLimit_YEAR
	}
	return out
}

// Header names of draft-ietf-httpapi-ratelimit-headers-11.
const (
	HeaderPolicy     = "RateLimit-Policy"
	HeaderRateLimit  = "RateLimit"
	HeaderRetryAfter = "Retry-After"
)
