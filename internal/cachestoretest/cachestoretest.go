// Package cachestoretest is the conformance suite every cachestore.Store
// passes: the memory store and the Redis store (standalone and Cluster) run
// the same tests, so the cache engine sees one behaviour whatever the
// backend.
//
// Times are explicit: entries expire an hour from the real now (a Redis
// store sets real TTLs from Expires), and Get is asked at chosen instants
// around Expires, so no test sleeps. A store may keep an expired entry
// until it drops it, so Stats is not asserted right after an expiry.
package cachestoretest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/cachestore"
)

// Run runs the suite; newStore returns an empty store of its own for each
// test (the tests run in parallel).
func Run(t *testing.T, newStore func(t testing.TB) cachestore.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s cachestore.Store)
	}{
		{"Miss", testMiss},
		{"PutGet", testPutGet},
		{"Replace", testReplace},
		{"Expiry", testExpiry},
		{"Variants", testVariants},
		{"VaryChange", testVaryChange},
		{"InvalidatePath", testInvalidatePath},
		{"InvalidateEveryHost", testInvalidateEveryHost},
		{"InvalidatePrefix", testInvalidatePrefix},
		{"InvalidateTags", testInvalidateTags},
		{"InvalidateOverlap", testInvalidateOverlap},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.f(t, newStore(t))
		})
	}
}

// base is the instant the suite's entries are stored at: now, to the
// millisecond (Redis expiries have millisecond precision).
func base() time.Time { return time.Now().Truncate(time.Millisecond) }

// NewEntry returns an entry stored at now, fresh for ttl, with a body that
// names it and the given tags.
func NewEntry(now time.Time, ttl time.Duration, body string, tags ...string) *cachestore.Entry {
	return &cachestore.Entry{
		Status:     200,
		Header:     []cachestore.Header{{Name: "content-type", Value: "text/plain"}, {Name: "x-a", Value: "1"}, {Name: "x-a", Value: "2"}},
		Body:       []byte(body),
		Stored:     now,
		Expires:    now.Add(ttl),
		InitialAge: 3 * time.Second,
		ETag:       `"` + body + `"`,
		Tags:       tags,
	}
}

// SameEntry reports how got differs from want ("" when it does not).
func SameEntry(got, want *cachestore.Entry) string {
	switch {
	case got == nil && want == nil:
		return ""
	case got == nil:
		return fmt.Sprintf("got a miss, want the entry %q", want.Body)
	case want == nil:
		return fmt.Sprintf("got the entry %q, want a miss", got.Body)
	}
	norm := func(e *cachestore.Entry) cachestore.Entry {
		c := *e
		c.Stored, c.Expires = time.Time{}, time.Time{}
		if len(c.Header) == 0 {
			c.Header = nil
		}
		if len(c.Body) == 0 {
			c.Body = nil
		}
		if len(c.Tags) == 0 {
			c.Tags = nil
		}
		return c
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		return fmt.Sprintf("got %+v, want %+v", g, w)
	}
	if !got.Stored.Equal(want.Stored) || !got.Expires.Equal(want.Expires) {
		return fmt.Sprintf("got times %v..%v, want %v..%v", got.Stored, got.Expires, want.Stored, want.Expires)
	}
	return ""
}

var ctx = context.Background()

func get(t *testing.T, s cachestore.Store, k cachestore.Key, req []cachestore.Header, now time.Time) *cachestore.Entry {
	t.Helper()
	e, err := s.Get(ctx, k, req, now)
	if err != nil {
		t.Fatalf("Get(%v): %v", k, err)
	}
	return e
}

func put(t *testing.T, s cachestore.Store, k cachestore.Key, vary []string, req []cachestore.Header, e *cachestore.Entry) {
	t.Helper()
	if err := s.Put(ctx, k, vary, req, e); err != nil {
		t.Fatalf("Put(%v): %v", k, err)
	}
}

