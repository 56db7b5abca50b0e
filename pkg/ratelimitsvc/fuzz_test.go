package ratelimitsvc_test

import (
	"context"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
)

// fuzzBounds are small request bounds, so that the fuzzer reaches them.
var fuzzBounds = ratelimitsvc.Options{MaxDescriptors: 4, MaxEntries: 4, MaxValueBytes: 64}

// malformed says, independently of the service, whether the contract calls
// req malformed under fuzzBounds.
func malformed(req *rlsv3.RateLimitRequest) bool {
	b := fuzzBounds
	if req.GetDomain() == "" || len(req.GetDomain()) > b.MaxValueBytes {
		return true
	}
	ds := req.GetDescriptors()
	if len(ds) == 0 || len(ds) > b.MaxDescriptors {
		return true
	}
	for _, d := range ds {
		es := d.GetEntries()
		if len(es) == 0 || len(es) > b.MaxEntries || d.GetIsNegativeHits() {
			return true
		}
		for _, e := range es {
			if e.GetKey() == "" || len(e.GetKey()) > b.MaxValueBytes || len(e.GetValue()) > b.MaxValueBytes {
				return true
			}
		}
	}
	return false
}

// FuzzShouldRateLimit sends the service any RateLimitRequest Envoy could
// encode: the fuzzed bytes are unmarshalled as the gRPC server would and
// handed to ShouldRateLimit. A request the contract calls malformed gets
// INVALID_ARGUMENT with a message; any other gets a well-formed answer (one
// status per descriptor, each OK or OVER_LIMIT, every limited one with its
// reset time), never a panic or another code.
func FuzzShouldRateLimit(f *testing.F) {
	seeds := []*rlsv3.RateLimitRequest{
		{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("remote_address", "10.0.0.1")}},
		{Domain: "api", HitsAddend: 7, Descriptors: []*rlv3.RateLimitDescriptor{desc("api_key", "gold"), desc("plan", "free"), desc("path", "/search/x")}},
		{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("tenant", "acme", "user", "u1"), desc("blocked", "x"), desc("internal", "y")}},
		{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("old", "1", "new", "2"), desc("new", "3")}},
		{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{{
			Entries:    []*rlv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "x"}},
			Limit:      &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2, Unit: typev3.RateLimitUnit_HOUR},
			HitsAddend: wrapperspb.UInt64(0),
		}}},
		{Domain: "unknown", Descriptors: []*rlv3.RateLimitDescriptor{desc("a", "b")}},
		{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("", "b")}},
		{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{{IsNegativeHits: true, Entries: desc("a", "b").Entries}}},
		{},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	fx := newFixtureWith(f, testConfig, fuzzBounds, engine.Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req rlsv3.RateLimitRequest
		if proto.Unmarshal(data, &req) != nil {
			return // the gRPC server would have refused it
		}
		resp, err := fx.svc.ShouldRateLimit(context.Background(), &req)
		if malformed(&req) {
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() == "" {
				t.Fatalf("malformed request %v: got %v, %v; want INVALID_ARGUMENT with a reason", &req, resp, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("request %v: %v", &req, err)
		}
		if len(resp.Statuses) != len(req.Descriptors) {
			t.Fatalf("request %v: %d statuses for %d descriptors", &req, len(resp.Statuses), len(req.Descriptors))
		}
		okCode := func(c rlsv3.RateLimitResponse_Code) bool {
			return c == rlsv3.RateLimitResponse_OK || c == rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if !okCode(resp.OverallCode) {
			t.Fatalf("request %v: overall_code %v", &req, resp.OverallCode)
		}
		over := false
		for i, st := range resp.Statuses {
			if !okCode(st.Code) {
				t.Fatalf("request %v: status %d code %v", &req, i, st.Code)
			}
			over = over || st.Code == rlsv3.RateLimitResponse_OVER_LIMIT
			if st.CurrentLimit != nil && st.DurationUntilReset == nil {
				t.Fatalf("request %v: status %d has a limit but no duration_until_reset", &req, i)
			}
			if st.Code == rlsv3.RateLimitResponse_OVER_LIMIT && st.GetDurationUntilReset().AsDuration() <= 0 {
				t.Fatalf("request %v: status %d over the limit with duration_until_reset %v", &req, i, st.DurationUntilReset)
			}
		}
		if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT && !over {
			t.Fatalf("request %v: overall OVER_LIMIT but no status is", &req)
		}
	})
}
