//go:build !race

// Allocation counts are only meaningful without the race detector, which
// allocates on its own.

package statuspage_test

import (
	"fmt"
	"testing"

	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/statuspage"
)

// TestTrackerAllocations: the tracker adds no allocation to a decision,
// admitted or over the limit, for a tracked key or a new one.
func TestTrackerAllocations(t *testing.T) {
	tr := statuspage.NewTracker(statuspage.TrackerOptions{Capacity: 8})
	ds := make([]*engine.Descriptor, 256)
	for i := range ds {
		ds[i] = desc("tenant", fmt.Sprintf("t%d", i), "user", "someone@example.com")
	}
	i := 0
	for name, dec := range map[string]*quota.Decision{"admitted": fits, "over": over} {
		n := testing.AllocsPerRun(1000, func() {
			tr.Decided("api", ds[i%len(ds)], limit, hit, dec)
			i++
		})
		if n != 0 {
			t.Errorf("%s: %.1f allocations per decision, want 0", name, n)
		}
	}
}
