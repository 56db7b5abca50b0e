// Package ratelimitsvc is the engine's door for Envoy's
// envoy.service.ratelimit.v3 RateLimitService: it validates the request,
// hands it to the decision engine in the engine's types, and renders the
// outcome as Envoy's response (statuses, headers, dynamic metadata).
package ratelimitsvc

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/grpcstatus"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Default request bounds (see Options).
const (
	DefaultMaxDescriptors = 64
	DefaultMaxEntries     = 32
	DefaultMaxValueBytes  = 4096
)

// Options configure a Service. The zero value of each field is its default;
// a negative bound is an error.
type Options struct {
	// NoHeaders turns off the RateLimit, RateLimit-Policy and Retry-After
	// response headers.
	NoHeaders bool
	// MaxDescriptors bounds descriptors per request (default 64).
	MaxDescriptors int
	// MaxEntries bounds entries per descriptor (default 32).
	MaxEntries int
	// MaxValueBytes bounds the bytes of each entry key and value (default 4096).
	MaxValueBytes int
	// DynamicMetadata is the reference's RESPONSE_DYNAMIC_METADATA: answers
	// carry the domain, descriptors, hits and the matched rules' metadata.
	DynamicMetadata bool
	// ReferenceHeaders, when set, replaces the IETF headers with
	// envoyproxy/ratelimit's LIMIT_RESPONSE_HEADERS_ENABLED ones (unless
	// NoHeaders).
	ReferenceHeaders *ReferenceHeaders
}

// ReferenceHeaders are envoyproxy/ratelimit's three response headers, for
// the one descriptor nearest its limit: the last one over its limit that
// is not in quota mode, else the first with the fewest hits remaining.
// Limit carries its requests_per_unit, Remaining its limit_remaining and
// Reset the seconds until its unit's epoch-aligned window ends.
type ReferenceHeaders struct {
	Limit, Remaining, Reset string // header names
	// QuotaMode is the global QUOTA_MODE: every rule counts as quota_mode.
	QuotaMode bool
	// Now is the clock of Reset; default time.Now.
	Now func() time.Time
}

// Service answers ShouldRateLimit with an engine. It is safe for
// concurrent use.
type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer

	engine   *engine.Engine
	headers  bool
	refHdrs  *ReferenceHeaders
	metadata bool
	maxDesc  int
	maxEntry int
	maxBytes int

	scratch sync.Pool
}

var _ rlsv3.RateLimitServiceServer = (*Service)(nil)

// New returns a Service deciding with eng.
func New(eng *engine.Engine, opts Options) (*Service, error) {
	if eng == nil {
		return nil, fmt.Errorf("ratelimitsvc: an engine is required")
	}
	s := &Service{engine: eng, headers: !opts.NoHeaders, metadata: opts.DynamicMetadata}
	if h := opts.ReferenceHeaders; h != nil && s.headers {
		c := *h
		if c.Now == nil {
			c.Now = time.Now
		}
		s.refHdrs, s.headers = &c, false
	}
	var err error
	if s.maxDesc, err = bound("MaxDescriptors", opts.MaxDescriptors, DefaultMaxDescriptors); err != nil {
		return nil, err
	}
	if s.maxEntry, err = bound("MaxEntries", opts.MaxEntries, DefaultMaxEntries); err != nil {
		return nil, err
	}
	if s.maxBytes, err = bound("MaxValueBytes", opts.MaxValueBytes, DefaultMaxValueBytes); err != nil {
		return nil, err
	}
	s.scratch.New = func() any { return new(scratch) }
	return s, nil
}

func bound(name string, v, def int) (int, error) {
	switch {
	case v < 0:
		return 0, fmt.Errorf("ratelimitsvc: %s is %d, want 0 (default %d) or more", name, v, def)
	case v == 0:
		return def, nil
	}
	return v, nil
}

// Engine is the engine the service decides with.
func (s *Service) Engine() *engine.Engine { return s.engine }

// scratch is one call's working memory, pooled so a call allocates little.
type scratch struct {
	req     engine.Request
	entries []engine.Entry
	out     engine.Outcome
	headers engine.HeaderBuilder
}

