package lua_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/lua"
	"github.com/floodgate/floodgate/pkg/quota"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// runs numbers the calls of client, so that a test run again in the same
// binary (-count) starts on fresh keys.
var runs atomic.Int64

// client returns a client of the binary's shared server and a key prefix of
// this test's own.
func client(t *testing.T) (*redis.Client, string) {
	t.Helper()
	srv := redistest.Shared(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	return c, fmt.Sprintf("lua-test:%d:%s:", runs.Add(1), t.Name())
}

// take runs one Take call for hits (whose keys are used as given).
func take(ctx context.Context, c redis.Scripter, now int64, pinned bool, hits []quota.Hit) ([]quota.Decision, int64, error) {
	keys := make([]string, len(hits))
	args := lua.AppendTime(nil, now, pinned)
	for i := range hits {
		keys[i] = hits[i].Key
		args = lua.AppendHit(args, &hits[i])
	}
	reply, err := lua.Take.Run(ctx, c, keys, args...).Result()
	if err != nil {
		return nil, 0, err
	}
	out := make([]quota.Decision, len(hits))
	used, err := lua.ParseTake(reply, out)
	return out, used, err
}

// model is the reference: quota.Evaluate on states held in Go, with the
// batch rules of quota.Limiter.
type model map[string]quota.State

func (m model) take(now int64, hits []quota.Hit) []quota.Decision {
	cur := map[string]quota.State{}
	out := make([]quota.Decision, len(hits))
	for i := range hits {
		h := &hits[i]
		s, ok := cur[h.Key]
		if !ok {
			s = m[h.Key]
		}
		var next quota.State
		out[i], next, _ = quota.EvaluateHit(h, s, now)
		if quota.Chains(h, &out[i]) {
			cur[h.Key] = next
		}
	}
	// What is written is the taken hits' effect, applied in order to the
	// stored state.
	rejected, allFit := quota.Rejects(hits, out), quota.AllFit(out)
	for i := range hits {
		h := &hits[i]
		if quota.Taken(h, &out[i], rejected, allFit) {
			_, m[h.Key], _ = quota.Evaluate(h.Limit, m[h.Key], now, h.N)
		}
	}
	return out
}

// stored reads a counter as the scripts wrote it.
func stored(t *testing.T, c *redis.Client, key string, alg quota.Algorithm) quota.State {
	t.Helper()
	v, err := c.Get(context.Background(), key).Result()
	if err == redis.Nil {
		return quota.State{}
	}
	if err != nil {
		t.Fatalf("GET %q: %v", key, err)
	}
	f := strings.Split(v, ":")
	num := func(i int) float64 {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			t.Fatalf("counter %q = %q: %v", key, v, err)
		}
		return x
	}
	want := 2
	if alg == quota.SlidingWindow {
		want = 3
	}
	if len(f) != want {
		t.Fatalf("counter %q = %q, want %d fields", key, v, want)
	}
	s := quota.State{Window: int64(num(0)), Set: true}
	switch alg {
	case quota.TokenBucket:
		s.Tokens = num(1)
	case quota.SlidingWindow:
		s.Cur, s.Prev = uint64(num(1)), uint64(num(2))
	default:
		s.Cur = uint64(num(1))
	}
	return s
}