func wantGet(t *testing.T, s cachestore.Store, k cachestore.Key, req []cachestore.Header, now time.Time, want *cachestore.Entry) {
	t.Helper()
	if d := SameEntry(get(t, s, k, req, now), want); d != "" {
		t.Errorf("Get(%v, %v): %s", k, req, d)
	}
}

func wantStats(t *testing.T, s cachestore.Store, entries ...*cachestore.Entry) {
	t.Helper()
	var want cachestore.Stats
	for _, e := range entries {
		want.Entries++
		want.Bytes += int64(e.Size())
	}
	got, err := s.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func invalidate(t *testing.T, s cachestore.Store, sel cachestore.Selector, want int) {
	t.Helper()
	n, err := s.Invalidate(ctx, sel)
	if err != nil {
		t.Fatalf("Invalidate(%+v): %v", sel, err)
	}
	if n != want {
		t.Errorf("Invalidate(%+v) = %d, want %d", sel, n, want)
	}
}

func key(host, path, primary string) cachestore.Key {
	return cachestore.Key{Host: host, Path: path, Primary: primary}
}

func hdr(kv ...string) []cachestore.Header {
	var h []cachestore.Header
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, cachestore.Header{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func testMiss(t *testing.T, s cachestore.Store) {
	now := base()
	wantGet(t, s, key("a.example", "/x", "p"), nil, now, nil)
	wantStats(t, s)
	invalidate(t, s, cachestore.Selector{Host: "a.example", Paths: []string{"/x"}, Prefixes: []string{"/"}, Tags: []string{"t"}}, 0)
}

func testPutGet(t *testing.T, s cachestore.Store) {
	now := base()
	k := key("a.example", "/x", "p1")
	e := NewEntry(now, time.Hour, "one", "t1", "t2")
	put(t, s, k, nil, nil, e)
	wantGet(t, s, k, nil, now, e)
	wantGet(t, s, k, hdr("accept", "x"), now, e) // no Vary: any request
	wantStats(t, s, e)
	// Other primaries, paths and hosts are other keys.
	wantGet(t, s, key("a.example", "/x", "p2"), nil, now, nil)
	wantGet(t, s, key("a.example", "/y", "p1"), nil, now, nil)
	wantGet(t, s, key("b.example", "/x", "p1"), nil, now, nil)

	// An entry without headers, body or tags survives the round trip.
	bare := &cachestore.Entry{Status: 204, Stored: now, Expires: now.Add(time.Hour)}
	k2 := key("a.example", "/bare", "p1")
	put(t, s, k2, nil, nil, bare)
	wantGet(t, s, k2, nil, now, bare)
	wantStats(t, s, e, bare)
}

func testReplace(t *testing.T, s cachestore.Store) {
	now := base()
	k := key("a.example", "/x", "p1")
	e1 := NewEntry(now, time.Hour, "first")
	e2 := NewEntry(now, 2*time.Hour, "second, longer")
	put(t, s, k, nil, nil, e1)
	put(t, s, k, nil, nil, e2)
	wantGet(t, s, k, nil, now, e2)
	wantStats(t, s, e2)
}

func testExpiry(t *testing.T, s cachestore.Store) {
	now := base()
	k := key("a.example", "/x", "p1")
	e := NewEntry(now, time.Hour, "one")
	put(t, s, k, nil, nil, e)
	wantGet(t, s, k, nil, e.Expires.Add(-time.Millisecond), e)
	wantGet(t, s, k, nil, e.Expires, nil) // at Expires it is stale
	wantGet(t, s, k, nil, e.Expires.Add(time.Hour), nil)
	// A new response under the key is served again.
	e2 := NewEntry(now, 2*time.Hour, "two")
	put(t, s, k, nil, nil, e2)
	wantGet(t, s, k, nil, e.Expires, e2)
	wantStats(t, s, e2)
}

func testVariants(t *testing.T, s cachestore.Store) {
	now := base()
	k := key("a.example", "/x", "p1")
	vary := []string{"accept-encoding", "accept-language"}
	gzip := hdr("accept-encoding", "gzip", "accept-language", "en")
	br := hdr("accept-encoding", "br", "accept-language", "en")
	none := hdr("accept-language", "en")
	eg := NewEntry(now, time.Hour, "gzip")
	eb := NewEntry(now, time.Hour, "br")
	en := NewEntry(now, time.Hour, "none")
	put(t, s, k, vary, gzip, eg)
	put(t, s, k, vary, br, eb)
	wantGet(t, s, k, gzip, now, eg)
	wantGet(t, s, k, br, now, eb)
	wantGet(t, s, k, none, now, nil)                                                // absent is a variant of its own
	wantGet(t, s, k, hdr("accept-encoding", "", "accept-language", "en"), now, nil) // so is empty
	put(t, s, k, vary, none, en)
	wantGet(t, s, k, none, now, en)
	wantGet(t, s, k, hdr("x-other", "1", "accept-language", "en"), now, en) // other headers do not matter
	wantStats(t, s, eg, eb, en)

	// Fields of one name are joined with ", "; names match in any case,
	// and the order of different names does not matter.
	two := hdr("Accept-Language", "en", "accept-encoding", "gzip", "accept-encoding", "br")
	joined := hdr("accept-encoding", "gzip, br", "accept-language", "en")
	e2 := NewEntry(now, time.Hour, "two fields")
	put(t, s, k, vary, two, e2)
	wantGet(t, s, k, joined, now, e2)
	wantGet(t, s, k, hdr("accept-encoding", "br, gzip", "accept-language", "en"), now, nil)
	wantStats(t, s, eg, eb, en, e2)

	// Values that a naive encoding would confuse stay apart.
	k2 := key("a.example", "/y", "p1")
	v2 := []string{"a", "b"}
	x := NewEntry(now, time.Hour, "x")
	put(t, s, k2, v2, hdr("a", "1:b=2", "b", ""), x)
	wantGet(t, s, k2, hdr("a", "1", "b", "2"), now, nil)
	wantGet(t, s, k2, hdr("a", "1:b=2", "b", ""), now, x)
}

func testVaryChange(t *testing.T, s cachestore.Store) {
	now := base()
	k := key("a.example", "/x", "p1")
	gzip := hdr("accept-encoding", "gzip", "accept", "text/html")
	br := hdr("accept-encoding", "br", "accept", "text/html")
	put(t, s, k, []string{"accept-encoding"}, gzip, NewEntry(now, time.Hour, "gzip"))
	put(t, s, k, []string{"accept-encoding"}, br, NewEntry(now, time.Hour, "br"))
	// The response now varies on Accept: the old variants go.
	e := NewEntry(now, time.Hour, "html")
	put(t, s, k, []string{"accept"}, gzip, e)
	wantGet(t, s, k, br, now, e) // same Accept: same variant now
	wantGet(t, s, k, hdr("accept-encoding", "gzip"), now, nil)
	wantStats(t, s, e)
	// Back to no Vary at all.
	e2 := NewEntry(now, time.Hour, "plain")
	put(t, s, k, nil, gzip, e2)
	wantGet(t, s, k, nil, now, e2)
	wantStats(t, s, e2)
}

// fill stores, under hosts × paths × primaries, two variants each, and
// returns the entries by key and variant request.
type stored struct {
	k   cachestore.Key
	req []cachestore.Header
	e   *cachestore.Entry
}

var varyAE = []string{"accept-encoding"}

func fill(t *testing.T, s cachestore.Store, now time.Time, hosts, paths, primaries []string) []stored {
	var all []stored
	for _, h := range hosts {
		for _, p := range paths {
			for _, pr := range primaries {
				for _, enc := range []string{"gzip", "br"} {
					st := stored{key(h, p, pr), hdr("accept-encoding", enc), NewEntry(now, time.Hour, h+p+pr+enc)}
					put(t, s, st.k, varyAE, st.req, st.e)
					all = append(all, st)
				}
			}
		}
	}
	return all
}

// check asserts that exactly the entries keep says are still served, and
// the Stats of those.
func check(t *testing.T, s cachestore.Store, now time.Time, all []stored, keep func(stored) bool) {
	t.Helper()
	var kept []*cachestore.Entry
	for _, st := range all {
		want := st.e
		if !keep(st) {
			want = nil
		} else {
			kept = append(kept, st.e)
		}
		wantGet(t, s, st.k, st.req, now, want)
	}
	wantStats(t, s, kept...)
}

func testInvalidatePath(t *testing.T, s cachestore.Store) {
	now := base()
	all := fill(t, s, now, []string{"a.example", "b.example"}, []string{"/x", "/x/", "/xy", "/y"}, []string{"alice", "bob"})
	invalidate(t, s, cachestore.Selector{Host: "a.example", Paths: []string{"/x", "/nothing"}}, 4)
	check(t, s, now, all, func(st stored) bool { return !(st.k.Host == "a.example" && st.k.Path == "/x") })
	invalidate(t, s, cachestore.Selector{Host: "a.example", Paths: []string{"/x"}}, 0)
	invalidate(t, s, cachestore.Selector{Host: "a.example", Paths: []string{"/x/", "/y"}}, 8)
	check(t, s, now, all, func(st stored) bool { return st.k.Host != "a.example" || st.k.Path == "/xy" })
}

func testInvalidateEveryHost(t *testing.T, s cachestore.Store) {
	now := base()
	all := fill(t, s, now, []string{"a.example", "b.example", "c.example"}, []string{"/x", "/x/1", "/y"}, []string{"alice", "bob"})
	invalidate(t, s, cachestore.Selector{Paths: []string{"/x"}}, 12)
	check(t, s, now, all, func(st stored) bool { return st.k.Path != "/x" })
}

func testInvalidatePrefix(t *testing.T, s cachestore.Store) {
	now := base()
	all := fill(t, s, now, []string{"a.example", "b.example"},
		[]string{"/v1/users", "/v1/users/", "/v1/users/1", "/v1/users/1/posts", "/v1/usersx", "/v1/teams/1", "/v2/users/1"},
		[]string{"alice"})
	invalidate(t, s, cachestore.Selector{Host: "a.example", Prefixes: []string{"/v1/users/"}}, 6)
	check(t, s, now, all, func(st stored) bool {
		return !(st.k.Host == "a.example" && (st.k.Path == "/v1/users/" || st.k.Path == "/v1/users/1" || st.k.Path == "/v1/users/1/posts"))
	})
	// Every host, two prefixes at once, one overlapping what went.
	invalidate(t, s, cachestore.Selector{Prefixes: []string{"/v1/users", "/v1/t"}}, (3+6)*2)
	check(t, s, now, all, func(st stored) bool { return st.k.Path == "/v2/users/1" })
	// The empty prefix is every path of the host.
	invalidate(t, s, cachestore.Selector{Host: "b.example", Prefixes: []string{""}}, 2)
	check(t, s, now, all, func(st stored) bool { return st.k.Host == "a.example" && st.k.Path == "/v2/users/1" })
}

func testInvalidateTags(t *testing.T, s cachestore.Store) {
	now := base()
	var all []stored
	add := func(h, p, pr, enc string, tags ...string) {
		st := stored{key(h, p, pr), hdr("accept-encoding", enc), NewEntry(now, time.Hour, h+p+pr+enc, tags...)}
		put(t, s, st.k, varyAE, st.req, st.e)
		all = append(all, st)
	}
	add("a.example", "/x", "alice", "gzip", "user-1", "users")
	add("a.example", "/x", "alice", "br", "user-1")
	add("a.example", "/x", "bob", "gzip", "users")
	add("b.example", "/y", "alice", "gzip", "user-1")
	add("b.example", "/z", "alice", "gzip", "other")
	add("b.example", "/z", "alice", "br")
	invalidate(t, s, cachestore.Selector{Tags: []string{"user-1", "nothing"}}, 3)
	check(t, s, now, all, func(st stored) bool {
		return !(st.k.Primary == "alice" && (st.k.Path == "/x" || st.k.Path == "/y"))
	})
	invalidate(t, s, cachestore.Selector{Tags: []string{"user-1"}}, 0)

	// A tag names the entries stored with it: an entry replaced by an
	// untagged response is no longer tagged.
	k := key("c.example", "/t", "alice")
	put(t, s, k, nil, nil, NewEntry(now, time.Hour, "tagged", "gone"))
	e := NewEntry(now, time.Hour, "untagged")
	put(t, s, k, nil, nil, e)
	invalidate(t, s, cachestore.Selector{Tags: []string{"gone"}}, 0)
	wantGet(t, s, k, nil, now, e)
	// Nor is a variant dropped because the Vary names changed.
	k2 := key("c.example", "/u", "alice")
	put(t, s, k2, varyAE, hdr("accept-encoding", "gzip"), NewEntry(now, time.Hour, "gz", "dropped"))
	e2 := NewEntry(now, time.Hour, "plain")
	put(t, s, k2, nil, nil, e2)
	invalidate(t, s, cachestore.Selector{Tags: []string{"dropped"}}, 0)
	wantGet(t, s, k2, nil, now, e2)
	invalidate(t, s, cachestore.Selector{Tags: []string{"users", "other"}}, 2)
	wantStats(t, s, all[5].e, e, e2)
}

func testInvalidateOverlap(t *testing.T, s cachestore.Store) {
	now := base()
	k := key("a.example", "/x", "alice")
	put(t, s, k, nil, nil, NewEntry(now, time.Hour, "x", "t"))
	// Selected by path, by prefix and by tag: removed and counted once.
	invalidate(t, s, cachestore.Selector{Host: "a.example", Paths: []string{"/x"}, Prefixes: []string{"/", "/x"}, Tags: []string{"t"}}, 1)
	wantGet(t, s, k, nil, now, nil)
	wantStats(t, s)
}

// testConcurrent runs puts, gets and invalidations from many goroutines
// (meant for -race), then checks that a full invalidation leaves nothing.
func testConcurrent(t *testing.T, s cachestore.Store) {
	now := base()
	const workers, ops = 8, 60
	hosts := []string{"a.example", "b.example"}
	paths := []string{"/a", "/a/1", "/a/2", "/b"}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < ops; i++ {
				k := key(hosts[r.IntN(len(hosts))], paths[r.IntN(len(paths))], fmt.Sprint("p", r.IntN(3)))
				req := hdr("accept-encoding", []string{"gzip", "br"}[r.IntN(2)])
				var err error
				switch op := r.IntN(10); {
				case op < 4:
					err = s.Put(ctx, k, varyAE, req, NewEntry(now, time.Hour, k.Path, "t"+k.Primary))
				case op < 8:
					var e *cachestore.Entry
					e, err = s.Get(ctx, k, req, now)
					if err == nil && e != nil && string(e.Body) != k.Path {
						err = fmt.Errorf("Get(%v) = body %q", k, e.Body)
					}
				case op == 8:
					_, err = s.Invalidate(ctx, cachestore.Selector{Host: k.Host, Paths: []string{k.Path}, Prefixes: []string{"/a/"}})
				default:
					_, err = s.Invalidate(ctx, cachestore.Selector{Tags: []string{"t" + k.Primary}})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(uint64(w))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := s.Invalidate(ctx, cachestore.Selector{Prefixes: []string{""}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		for _, p := range paths {
			for i := 0; i < 3; i++ {
				for _, enc := range []string{"gzip", "br"} {
					wantGet(t, s, key(h, p, fmt.Sprint("p", i)), hdr("accept-encoding", enc), now, nil)
				}
			}
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries < 0 || st.Bytes < 0 {
		t.Errorf("Stats = %+v after everything was removed", st)
	}
}
