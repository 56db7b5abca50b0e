package sidecar_test

import (
	"context"
	"path/filepath"
	"testing"

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
