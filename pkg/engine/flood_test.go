package engine_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/nearcache"
)

// series counts the metric series reg holds.
func series(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// TestFloodDistinctValues decides a flood of distinct descriptor values
// (per-value rules, a pattern, Envoy overrides with distinct limits, and
// unknown keys), each value twice so that its second hit is over and the
// near-cache remembers it, through the near-cache over a bounded memory
// store: the only per-value state is the backend's and the near-cache's,
// each within its bound; the metric series do not grow; and the heap after
// the flood is bounded by the settings (1 KiB a counter or near-cache
// entry), not by the flood.
func TestFloodDistinctValues(t *testing.T) {
	// Not parallel: the heap figure must be this test's alone.
	const maxKeys, nearEntries, flood = 2000, 500, 20_000
	clock := backendtest.NewClock(start)
	store, err := memstore.New(memstore.Options{Now: clock.Now, MaxKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	near, err := nearcache.New(store, nearcache.Options{Now: clock.Now, MaxEntries: nearEntries})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	eng, err := engine.New(engine.Options{Limiter: near, Metrics: engine.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(mustParse(t, `
domain: api
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: path
    value: /x/*
    rate_limit: {unit: hour, requests_per_unit: 1, algorithm: token_bucket}
  - key: plan
    rate_limit: {unit: hour, requests_per_unit: 1, algorithm: fixed_window}
`))
	ctx := context.Background()
	decide := func(req *engine.Request) {
		var out engine.Outcome
		if err := eng.Decide(ctx, req, &out); err != nil {
			t.Fatal(err)
		}
	}
	// Warm up every series and pool before measuring.
	decide(&engine.Request{Domain: "api", Descriptors: []engine.Descriptor{d("user", "warm")}})
	seriesBefore := series(t, reg)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range flood {
		v := strconv.Itoa(i)
		var ds []engine.Descriptor
		switch i % 4 {
		case 0:
			ds = []engine.Descriptor{d("user", "u"+v)}
		case 1:
			ds = []engine.Descriptor{d("path", "/x/"+v)}
		case 2:
			o := d("plan", "p"+v)
			o.Override, o.HasOverride = engine.Override{Requests: uint64(1 + i%7), Unit: time.Minute}, true
			ds = []engine.Descriptor{o, d("nowhere", v)}
		default:
			o := d("unknown", v) // matches no rule: only an override counts it
			o.Override, o.HasOverride = engine.Override{Requests: uint64(1 + i%5), Unit: time.Minute}, true
			ds = []engine.Descriptor{o}
		}
		req := &engine.Request{Domain: "api", Descriptors: ds, Hits: 2}
		decide(req)
		decide(req) // over: the near-cache remembers it
		if i%1000 == 0 {
			if n := store.Len(); n > maxKeys {
				t.Fatalf("after %d values the backend holds %d counters, more than %d", i+1, n, maxKeys)
			}
			if n := near.Len(); n > nearEntries {
				t.Fatalf("after %d values the near-cache holds %d, more than %d", i+1, n, nearEntries)
			}
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	if n := store.Len(); n > maxKeys {
		t.Errorf("the backend holds %d counters, more than %d", n, maxKeys)
	}
	if n := near.Len(); n > nearEntries || n == 0 {
		t.Errorf("the near-cache holds %d entries, want 1..%d", n, nearEntries)
	}
	if got := series(t, reg); got != seriesBefore {
		t.Errorf("%d metric series after the flood, %d before: a series per value?", got, seriesBefore)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if bound := int64(maxKeys+nearEntries) * 1024; grown > bound {
		t.Errorf("heap grew %d bytes over the flood, more than %d (1 KiB per counter and near-cache entry)", grown, bound)
	}
	t.Logf("%d distinct values: backend %d counters, near-cache %d entries, %d series, heap grew %.2f MiB",
		flood, store.Len(), near.Len(), seriesBefore, float64(grown)/(1<<20))
}
