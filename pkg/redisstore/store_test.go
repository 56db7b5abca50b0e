package redisstore_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

// prefixes gives every store of the test binary a key prefix of its own, so
// that tests share one Redis without seeing each other's counters.
var prefixes atomic.Int64

func newPrefix() string {
	return "t" + strconv.FormatInt(prefixes.Add(1), 10) + ":"
}

// newClient builds a client as co says, closed when the test ends.
func newClient(t testing.TB, co redisstore.ClientOptions) redis.UniversalClient {
	t.Helper()
	// A decision's whole wait is bounded by the read timeout (the store's
	// default Timeout): on a loaded 2-core machine running the race
	// detector, 500 ms of queue and reply is not always enough, and tests
	// that count exactly what was admitted must not see timeouts. Tests of
	// timeouts set their own.
	if co.ReadTimeout == 0 {
		co.ReadTimeout = testIOTimeout
	}
	if co.WriteTimeout == 0 {
		co.WriteTimeout = testIOTimeout
	}
	c, err := redisstore.NewClient(co)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// open opens a store on c (with a key prefix of its own unless o names
// one), closed when the test ends, before c.
func open(t testing.TB, c redis.UniversalClient, o redisstore.Options) *redisstore.Store {
	t.Helper()
	if o.KeyPrefix == "" {
		o.KeyPrefix = newPrefix()
	}
	s, err := redisstore.New(c, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newStore opens a store on a client of its own.
func newStore(t testing.TB, co redisstore.ClientOptions, o redisstore.Options) *redisstore.Store {
	t.Helper()
	return open(t, newClient(t, co), o)
}

// target is a Redis to run a test against.
type target struct {
	name   string
	client func(t testing.TB) redisstore.ClientOptions
}

// testDialTimeout replaces the 1 s default in tests that open hundreds of
// connections at once: on a loaded 2-core machine a connection storm can
// overflow the listen backlog, and a dropped SYN is only resent after 1 s.
const testDialTimeout = 5 * time.Second

// testIOTimeout is the read and write timeout of the tests' clients (see
// newClient).
const testIOTimeout = 10 * time.Second

func targets() []target {
	return []target{
		{"standalone", func(t testing.TB) redisstore.ClientOptions {
			return redisstore.ClientOptions{URL: redistest.Shared(t).URL, DialTimeout: testDialTimeout}
		}},
		{"cluster", func(t testing.TB) redisstore.ClientOptions {
			return redisstore.ClientOptions{URL: redistest.SharedCluster(t).URL, Cluster: true, DialTimeout: testDialTimeout}
		}},
	}
}

func TestScenarios(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			backendtest.RunScenarios(t, func(t *testing.T, clock *backendtest.Clock) quota.Limiter {
				return newStore(t, tg.client(t), redisstore.Options{Now: clock.Now})
			})
		})
	}
}

// TestConcurrent races two stores (two sidecars) sharing one Redis: 64
// goroutines each, one limit of 500, exactly 500 admitted per algorithm.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			backendtest.RunConcurrent(t, func(t *testing.T, clock *backendtest.Clock) (a, b quota.Limiter) {
				o := redisstore.Options{Now: clock.Now, KeyPrefix: newPrefix()}
				return newStore(t, tg.client(t), o), newStore(t, tg.client(t), o)
			})
		})
	}
}

// TestConcurrentCounting races two stores sharing one Redis with hits
// counted whatever they decide and unless another is over.
func TestConcurrentCounting(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			backendtest.RunConcurrentCounting(t, func(t *testing.T, clock *backendtest.Clock) (a, b quota.Limiter) {
				o := redisstore.Options{Now: clock.Now, KeyPrefix: newPrefix()}
				return newStore(t, tg.client(t), o), newStore(t, tg.client(t), o)
			})
		})
	}
}

// TestConcurrentRedisClock is the race on Redis's own clock (no pinned
// time): see backendtest.RunConcurrentOwnClock.
func TestConcurrentRedisClock(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			backendtest.RunConcurrentOwnClock(t, func(t *testing.T) (a, b quota.Limiter) {
				o := redisstore.Options{KeyPrefix: newPrefix()}
				return newStore(t, tg.client(t), o), newStore(t, tg.client(t), o)
			})
		})
	}
}

