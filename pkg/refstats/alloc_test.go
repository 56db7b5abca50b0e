//go:build !race

// Allocation counts are only meaningful without the race detector, which
// allocates on its own.

package refstats_test

import (
	"context"
	"testing"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/refstats"
)

// TestObserverAllocations: the reference's stats add no allocation to a
// decision, whether its stat key is the rule's or made from the request
// (once made).
func TestObserverAllocations(t *testing.T) {
	decide := func(obs engine.Observer, entries ...engine.Entry) float64 {
		clock := backendtest.NewClock(start)
		store, err := memstore.New(memstore.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		eng, err := engine.New(engine.Options{Limiter: store, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := descriptors.Parse("rl.yaml", []byte(config), descriptors.Options{})
		if err != nil {
			t.Fatal(err)
		}
		eng.SetConfig(cfg)
		req := &engine.Request{Domain: "rl", Descriptors: []engine.Descriptor{{Entries: entries}}}
		var out engine.Outcome
		ctx := context.Background()
		_ = eng.Decide(ctx, req, &out)
		return testing.AllocsPerRun(500, func() { _ = eng.Decide(ctx, req, &out) })
	}
	for name, entries := range map[string][]engine.Entry{
		"static":          {{Key: "foo", Value: "a"}},
		"detailed_metric": {{Key: "source_cluster", Value: "proxy"}, {Key: "destination_cluster", Value: "mock"}},
		"value_to_metric": {{Key: "user", Value: "alice"}},
	} {
		without := decide(nil, entries...)
		with := decide(refstats.New(refstats.Options{Prometheus: refstats.DefaultMapper()}), entries...)
		if with > without {
			t.Errorf("%s: %v allocations a decision with the reference's stats, %v without", name, with, without)
		}
	}
}
