package refstats_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/nearcache"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
	"github.com/floodgate/floodgate/pkg/refstats"
)

// TestLocalCache: with a near-cache in front of the backend and the
// reference's counting, a hit the cache rejects counts over_limit and
// over_limit_with_local_cache, and the ratelimit.localcache gauges count
// the lookups: "foo" allows 5 a minute; of 8 hits, 5 are within, the 6th is
// rejected by the backend (and remembered), the 7th and 8th by the cache.
func TestLocalCache(t *testing.T) {
	t.Parallel()
	stats := refstats.New(refstats.Options{Prometheus: refstats.DefaultMapper()})
	clock := backendtest.NewClock(start)
	store, err := memstore.New(memstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := nearcache.New(store, nearcache.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	stats.LocalCache(cache.Lookups, cache.Len)
	eng, err := engine.New(engine.Options{Limiter: cache, Observer: stats, CountRejected: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := descriptors.Parse("rl.yaml", []byte(config), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(cfg)
	svc, err := ratelimitsvc.New(eng, ratelimitsvc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var codes []rlsv3.RateLimitResponse_Code
	for range 8 {
		resp, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
			Domain: "rl", Descriptors: []*rlv3.RateLimitDescriptor{desc("foo", "a")}})
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.OverallCode)
	}
	if over := rlsv3.RateLimitResponse_OVER_LIMIT; codes[4] == over || codes[5] != over || codes[7] != over {
		t.Fatalf("codes %v: want 5 OK, then OVER_LIMIT", codes)
	}
	counters := stats.Counters()
	for name, want := range map[string]uint64{
		"ratelimit.service.rate_limit.rl.foo.total_hits":                  8,
		"ratelimit.service.rate_limit.rl.foo.within_limit":                5,
		"ratelimit.service.rate_limit.rl.foo.over_limit":                  3,
		"ratelimit.service.rate_limit.rl.foo.over_limit_with_local_cache": 2,
	} {
		if counters[name] != want {
			t.Errorf("%s = %d, want %d", name, counters[name], want)
		}
	}
	gauges := stats.Gauges()
	for name, want := range map[string]uint64{
		"ratelimit.localcache.hitCount":    2,
		"ratelimit.localcache.missCount":   6,
		"ratelimit.localcache.lookupCount": 8,
		"ratelimit.localcache.entryCount":  1,
	} {
		if gauges[name] != want {
			t.Errorf("%s = %d, want %d", name, gauges[name], want)
		}
	}

	// On the Prometheus listener: the gauges under their escaped names.
	srv := httptest.NewServer(stats.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, w := range []string{
		"# TYPE ratelimit_localcache_hitCount gauge\nratelimit_localcache_hitCount 2\n",
		"ratelimit_localcache_missCount 6\n",
	} {
		if !strings.Contains(string(b), w) {
			t.Errorf("exposition lacks %q:\n%s", w, b)
		}
	}
}

// TestExtraTags: with ExtraTags every stat's name ends with the tags as
// the reference's stats library writes them, by key.
func TestExtraTags(t *testing.T) {
	t.Parallel()
	r := newRig(t, refstats.Options{ExtraTags: map[string]string{"zone": "eu:1", "env": "prod"}})
	r.calls(t)
	got := r.stats.Counters()
	for _, name := range []string{
		"ratelimit.service.rate_limit.rl.foo.total_hits.__env=prod.__zone=eu_1",
		"ratelimit.service.config_load_success.__env=prod.__zone=eu_1",
	} {
		if got[name] == 0 {
			t.Errorf("no %s among %v", name, got)
		}
	}
	if got["ratelimit.service.rate_limit.rl.foo.total_hits"] != 0 {
		t.Error("an untagged total_hits counted")
	}
}