// TestOverOneLimitLeavesOthers: a request over one limit takes nothing from
// its other limits, also when they live in other cluster slots (which the
// store refunds).
func TestOverOneLimitLeavesOthers(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t, tg.client(t), redisstore.Options{})
			ctx := context.Background()
			fixed := quota.Limit{Algorithm: quota.FixedWindow, Requests: 5, Unit: time.Hour}
			sliding := quota.Limit{Algorithm: quota.SlidingWindow, Requests: 5, Unit: time.Hour}
			bucket := quota.Limit{Algorithm: quota.TokenBucket, Requests: 5, Unit: time.Hour}
			tight := quota.Limit{Algorithm: quota.FixedWindow, Requests: 1, Unit: time.Hour}
			// Each hit its own tag: on the cluster, (almost surely) several
			// slots. tag0..tag3 were checked to span 3 nodes.
			mk := func(tag string, l quota.Limit, n uint64) quota.Hit {
				return quota.Hit{Key: tag + "\x00k", TagLen: len(tag), Limit: l, N: n}
			}
			hits := []quota.Hit{mk("tag0", fixed, 2), mk("tag1", sliding, 2), mk("tag2", bucket, 2), mk("tag3", tight, 1)}
			out := make([]quota.Decision, len(hits))
			// First admitted: tight is now full.
			if err := s.Take(ctx, hits, out); err != nil {
				t.Fatal(err)
			}
			if quota.Rejects(hits, out) {
				t.Fatalf("first request rejected: %+v", out)
			}
			// Then rejected by tight, three times.
			for i := 0; i < 3; i++ {
				if err := s.Take(ctx, hits, out); err != nil {
					t.Fatal(err)
				}
				if !quota.Rejects(hits, out) || out[3].Fits {
					t.Fatalf("request %d over tight admitted: %+v", i+2, out)
				}
			}
			checks := make([]quota.Hit, len(hits))
			for i := range hits {
				checks[i] = hits[i]
				checks[i].N = 0
			}
			if err := s.Take(ctx, checks, out); err != nil {
				t.Fatal(err)
			}
			want := []uint64{3, 3, 3, 0}
			for i := range want {
				if out[i].Remaining != want[i] {
					t.Errorf("hit %d: %d left, want %d (the rejected requests must take nothing)", i, out[i].Remaining, want[i])
				}
			}
			st := s.Stats()
			if tg.name == "cluster" && st.Refunds == 0 {
				t.Errorf("cluster: Stats().Refunds = 0, want refunds of the admitting slots")
			}
			if st.RefundErrors != 0 {
				t.Errorf("Stats().RefundErrors = %d", st.RefundErrors)
			}
		})
	}
}

// TestClusterCrossSlotRace races requests whose two counters live in two
// slots, so that each is decided by two script calls and rejected ones are
// refunded. Across slots a request is not atomic: while one holds hits that
// are later refunded, another may be rejected that would have fitted. What
// must hold: never more admitted than a limit, and once the race is over,
// every counter holds exactly what the admitted requests took (no leak, no
// double refund).
func TestClusterCrossSlotRace(t *testing.T) {
	t.Parallel()
	c := redistest.SharedCluster(t)
	for _, alg := range []quota.Algorithm{quota.FixedWindow, quota.SlidingWindow, quota.TokenBucket} {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			clock := backendtest.NewClock(backendtest.Base)
			co := redisstore.ClientOptions{URL: c.URL, Cluster: true, DialTimeout: testDialTimeout}
			o := redisstore.Options{KeyPrefix: newPrefix(), Now: clock.Now}
			a, b := newStore(t, co, o), newStore(t, co, o)
			ha := quota.Hit{Key: "tag0\x00a", TagLen: 4, Limit: quota.Limit{Algorithm: alg, Requests: 300, Unit: time.Hour}, N: 1}
			hb := quota.Hit{Key: "tag1\x00b", TagLen: 4, Limit: quota.Limit{Algorithm: alg, Requests: 500, Unit: time.Hour}, N: 1}
			var pairs, singles, errs atomic.Int64
			backendtest.Race(t, a, b, func(lim quota.Limiter, g, i int) {
				out := make([]quota.Decision, 2)
				batch := []quota.Hit{ha, hb}
				if g%4 >= 2 {
					batch = []quota.Hit{hb, ha}
				}
				if err := lim.Take(context.Background(), batch, out); err != nil {
					errs.Add(1)
				} else if !quota.Rejects(batch, out) {
					pairs.Add(1)
				}
				if i%2 == 0 {
					if err := lim.Take(context.Background(), []quota.Hit{hb}, out[:1]); err != nil {
						errs.Add(1)
					} else if out[0].Fits {
						singles.Add(1)
					}
				}
			})
			if errs.Load() != 0 {
				t.Fatalf("%d Take errors", errs.Load())
			}
			p, s := pairs.Load(), singles.Load()
			if p > 300 || p+s > 500 {
				t.Errorf("admitted %d pairs and %d singles: over a limit", p, s)
			}
			checks := []quota.Hit{ha, hb}
			checks[0].N, checks[1].N = 0, 0
			out := make([]quota.Decision, 2)
			if err := a.Take(context.Background(), checks, out); err != nil {
				t.Fatal(err)
			}
			if want := uint64(300 - p); out[0].Remaining != want {
				t.Errorf("first counter: %d left after %d pairs, want %d", out[0].Remaining, p, want)
			}
			if want := uint64(500 - p - s); out[1].Remaining != want {
				t.Errorf("second counter: %d left after %d pairs and %d singles, want %d", out[1].Remaining, p, s, want)
			}
			st := a.Stats()
			if st.Calls <= st.Takes || st.RefundErrors != 0 {
				t.Errorf("Stats %+v: want more calls than takes (two slots per pair) and no refund errors", st)
			}
			t.Logf("%d pairs, %d singles admitted; %d refunds", p, s, st.Refunds+b.Stats().Refunds)
		})
	}
}

