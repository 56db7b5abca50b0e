//go:build !race

package redisstore_test

// Allocation counts are only meaningful without the race detector, which
// allocates on its own; `make test` runs this file in a second, non-race pass.

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

// TestTakeAllocations counts the allocations of one Take on a standalone
// Redis (batched and not) and on a cluster (hits in one slot).
func TestTakeAllocations(t *testing.T) {
	srv := redistest.Shared(t)
	cl := redistest.SharedCluster(t)
	for _, tg := range []struct {
		name string
		co   redisstore.ClientOptions
		o    redisstore.Options
		// The most allocations a Take of 1 and of 3 hits may make. Most
		// are go-redis's (the command, its reply) and the boxing of the
		// script's arguments; the store's own buffers are pooled. (Before
		// every call went through the batcher, unbatched Takes made 20
		// and 33, and cluster ones 26 and 45.)
		max [2]float64
	}{
		{"standalone", redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{}, [2]float64{17, 30}},
		{"standalone,unbatched", redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{BatchMax: 1}, [2]float64{17, 30}},
		{"cluster", redisstore.ClientOptions{URL: cl.URL, Cluster: true}, redisstore.Options{}, [2]float64{21, 34}},
	} {
		for k, n := range []int{1, 3} {
			s := newStore(t, tg.co, tg.o)
			hits := make([]quota.Hit, n)
			for i := range hits {
				hits[i] = quota.Hit{Key: "alloc\x00" + strconv.Itoa(i), TagLen: 5, Limit: quota.Limit{Algorithm: quota.Algorithm(i % 3), Requests: 1 << 40, Unit: time.Second}, N: 1}
			}
			out := make([]quota.Decision, n)
			ctx := context.Background()
			if err := s.Take(ctx, hits, out); err != nil {
				t.Fatal(err)
			}
			got := testing.AllocsPerRun(200, func() { _ = s.Take(ctx, hits, out) })
			t.Logf("%s hits=%d: %v allocs/Take", tg.name, n, got)
			if got > tg.max[k] {
				t.Errorf("%s: a Take of %d hits makes %v allocations, want at most %v", tg.name, n, got, tg.max[k])
			}
		}
	}
}
