package refstats_test

import (
	"context"
	"testing"

	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/refstats"
)

// BenchmarkDecide measures a decision with and without the reference's
// stats (statsd and Prometheus both on), on a rule with its own key and
// one with a key made from the request.
func BenchmarkDecide(b *testing.B) {
	for _, bc := range []struct {
		name  string
		stats *refstats.Stats
	}{
		{"without", nil},
		{"with", refstats.New(refstats.Options{Prometheus: refstats.DefaultMapper(), Statsd: refstats.StatsdOptions{Addr: "127.0.0.1:1"}})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var obs engine.Observer
			if bc.stats != nil {
				obs = bc.stats
			}
			eng := newEngineB(b, obs)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := &engine.Request{Domain: "k", Descriptors: []engine.Descriptor{entries("pattern", "pq"), entries("remote_address", "10.0.0.1")}}
				var out engine.Outcome
				for pb.Next() {
					_ = eng.Decide(context.Background(), req, &out)
				}
			})
		})
	}
}