// TestClusterCrossSlotRaceCounted races requests whose two counters live in
// two slots, every hit counted whatever it decides (overdraw rules, the
// reference's counting): nothing is ever refunded, so exactly each limit's
// worth of hits fit, and afterwards both counters are in debt.
func TestClusterCrossSlotRaceCounted(t *testing.T) {
	t.Parallel()
	c := redistest.SharedCluster(t)
	for _, alg := range []quota.Algorithm{quota.FixedWindow, quota.SlidingWindow, quota.TokenBucket} {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			clock := backendtest.NewClock(backendtest.Base)
			co := redisstore.ClientOptions{URL: c.URL, Cluster: true, DialTimeout: testDialTimeout}
			o := redisstore.Options{KeyPrefix: newPrefix(), Now: clock.Now}
			a, b := newStore(t, co, o), newStore(t, co, o)
			ha := quota.Hit{Key: "tag0\x00a", TagLen: 4, Limit: quota.Limit{Algorithm: alg, Requests: 300, Unit: time.Hour}, N: 1, Counting: quota.Always}
			hb := quota.Hit{Key: "tag1\x00b", TagLen: 4, Limit: quota.Limit{Algorithm: alg, Requests: 500, Unit: time.Hour}, N: 1, Counting: quota.Always}
			var fitsA, fitsB, errs atomic.Int64
			backendtest.Race(t, a, b, func(lim quota.Limiter, g, i int) {
				out := make([]quota.Decision, 2)
				batch, ia, ib := []quota.Hit{ha, hb}, 0, 1
				if g%4 >= 2 {
					batch, ia, ib = []quota.Hit{hb, ha}, 1, 0
				}
				if err := lim.Take(context.Background(), batch, out); err != nil {
					errs.Add(1)
					return
				}
				if out[ia].Fits {
					fitsA.Add(1)
				}
				if out[ib].Fits {
					fitsB.Add(1)
				}
			})
			if errs.Load() != 0 {
				t.Fatalf("%d Take errors", errs.Load())
			}
			// 1024 attempts each: 300 and 500 fit, the rest are debt.
			if fitsA.Load() != 300 || fitsB.Load() != 500 {
				t.Errorf("fits: %d on the first counter, %d on the second; want exactly 300 and 500", fitsA.Load(), fitsB.Load())
			}
			checks := []quota.Hit{ha, hb}
			checks[0].N, checks[1].N = 0, 0
			out := make([]quota.Decision, 2)
			if err := a.Take(context.Background(), checks, out); err != nil {
				t.Fatal(err)
			}
			if out[0].Fits || out[1].Fits {
				t.Errorf("checks after the race: %+v, want both over (in debt)", out)
			}
			if st := a.Stats(); st.Refunds+b.Stats().Refunds != 0 {
				t.Errorf("%d refunds, want none: hits counted whatever are never given back", st.Refunds+b.Stats().Refunds)
			}
		})
	}
}

// TestClusterQuotaAcrossSlots: quota hits in different slots are judged
// together. No slot may reject by quota alone: a slot whose only quota hit
// is over still takes its normal hits, and only when every quota hit of the
// request is over is the request rejected, and the slots that took
// refunded.
func TestClusterQuotaAcrossSlots(t *testing.T) {
	t.Parallel()
	c := redistest.SharedCluster(t)
	s := newStore(t, redisstore.ClientOptions{URL: c.URL, Cluster: true}, redisstore.Options{})
	ctx := context.Background()
	one := quota.Limit{Algorithm: quota.FixedWindow, Requests: 1, Unit: time.Hour}
	five := quota.Limit{Algorithm: quota.FixedWindow, Requests: 5, Unit: time.Hour}
	// tag0..tag2 span the nodes (TestClusterSpreadsSlots). The normal hit
	// shares tag0's slot with the first quota hit.
	hits := []quota.Hit{
		{Key: "tag0\x00qa", TagLen: 4, Limit: one, N: 1, Quota: true},
		{Key: "tag1\x00qb", TagLen: 4, Limit: one, N: 1, Quota: true},
		{Key: "tag0\x00n", TagLen: 4, Limit: five, N: 1},
	}
	out := make([]quota.Decision, len(hits))
	take := func() {
		t.Helper()
		if err := s.Take(ctx, hits, out); err != nil {
			t.Fatal(err)
		}
	}
	take() // all fit: qa, qb full, n 4 left
	// qb's slot alone: its quota hit over must not stop qa's slot from
	// admitting; but qa is over too, so the request is rejected and the
	// tag0 slot's n is refunded.
	take()
	if !quota.Rejects(hits, out) || out[0].Fits || out[1].Fits || !out[2].Fits {
		t.Fatalf("second request: %+v, want rejected by quota (both quota hits over, n fits)", out)
	}
	before := s.Stats().Refunds
	// Now one quota hit with room (a new key): admitted, n taken.
	hits[1] = quota.Hit{Key: "tag1\x00qc", TagLen: 4, Limit: one, N: 1, Quota: true}
	take()
	if quota.Rejects(hits, out) || out[0].Fits || !out[1].Fits || out[2].Remaining != 3 {
		t.Fatalf("third request: %+v, want admitted with n at 3 left", out)
	}
	if st := s.Stats(); st.Refunds < 1 || st.Refunds != before || st.RefundErrors != 0 {
		t.Errorf("Stats %+v: want the one refund of the second request and none since", st)
	}
}

