package cachestore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/cachestoretest"
	"github.com/floodgate/floodgate/pkg/cachestore"
)

var ctx = context.Background()

func newMemory(t testing.TB, max int64) *cachestore.Memory {
	t.Helper()
	s, err := cachestore.NewMemory(cachestore.MemoryOptions{MaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	cachestoretest.Run(t, func(t testing.TB) cachestore.Store { return newMemory(t, 0) })
}

func TestNewMemoryOptions(t *testing.T) {
	t.Parallel()
	if _, err := cachestore.NewMemory(cachestore.MemoryOptions{MaxBytes: -1}); err == nil || !strings.Contains(err.Error(), "MaxBytes") {
		t.Errorf("MaxBytes -1: err = %v, want one naming MaxBytes", err)
	}
	// Zero is the default: an entry of 100 MB fits.
	s := newMemory(t, 0)
	now := time.Now()
	big := &cachestore.Entry{Status: 200, Body: make([]byte, 100<<20), Expires: now.Add(time.Hour)}
	if err := s.Put(ctx, cachestore.Key{Host: "h", Path: "/", Primary: "p"}, nil, nil, big); err != nil {
		t.Errorf("Put of 100 MB with the default bound: %v", err)
	}
}

// body is a fresh entry with a body of n bytes.
func body(n int) *cachestore.Entry {
	return &cachestore.Entry{Status: 200, Body: make([]byte, n), Expires: time.Now().Add(time.Hour)}
}

func TestMemoryTooLarge(t *testing.T) {
	t.Parallel()
	s := newMemory(t, 4096)
	k := cachestore.Key{Host: "h", Path: "/", Primary: "p"}
	if err := s.Put(ctx, k, nil, nil, body(4096)); !errors.Is(err, cachestore.ErrTooLarge) {
		t.Errorf("Put of more than MaxBytes: err = %v, want ErrTooLarge", err)
	}
	if st, _ := s.Stats(ctx); st != (cachestore.Stats{}) {
		t.Errorf("Stats = %+v, want nothing held", st)
	}
}

// TestMemoryEvictsLeastRecentlyUsed fills the store, touches the oldest
// entry, and checks that the next Put evicts the second oldest.
func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	const n = 1000
	// Room for four entries of n bytes and their overhead, not five.
	s := newMemory(t, 4*(n+128+934+16)+100)
	now := time.Now()
	k := func(i int) cachestore.Key { return cachestore.Key{Host: "h", Path: fmt.Sprint("/", i), Primary: "p"} }
	for i := 0; i < 4; i++ {
		if err := s.Put(ctx, k(i), nil, nil, body(n)); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := s.Stats(ctx); st.Entries != 4 {
		t.Fatalf("Stats = %+v, want 4 entries before any eviction", st)
	}
	if e, _ := s.Get(ctx, k(0), nil, now); e == nil {
		t.Fatal("entry 0 evicted early")
	}
	if err := s.Put(ctx, k(4), nil, nil, body(n)); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, true, true} {
		if e, _ := s.Get(ctx, k(i), nil, now); (e != nil) != want {
			t.Errorf("entry %d held = %v, want %v", i, e != nil, want)
		}
	}
	if st, _ := s.Stats(ctx); st.Entries != 4 || st.Bytes != 4*int64(body(n).Size()) {
		t.Errorf("Stats = %+v, want 4 entries of %d bytes", st, body(n).Size())
	}
}

// TestMemoryBound puts many distinct keys of varied sizes and checks that
// the bytes held never pass the bound, and that the newest entries stay.
func TestMemoryBound(t *testing.T) {
	t.Parallel()
	const max = 64 << 10
	s := newMemory(t, max)
	now := time.Now()
	var last cachestore.Key
	for i := 0; i < 5000; i++ {
		last = cachestore.Key{Host: fmt.Sprint("h", i%7), Path: fmt.Sprint("/p/", i), Primary: fmt.Sprint(i % 3)}
		e := body(i % 3000)
		e.Tags = []string{fmt.Sprint("t", i%11)}
		if err := s.Put(ctx, last, []string{"accept"}, nil, e); err != nil {
			t.Fatal(err)
		}
		st, _ := s.Stats(ctx)
		if st.Bytes > max || st.Entries <= 0 {
			t.Fatalf("after %d puts: Stats = %+v, bound %d", i+1, st, max)
		}
	}
	if e, _ := s.Get(ctx, last, nil, now); e == nil {
		t.Error("the newest entry was evicted")
	}
	// Everything left is still indexed: removing every path empties it.
	if _, err := s.Invalidate(ctx, cachestore.Selector{Prefixes: []string{"/"}}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(ctx); st != (cachestore.Stats{}) {
		t.Errorf("Stats = %+v after removing every path", st)
	}
}

func TestMemoryExpiredDropped(t *testing.T) {
	t.Parallel()
	s := newMemory(t, 0)
	k := cachestore.Key{Host: "h", Path: "/", Primary: "p"}
	e := body(10)
	if err := s.Put(ctx, k, nil, nil, e); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, k, nil, e.Expires); got != nil {
		t.Fatal("expired entry served")
	}
	// The Get that found it expired dropped it.
	if st, _ := s.Stats(ctx); st != (cachestore.Stats{}) {
		t.Errorf("Stats = %+v, want the expired entry dropped", st)
	}
}

// TestMemoryConcurrentExact: after concurrent work and a full
// invalidation, the memory store's Stats are exactly zero.
func TestMemoryConcurrentExact(t *testing.T) {
	t.Parallel()
	s := newMemory(t, 32<<10)
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 500; i++ {
				k := cachestore.Key{Host: "h", Path: fmt.Sprint("/", (i*7+w)%50), Primary: fmt.Sprint(w)}
				e := body(i % 700)
				e.Tags = []string{fmt.Sprint(i % 5)}
				s.Put(ctx, k, nil, nil, e)
				s.Get(ctx, k, nil, time.Now())
				if i%13 == 0 {
					s.Invalidate(ctx, cachestore.Selector{Prefixes: []string{fmt.Sprint("/", i%5)}, Tags: []string{"3"}})
				}
			}
		}(w)
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	if _, err := s.Invalidate(ctx, cachestore.Selector{Prefixes: []string{""}}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(ctx); st != (cachestore.Stats{}) {
		t.Errorf("Stats = %+v after removing everything", st)
	}
}

func BenchmarkMemoryGet(b *testing.B) {
	s := newMemory(b, 0)
	now := time.Now()
	vary := []string{"accept-encoding"}
	req := []cachestore.Header{{Name: "accept", Value: "*/*"}, {Name: "accept-encoding", Value: "gzip"}}
	for i := 0; i < 1000; i++ {
		k := cachestore.Key{Host: "h", Path: fmt.Sprint("/", i), Primary: "p"}
		s.Put(ctx, k, vary, req, body(1000))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		k := cachestore.Key{Host: "h", Path: "/1", Primary: "p"}
		for pb.Next() {
			if e, _ := s.Get(ctx, k, req, now); e == nil {
				b.Error("miss")
				return
			}
		}
	})
}

func BenchmarkMemoryPut(b *testing.B) {
	s := newMemory(b, 16<<20)
	vary := []string{"accept-encoding"}
	req := []cachestore.Header{{Name: "accept-encoding", Value: "gzip"}}
	keys := make([]cachestore.Key, 4096)
	for i := range keys {
		keys[i] = cachestore.Key{Host: "h", Path: fmt.Sprint("/", i), Primary: "p"}
	}
	e := body(1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Put(ctx, keys[i%len(keys)], vary, req, e)
	}
}