// TestTakeMatchesEvaluate runs random batches through take.lua and through
// quota.Evaluate and wants the same decisions and the same stored state,
// bit for bit, after every batch.
func TestTakeMatchesEvaluate(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	units := []time.Duration{time.Second, 2 * time.Second, time.Minute, time.Hour}
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			// A few counters with a limit each; some share an algorithm.
			type counter struct {
				key   string
				limit quota.Limit
			}
			counters := make([]counter, 4)
			for i := range counters {
				l := quota.Limit{
					Algorithm: quota.Algorithm(rng.IntN(3)),
					Requests:  uint64(rng.IntN(12)),
					Unit:      units[rng.IntN(len(units))],
				}
				if l.Algorithm == quota.TokenBucket && rng.IntN(2) == 0 {
					l.Burst = uint64(rng.IntN(20))
				}
				counters[i] = counter{key: fmt.Sprintf("%sseed%d:%d", prefix, seed, i), limit: l}
			}
			m := model{}
			now := int64(1_700_000_000_000_000) + rng.Int64N(1e9)
			for step := 0; step < 250; step++ {
				switch r := rng.IntN(10); {
				case r < 3: // same instant
				case r < 7:
					now += rng.Int64N(400_000)
				case r < 9:
					now += rng.Int64N(3 * int64(time.Second/time.Microsecond))
				default: // land exactly on a window boundary of some counter
					u := counters[rng.IntN(len(counters))].limit.Unit.Microseconds()
					now = now - now%u + u
				}
				hits := make([]quota.Hit, 1+rng.IntN(4))
				// A third of the seeds count all or nothing only, a third
				// one counting per batch, a third one per hit.
				batchCounting := quota.Counting(rng.IntN(3))
				for i := range hits {
					ct := counters[rng.IntN(len(counters))]
					// One hit in five in shadow mode, one in four in quota
					// mode (one in twenty both: shadow wins).
					hits[i] = quota.Hit{Key: ct.key, Limit: ct.limit, N: uint64(rng.IntN(5)), Shadow: rng.IntN(5) == 0, Quota: rng.IntN(4) == 0}
					switch seed % 3 {
					case 1:
						hits[i].Counting = batchCounting
					case 2:
						hits[i].Counting = quota.Counting(rng.IntN(3))
					}
				}
				want := m.take(now, hits)
				got, used, err := take(ctx, c, now, true, hits)
				if err != nil {
					t.Fatalf("step %d: take: %v", step, err)
				}
				if used != now {
					t.Fatalf("step %d: script used time %d, want pinned %d", step, used, now)
				}
				for i := range hits {
					if got[i] != want[i] {
						t.Fatalf("step %d hit %d (%+v, now %d): got %+v, want %+v", step, i, hits[i], now, got[i], want[i])
					}
				}
				for _, ct := range counters {
					if got, want := stored(t, c, ct.key, ct.limit.Algorithm), m[ct.key]; got != want {
						t.Fatalf("step %d: counter %s (%+v) = %+v, want %+v", step, ct.key, ct.limit, got, want)
					}
				}
			}
		})
	}
}

