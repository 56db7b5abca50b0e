//go:build !race

package memstore

// Allocation counts are only meaningful without the race detector, which
// allocates on its own; `make test` runs this file in a second, non-race pass.

import (
	"context"
	"strconv"
	"testing"

	"github.com/floodgate/floodgate/pkg/quota"
)

func TestTakeAllocations(t *testing.T) {
	s := newStore(t, Options{})
	// Every counting, including hits taken in full past their limit (the
	// 100 runs go far over perHour's).
	for _, c := range []quota.Counting{quota.AllOrNothing, quota.Always, quota.UnlessOtherOver} {
		for _, n := range []int{1, 3, smallBatch} {
			hits := make([]quota.Hit, n)
			for i := range hits {
				hits[i] = quota.Hit{Key: "alloc/" + strconv.Itoa(int(c)) + "/" + strconv.Itoa(i), Limit: perHour, N: 1, Counting: c}
			}
			out := make([]quota.Decision, n)
			ctx := context.Background()
			_ = s.Take(ctx, hits, out) // create the counters
			if got := testing.AllocsPerRun(100, func() { _ = s.Take(ctx, hits, out) }); got != 0 {
				t.Errorf("Take of %d hits counted %d on existing keys: %v allocations, want 0", n, c, got)
			}
		}
	}
}
