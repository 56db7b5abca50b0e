package rediscache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cachestoretest"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/pkg/cachestore"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

var ctx = context.Background()

// prefixes gives every store a key prefix of its own, so that tests share
// one Redis without seeing each other's entries.
var prefixes atomic.Int64

func newPrefix() string { return "c" + strconv.FormatInt(prefixes.Add(1), 10) + ":" }

// targets are the Redis deployments every test runs against.
var targets = []struct {
	name   string
	client func(t testing.TB) redis.UniversalClient
}{
	{"standalone", func(t testing.TB) redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: redistest.Shared(t).Addr})
		t.Cleanup(func() { c.Close() })
		return c
	}},
	{"cluster", func(t testing.TB) redis.UniversalClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.SharedCluster(t).Addrs()})
		t.Cleanup(func() { c.Close() })
		return c
	}},
}

func open(t testing.TB, c redis.UniversalClient) *Store {
	t.Helper()
	s, err := New(c, Options{KeyPrefix: newPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			c := tg.client(t)
			cachestoretest.Run(t, func(t testing.TB) cachestore.Store { return open(t, c) })
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	if DefaultKeyPrefix != redisstore.DefaultKeyPrefix {
		t.Errorf("DefaultKeyPrefix %q, redisstore's %q", DefaultKeyPrefix, redisstore.DefaultKeyPrefix)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := New(c, Options{KeyPrefix: "a{b}:"}); err == nil || !strings.Contains(err.Error(), "KeyPrefix") {
		t.Errorf("KeyPrefix with braces: err = %v", err)
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("nil client accepted")
	}
	s, err := New(c, Options{})
	if err != nil || s.prefix != DefaultKeyPrefix {
		t.Errorf("New = %v, %v; want the default prefix", s, err)
	}
}

// keysOf lists the store's keys on every node.
func keysOf(t *testing.T, c redis.UniversalClient, prefix string) map[string]*redis.Client {
	t.Helper()
	return redistest.Keys(t, c, prefix)
}

// fillMixed stores entries with vary, tags and several primaries and
// paths, then invalidates some, leaving every kind of key behind.
func fillMixed(t *testing.T, s *Store, now time.Time) {
	t.Helper()
	for i := 0; i < 30; i++ {
		k := cachestore.Key{Host: fmt.Sprint("h", i%3), Path: fmt.Sprint("/p/", i%7), Primary: fmt.Sprint("u", i%4)}
		e := cachestoretest.NewEntry(now, time.Duration(1+i%5)*time.Hour, fmt.Sprint(i), fmt.Sprint("tag", i%3))
		req := []cachestore.Header{{Name: "accept-encoding", Value: fmt.Sprint("enc", i%2)}}
		if err := s.Put(ctx, k, []string{"accept-encoding"}, req, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Invalidate(ctx, cachestore.Selector{Host: "h1", Prefixes: []string{"/p/1"}, Tags: []string{"tag2"}}); err != nil {
		t.Fatal(err)
	}
}

// TestEveryKeyHasTTL: no key the store creates lives forever, and each
// lives no longer than the latest Expires stored.
func TestEveryKeyHasTTL(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			c := tg.client(t)
			s := open(t, c)
			now := time.Now()
			fillMixed(t, s, now)
			keys := keysOf(t, c, s.prefix)
			if len(keys) < 10 {
				t.Fatalf("only %d keys: %v", len(keys), keys)
			}
			kinds := map[string]bool{}
			for k, n := range keys {
				ttl, err := n.PTTL(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				rest := strings.TrimPrefix(k, s.prefix)
				// Index keys may outlive their latest score by a slack of
				// at most a minute (see index.lua).
				limit := 5*time.Hour + time.Second
				if strings.HasPrefix(rest, "{cache}") && !strings.HasPrefix(rest, "{cache}tag:") {
					limit += time.Minute
				}
				if ttl <= 0 || ttl > limit {
					t.Errorf("key %q: PTTL %v, want within the latest Expires", k, ttl)
				}
				switch {
				case strings.HasPrefix(rest, "{cache}tag:"):
					kinds["tag"] = true
				case strings.HasPrefix(rest, "{cache}"):
					kinds[rest] = true
				case strings.HasSuffix(rest, "}p"):
					kinds["group"] = true
				case strings.Contains(rest, "}k:"):
					kinds["key"] = true
				default:
					t.Errorf("unexpected key %q", k)
				}
			}
			for _, want := range []string{"tag", "group", "key", "{cache}paths", "{cache}gexp", "{cache}ents", "{cache}sizes", "{cache}bytes"} {
				if !kinds[want] {
					t.Errorf("no %s key among %v", want, kinds)
				}
			}
		})
	}
}

// TestTTLFollowsExpires: a Key's hash expires at its latest Expires,
// extended by a longer-lived variant and not shortened by a shorter one.
func TestTTLFollowsExpires(t *testing.T) {
	t.Parallel()
	c := targets[0].client(t)
	s := open(t, c)
	now := time.Now()
	k := cachestore.Key{Host: "h", Path: "/x", Primary: "u"}
	hash := s.group(k.Host, k.Path).slot + "k:u"
	vary := []string{"accept"}
	pttl := func() time.Duration {
		d, err := c.PTTL(ctx, hash).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	near := func(got, want time.Duration) bool { return got <= want && got > want-5*time.Second }
	put := func(accept string, ttl time.Duration) {
		req := []cachestore.Header{{Name: "accept", Value: accept}}
		if err := s.Put(ctx, k, vary, req, cachestoretest.NewEntry(now, ttl, accept)); err != nil {
			t.Fatal(err)
		}
	}
	put("a", time.Hour)
	if d := pttl(); !near(d, time.Hour) {
		t.Errorf("PTTL %v, want about 1h", d)
	}
	put("b", 3*time.Hour)
	if d := pttl(); !near(d, 3*time.Hour) {
		t.Errorf("PTTL %v after a 3h variant, want about 3h", d)
	}
	put("c", time.Minute)
	if d := pttl(); !near(d, 3*time.Hour) {
		t.Errorf("PTTL %v after a 1m variant, want still about 3h", d)
	}
	for _, ik := range s.index {
		if d, _ := c.PTTL(ctx, ik).Result(); !near(d, 3*time.Hour+time.Minute) {
			t.Errorf("%s: PTTL %v, want about 3h and the minute of slack", ik, d)
		}
	}
}

// TestExpiredByRedis: an entry whose Expires passed on Redis's clock is
// gone, and Stats prunes it.
func TestExpiredByRedis(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			c := tg.client(t)
			s := open(t, c)
			now := time.Now()
			k := cachestore.Key{Host: "h", Path: "/x", Primary: "u"}
			short := cachestoretest.NewEntry(now, 300*time.Millisecond, "short")
			long := cachestoretest.NewEntry(now, time.Hour, "long")
			if err := s.Put(ctx, k, nil, nil, short); err != nil {
				t.Fatal(err)
			}
			k2 := k
			k2.Primary = "v"
			if err := s.Put(ctx, k2, nil, nil, long); err != nil {
				t.Fatal(err)
			}
			time.Sleep(400 * time.Millisecond)
			if e, err := s.Get(ctx, k, nil, now); e != nil || err != nil {
				t.Errorf("Get after Redis expired it = %v, %v", e, err)
			}
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := (cachestore.Stats{Entries: 1, Bytes: int64(long.Size())}); st != want {
				t.Errorf("Stats = %+v, want %+v", st, want)
			}
		})
	}
}

// counter counts the commands a client sends (a pipeline's one by one),
// but for the handshake of a new connection (HELLO, CLIENT SETINFO).
// trips counts round trips: a command or a pipeline (a cluster's, sent to
// its nodes in parallel, as one).
type counter struct{ n, trips atomic.Int64 }

func handshake(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			c.n.Add(1)
			c.trips.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		trip := false
		for _, cmd := range cmds {
			if !handshake(cmd) {
				c.n.Add(1)
				trip = true
			}
		}
		if trip {
			c.trips.Add(1)
		}
		return next(ctx, cmds)
	}
}