// TestTakeTable pins down the batch rules with hand-written cases.
func TestTakeTable(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	const t0 = int64(1_800_000_000_000_000) // a whole second, minute and hour
	fixed := quota.Limit{Algorithm: quota.FixedWindow, Requests: 3, Unit: time.Second}
	sliding := quota.Limit{Algorithm: quota.SlidingWindow, Requests: 3, Unit: time.Second}
	bucket := quota.Limit{Algorithm: quota.TokenBucket, Requests: 3, Unit: time.Second, Burst: 5}
	type step struct {
		at   int64 // µs after t0
		hits []quota.Hit
		want []quota.Decision
	}
	ms := time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"over one limit takes from none", []step{
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 2}, {Key: "b", Limit: sliding, N: 4}}, []quota.Decision{
				{Fits: true, Remaining: 1, ResetAfter: time.Second},
				{Fits: false, ResetAfter: 2 * time.Second},
			}},
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 3}}, []quota.Decision{
				{Fits: true, Remaining: 0, ResetAfter: time.Second},
			}},
		}},
		{"same key twice sees the first", []step{
			{100_000, []quota.Hit{{Key: "a", Limit: fixed, N: 2}, {Key: "a", Limit: fixed, N: 1}, {Key: "a", Limit: fixed, N: 1}}, []quota.Decision{
				{Fits: true, Remaining: 1, ResetAfter: 900 * ms},
				{Fits: true, Remaining: 0, ResetAfter: 900 * ms},
				{Fits: false, ResetAfter: 900 * ms},
			}},
			// The batch was rejected: a is untouched.
			{100_000, []quota.Hit{{Key: "a", Limit: fixed, N: 3}}, []quota.Decision{
				{Fits: true, Remaining: 0, ResetAfter: 900 * ms},
			}},
		}},
		{"shadow never rejects", []step{
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 9, Shadow: true}, {Key: "b", Limit: bucket, N: 2}}, []quota.Decision{
				{Fits: false, ResetAfter: time.Second},
				{Fits: true, Remaining: 3, ResetAfter: 666_667 * time.Microsecond},
			}},
			{0, []quota.Hit{{Key: "b", Limit: bucket, N: 0}}, []quota.Decision{
				{Fits: true, Remaining: 3, ResetAfter: 666_667 * time.Microsecond},
			}},
		}},
		{"mixed algorithms in one batch", []step{
			{500_000, []quota.Hit{{Key: "a", Limit: fixed, N: 1}, {Key: "b", Limit: sliding, N: 1}, {Key: "c", Limit: bucket, N: 5}}, []quota.Decision{
				{Fits: true, Remaining: 2, ResetAfter: 500 * ms},
				{Fits: true, Remaining: 2, ResetAfter: 500 * ms},
				{Fits: true, Remaining: 0, ResetAfter: 1_666_667 * time.Microsecond},
			}},
			// Half a unit later the previous window weighs half.
			{1_500_000, []quota.Hit{{Key: "b", Limit: sliding, N: 2}, {Key: "c", Limit: bucket, N: 3}}, []quota.Decision{
				{Fits: true, Remaining: 0, ResetAfter: 500 * ms},
				{Fits: true, Remaining: 0, ResetAfter: 1_666_667 * time.Microsecond},
			}},
		}},
		{"quota rejects only when every quota hit is over", []step{
			// a: quota 3-2=1 left; b: quota, 4 > 3; c: normal. One quota
			// hit fits: admitted, a and c taken, b (over) takes nothing.
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 2, Quota: true}, {Key: "b", Limit: fixed, N: 4, Quota: true}, {Key: "c", Limit: fixed, N: 1}}, []quota.Decision{
				{Fits: true, Remaining: 1, ResetAfter: time.Second},
				{Fits: false, ResetAfter: time.Second},
				{Fits: true, Remaining: 2, ResetAfter: time.Second},
			}},
			// a: 2+2 > 3 and b: 4 > 3, both quota, both over: rejected,
			// c (normal, fits) is not taken.
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 2, Quota: true}, {Key: "b", Limit: fixed, N: 4, Quota: true}, {Key: "c", Limit: fixed, N: 1}}, []quota.Decision{
				{Fits: false, ResetAfter: time.Second},
				{Fits: false, ResetAfter: time.Second},
				{Fits: true, Remaining: 1, ResetAfter: time.Second},
			}},
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 0}, {Key: "b", Limit: fixed, N: 0}, {Key: "c", Limit: fixed, N: 0}}, []quota.Decision{
				{Fits: true, Remaining: 1, ResetAfter: time.Second},
				{Fits: true, Remaining: 3, ResetAfter: time.Second},
				{Fits: true, Remaining: 2, ResetAfter: time.Second},
			}},
		}},
		{"normal over rejects whatever the quota hits say", []step{
			// a: quota, fits; b: normal, 4 > 3: rejected, a not taken.
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 1, Quota: true}, {Key: "b", Limit: fixed, N: 4}}, []quota.Decision{
				{Fits: true, Remaining: 2, ResetAfter: time.Second},
				{Fits: false, ResetAfter: time.Second},
			}},
			// A shadow hit over its limit beside a quota hit that fits:
			// admitted; a is taken.
			{0, []quota.Hit{{Key: "b", Limit: fixed, N: 4, Shadow: true, Quota: true}, {Key: "a", Limit: fixed, N: 1, Quota: true}}, []quota.Decision{
				{Fits: false, ResetAfter: time.Second},
				{Fits: true, Remaining: 2, ResetAfter: time.Second},
			}},
			{0, []quota.Hit{{Key: "a", Limit: fixed, N: 0}}, []quota.Decision{
				{Fits: true, Remaining: 2, ResetAfter: time.Second},
			}},
		}},
		{"zero limit rejects", []step{
			{0, []quota.Hit{{Key: "a", Limit: quota.Limit{Algorithm: quota.TokenBucket, Unit: time.Minute}, N: 1}}, []quota.Decision{
				{Fits: false, ResetAfter: time.Minute},
			}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := model{}
			for i, st := range tt.steps {
				hits := append([]quota.Hit(nil), st.hits...)
				for j := range hits {
					hits[j].Key = prefix + tt.name + ":" + hits[j].Key
				}
				got, _, err := take(ctx, c, t0+st.at, true, hits)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				// The table is checked against quota.Evaluate too, so a
				// wrong expectation cannot hide a wrong script.
				ref := m.take(t0+st.at, hits)
				for j := range st.want {
					if got[j] != st.want[j] || ref[j] != st.want[j] {
						t.Errorf("step %d hit %d: got %+v, quota.Evaluate %+v, want %+v", i, j, got[j], ref[j], st.want[j])
					}
				}
			}
		})
	}
}