// TestClusterSpreadsSlots checks the premise of the test above: the tags
// used there fall on more than one node.
func TestClusterSpreadsSlots(t *testing.T) {
	t.Parallel()
	c := redistest.SharedCluster(t)
	nodes := map[string]bool{}
	for _, tag := range []string{"tag0", "tag1", "tag2", "tag3"} {
		s := newStore(t, redisstore.ClientOptions{URL: c.URL, Cluster: true}, redisstore.Options{})
		h := []quota.Hit{{Key: tag + "\x00k", TagLen: len(tag), Limit: quota.Limit{Requests: 1, Unit: time.Hour}, N: 1}}
		if err := s.Take(context.Background(), h, make([]quota.Decision, 1)); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes {
			reply, err := n.Do("DBSIZE")
			if err != nil {
				t.Fatal(err)
			}
			if reply != "0" {
				nodes[n.Addr] = true
			}
		}
	}
	if len(nodes) < 2 {
		t.Errorf("keys landed on %d node(s), want several", len(nodes))
	}
}

// TestRoundTrips counts the commands Redis served: one EVALSHA per Take on a
// standalone Redis, whatever the number of hits.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newStore(t, redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{})
	ctx := context.Background()
	hits := []quota.Hit{
		{Key: "a\x00x", TagLen: 1, Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 100, Unit: time.Minute}, N: 1},
		{Key: "b\x00y", TagLen: 1, Limit: quota.Limit{Algorithm: quota.SlidingWindow, Requests: 100, Unit: time.Minute}, N: 1},
		{Key: "c\x00z", TagLen: 1, Limit: quota.Limit{Algorithm: quota.TokenBucket, Requests: 100, Unit: time.Minute}, N: 1},
	}
	out := make([]quota.Decision, 3)
	// Warm up: the connection's handshake and the script's first EVAL.
	if err := s.Take(ctx, hits, out); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Do("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	const takes = 20
	for i := 0; i < takes; i++ {
		if err := s.Take(ctx, hits, out); err != nil {
			t.Fatal(err)
		}
	}
	info, err := srv.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	// Lines look like cmdstat_evalsha:calls=20,usec=...
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if k, v, _ := strings.Cut(kv, "="); k == "calls" {
				calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(v)
			}
		}
	}
	if calls["evalsha"] != takes {
		t.Errorf("EVALSHA calls = %d, want %d (one per Take): %v", calls["evalsha"], takes, calls)
	}
	// Redis also counts the commands the script runs (GET, SET); anything
	// else would be a round trip of its own.
	for cmd, n := range calls {
		switch cmd {
		case "evalsha", "get", "set", "time", "config|resetstat", "info":
		default:
			t.Errorf("%d calls of %s, want none: %v", n, cmd, calls)
		}
	}
	if got := s.Stats().Calls; got != takes+1 {
		t.Errorf("Stats().Calls = %d, want %d", got, takes+1)
	}
}

// TestRedisRestart stops Redis under a store: Take errors (fast, once the
// breaker has it down), Ping fails, and once Redis is back the store
// recovers by itself.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	var ups, downs atomic.Int64
	s := newStore(t, redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{
		OnStateChange: func(_ string, up bool, err error) {
			if up {
				ups.Add(1)
			} else {
				downs.Add(1)
			}
		},
	})
	ctx := context.Background()
	hits := []quota.Hit{{Key: "k", Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 1000, Unit: time.Hour}, N: 1}}
	out := make([]quota.Decision, 1)
	if err := s.Take(ctx, hits, out); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	// Errors first, then the breaker's fast ErrUnavailable.
	var err error
	poll(t, 10*time.Second, func() bool {
		err = s.Take(ctx, hits, out)
		return errors.Is(err, redisstore.ErrUnavailable)
	})
	if st := s.Stats(); st.Up || st.Trips != 1 || downs.Load() != 1 {
		t.Errorf("while down: Stats %+v, %d down calls; want Up false, 1 trip", st, downs.Load())
	}
	if err := s.Ping(ctx); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("Ping while down = %v, want ErrUnavailable", err)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Recovery is the probe's job: nothing but polling Take here. The
	// deadline is generous for a loaded machine; recovery takes about 1 s.
	poll(t, 10*time.Second, func() bool {
		err = s.Take(ctx, hits, out)
		return err == nil
	})
	if !out[0].Fits {
		t.Errorf("after recovery: %+v, want a fit (Redis came back empty)", out[0])
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after recovery: %v", err)
	}
	if st := s.Stats(); !st.Up || st.Recoveries != 1 || ups.Load() != 1 || st.FastFails == 0 {
		t.Errorf("after recovery: Stats %+v, %d up calls; want Up, 1 recovery, some fast failures", st, ups.Load())
	}
}

