package sidecar_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestReferenceModes: the reference's global settings reach the engine and
// the door through the flags.
func TestReferenceModes(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "modes.yaml")
	writeFile(t, cfg, "domain: m\ndescriptors:\n  - key: k\n    metadata: {tier: gold}\n    rate_limit: {unit: minute, requests_per_unit: 0}\n  - key: free\n    rate_limit: {unit: minute, requests_per_unit: 10}\n")
	ask := func(r *running, key string) *rlsv3.RateLimitResponse {
		t.Helper()
		resp, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
			Domain:      "m",
			Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: key, Value: "v"}}}},
		})
		if err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
		return resp
	}
	plain := start(t, "--config="+cfg)
	if resp := ask(plain, "k"); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.DynamicMetadata != nil {
		t.Fatalf("no modes: %v, want OVER_LIMIT without dynamic metadata", resp)
	}
	shadow := start(t, "--config="+cfg, "--shadow-mode")
	if resp := ask(shadow, "k"); resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("--shadow-mode: %v, want OK overall, OVER_LIMIT in the status", resp)
	}
	quota := start(t, "--config="+cfg, "--quota-mode")
	if resp := ask(quota, "k"); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("--quota-mode, the only quota descriptor over: %v, want OVER_LIMIT", resp)
	}
	// --count-rejected: a hit over the limit counts, so the check after it
	// (hits_addend 0) is refused; by default it is not. The files name no
	// algorithm: --default-algorithm=fixed_window makes their windows fixed.
	check := func(r *running, n uint64) rlsv3.RateLimitResponse_Code {
		t.Helper()
		resp, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
			Domain: "m",
			Descriptors: []*rlv3.RateLimitDescriptor{{
				Entries:    []*rlv3.RateLimitDescriptor_Entry{{Key: "free", Value: "v"}},
				HitsAddend: wrapperspb.UInt64(n),
			}},
		})
		if err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
		return resp.OverallCode
	}
	for _, tc := range []struct {
		args      []string
		wantCheck rlsv3.RateLimitResponse_Code
	}{
		{nil, rlsv3.RateLimitResponse_OK},
		{[]string{"--count-rejected", "--default-algorithm=fixed_window"}, rlsv3.RateLimitResponse_OVER_LIMIT},
	} {
		r := start(t, append([]string{"--config=" + cfg}, tc.args...)...)
		if got := check(r, 10); got != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%v: 10 of 10: %v", tc.args, got)
		}
		if got := check(r, 1); got != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("%v: the 11th: %v", tc.args, got)
		}
		if got := check(r, 0); got != tc.wantCheck {
			t.Errorf("%v: a check after the 11th: %v, want %v", tc.args, got, tc.wantCheck)
		}
	}
	md := start(t, "--config="+cfg, "--response-dynamic-metadata")
	resp := ask(md, "free")
	if got := resp.GetDynamicMetadata().AsMap()["domain"]; got != "m" {
		t.Fatalf("--response-dynamic-metadata: %v, want the domain in dynamic_metadata", resp.GetDynamicMetadata())
	}
}

// TestOverdrawThroughTheDoor: a stream-done charge past an overdraw
// rule's budget answers OVER_LIMIT, and the check before the next request
// is refused with reset values that tell the debt: owing 50 at 100 an
// hour, 30 minutes, in duration_until_reset, Retry-After and RateLimit.
func TestOverdrawThroughTheDoor(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "ai.yaml")
	writeFile(t, cfg, "domain: ai\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 100, algorithm: token_bucket, overdraw: true, name: tokens}\n")
	r := start(t, "--config="+cfg)
	ask := func(n uint64) *rlsv3.RateLimitResponse {
		t.Helper()
		resp, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
			Domain: "ai",
			Descriptors: []*rlv3.RateLimitDescriptor{{
				Entries:    []*rlv3.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}},
				HitsAddend: wrapperspb.UInt64(n),
			}},
		})
		if err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
		return resp
	}
	if resp := ask(150); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("charge of 150 on 100: %v, want OVER_LIMIT", resp)
	}
	resp := ask(0)
	st := resp.Statuses[0]
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || st.Code != rlsv3.RateLimitResponse_OVER_LIMIT || st.LimitRemaining != 0 {
		t.Fatalf("check after the charge: %v, want OVER_LIMIT with 0 left", resp)
	}
	// The wall clock moves a little between the calls: the debt is just
	// under 30 minutes, rounded up to whole seconds.
	if got := st.DurationUntilReset.AsDuration(); got != 30*time.Minute {
		t.Errorf("duration_until_reset %v, want 30m", got)
	}
	headers := map[string]string{}
	for _, h := range resp.ResponseHeadersToAdd {
		headers[strings.ToLower(h.Key)] = h.Value
	}
	if got := headers["retry-after"]; got != "1800" {
		t.Errorf("Retry-After %q, want 1800 (headers %v)", got, headers)
	}
	if got := headers["ratelimit"]; got != `"tokens";r=0;t=1800` {
		t.Errorf("RateLimit %q, want \"tokens\";r=0;t=1800", got)
	}
}