// ShouldRateLimit decides a request: see the contract's API section.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := s.validate(req); err != nil {
		s.engine.Metrics().Invalid()
		return nil, grpcstatus.FromError(err)
	}
	if s.engine.Config() == nil {
		// Before the first config (over xDS it comes after Start) every
		// domain would look unknown and be allowed: UNAVAILABLE instead, so
		// that Envoy applies its failure mode.
		return nil, grpcstatus.FromError(grpcstatus.ErrNoConfig)
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	sc.convert(req)
	if err := s.engine.Decide(ctx, &sc.req, &sc.out); err != nil {
		return nil, grpcstatus.FromError(err)
	}
	return s.respond(req, sc), nil
}

func (s *Service) validate(req *rlsv3.RateLimitRequest) error {
	if req.GetDomain() == "" {
		return grpcstatus.Invalidf("domain: must not be empty")
	}
	if len(req.Domain) > s.maxBytes {
		return grpcstatus.Invalidf("domain: %d bytes, at most %d allowed", len(req.Domain), s.maxBytes)
	}
	ds := req.GetDescriptors()
	if len(ds) == 0 {
		return grpcstatus.Invalidf("descriptors: must not be empty")
	}
	if len(ds) > s.maxDesc {
		return grpcstatus.Invalidf("descriptors: %d given, at most %d allowed", len(ds), s.maxDesc)
	}
	for i, d := range ds {
		es := d.GetEntries()
		if len(es) == 0 {
			return grpcstatus.Invalidf("descriptors[%d].entries: must not be empty", i)
		}
		if len(es) > s.maxEntry {
			return grpcstatus.Invalidf("descriptors[%d].entries: %d given, at most %d allowed", i, len(es), s.maxEntry)
		}
		for j, e := range es {
			if e.GetKey() == "" {
				return grpcstatus.Invalidf("descriptors[%d].entries[%d].key: must not be empty", i, j)
			}
			if len(e.Key) > s.maxBytes {
				return grpcstatus.Invalidf("descriptors[%d].entries[%d].key: %d bytes, at most %d allowed", i, j, len(e.Key), s.maxBytes)
			}
			if len(e.GetValue()) > s.maxBytes {
				return grpcstatus.Invalidf("descriptors[%d].entries[%d].value: %d bytes, at most %d allowed", i, j, len(e.Value), s.maxBytes)
			}
		}
		if d.GetIsNegativeHits() {
			return grpcstatus.Invalidf("descriptors[%d].is_negative_hits: not supported", i)
		}
	}
	return nil
}

// convert fills sc.req from a validated Envoy request; the strings are
// shared, not copied.
func (sc *scratch) convert(req *rlsv3.RateLimitRequest) {
	ds := req.Descriptors
	n := 0
	for _, d := range ds {
		n += len(d.Entries)
	}
	if cap(sc.entries) < n {
		sc.entries = make([]engine.Entry, n)
	}
	entries := sc.entries[:n]
	if cap(sc.req.Descriptors) < len(ds) {
		sc.req.Descriptors = make([]engine.Descriptor, len(ds))
	}
	sc.req.Descriptors = sc.req.Descriptors[:len(ds)]
	sc.req.Domain, sc.req.Hits = req.Domain, uint64(req.HitsAddend)
	off := 0
	for i, d := range ds {
		ed := &sc.req.Descriptors[i]
		*ed = engine.Descriptor{}
		es := entries[off : off+len(d.Entries) : off+len(d.Entries)]
		for j, e := range d.Entries {
			es[j] = engine.Entry{Key: e.Key, Value: e.Value}
		}
		off += len(d.Entries)
		ed.Entries = es
		if h := d.GetHitsAddend(); h != nil {
			ed.Hits, ed.HasHits = h.Value, true
		}
		if o := d.GetLimit(); o != nil {
			// An override with an unknown unit is ignored, as the
			// reference ignores it.
			if unit, ok := overrideUnit(o); ok {
				ed.Override = engine.Override{Requests: uint64(o.RequestsPerUnit), Unit: unit}
				ed.HasOverride = true
			}
		}
	}
}

