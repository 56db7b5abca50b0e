package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/lua"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

// batchSettings are the batching settings the tests below run under: the
// default (no time bound), a count bound that is hit often, a window, a
// window so short that it elapses all the time, and batching off.
var batchSettings = []struct {
	name   string
	max    int
	window time.Duration
	// coalesces: the race below must send fewer pipelines than calls (a
	// 1µs window may, in principle, elapse for every call).
	coalesces bool
}{
	{"default", 0, 0, true},
	{"max=4", 4, 0, true},
	{"window=100µs", 0, 100 * time.Microsecond, true},
	{"window=1µs", 64, time.Microsecond, false},
	{"off", 1, 0, false},
}

// TestBatchedRaceExact races 64 goroutines per store, two stores sharing one
// Redis, on one key with limit 500, under each batching setting: exactly
// 500 admitted, for each algorithm, and each store sends fewer pipelines
// than script calls whenever batching is on.
func TestBatchedRaceExact(t *testing.T) {
	t.Parallel()
	// Load the script first: otherwise, on a Redis that has never seen it,
	// the first concurrent calls are answered NOSCRIPT and each sends EVAL
	// in a flush of its own, and "batching off" would count more flushes
	// than calls.
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Shared(t).Addr})
	if err := lua.Take.Load(context.Background(), rdb).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Close()
	for _, bs := range batchSettings {
		t.Run(bs.name, func(t *testing.T) {
			t.Parallel()
			var stores []*redisstore.Store
			backendtest.RunConcurrent(t, func(t *testing.T, clock *backendtest.Clock) (a, b quota.Limiter) {
				co := redisstore.ClientOptions{URL: redistest.Shared(t).URL, DialTimeout: testDialTimeout}
				o := redisstore.Options{KeyPrefix: newPrefix(), Now: clock.Now, BatchMax: bs.max, BatchWindow: bs.window}
				sa, sb := newStore(t, co, o), newStore(t, co, o)
				stores = append(stores, sa, sb)
				return sa, sb
			})
			var calls, flushes uint64
			for _, s := range stores {
				st := s.Stats()
				if st.Errors != 0 {
					t.Errorf("Stats %+v: errors", st)
				}
				calls += st.Calls
				flushes += st.Flushes
			}
			t.Logf("%d script calls in %d flushes", calls, flushes)
			switch {
			case bs.max == 1 && flushes != calls:
				t.Errorf("batching off: %d flushes for %d calls, want one each", flushes, calls)
			case bs.max != 1 && flushes > calls, bs.coalesces && flushes >= calls:
				t.Errorf("%d flushes for %d calls: want fewer (concurrent calls share pipelines)", flushes, calls)
			}
		})
	}
}

// TestBatchCoalesces: while Redis is busy (a slow script holds it), the
// Takes that arrive queue up and go out in few pipelines, each of at most
// BatchMax calls, and each still gets its own answer.
func TestBatchCoalesces(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	const n, batchMax = 40, 16
	s := newStore(t, redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{BatchMax: batchMax})
	ctx := context.Background()
	limit := quota.Limit{Algorithm: quota.FixedWindow, Requests: 1000, Unit: time.Hour}
	// Warm up: the script is loaded and a connection is open.
	if err := s.Take(ctx, []quota.Hit{{Key: "warm", Limit: limit, N: 1}}, make([]quota.Decision, 1)); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()

	// Redis is single-threaded: a script that spins blocks it, so the Takes
	// below find flushes in flight (the first two, sent alone) and queue.
	busy := make(chan error, 1)
	go func() {
		_, err := srv.Do("EVAL", "local t = redis.call('TIME'); local e = t[1]*1000000 + t[2] + 300000; "+
			"repeat t = redis.call('TIME') until t[1]*1000000 + t[2] >= e; return 1", "0")
		busy <- err
	}()
	// Let the spinning script start before the Takes go.
	time.Sleep(50 * time.Millisecond)

	var wg sync.WaitGroup
	errs := make([]error, n)
	outs := make([]quota.Decision, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine its own key, with i+1 hits: the answers tell
			// whether each Take got its own.
			h := []quota.Hit{{Key: "k" + strconv.Itoa(i), Limit: limit, N: uint64(i + 1)}}
			errs[i] = s.Take(ctx, h, outs[i:i+1])
		}()
	}
	wg.Wait()
	if err := <-busy; err != nil {
		t.Fatalf("busy script: %v", err)
	}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("Take %d: %v", i, errs[i])
		}
		if want := uint64(1000 - (i + 1)); !outs[i].Fits || outs[i].Remaining != want {
			t.Errorf("Take %d: %+v, want a fit with %d left", i, outs[i], want)
		}
	}
	st := s.Stats()
	calls, flushes := st.Calls-before.Calls, st.Flushes-before.Flushes
	t.Logf("%d calls in %d flushes", calls, flushes)
	// At least ceil(n/batchMax) pipelines, and far fewer than n.
	if calls != n || flushes < (n+batchMax-1)/batchMax || flushes > n/2 {
		t.Errorf("%d calls in %d flushes: want %d calls in %d..%d flushes", calls, flushes, n, (n+batchMax-1)/batchMax, n/2)
	}
}

// TestBatchCancelWhileQueued: a Take whose context ends while it waits in
// the queue returns the context's error and sends nothing; the others are
// answered.
func TestBatchCancelWhileQueued(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newStore(t, redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{})
	limit := quota.Limit{Algorithm: quota.FixedWindow, Requests: 1000, Unit: time.Hour}
	h := []quota.Hit{{Key: "k", Limit: limit, N: 1}}
	if err := s.Take(context.Background(), h, make([]quota.Decision, 1)); err != nil {
		t.Fatal(err)
	}
	busy := make(chan error, 1)
	go func() {
		_, err := srv.Do("EVAL", "local t = redis.call('TIME'); local e = t[1]*1000000 + t[2] + 300000; "+
			"repeat t = redis.call('TIME') until t[1]*1000000 + t[2] >= e; return 1", "0")
		busy <- err
	}()
	time.Sleep(50 * time.Millisecond)

	// Two Takes are in flight (blocked behind the script: a second call
	// does not wait for a first alone); the third queues, and is
	// cancelled there.
	first := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { first <- s.Take(context.Background(), h, make([]quota.Decision, 1)) }()
	}
	var flushing atomic.Bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if s.Stats().Calls == 3 {
			flushing.Store(true)
			break
		}
	}
	if !flushing.Load() {
		t.Fatal("the first two Takes were never sent")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Take(ctx, h, make([]quota.Decision, 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued Take whose context ended = %v, want DeadlineExceeded", err)
	}
	for i := 0; i < 2; i++ {
		if err := <-first; err != nil {
			t.Errorf("Take in flight: %v", err)
		}
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	// Three takes counted in Redis: the warm-up and the two in flight. The
	// cancelled one was never sent.
	check := []quota.Hit{{Key: "k", Limit: limit, N: 0}}
	out := make([]quota.Decision, 1)
	if err := s.Take(context.Background(), check, out); err != nil {
		t.Fatal(err)
	}
	if out[0].Remaining != 997 {
		t.Errorf("%d left, want 997: the cancelled Take must take nothing", out[0].Remaining)
	}
	if st := s.Stats(); !st.Up {
		t.Errorf("a cancelled Take marked Redis down: %+v", st)
	}
}
