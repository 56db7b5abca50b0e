package memstore

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/quota"
)

// TestFloodMillions drives two million distinct keys through a store bounded
// at a twentieth of that, from several goroutines in batches as the engine
// sends them: the store never holds more than MaxKeys, every live counter
// it dropped is counted, and the heap after the flood is bounded by the
// setting (a wide margin: 1 KiB per key), not by the flood.
func TestFloodMillions(t *testing.T) {
	// Not parallel: the heap figure must be this test's alone.
	const (
		maxKeys    = 100_000
		flood      = 2_000_000
		goroutines = 4
		batch      = 8
	)
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)

	clock := backendtest.NewClock(backendtest.Base) // frozen: nothing expires, every drop is an eviction
	var evicted atomic.Int64
	s := newStore(t, Options{Now: clock.Now, MaxKeys: maxKeys, OnEvict: func(n int) { evicted.Add(int64(n)) }})

	var (
		wg       sync.WaitGroup
		over     atomic.Int64 // the largest Len seen above MaxKeys
		rejected atomic.Int64
	)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hits := make([]quota.Hit, batch)
			out := make([]quota.Decision, batch)
			prefix := "flood/" + strconv.Itoa(g) + "/"
			for i := 0; i < flood/goroutines; i += batch {
				for j := range hits {
					hits[j] = quota.Hit{Key: prefix + strconv.Itoa(i+j), Limit: perHour, N: 1}
				}
				if err := s.Take(context.Background(), hits, out); err != nil {
					t.Error(err)
					return
				}
				for j := range out {
					if !out[j].Fits {
						rejected.Add(1)
					}
				}
				if i%(1<<14) == 0 {
					if n := s.Len(); n > maxKeys && int64(n) > over.Load() {
						over.Store(int64(n))
					}
				}
			}
		}()
	}
	wg.Wait()

	if n := over.Load(); n > 0 {
		t.Errorf("the store held %d counters during the flood, more than MaxKeys %d", n, maxKeys)
	}
	n := s.Len()
	if n > maxKeys {
		t.Errorf("after the flood the store holds %d, more than MaxKeys %d", n, maxKeys)
	}
	if n < maxKeys*3/4 {
		t.Errorf("after the flood the store holds only %d of %d", n, maxKeys)
	}
	if got, want := evicted.Load(), int64(flood-n); got != want {
		t.Errorf("evictions counted %d, want %d (%d distinct keys, %d held)", got, want, flood, n)
	}
	if r := rejected.Load(); r != 0 {
		t.Errorf("%d first hits on fresh keys were rejected", r)
	}

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(base.HeapAlloc)
	if bound := int64(maxKeys) * 1024; grown > bound {
		t.Errorf("heap grew %d bytes over the flood, more than %d (1 KiB per key of MaxKeys %d)", grown, bound, maxKeys)
	}
	t.Logf("%d distinct keys: %d held, %d evicted, heap grew %.1f MiB", flood, n, evicted.Load(), float64(grown)/(1<<20))
	runtime.KeepAlive(s)
}