// respond renders the outcome as Envoy's response.
func (s *Service) respond(req *rlsv3.RateLimitRequest, sc *scratch) *rlsv3.RateLimitResponse {
	o := &sc.out
	out := newResponse(len(o.Statuses))
	resp := out.resp
	if o.Code == engine.OverLimit {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	for i := range o.Statuses {
		st := &o.Statuses[i]
		ps := &out.statuses[i]
		if st.Unlimited && st.Limit == nil {
			ps.LimitRemaining = math.MaxUint32
			continue
		}
		l := st.Limit
		if l == nil {
			continue
		}
		if st.Code == engine.OverLimit {
			ps.Code = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		ps.LimitRemaining = clamp32(st.Remaining)
		ps.DurationUntilReset = out.duration(i, st.ResetAfter)
		cl := &out.limits[i]
		if l.Override {
			o := req.Descriptors[i].Limit
			cl.RequestsPerUnit = o.RequestsPerUnit
			cl.Unit = rlsv3.RateLimitResponse_RateLimit_Unit(o.Unit) // the enums share their numbers
			if m := o.GetUnitMultiplier(); m != nil && m.Value > 1 {
				cl.UnitMultiplier = m
			}
		} else {
			cl.Name = l.Name
			cl.RequestsPerUnit = clamp32(l.Quota.Requests)
			cl.Unit = responseUnit(l.Quota.Unit)
		}
		ps.CurrentLimit = cl
	}
	if s.headers {
		h := sc.headers.Build(o)
		out.header(engine.HeaderPolicy, h.Policy)
		out.header(engine.HeaderRateLimit, h.RateLimit)
		out.header(engine.HeaderRetryAfter, h.RetryAfter)
		if len(out.hdrPtrs) > 0 {
			resp.ResponseHeadersToAdd = out.hdrPtrs
		}
	}
	if s.refHdrs != nil {
		s.referenceHeaders(&out, o)
	}
	if s.metadata {
		resp.DynamicMetadata = dynamicMetadata(req, o)
	}
	return resp
}

// dynamicMetadata is what the reference puts in the response's
// dynamic_metadata with RESPONSE_DYNAMIC_METADATA: the domain, each
// descriptor's entries as "k=v" (with its limit override and hits_addend
// when given), the request's hitsAddend when set, and under "metadata" the
// merged metadata of the matched rules that were not over their limit (the
// first rule wins on a key both have).
func dynamicMetadata(req *rlsv3.RateLimitRequest, o *engine.Outcome) *structpb.Struct {
	fields := map[string]*structpb.Value{"domain": structpb.NewStringValue(req.Domain)}
	descs := make([]*structpb.Value, 0, len(req.Descriptors))
	for _, d := range req.Descriptors {
		descs = append(descs, structpb.NewStructValue(descriptorStruct(d)))
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: descs})
	if req.HitsAddend != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(req.HitsAddend))
	}
	merged := map[string]*structpb.Value{}
	for i := range o.Statuses {
		st := &o.Statuses[i]
		if st.Rule == nil || st.Rule.Metadata == nil || st.Code == engine.OverLimit {
			continue
		}
		for k, v := range st.Rule.Metadata {
			if _, taken := merged[k]; taken {
				continue
			}
			if pv, err := structpb.NewValue(v); err == nil {
				merged[k] = pv
			}
		}
	}
	if len(merged) > 0 {
		fields["metadata"] = structpb.NewStructValue(&structpb.Struct{Fields: merged})
	}
	return &structpb.Struct{Fields: fields}
}