// loadScripts loads the store's scripts on every node.
func loadScripts(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	load := func(ctx context.Context, n *redis.Client) error {
		for _, sc := range []*redis.Script{getScript, putScript, purgeScript, indexScript} {
			if err := sc.Load(ctx, n).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, load)
	} else {
		err = load(ctx, c.(*redis.Client))
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestCommandCounts: Get is one command, hit or miss; Put two scripts in
// one round trip (a pipeline); Stats one.
func TestCommandCounts(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			c := tg.client(t)
			var cnt counter
			c.AddHook(&cnt)
			s := open(t, c)
			now := time.Now()
			k := cachestore.Key{Host: "h", Path: "/x", Primary: "u"}
			vary := []string{"accept-encoding", "accept"}
			req := []cachestore.Header{{Name: "accept", Value: "*/*"}, {Name: "accept-encoding", Value: "gzip"}, {Name: "user-agent", Value: "t"}}
			e := cachestoretest.NewEntry(now, time.Hour, "x", "a", "b")
			// The first use of a script on a node is EVALSHA, NOSCRIPT, EVAL;
			// count what follows.
			loadScripts(t, c)
			if err := s.Put(ctx, k, vary, req, e); err != nil {
				t.Fatal(err)
			}
			count := func(what string, want, trips int64, f func() error) {
				t.Helper()
				before, beforeTrips := cnt.n.Load(), cnt.trips.Load()
				if err := f(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if got := cnt.n.Load() - before; got != want {
					t.Errorf("%s: %d commands, want %d", what, got, want)
				}
				if got := cnt.trips.Load() - beforeTrips; got != trips {
					t.Errorf("%s: %d round trips, want %d", what, got, trips)
				}
			}
			count("Put", 2, 1, func() error { return s.Put(ctx, k, vary, req, e) })
			count("Get hit", 1, 1, func() error {
				got, err := s.Get(ctx, k, req, now)
				if got == nil && err == nil {
					err = errors.New("miss")
				}
				return err
			})
			count("Get miss", 1, 1, func() error {
				got, err := s.Get(ctx, k, req[1:], now)
				if got != nil {
					err = errors.New("hit")
				}
				return err
			})
			count("Stats", 1, 1, func() error { _, err := s.Stats(ctx); return err })
			// A Put that drops the variants of other Vary names takes them
			// out of the index in a second round trip.
			count("Put, new Vary", 3, 2, func() error { return s.Put(ctx, k, vary[:1], req, e) })
			count("Put again", 2, 1, func() error { return s.Put(ctx, k, vary[:1], req, e) })
		})
	}
}

