package statuspage_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/statuspage"
)

// BenchmarkTrackerDecided is the tracker's cost per decision: admitted
// (returns at once) and over the limit (hash and table scan), the latter
// over more keys than the table holds.
func BenchmarkTrackerDecided(b *testing.B) {
	ds := make([]*engine.Descriptor, 4096)
	for i := range ds {
		ds[i] = desc("tenant", fmt.Sprintf("tenant-%d", i), "user", fmt.Sprintf("user-%d@example.com", i%97))
	}
	for _, c := range []struct {
		name string
		over bool
	}{{"admitted", false}, {"over", true}} {
		b.Run(c.name, func(b *testing.B) {
			tr := statuspage.NewTracker(statuspage.TrackerOptions{})
			dec := fits
			if c.over {
				dec = over
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(1) * 7919
				for pb.Next() {
					i++
					tr.Decided("api", ds[i%uint64(len(ds))], limit, hit, dec)
				}
			})
		})
	}
}

// BenchmarkPage is the cost of building the page (a Gather included) for
// a config of 50 rules.
func BenchmarkPage(b *testing.B) {
	f := newFixture(b)
	for i := range 50 {
		f.hits.WithLabelValues("api", fmt.Sprint("r", i)).Add(float64(i))
		f.over.WithLabelValues("api", fmt.Sprint("r", i)).Add(float64(i))
	}
	f.status.Sample()
	b.ReportAllocs()
	for b.Loop() {
		f.status.Page()
	}
}
