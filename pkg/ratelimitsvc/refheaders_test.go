package ratelimitsvc_test

import (
	"strconv"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
)

const refHeadersConfig = `domain: h
descriptors:
  - key: hour
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: minute
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: tight
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: quota
    quota_mode: true
    rate_limit: {unit: day, requests_per_unit: 0}
  - key: free
    rate_limit: {unlimited: true}
`

// TestReferenceHeaders: the reference's three headers, for the descriptor
// it picks: the last over its limit that is not in quota mode, else the
// first with the fewest remaining; none without a limited descriptor; and
// never the IETF ones beside them.
func TestReferenceHeaders(t *testing.T) {
	t.Parallel()
	at := start.Add(25 * time.Second) // 35 s before the minute ends, 3575 s before the hour does
	opts := ratelimitsvc.Options{ReferenceHeaders: &ratelimitsvc.ReferenceHeaders{
		Limit: "X-Limit", Remaining: "X-Remaining", Reset: "X-Reset", Now: func() time.Time { return at },
	}}
	tests := []struct {
		name                    string
		keys                    []string
		limit, remaining, reset string // "" = no headers
	}{
		{"one", []string{"hour"}, "10", "9", "3575"},
		{"fewest remaining", []string{"hour", "minute"}, "3", "2", "35"},
		{"over beats remaining", []string{"minute", "tight"}, "0", "0", "1"},
		// Over in quota mode, it is picked by its remaining (0), like any
		// other, not as an over-limit one; a later over-limit one wins.
		{"quota mode over, by remaining", []string{"quota", "hour"}, "0", "0", strconv.FormatInt(86400-at.Unix()%86400, 10)},
		{"quota mode then over", []string{"quota", "tight"}, "0", "0", "1"},
		{"unlimited has none", []string{"free"}, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixtureWith(t, refHeadersConfig, opts, engine.Options{})
			f.clock.Set(at)
			var ds []*rlv3.RateLimitDescriptor
			for _, k := range tt.keys {
				ds = append(ds, desc(k, "v"))
			}
			resp := f.ask(t, "h", ds...)
			got := map[string]string{}
			for _, h := range resp.ResponseHeadersToAdd {
				got[h.Key] = h.Value
			}
			if tt.limit == "" {
				if len(got) != 0 {
					t.Errorf("headers %v, want none", got)
				}
				return
			}
			want := map[string]string{"X-Limit": tt.limit, "X-Remaining": tt.remaining, "X-Reset": tt.reset}
			if len(got) != 3 || got["X-Limit"] != want["X-Limit"] || got["X-Remaining"] != want["X-Remaining"] || got["X-Reset"] != want["X-Reset"] {
				t.Errorf("headers %v, want %v", got, want)
			}
		})
	}
}