// TestClusterGroupOneSlot: every key of one path group, whatever the
// primary, is on one slot; index keys are on one slot.
func TestClusterGroupOneSlot(t *testing.T) {
	t.Parallel()
	c := targets[1].client(t)
	s := open(t, c)
	now := time.Now()
	for i := 0; i < 20; i++ {
		k := cachestore.Key{Host: "h", Path: "/one", Primary: fmt.Sprint("user-", i)}
		if err := s.Put(ctx, k, nil, nil, cachestoretest.NewEntry(now, time.Hour, "x", fmt.Sprint("t", i))); err != nil {
			t.Fatal(err)
		}
	}
	slots := map[string]map[int64]bool{}
	for k := range keysOf(t, c, s.prefix) {
		slot, err := c.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		kind := "group"
		if strings.HasPrefix(k, s.prefix+"{cache}") {
			kind = "index"
		}
		if slots[kind] == nil {
			slots[kind] = map[int64]bool{}
		}
		slots[kind][slot] = true
	}
	if len(slots["group"]) != 1 || len(slots["index"]) != 1 {
		t.Errorf("slots by kind: %v, want one each", slots)
	}
	n, err := s.Invalidate(ctx, cachestore.Selector{Host: "h", Paths: []string{"/one"}})
	if n != 20 || err != nil {
		t.Errorf("Invalidate = %d, %v; want 20", n, err)
	}
}