// poll calls f until it returns true, failing the test after timeout.
func poll(t *testing.T, timeout time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseAndBadCalls(t *testing.T) {
	t.Parallel()
	c := newClient(t, redisstore.ClientOptions{URL: redistest.Shared(t).URL})
	s := open(t, c, redisstore.Options{})
	ctx := context.Background()
	h := []quota.Hit{{Key: "k", Limit: quota.Limit{Requests: 1, Unit: time.Second}, N: 1}}
	if err := s.Take(ctx, h, nil); err == nil {
		t.Error("Take with too few decisions: no error")
	}
	if err := s.Take(ctx, nil, nil); err != nil {
		t.Errorf("Take of no hits: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err := s.Take(cctx, h, make([]quota.Decision, 1))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Take with a cancelled context = %v, want context.Canceled", err)
	}
	if want := "redisstore: take: context canceled"; err == nil || err.Error() != want {
		t.Errorf("Take with a cancelled context = %v, want %q", err, want)
	}
	if st := s.Stats(); !st.Up {
		t.Errorf("a cancelled request marked Redis down: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Take(ctx, h, make([]quota.Decision, 1)); !errors.Is(err, redisstore.ErrClosed) || err.Error() != "redisstore: closed" {
		t.Errorf("Take after Close = %v, want ErrClosed", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, redisstore.ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The client is the caller's: the store's Close leaves it open.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("client after the store's Close: %v", err)
	}
}

// TestErrorsHaveOnePrefix: errors name the package once, whatever wraps
// what (the breaker's error wraps the outage that tripped it).
func TestErrorsHaveOnePrefix(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newStore(t, redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{})
	ctx := context.Background()
	h := []quota.Hit{{Key: "k", Limit: quota.Limit{Requests: 1, Unit: time.Second}, N: 1}}
	out := make([]quota.Decision, 1)
	srv.Stop()
	var errs []error
	poll(t, 10*time.Second, func() bool {
		err := s.Take(ctx, h, out)
		errs = append(errs, err)
		return errors.Is(err, redisstore.ErrUnavailable)
	})
	errs = append(errs, s.Ping(ctx))
	for _, err := range errs {
		if err == nil {
			t.Fatal("no error from a stopped Redis")
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "redisstore: ") || strings.Count(msg, "redisstore") != 1 {
			t.Errorf("error %q: want one \"redisstore: \" prefix and no other mention", msg)
		}
	}
	t.Logf("errors: %v ... %v", errs[0], errs[len(errs)-1])
}

func TestClientOptions(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	tests := []struct {
		name string
		o    redisstore.ClientOptions
		want string // a part of the error; "" for none
	}{
		{"plain", redisstore.ClientOptions{URL: srv.URL}, ""},
		{"db", redisstore.ClientOptions{URL: srv.URL + "/3"}, ""},
		{"url timeouts", redisstore.ClientOptions{URL: srv.URL + "?dial_timeout=2s&pool_size=4&max_retries=-1"}, ""},
		{"no url", redisstore.ClientOptions{}, "URL is required"},
		{"bad scheme", redisstore.ClientOptions{URL: "http://" + srv.Addr}, "scheme"},
		{"unix cluster", redisstore.ClientOptions{URL: "unix:///tmp/redis.sock", Cluster: true}, "scheme"},
		{"unknown param", redisstore.ClientOptions{URL: srv.URL + "?colour=blue"}, "colour"},
		{"cluster db", redisstore.ClientOptions{URL: srv.URL + "/2", Cluster: true}, "database"},
		{"cluster and sentinel", redisstore.ClientOptions{URL: srv.URL, Cluster: true, SentinelMaster: "m", SentinelAddrs: []string{srv.Addr}}, "exclude"},
		{"sentinel without addrs", redisstore.ClientOptions{SentinelMaster: "m"}, "SentinelAddrs"},
		{"sentinel addrs alone", redisstore.ClientOptions{URL: srv.URL, SentinelAddrs: []string{srv.Addr}}, "SentinelMaster"},
		{"sentinel url with host", redisstore.ClientOptions{URL: srv.URL, SentinelMaster: "m", SentinelAddrs: []string{srv.Addr}}, "host"},
		{"sentinel url credentials", redisstore.ClientOptions{URL: "redis://:pw@/1", SentinelMaster: "m", SentinelAddrs: []string{srv.Addr}}, ""},
		{"tls config without rediss", redisstore.ClientOptions{URL: srv.URL, TLSConfig: &tls.Config{}}, "TLSConfig"},
		{"tls config without url", redisstore.ClientOptions{SentinelMaster: "m", SentinelAddrs: []string{srv.Addr}, TLSConfig: &tls.Config{}}, "TLSConfig"},
		{"rediss", redisstore.ClientOptions{URL: "rediss://u:p@" + srv.Addr + "/1"}, ""},
		{"cluster seeds", redisstore.ClientOptions{URL: "redis://u:p@" + srv.Addr + "?addr=127.0.0.1:1&addr=127.0.0.1:2", Cluster: true}, ""},
		{"negative pool", redisstore.ClientOptions{URL: srv.URL, PoolSize: -1}, "PoolSize"},
		{"negative dial timeout", redisstore.ClientOptions{URL: srv.URL, DialTimeout: -time.Second}, "DialTimeout"},
		{"negative read timeout", redisstore.ClientOptions{URL: srv.URL, ReadTimeout: -time.Second}, "ReadTimeout"},
		{"negative write timeout", redisstore.ClientOptions{URL: srv.URL, WriteTimeout: -time.Second}, "WriteTimeout"},
		{"negative retries", redisstore.ClientOptions{URL: srv.URL, MaxRetries: -1}, "MaxRetries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := redisstore.NewClient(tt.o)
			if c != nil {
				defer c.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("NewClient: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("NewClient: no error, want one about %q", tt.want)
			case tt.want != "" && (!errors.Is(err, redisstore.ErrOptions) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("NewClient: %v, want ErrOptions about %q", err, tt.want)
			}
		})
	}
}

// TestClientDefaults: what NewClient sets when a field is zero, what the
// URL says wins over the default, and a field over the URL.
func TestClientDefaults(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	// NewClient itself: newClient gives tests longer timeouts.
	raw := func(co redisstore.ClientOptions) redis.UniversalClient {
		c, err := redisstore.NewClient(co)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := raw(redisstore.ClientOptions{URL: srv.URL})
	o := c.(*redis.Client).Options()
	if o.PoolTimeout != o.ReadTimeout {
		t.Errorf("pool timeout %v, want the read timeout %v", o.PoolTimeout, o.ReadTimeout)
	}
	if o.DialTimeout != redisstore.DefaultDialTimeout || o.ReadTimeout != redisstore.DefaultReadTimeout ||
		o.WriteTimeout != redisstore.DefaultWriteTimeout || o.MaxRetries != redisstore.DefaultMaxRetries ||
		o.PoolSize != redisstore.DefaultPoolSizePerCPU*runtime.GOMAXPROCS(0) {
		t.Errorf("defaults: dial %v read %v write %v retries %d pool %d", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.PoolSize)
	}
	c = newClient(t, redisstore.ClientOptions{URL: srv.URL + "?pool_size=3&max_retries=-1&read_timeout=2s", ReadTimeout: time.Second})
	o = c.(*redis.Client).Options()
	// go-redis normalizes max_retries=-1 (none) to 0 once it holds it.
	if o.PoolSize != 3 || o.MaxRetries != 0 || o.ReadTimeout != time.Second {
		t.Errorf("URL and fields: pool %d retries %d read %v; want 3, 0, 1s", o.PoolSize, o.MaxRetries, o.ReadTimeout)
	}
	cc := raw(redisstore.ClientOptions{URL: redistest.SharedCluster(t).URL, Cluster: true, PoolSize: 7})
	if co := cc.(*redis.ClusterClient).Options(); co.PoolSize != 7 || co.ReadTimeout != redisstore.DefaultReadTimeout {
		t.Errorf("cluster: pool %d read %v", co.PoolSize, co.ReadTimeout)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	c := newClient(t, redisstore.ClientOptions{URL: redistest.Shared(t).URL})
	tests := []struct {
		name string
		c    redis.UniversalClient
		o    redisstore.Options
		want string // a part of the error; "" for none
	}{
		{"zero", c, redisstore.Options{}, ""},
		{"nil client", nil, redisstore.Options{}, "client"},
		{"braces in prefix", c, redisstore.Options{KeyPrefix: "a{b}:"}, "KeyPrefix"},
		{"negative breaker", c, redisstore.Options{BreakerFailures: -1}, "BreakerFailures"},
		{"negative probe", c, redisstore.Options{ProbeInterval: -time.Second}, "ProbeInterval"},
		{"negative batch max", c, redisstore.Options{BatchMax: -1}, "BatchMax"},
		{"negative batch window", c, redisstore.Options{BatchWindow: -time.Microsecond}, "BatchWindow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := redisstore.New(tt.c, tt.o)
			if s != nil {
				defer s.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("New: no error, want one about %q", tt.want)
			case tt.want != "" && (!errors.Is(err, redisstore.ErrOptions) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: %v, want ErrOptions about %q", err, tt.want)
			}
		})
	}
}

// TestInjectedClients runs a store on clients built by go-redis itself,
// not NewClient: the store finds out from the client's type whether it is
// on a cluster (a request spanning slots must then be split, or Redis
// answers CROSSSLOT).
func TestInjectedClients(t *testing.T) {
	t.Parallel()
	cl := redistest.SharedCluster(t)
	clients := map[string]redis.UniversalClient{
		"client":         redis.NewClient(&redis.Options{Addr: redistest.Shared(t).Addr}),
		"cluster client": redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()}),
		"universal":      redis.NewUniversalClient(&redis.UniversalOptions{Addrs: cl.Addrs(), IsClusterMode: true}),
	}
	for name, c := range clients {
		t.Run(name, func(t *testing.T) {
			t.Cleanup(func() { c.Close() })
			s := open(t, c, redisstore.Options{})
			l := quota.Limit{Algorithm: quota.FixedWindow, Requests: 5, Unit: time.Hour}
			hits := []quota.Hit{
				{Key: "tag0\x00a", TagLen: 4, Limit: l, N: 2},
				{Key: "tag1\x00b", TagLen: 4, Limit: l, N: 3},
				{Key: "tag2\x00c", TagLen: 4, Limit: l, N: 6},
			}
			out := make([]quota.Decision, len(hits))
			if err := s.Take(context.Background(), hits, out); err != nil {
				t.Fatalf("Take: %v", err)
			}
			if !out[0].Fits || out[0].Remaining != 3 || !out[1].Fits || out[1].Remaining != 2 || out[2].Fits {
				t.Errorf("got %+v", out)
			}
			// Rejected (6 > 5): nothing taken.
			for i := range hits {
				hits[i].N = 0
			}
			if err := s.Take(context.Background(), hits, out); err != nil {
				t.Fatalf("Take: %v", err)
			}
			if out[0].Remaining != 5 || out[1].Remaining != 5 || out[2].Remaining != 5 {
				t.Errorf("after a rejected request: %+v, want 5 left each", out)
			}
		})
	}
}

// TestACLAndDB connects as an ACL user to a database other than 0, given in
// the URL, and checks that the counters land there.
func TestACLAndDB(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServerArgs(t, "--user", "default", "off", "--user", "sidecar", "on", ">s3cret", "~*", "&*", "+@all")
	ctx := context.Background()
	h := []quota.Hit{{Key: "k", Limit: quota.Limit{Requests: 5, Unit: time.Hour}, N: 1}}
	out := make([]quota.Decision, 1)

	bad := newStore(t, redisstore.ClientOptions{URL: "redis://sidecar:wrong@" + srv.Addr + "/2"}, redisstore.Options{KeyPrefix: "acl:"})
	for i := 0; i < 2*redisstore.DefaultBreakerFailures; i++ {
		if err := bad.Take(ctx, h, out); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("Take with a wrong password = %v, want WRONGPASS", err)
		}
	}
	if !bad.Stats().Up {
		t.Error("a wrong password marked Redis down; it is a configuration error")
	}

	c := newClient(t, redisstore.ClientOptions{URL: "redis://sidecar:s3cret@" + srv.Addr + "/2"})
	s := open(t, c, redisstore.Options{KeyPrefix: "acl:"})
	if err := s.Take(ctx, h, out); err != nil {
		t.Fatalf("Take: %v", err)
	}
	if !out[0].Fits || out[0].Remaining != 4 {
		t.Errorf("got %+v, want a fit with 4 left", out[0])
	}
	keys, err := c.Keys(ctx, "acl:*").Result()
	if err != nil || len(keys) != 1 {
		t.Errorf("keys in db 2 = %q, %v; want one counter", keys, err)
	}
}

// TestSentinel finds the master through three sentinels, then survives a
// failover.
func TestSentinel(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinel(t)
	s := newStore(t, redisstore.ClientOptions{SentinelMaster: g.MasterName, SentinelAddrs: g.Addrs()}, redisstore.Options{})
	ctx := context.Background()
	h := []quota.Hit{{Key: "k", Limit: quota.Limit{Algorithm: quota.TokenBucket, Requests: 100, Unit: time.Hour}, N: 1}}
	out := make([]quota.Decision, 1)
	if err := s.Take(ctx, h, out); err != nil || !out[0].Fits {
		t.Fatalf("Take: %+v, %v", out[0], err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := g.Sentinels[0].Do("SENTINEL", "FAILOVER", g.MasterName); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	poll(t, 20*time.Second, func() bool {
		addr, err := g.MasterAddr()
		return err == nil && addr == g.Replica.Addr
	})
	// The store follows the new master: Takes succeed again (some may fail
	// while the roles switch).
	poll(t, 20*time.Second, func() bool {
		if err := s.Take(ctx, h, out); err != nil {
			return false
		}
		role, err := g.Replica.Do("ROLE")
		return err == nil && strings.HasPrefix(role, "master")
	})
	if !out[0].Fits {
		t.Errorf("after failover: %+v, want a fit", out[0])
	}
}

// BenchmarkTake measures a Take against a local Redis, with 1 and 3 hits,
// from GOMAXPROCS goroutines and from 16 times as many (as a sidecar under
// load), with batching as by default, with a 50µs window, and off. It
// reports the script calls per pipeline flush.
func BenchmarkTake(b *testing.B) {
	srv := redistest.Shared(b)
	modes := []struct {
		name string
		max  int
		win  time.Duration
	}{
		{"batched", 0, 0},
		{"batched,window=50µs", 0, 50 * time.Microsecond},
		{"unbatched", 1, 0},
	}
	for _, n := range []int{1, 3} {
		for _, par := range []int{1, 16} {
			for _, mode := range modes {
				b.Run(fmt.Sprintf("hits=%d/goroutines=%dxGOMAXPROCS/%s", n, par, mode.name), func(b *testing.B) {
					s := newStore(b, redisstore.ClientOptions{URL: srv.URL}, redisstore.Options{BatchMax: mode.max, BatchWindow: mode.win})
					hits := make([]quota.Hit, n)
					for i := range hits {
						hits[i] = quota.Hit{
							Key:    "bench\x00" + strconv.Itoa(i),
							TagLen: 5,
							Limit:  quota.Limit{Algorithm: quota.Algorithm(i % 3), Requests: 1 << 40, Unit: time.Second},
							N:      1,
						}
					}
					before := s.Stats()
					b.ReportAllocs()
					b.SetParallelism(par)
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						out := make([]quota.Decision, n)
						for pb.Next() {
							if err := s.Take(context.Background(), hits, out); err != nil {
								b.Error(err)
								return
							}
						}
					})
					st := s.Stats()
					if f := st.Flushes - before.Flushes; f > 0 {
						b.ReportMetric(float64(st.Calls-before.Calls)/float64(f), "calls/flush")
					}
				})
			}
		}
	}
}

// TestMemoryPerCounter measures, with MEMORY USAGE, the bytes one counter
// takes in Redis (docs/algorithms.md quotes them), for a key of the shape
// the service builds: domain "api", entry remote_address=10.0.0.1.
func TestMemoryPerCounter(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	ctx := context.Background()
	for i, alg := range []quota.Algorithm{quota.FixedWindow, quota.SlidingWindow, quota.TokenBucket} {
		// The default prefix, and a key of one length per algorithm whose
		// last byte keeps it apart from any other test's.
		key := "\x03api\x0eremote_address\x0810.0.0." + strconv.Itoa(i)
		c := newClient(t, redisstore.ClientOptions{URL: srv.URL})
		s := open(t, c, redisstore.Options{KeyPrefix: redisstore.DefaultKeyPrefix})
		h := []quota.Hit{{Key: key, TagLen: len(key), Limit: quota.Limit{Algorithm: alg, Requests: 1000, Unit: time.Minute}, N: 7}}
		if err := s.Take(ctx, h, make([]quota.Decision, 1)); err != nil {
			t.Fatal(err)
		}
		keys, err := c.Keys(ctx, "floodgate:*"+key).Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("keys = %q, %v", keys, err)
		}
		n, err := c.MemoryUsage(ctx, keys[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		v, _ := c.Get(ctx, keys[0]).Result()
		t.Logf("%s: %d bytes per counter (key %d bytes, value %q)", alg, n, len(keys[0]), v)
		if n > 150 {
			t.Errorf("%s: %d bytes per counter, want at most 150", alg, n)
		}
	}
}

// TestTLS talks rediss:// to a TLS-only Redis with a private CA.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv := redistest.StartTLSServer(t)
	ctx := context.Background()
	h := []quota.Hit{{Key: "k", Limit: quota.Limit{Requests: 5, Unit: time.Hour}, N: 1}}
	out := make([]quota.Decision, 1)

	// Without the CA the certificate is not trusted: TLS is really in use.
	untrusted := newStore(t, redisstore.ClientOptions{URL: srv.URL, DialTimeout: testDialTimeout}, redisstore.Options{})
	if err := untrusted.Take(ctx, h, out); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Take without the CA = %v, want a certificate error", err)
	}

	s := newStore(t, redisstore.ClientOptions{URL: srv.URL, TLSConfig: srv.TLSConfig()}, redisstore.Options{})
	if err := s.Take(ctx, h, out); err != nil {
		t.Fatalf("Take over TLS: %v", err)
	}
	if !out[0].Fits || out[0].Remaining != 4 {
		t.Errorf("got %+v, want a fit with 4 left", out[0])
	}
}
