package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

// TestStallTripsBreaker stalls Redis (SIGSTOP: connections stay open and
// nothing answers) under 32 callers that each give up after 20 ms, as
// Envoy does after its rate-limit filter's timeout. The calls must still
// run to the store's own deadline, so that the breaker sees the stall and
// opens; every Take returns; once Redis continues, decisions come back
// without a restart.
func TestStallTripsBreaker(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newStore(t, redisstore.ClientOptions{URL: srv.URL, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}, redisstore.Options{})
	hits := []quota.Hit{{Key: "stall", Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 1 << 30, Unit: time.Hour}, N: 1}}
	if err := s.Take(context.Background(), hits, make([]quota.Decision, 1)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, fails, fast atomic.Int64
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]quota.Decision, 1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				err := s.Take(ctx, hits, out)
				cancel()
				calls.Add(1)
				if err != nil {
					fails.Add(1)
				}
				if errors.Is(err, redisstore.ErrUnavailable) {
					fast.Add(1)
				}
			}
		}()
	}
	// Wait for the breaker: the stall must open it although every caller
	// gives up long before the read timeout.
	poll(t, 20*time.Second, func() bool { return !s.Stats().Up })
	poll(t, 20*time.Second, func() bool { return fast.Load() > 100 })
	if err := s.Ping(context.Background()); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("Ping while stalled = %v, want ErrUnavailable at once", err)
	}
	h := s.Health()
	if len(h) != 1 || h[0].Up || h[0].LastError == "" {
		t.Errorf("Health while stalled = %+v, want one node down with its error", h)
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	poll(t, 20*time.Second, func() bool { return s.Stats().Up })
	close(stop)
	wg.Wait()
	out := make([]quota.Decision, 1)
	if err := s.Take(context.Background(), hits, out); err != nil || !out[0].Fits {
		t.Errorf("after the stall: %v %+v, want a decision", err, out[0])
	}
	st := s.Stats()
	if st.Trips != 1 || st.Recoveries != 1 {
		t.Errorf("Stats %+v: want 1 trip and 1 recovery", st)
	}
	t.Logf("%d calls, %d failed, %d of them at once by the breaker; %+v", calls.Load(), fails.Load(), fast.Load(), st)
}

// TestClusterNodeDown kills one master of a 3-master cluster (told to
// keep serving the slots it still covers): keys on the other masters go
// on being decided, keys on the dead one fail, soon at once with
// ErrUnavailable naming it, and Health says which node is down. When the
// master comes back, its keys are decided again.
func TestClusterNodeDown(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	for _, n := range cl.Nodes {
		if _, err := n.Do("CONFIG", "SET", "cluster-require-full-coverage", "no"); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, redisstore.ClientOptions{URL: cl.URL, Cluster: true}, redisstore.Options{})
	ctx := context.Background()
	const keys = 60
	hit := func(i int) []quota.Hit {
		k := fmt.Sprintf("d\x00k%d", i)
		return []quota.Hit{{Key: k, TagLen: len(k), Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 1 << 30, Unit: time.Hour}, N: 1}}
	}
	out := make([]quota.Decision, 1)
	for i := 0; i < keys; i++ {
		if err := s.Take(ctx, hit(i), out); err != nil {
			t.Fatalf("key %d before the kill: %v", i, err)
		}
	}
	if h := s.Health(); len(h) != 3 {
		t.Fatalf("Health = %+v, want the 3 masters", h)
	}
	dead := cl.Nodes[0]
	dead.Stop()

	// Rounds over every key until the dead node's breaker is open: each
	// key either always fails (its slot is on the dead master) or never.
	failed := map[int]bool{}
	for round := 0; ; round++ {
		if round > 200 {
			t.Fatal("the dead master's breaker never opened")
		}
		fastFails := 0
		for i := 0; i < keys; i++ {
			err := s.Take(ctx, hit(i), out)
			if err == nil {
				if failed[i] {
					t.Fatalf("key %d failed, then was decided with its master dead", i)
				}
				continue
			}
			if !strings.Contains(err.Error(), dead.Addr) {
				t.Fatalf("key %d: %v: an error that does not name the dead master %s", i, err, dead.Addr)
			}
			if round > 0 && !failed[i] {
				t.Fatalf("key %d was decided after the kill, then failed: %v", i, err)
			}
			failed[i] = true
			if errors.Is(err, redisstore.ErrUnavailable) {
				fastFails++
			}
		}
		if len(failed) == 0 || len(failed) == keys {
			t.Fatalf("%d of %d keys failed: want those of one master of three", len(failed), keys)
		}
		if fastFails == len(failed) {
			break
		}
	}
	for _, h := range s.Health() {
		if (h.Addr == dead.Addr) == h.Up {
			t.Errorf("Health %+v: want only %s down", h, dead.Addr)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping with 2 masters of 3 up: %v", err)
	}
	if s.Stats().Up {
		t.Error("Stats().Up with a master down")
	}

	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, func() bool {
		for i := range failed {
			if s.Take(ctx, hit(i), out) != nil {
				return false
			}
		}
		return true
	})
	t.Logf("%d of %d keys were on the dead master", len(failed), keys)
}