// TestLuaVariantIDMatchesGo: the script's variant id is VariantID's, over
// random names, cases, repeated fields and awkward values.
func TestLuaVariantIDMatchesGo(t *testing.T) {
	t.Parallel()
	c := targets[0].client(t)
	sc := redis.NewScript(variantSrc + "\nreturn variant_id(parse_vary(ARGV[1]), ARGV[2])")
	r := rand.New(rand.NewPCG(5, 6))
	names := []string{"accept", "Accept-Encoding", "x-a", "COOKIE"}
	values := []string{"", "gzip", "a, b", "1:x=2", "!", "é", "\x00\xff", " sp "}
	for i := 0; i < 300; i++ {
		var vary []string
		for _, n := range names {
			if r.IntN(2) == 0 {
				vary = append(vary, n)
			}
		}
		var req []cachestore.Header
		for j := r.IntN(6); j > 0; j-- {
			h := cachestore.Header{Name: names[r.IntN(len(names))], Value: values[r.IntN(len(values))]}
			if r.IntN(2) == 0 {
				h.Name = strings.ToLower(h.Name)
			}
			req = append(req, h)
		}
		got, err := sc.Run(ctx, c, nil, encodeVary(vary), appendHeaders(nil, req)).Text()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if want := cachestore.VariantID(vary, protectAll(req)); got != want {
			t.Fatalf("vary %q req %q: Lua %q, Go %q", vary, req, got, want)
		}
	}
}

// TestCorruptEntry: a value the store cannot read is a miss with an error
// that wraps ErrCorrupt.
func TestCorruptEntry(t *testing.T) {
	t.Parallel()
	c := targets[0].client(t)
	s := open(t, c)
	now := time.Now()
	k := cachestore.Key{Host: "h", Path: "/x", Primary: "u"}
	if err := s.Put(ctx, k, nil, nil, cachestoretest.NewEntry(now, time.Hour, "x")); err != nil {
		t.Fatal(err)
	}
	hash := s.group(k.Host, k.Path).slot + "k:u"
	for _, bad := range []string{"", "\x09rest", "\x01\xff\xff\xff"} {
		c.HSet(ctx, hash, "e:", bad)
		e, err := s.Get(ctx, k, nil, now)
		if e != nil || !errors.Is(err, ErrCorrupt) {
			t.Errorf("value %q: Get = %v, %v; want a miss and ErrCorrupt", bad, e, err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	c := targets[0].client(b)
	s, _ := New(c, Options{KeyPrefix: newPrefix()})
	now := time.Now()
	k := cachestore.Key{Host: "h", Path: "/x", Primary: "u"}
	vary := []string{"accept-encoding"}
	req := []cachestore.Header{{Name: "accept", Value: "*/*"}, {Name: "accept-encoding", Value: "gzip"}}
	e := cachestoretest.NewEntry(now, time.Hour, strings.Repeat("x", 1000))
	if err := s.Put(ctx, k, vary, req, e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if got, err := s.Get(ctx, k, req, now); got == nil || err != nil {
				b.Errorf("Get = %v, %v", got, err)
				return
			}
		}
	})
}

func BenchmarkPut(b *testing.B) {
	c := targets[0].client(b)
	s, _ := New(c, Options{KeyPrefix: newPrefix()})
	now := time.Now()
	vary := []string{"accept-encoding"}
	req := []cachestore.Header{{Name: "accept-encoding", Value: "gzip"}}
	e := cachestoretest.NewEntry(now, time.Hour, strings.Repeat("x", 1000), "tag")
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := cachestore.Key{Host: "h", Path: fmt.Sprint("/", n.Add(1)%1000), Primary: "u"}
			if err := s.Put(ctx, k, vary, req, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestSecretsStayOut: a Vary on Cookie works, and the cookie's value is
// in no key or field of Redis.
func TestSecretsStayOut(t *testing.T) {
	t.Parallel()
	c := targets[0].client(t)
	s := open(t, c)
	now := time.Now()
	k := cachestore.Key{Host: "h", Path: "/me", Primary: "u"}
	vary := []string{"cookie"}
	alice := []cachestore.Header{{Name: "cookie", Value: "session=alice-secret"}}
	bob := []cachestore.Header{{Name: "Cookie", Value: "session=bob-secret"}}
	e := cachestoretest.NewEntry(now, time.Hour, "alice's")
	if err := s.Put(ctx, k, vary, alice, e); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, k, alice, now); cachestoretest.SameEntry(got, e) != "" {
		t.Errorf("Get with alice's cookie = %v", got)
	}
	if got, _ := s.Get(ctx, k, bob, now); got != nil {
		t.Errorf("Get with bob's cookie = %v, want a miss", got)
	}
	for key := range keysOf(t, c, s.prefix) {
		var dump []string
		switch typ, _ := c.Type(ctx, key).Result(); typ {
		case "hash":
			dump, _ = c.HKeys(ctx, key).Result()
		case "zset":
			dump, _ = c.ZRange(ctx, key, 0, -1).Result()
		case "set":
			dump, _ = c.SMembers(ctx, key).Result()
		}
		for _, d := range append(dump, key) {
			if strings.Contains(d, "secret") {
				t.Errorf("key %q holds %q", key, d)
			}
		}
	}
}

// TestConformanceSentinel runs the suite through a Sentinel failover
// client.
func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinel(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: g.MasterName, SentinelAddrs: g.Addrs()})
	t.Cleanup(func() { c.Close() })
	cachestoretest.Run(t, func(t testing.TB) cachestore.Store { return open(t, c) })
}

