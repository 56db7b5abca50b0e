//go:build !race

package cachestore_test

// Allocation counts are only meaningful without the race detector.

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/cachestore"
)

// TestMemoryGetAllocs: a hit (with a Vary) and a miss allocate nothing.
func TestMemoryGetAllocs(t *testing.T) {
	s := newMemory(t, 0)
	now := time.Now()
	k := cachestore.Key{Host: "h", Path: "/x", Primary: "p"}
	vary := []string{"accept-encoding", "accept-language"}
	req := []cachestore.Header{{Name: "accept-encoding", Value: "gzip"}, {Name: "accept-language", Value: "en"}, {Name: "user-agent", Value: "x"}}
	if err := s.Put(ctx, k, vary, req, body(100)); err != nil {
		t.Fatal(err)
	}
	miss := cachestore.Key{Host: "h", Path: "/y", Primary: "p"}
	for _, tc := range []struct {
		name string
		k    cachestore.Key
		hit  bool
	}{{"hit", k, true}, {"miss", miss, false}} {
		n := testing.AllocsPerRun(1000, func() {
			e, _ := s.Get(ctx, tc.k, req, now)
			if (e != nil) != tc.hit {
				t.Fatal("unexpected result")
			}
		})
		if n != 0 {
			t.Errorf("Get %s: %v allocations, want 0", tc.name, n)
		}
	}
}
