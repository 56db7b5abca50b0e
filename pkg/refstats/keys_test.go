package refstats_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/refstats"
)

const keysConfig = `
domain: k
descriptors:
  - key: path
    value: "files*"
    share_threshold: true
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 100, algorithm: fixed_window}
  - key: route
    value: "api*"
    value_to_metric: true
    rate_limit: {unit: minute, requests_per_unit: 100, algorithm: fixed_window}
  - key: pattern
    value: "p*"
    rate_limit: {unit: minute, requests_per_unit: 100, algorithm: fixed_window}
  - key: remote_address
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 100, algorithm: fixed_window}
  - key: host
    descriptors:
      - key: method
        value: GET
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 100, algorithm: fixed_window}
  - key: k1
    descriptors:
      - key: k2
        value_to_metric: true
        descriptors:
          - key: k3
            rate_limit: {unit: minute, requests_per_unit: 100, algorithm: fixed_window}
  - key: free
    rate_limit: {unlimited: true}
  - key: strict
    rate_limit: {unit: minute, requests_per_unit: 1, algorithm: fixed_window}
`

type failing struct{}

func (failing) Take(context.Context, []quota.Hit, []quota.Decision) error {
	return errors.New("redis: connection refused")
}

func newEngine(t testing.TB, stats *refstats.Stats, opts engine.Options) *engine.Engine {
	t.Helper()
	if stats != nil {
		opts.Observer = stats
	}
	return newEngineOpts(t, opts)
}

func newEngineB(b *testing.B, obs engine.Observer) *engine.Engine {
	return newEngineOpts(b, engine.Options{Observer: obs})
}

func newEngineOpts(t testing.TB, opts engine.Options) *engine.Engine {
	t.Helper()
	if opts.Limiter == nil {
		clock := backendtest.NewClock(start)
		store, err := memstore.New(memstore.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		opts.Limiter = store
	}
	eng, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := descriptors.Parse("k.yaml", []byte(keysConfig), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(cfg)
	return eng
}

func decide(t *testing.T, eng *engine.Engine, domain string, ds ...engine.Descriptor) error {
	t.Helper()
	var out engine.Outcome
	return eng.Decide(context.Background(), &engine.Request{Domain: domain, Descriptors: ds}, &out)
}

func entries(kv ...string) engine.Descriptor {
	var d engine.Descriptor
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, engine.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// totalHits lists the stat keys that counted hits.
func totalHits(s *refstats.Stats) []string {
	var keys []string
	for name := range maps.Keys(s.Counters()) {
		if k, ok := strings.CutSuffix(name, ".total_hits"); ok {
			keys = append(keys, strings.TrimPrefix(k, "ratelimit.service.rate_limit."))
		}
	}
	slices.Sort(keys)
	return keys
}

// TestStatKeys: the keys the reference gives each kind of rule.
func TestStatKeys(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		d    engine.Descriptor
		want string
	}{
		{"share_threshold keeps the pattern, detailed or not", entries("path", "files/a.txt"), "k.path_files*"},
		{"value_to_metric on a pattern names the value", entries("route", "api/v1"), "k.route_api/v1"},
		{"a pattern without flags names the pattern", entries("pattern", "pq"), "k.pattern_p*"},
		{"value_to_metric on a level above the rule's", entries("k1", "X", "k2", "Y", "k3", "Z"), "k.k1.k2_Y.k3"},
		{"detailed_metric names values; IPv4 dots become _", entries("remote_address", "10.1.2.3"), "k.remote_address_10_1_2_3"},
		{"detailed_metric on a nested rule", entries("host", "a:b", "method", "GET"), "k.host_a_b.method_GET"},
		{"an override on an unmatched descriptor names the request", func() engine.Descriptor {
			d := entries("other", "x", "empty", "")
			d.Override, d.HasOverride = engine.Override{Requests: 5, Unit: 60e9}, true
			return d
		}(), "k.other_x.empty"},
		{"an override on a rule names the request too", func() engine.Descriptor {
			d := entries("pattern", "pz")
			d.Override, d.HasOverride = engine.Override{Requests: 5, Unit: 60e9}, true
			return d
		}(), "k.pattern_pz"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stats := refstats.New(refstats.Options{})
			eng := newEngine(t, stats, engine.Options{})
			if err := decide(t, eng, "k", tt.d, entries("free", "y")); err != nil {
				t.Fatal(err)
			}
			if got := totalHits(stats); len(got) != 1 || got[0] != tt.want {
				t.Fatalf("stat keys %q, want [%q]", got, tt.want)
			}
		})
	}
}

// TestServiceStats: domain_not_found, redis_error and global_shadow_mode.
func TestServiceStats(t *testing.T) {
	t.Parallel()
	stats := refstats.New(refstats.Options{})
	shadow := newEngine(t, stats, engine.Options{ShadowMode: true})
	for range 3 {
		if err := decide(t, shadow, "k", entries("strict", "s")); err != nil {
			t.Fatal(err)
		}
	}
	if err := decide(t, shadow, "elsewhere", entries("a", "1"), entries("b", "2"), entries("c", "3")); err != nil {
		t.Fatal(err)
	}
	broken := newEngine(t, stats, engine.Options{Limiter: failing{}})
	if err := decide(t, broken, "k", entries("strict", "s")); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
	got := stats.Counters()
	want := map[string]uint64{
		"ratelimit.service.global_shadow_mode":                    2,
		"ratelimit.service.rate_limit.elsewhere.domain_not_found": 3,
		"ratelimit.service.call.should_rate_limit.redis_error":    1,
		"ratelimit.service.rate_limit.k.strict.total_hits":        4, // the failed call's too
		"ratelimit.service.rate_limit.k.strict.within_limit":      1,
		"ratelimit.service.rate_limit.k.strict.near_limit":        1,
		"ratelimit.service.rate_limit.k.strict.over_limit":        2,
	}
	if !maps.Equal(got, want) {
		t.Errorf("counters\n got %v\nwant %v", got, want)
	}
}

// TestNearLimitBatches: hits_addend batches split between within_limit and
// near_limit at floor(limit × ratio), as the reference splits them.
func TestNearLimitBatches(t *testing.T) {
	t.Parallel()
	stats := refstats.New(refstats.Options{NearLimitRatio: 0.5})
	eng := newEngine(t, stats, engine.Options{})
	d := entries("pattern", "pb")
	d.Hits, d.HasHits = 40, true
	for range 2 { // 40 within; then 80: 30 of those 40 above 50
		if err := decide(t, eng, "k", d); err != nil {
			t.Fatal(err)
		}
	}
	got := stats.Counters()
	p := "ratelimit.service.rate_limit.k.pattern_p*."
	if got[p+"total_hits"] != 80 || got[p+"within_limit"] != 80 || got[p+"near_limit"] != 30 || got[p+"over_limit"] != 0 {
		t.Errorf("counters %v", got)
	}
}