// TestInvalidateCommands: invalidating exact paths of a host needs no
// index look-up: one purge per group, then the index.
func TestInvalidateCommands(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			c := tg.client(t)
			var cnt counter
			c.AddHook(&cnt)
			s := open(t, c)
			now := time.Now()
			for i := 0; i < 10; i++ {
				k := cachestore.Key{Host: "h", Path: fmt.Sprint("/", i%2), Primary: fmt.Sprint("u", i)}
				if err := s.Put(ctx, k, nil, nil, cachestoretest.NewEntry(now, time.Hour, "x")); err != nil {
					t.Fatal(err)
				}
			}
			loadScripts(t, c)
			before := cnt.n.Load()
			n, err := s.Invalidate(ctx, cachestore.Selector{Host: "h", Paths: []string{"/0", "/1"}})
			if n != 10 || err != nil {
				t.Fatalf("Invalidate = %d, %v", n, err)
			}
			if got := cnt.n.Load() - before; got != 3 {
				t.Errorf("%d commands, want 3 (two purges, one index update)", got)
			}
		})
	}
}

// TestPutFailureUndone: Put's two scripts share a round trip; when one
// fails, what the other did is taken back (best effort): an entry the
// index could not take is removed, an index member whose entry could
// not be stored is dropped.
func TestPutFailureUndone(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			c := tg.client(t)
			s := open(t, c)
			now := time.Now()
			k := cachestore.Key{Host: "h", Path: "/x", Primary: "u"}
			e := cachestoretest.NewEntry(now, time.Hour, "x", "t")
			// The index fails: bytes is not a counter.
			if err := c.HSet(ctx, s.index[4], "f", "v").Err(); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ctx, k, nil, nil, e); err == nil || !strings.Contains(err.Error(), "index") {
				t.Errorf("Put with a broken index: err = %v", err)
			}
			if got, err := s.Get(ctx, k, nil, now); got != nil || err != nil {
				t.Errorf("Get after the index failed = %v, %v; want a miss", got, err)
			}
			if err := c.Del(ctx, s.index[4]).Err(); err != nil {
				t.Fatal(err)
			}
			// The entry fails: its hash is a string.
			hash := s.group(k.Host, k.Path).slot + "k:u"
			if err := c.Set(ctx, hash, "x", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ctx, k, nil, nil, e); err == nil {
				t.Error("Put onto a string: no error")
			}
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st != (cachestore.Stats{}) {
				t.Errorf("Stats after the entry failed = %+v, want none", st)
			}
		})
	}
}
