package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

// scanTTLs returns the PTTL of every key under prefix, on every master of
// a cluster.
func scanTTLs(t *testing.T, c redis.UniversalClient, prefix string) map[string]time.Duration {
	t.Helper()
	ctx := context.Background()
	out := map[string]time.Duration{}
	for key, n := range redistest.Keys(t, c, prefix) {
		ttl, err := n.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[key] = ttl
	}
	return out
}

// TestFloodEveryKeyHasTTL sends a flood of distinct keys through the store
// for each algorithm and counting, admitted, rejected (taken in full or
// not) and check-only, then audits every key under the store's prefix:
// each has a TTL, none lives forever, none outlives its limit by much.
func TestFloodEveryKeyHasTTL(t *testing.T) {
	const (
		keys  = 2000
		batch = 4
	)
	algorithms := []quota.Algorithm{quota.FixedWindow, quota.SlidingWindow, quota.TokenBucket}
	countings := []struct {
		name string
		c    quota.Counting
	}{{"all-or-nothing", quota.AllOrNothing}, {"always", quota.Always}}
	for _, tg := range targets() {
		for _, alg := range algorithms {
			for _, cnt := range countings {
				t.Run(tg.name+"/"+alg.String()+"/"+cnt.name, func(t *testing.T) {
					t.Parallel()
					ctx := context.Background()
					c := newClient(t, tg.client(t))
					prefix := newPrefix()
					s := open(t, c, redisstore.Options{KeyPrefix: prefix})
					limit := quota.Limit{Algorithm: alg, Requests: 3, Unit: time.Minute}
					send := func(pass string, n uint64) {
						hits := make([]quota.Hit, batch)
						out := make([]quota.Decision, batch)
						for i := 0; i < keys; i += batch {
							for j := range hits {
								k := "flood_" + pass + "_" + strconv.Itoa(i+j)
								if n == 0 {
									k = "check_" + strconv.Itoa(i+j) // never taken before
								}
								hits[j] = quota.Hit{Key: k, Limit: limit, N: n, Counting: cnt.c}
							}
							if err := s.Take(ctx, hits, out); err != nil {
								t.Fatalf("pass %s: %v", pass, err)
							}
						}
					}
					send("a", 1) // admitted
					send("a", 5) // over: rejected, or taken in full (a debt)
					send("b", 5) // over on fresh counters
					send("c", 0) // check-only on fresh counters
					ttls := scanTTLs(t, c, prefix)
					if len(ttls) < keys {
						t.Errorf("%d keys under %q after %d distinct admitted ones", len(ttls), prefix, keys)
					}
					// A debt of 5 on a limit of 3 a minute is paid off within
					// a few minutes; a TTL far past that is a leak too.
					const most = 10 * time.Minute
					bad := 0
					for k, ttl := range ttls {
						if ttl <= 0 || ttl > most {
							if bad++; bad <= 5 {
								t.Errorf("key %q: PTTL %v, want within (0, %v]", k, ttl, most)
							}
						}
					}
					if bad > 5 {
						t.Errorf("%d keys in all without a proper TTL", bad)
					}
					t.Logf("%d keys, every one with a TTL", len(ttls))
				})
			}
		}
	}
}
