package ratelimitsvc

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// smallResponse is the answer count that one allocation covers: most Envoy
// routes send one to four descriptors.
const smallResponse = 4

// responseBlock holds every message of a response to at most smallResponse
// descriptors, so that building one costs a single allocation. The messages
// are handed to gRPC and never reused.
type responseBlock struct {
	resp      rlsv3.RateLimitResponse
	ptrs      [smallResponse]*rlsv3.RateLimitResponse_DescriptorStatus
	statuses  [smallResponse]rlsv3.RateLimitResponse_DescriptorStatus
	durations [smallResponse]durationpb.Duration
	limits    [smallResponse]rlsv3.RateLimitResponse_RateLimit
	hdrs      [3]corev3.HeaderValue
	hdrPtrs   [3]*corev3.HeaderValue
}

// responseBlock1 is responseBlock for the most common answer, to one
// descriptor: fewer bytes to allocate and clear.
type responseBlock1 struct {
	resp      rlsv3.RateLimitResponse
	ptrs      [1]*rlsv3.RateLimitResponse_DescriptorStatus
	statuses  [1]rlsv3.RateLimitResponse_DescriptorStatus
	durations [1]durationpb.Duration
	limits    [1]rlsv3.RateLimitResponse_RateLimit
	hdrs      [3]corev3.HeaderValue
	hdrPtrs   [3]*corev3.HeaderValue
}

// response is the response under construction, with its statuses and
// storage for durations, current limits and headers.
type response struct {
	resp      *rlsv3.RateLimitResponse
	statuses  []rlsv3.RateLimitResponse_DescriptorStatus
	durations []durationpb.Duration
	limits    []rlsv3.RateLimitResponse_RateLimit
	hdrs      []corev3.HeaderValue
	hdrPtrs   []*corev3.HeaderValue
}

func newResponse(n int) response {
	var r response
	var ptrs []*rlsv3.RateLimitResponse_DescriptorStatus
	switch {
	case n == 1:
		b := &responseBlock1{}
		r.resp, ptrs = &b.resp, b.ptrs[:]
		r.statuses, r.durations, r.limits = b.statuses[:], b.durations[:], b.limits[:]
		r.hdrs, r.hdrPtrs = b.hdrs[:], b.hdrPtrs[:0]
	case n <= smallResponse:
		b := &responseBlock{}
		r.resp, ptrs = &b.resp, b.ptrs[:n]
		r.statuses, r.durations, r.limits = b.statuses[:n], b.durations[:n], b.limits[:n]
		r.hdrs, r.hdrPtrs = b.hdrs[:], b.hdrPtrs[:0]
	default:
		r.resp = &rlsv3.RateLimitResponse{}
		ptrs = make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
		r.statuses = make([]rlsv3.RateLimitResponse_DescriptorStatus, n)
		r.durations = make([]durationpb.Duration, n)
		r.limits = make([]rlsv3.RateLimitResponse_RateLimit, n)
		r.hdrs = make([]corev3.HeaderValue, 3)
		r.hdrPtrs = make([]*corev3.HeaderValue, 0, 3)
	}
	for i := range r.statuses {
		r.statuses[i].Code = rlsv3.RateLimitResponse_OK
		ptrs[i] = &r.statuses[i]
	}
	r.resp.OverallCode = rlsv3.RateLimitResponse_OK
	r.resp.Statuses = ptrs
	return r
}

// duration returns descriptor i's duration_until_reset message set to d.
func (r *response) duration(i int, d time.Duration) *durationpb.Duration {
	p := &r.durations[i]
	p.Seconds = int64(d / time.Second)
	p.Nanos = int32(d % time.Second)
	return p
}

// header appends a response header; empty values are not sent.
func (r *response) header(k, v string) {
	if v == "" {
		return
	}
	h := &r.hdrs[len(r.hdrPtrs)]
	h.Key, h.Value = k, v
	r.hdrPtrs = append(r.hdrPtrs, h)
}