// TestTTL checks, on Redis's own clock, that counters get quota's TTL,
// rounded up to whole milliseconds, and that a window's TTL is set once.
func TestTTL(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	tests := []struct {
		limit quota.Limit
		n     uint64
	}{
		{quota.Limit{Algorithm: quota.FixedWindow, Requests: 10, Unit: time.Hour}, 1},
		{quota.Limit{Algorithm: quota.SlidingWindow, Requests: 10, Unit: time.Hour}, 1},
		{quota.Limit{Algorithm: quota.TokenBucket, Requests: 10, Unit: time.Hour, Burst: 20}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.limit.Algorithm.String(), func(t *testing.T) {
			hit := quota.Hit{Key: prefix + tt.limit.Algorithm.String(), Limit: tt.limit, N: tt.n}
			_, now, err := take(ctx, c, 0, false, []quota.Hit{hit})
			if err != nil {
				t.Fatal(err)
			}
			_, _, ttl := quota.Evaluate(tt.limit, quota.State{}, now, tt.n)
			maxMS := (ttl.Microseconds() + 999) / 1000
			got, err := c.PTTL(ctx, hit.Key).Result()
			if err != nil {
				t.Fatal(err)
			}
			// PTTL counts down from the write; allow 5 s for a slow machine.
			if got.Milliseconds() > maxMS || got.Milliseconds() < maxMS-5000 {
				t.Errorf("PTTL = %v, want at most %d ms and within 5 s of it", got, maxMS)
			}
			if tt.limit.Algorithm == quota.TokenBucket {
				return
			}
			// A second hit in the same window leaves the TTL alone: the
			// counter still expires where its window's TTL said.
			if err := c.PExpire(ctx, hit.Key, time.Hour+5*time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := take(ctx, c, 0, false, []quota.Hit{hit}); err != nil {
				t.Fatal(err)
			}
			if got, _ := c.PTTL(ctx, hit.Key).Result(); got <= 5*time.Hour {
				// Only fails if the hour turned between the two takes, in
				// which case the new window's TTL was (rightly) set.
				t.Logf("PTTL after second hit = %v (a new window began?)", got)
				_, now2, _ := take(ctx, c, 0, false, nil)
				if now2/time.Hour.Microseconds() == now/time.Hour.Microseconds() {
					t.Errorf("second hit in the same window reset the TTL to %v", got)
				}
			}
		})
	}
}

// TestRefund takes, refunds, and wants the counter as it was.
func TestRefund(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	const t0 = int64(1_800_000_000_000_000)
	tests := []struct {
		name   string
		limit  quota.Limit
		before []int64 // takes of 1 at t0+these, kept
		take   int64   // the take of 3 to refund
		refund int64   // when the refund runs (its now is the take's)
	}{
		{"fixed", quota.Limit{Algorithm: quota.FixedWindow, Requests: 10, Unit: time.Second}, []int64{0}, 100, 200},
		{"sliding", quota.Limit{Algorithm: quota.SlidingWindow, Requests: 10, Unit: time.Second}, []int64{0}, 100, 200},
		{"sliding rolled over", quota.Limit{Algorithm: quota.SlidingWindow, Requests: 10, Unit: time.Second}, []int64{0}, 100, 1_000_100},
		{"bucket", quota.Limit{Algorithm: quota.TokenBucket, Requests: 10, Unit: time.Second, Burst: 4}, []int64{0}, 100_000, 150_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := prefix + tt.name
			one := []quota.Hit{{Key: key, Limit: tt.limit, N: 1}}
			m := model{}
			for _, at := range tt.before {
				if _, _, err := take(ctx, c, t0+at, true, one); err != nil {
					t.Fatal(err)
				}
				m.take(t0+at, one)
			}
			three := []quota.Hit{{Key: key, Limit: tt.limit, N: 3}}
			if _, _, err := take(ctx, c, t0+tt.take, true, three); err != nil {
				t.Fatal(err)
			}
			if tt.refund >= tt.limit.Unit.Microseconds() {
				// Something else moves the counter into the next window.
				if _, _, err := take(ctx, c, t0+tt.refund, true, one); err != nil {
					t.Fatal(err)
				}
				m.take(t0+tt.refund, one)
			}
			args := lua.AppendHit(lua.AppendTime(nil, t0+tt.take, true), &three[0])
			if err := lua.Refund.Run(ctx, c, []string{key}, args...).Err(); err != nil {
				t.Fatal(err)
			}
			got := stored(t, c, key, tt.limit.Algorithm)
			want := m[key]
			if tt.limit.Algorithm == quota.TokenBucket {
				// The refund adds the tokens back where they were taken;
				// the model never took them, so refill it to the same time.
				_, want, _ = quota.Evaluate(tt.limit, want, t0+tt.take, 0)
			}
			if got != want {
				t.Errorf("after refund: %+v, want %+v", got, want)
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	tests := []struct {
		name string
		keys []string
		args []any
	}{
		{"too few", []string{prefix + "a"}, []any{""}},
		{"bad time", []string{prefix + "a"}, []any{"soon", 0, 1, 1000000, 0, 1, "0"}},
		{"bad number", []string{prefix + "a"}, []any{"", 0, "many", 1000000, 0, 1, "0"}},
		{"bad mode", []string{prefix + "a"}, []any{"", 0, 5, 1000000, 0, 1, "9"}},
		{"fractional mode", []string{prefix + "a"}, []any{"", 0, 5, 1000000, 0, 1, "1.5"}},
		{"bad mode in a batch", []string{prefix + "a", prefix + "b"}, []any{"", 0, 5, 1000000, 0, 1, "0", 0, 5, 1000000, 0, 1, "shadow"}},
	}
	for _, tt := range tests {
		if err := lua.Take.Run(ctx, c, tt.keys, tt.args...).Err(); err == nil || !strings.Contains(err.Error(), "floodgate take") {
			t.Errorf("%s: err = %v, want a floodgate take error", tt.name, err)
		}
	}
	// Counts beyond what a double holds exactly are capped, not an error.
	huge := quota.Limit{Algorithm: quota.TokenBucket, Requests: 1<<64 - 1, Burst: 1<<64 - 1, Unit: time.Second}
	for alg := quota.SlidingWindow; alg <= quota.TokenBucket; alg++ {
		huge.Algorithm = alg
		got, _, err := take(ctx, c, 0, false, []quota.Hit{{Key: prefix + "huge" + alg.String(), Limit: huge, N: 1 << 62}})
		if err != nil || !got[0].Fits {
			t.Errorf("%s: huge counts: %+v, %v; want a fit", alg, got, err)
		}
	}
	if _, err := lua.ParseTake([]any{int64(1), int64(1)}, make([]quota.Decision, 1)); err == nil {
		t.Error("ParseTake of a short reply: no error")
	}
	if _, err := lua.ParseTake("OK", nil); err == nil {
		t.Error("ParseTake of a string: no error")
	}
}

// TestMemoryUsage measures the bytes each active counter takes (reported in
// docs/algorithms.md) with a key of a typical length.
func TestMemoryUsage(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	ctx := context.Background()
	// Prefix, a 10-byte hash tag in braces and a 40-byte body: a domain and
	// two entries as the service names them.
	key := "floodgate:{0123456789}" + strings.Repeat("k", 40)
	for alg := quota.SlidingWindow; alg <= quota.TokenBucket; alg++ {
		k := key + alg.String()
		hit := quota.Hit{Key: k, Limit: quota.Limit{Algorithm: alg, Requests: 1000, Unit: time.Minute}, N: 7}
		if _, _, err := take(ctx, c, 0, false, []quota.Hit{hit}); err != nil {
			t.Fatal(err)
		}
		n, err := c.MemoryUsage(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		v, _ := c.Get(ctx, k).Result()
		t.Logf("%s: MEMORY USAGE %d bytes (key %d bytes, value %q)", alg, n, len(k), v)
		if n > 160 {
			t.Errorf("%s: %d bytes per counter, want at most 160", alg, n)
		}
	}
}