func descriptorStruct(d *rlv3.RateLimitDescriptor) *structpb.Struct {
	entries := make([]*structpb.Value, 0, len(d.Entries))
	for _, e := range d.Entries {
		entries = append(entries, structpb.NewStringValue(e.Key+"="+e.Value))
	}
	fields := map[string]*structpb.Value{"entries": structpb.NewListValue(&structpb.ListValue{Values: entries})}
	if l := d.GetLimit(); l != nil {
		fields["limit"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"requestsPerUnit": structpb.NewNumberValue(float64(l.RequestsPerUnit)),
			"unit":            structpb.NewStringValue(l.Unit.String()),
		}})
	}
	if h := d.GetHitsAddend(); h != nil && h.Value != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h.Value))
	}
	return &structpb.Struct{Fields: fields}
}

func clamp32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

// Envoy's unit enums, mapped by name onto quota's one table of units.
var (
	overrideUnits = func() map[typev3.RateLimitUnit]time.Duration {
		m := map[typev3.RateLimitUnit]time.Duration{}
		for v, name := range typev3.RateLimitUnit_name {
			if d, ok := quota.ParseUnit(strings.ToLower(name)); ok {
				m[typev3.RateLimitUnit(v)] = d
			}
		}
		return m
	}()
	responseUnits = func() map[time.Duration]rlsv3.RateLimitResponse_RateLimit_Unit {
		m := map[time.Duration]rlsv3.RateLimitResponse_RateLimit_Unit{}
		for v, name := range rlsv3.RateLimitResponse_RateLimit_Unit_name {
			if d, ok := quota.ParseUnit(strings.ToLower(name)); ok {
				m[d] = rlsv3.RateLimitResponse_RateLimit_Unit(v)
			}
		}
		return m
	}()
)

// overrideUnit is the window of Envoy's per-descriptor limit: its unit
// times its unit_multiplier.
func overrideUnit(o *rlv3.RateLimitDescriptor_RateLimitOverride) (time.Duration, bool) {
	d, ok := overrideUnits[o.Unit]
	if !ok {
		return 0, false
	}
	if m := o.GetUnitMultiplier(); m != nil && m.Value > 1 {
		d *= time.Duration(m.Value)
	}
	return d, true
}

func responseUnit(d time.Duration) rlsv3.RateLimitResponse_RateLimit_Unit {
	return responseUnits[d] // UNKNOWN for a length that is no unit
}

// referenceHeaders adds ReferenceHeaders to out, chosen as the reference
// chooses (see ReferenceHeaders); none when no descriptor has a limit.
func (s *Service) referenceHeaders(out *response, o *engine.Outcome) {
	pick := -1
	least := uint32(math.MaxUint32)
	for i := range out.statuses {
		ps := &out.statuses[i]
		if ps.CurrentLimit == nil {
			continue
		}
		st := &o.Statuses[i]
		quotaMode := s.refHdrs.QuotaMode || (st.Rule != nil && st.Rule.QuotaMode)
		switch {
		case ps.Code == rlsv3.RateLimitResponse_OVER_LIMIT && !quotaMode:
			pick, least = i, 0
		case ps.LimitRemaining < least:
			pick, least = i, ps.LimitRemaining
		}
	}
	if pick < 0 {
		return
	}
	ps := &out.statuses[pick]
	unit := unitSeconds(ps.CurrentLimit.Unit)
	if unit == 0 {
		return
	}
	now := s.refHdrs.Now().Unix()
	out.header(s.refHdrs.Limit, strconv.FormatUint(uint64(ps.CurrentLimit.RequestsPerUnit), 10))
	out.header(s.refHdrs.Remaining, strconv.FormatUint(uint64(ps.LimitRemaining), 10))
	out.header(s.refHdrs.Reset, strconv.FormatInt(unit-now%unit, 10))
	out.resp.ResponseHeadersToAdd = out.hdrPtrs
}

// unitSeconds is a unit's length as the reference counts it (a month 30
// days, a year 365); 0 for UNKNOWN.
func unitSeconds(u rlsv3.RateLimitResponse_RateLimit_Unit) int64 {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	case rlsv3.RateLimitResponse_RateLimit_WEEK:
		return 7 * 86400
	case rlsv3.RateLimitResponse_RateLimit_MONTH:
		return 30 * 86400
	case rlsv3.RateLimitResponse_RateLimit_YEAR:
		return 365 * 86400
	}
	return 0
}
