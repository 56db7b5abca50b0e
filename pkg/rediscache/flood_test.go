package rediscache

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cachestoretest"
	"github.com/floodgate/floodgate/pkg/cachestore"
)

// auditTTLs fails the test for every key under prefix that has no TTL
// (PTTL -1) and returns how many keys it looked at.
func auditTTLs(t *testing.T, c redis.UniversalClient, prefix string) int {
	t.Helper()
	keys := keysOf(t, c, prefix)
	for k, n := range keys {
		ttl, err := n.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("key %q: PTTL %v, want a TTL", k, ttl)
		}
	}
	return len(keys)
}

// TestFloodEveryKeyHasTTL stores many distinct cache keys (hosts, paths,
// users, Vary variants and tags, with varied freshness) and then audits
// every key the store wrote: each has a TTL.
func TestFloodEveryKeyHasTTL(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			c := tg.client(t)
			s := open(t, c)
			now := time.Now()
			const flood = 3000
			vary := []string{"accept"}
			for i := range flood {
				k := cachestore.Key{Host: fmt.Sprint("h", i%5), Path: fmt.Sprint("/flood/", i), Primary: fmt.Sprint("u", i%17)}
				req := []cachestore.Header{{Name: "accept", Value: fmt.Sprint("t", i%3)}}
				e := cachestoretest.NewEntry(now, time.Duration(1+i%7)*time.Minute, fmt.Sprint("body", i), fmt.Sprint("tag", i%11))
				if err := s.Put(ctx, k, vary, req, e); err != nil {
					t.Fatal(err)
				}
			}
			n := auditTTLs(t, c, s.prefix)
			if n < flood {
				t.Errorf("only %d keys after %d distinct stores", n, flood)
			}
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Entries != flood {
				t.Errorf("Stats.Entries = %d, want %d", st.Entries, flood)
			}
		})
	}
}

// TestIndexKeyRecreatedGetsTTL: an index key that Redis evicted (maxmemory)
// and the next store recreates gets a TTL from that store, even when no
// prune is due and no store follows. Each case deletes one index key, as
// an eviction would, then stores once.
func TestIndexKeyRecreatedGetsTTL(t *testing.T) {
	names := []string{"paths", "gexp", "ents", "sizes", "bytes"}
	for i, name := range names {
		for _, resize := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/resize=%v", name, resize), func(t *testing.T) {
				t.Parallel()
				c := targets[0].client(t)
				s := open(t, c)
				now := time.Now()
				k := cachestore.Key{Host: "h", Path: "/a", Primary: "u"}
				if err := s.Put(ctx, k, nil, nil, cachestoretest.NewEntry(now, time.Hour, "first")); err != nil {
					t.Fatal(err)
				}
				// No prune due for the rest of the test: the store must not
				// rely on one to heal the index.
				if err := c.HSet(ctx, s.index[3], "!p", now.Add(time.Hour).UnixMilli()).Err(); err != nil {
					t.Fatal(err)
				}
				if err := c.Del(ctx, s.index[i]).Err(); err != nil {
					t.Fatal(err)
				}
				next, body := cachestore.Key{Host: "h", Path: "/b", Primary: "u"}, "second"
				if resize {
					// The same entry again, with another size: its id is in
					// the index already (unless ents or sizes went).
					next, body = k, "first, longer"
				}
				if err := s.Put(ctx, next, nil, nil, cachestoretest.NewEntry(now, 30*time.Minute, body)); err != nil {
					t.Fatal(err)
				}
				for _, ik := range s.index {
					ttl, err := c.PTTL(ctx, ik).Result()
					if err != nil {
						t.Fatal(err)
					}
					if ttl == -2 && strings.HasSuffix(ik, "bytes") {
						continue // not recreated: nothing changed the sum
					}
					if ttl <= 0 {
						t.Errorf("%s after %s was evicted and one store: PTTL %v, want a TTL", ik, name, ttl)
					}
				}
			})
		}
	}
}
