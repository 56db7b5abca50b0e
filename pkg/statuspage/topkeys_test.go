package statuspage_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/statuspage"
)

var (
	over  = &quota.Decision{Fits: false}
	fits  = &quota.Decision{Fits: true, Remaining: 3}
	limit = &engine.Limit{ID: "per-tenant"}
	hit   = &quota.Hit{N: 1}
)

func desc(entries ...string) *engine.Descriptor {
	d := &engine.Descriptor{}
	for i := 0; i+1 < len(entries); i += 2 {
		d.Entries = append(d.Entries, engine.Entry{Key: entries[i], Value: entries[i+1]})
	}
	return d
}

func counts(keys []statuspage.TopKey) map[string]statuspage.TopKey {
	m := map[string]statuspage.TopKey{}
	for _, k := range keys {
		m[k.Hash] = k
	}
	return m
}

// TestTrackerHeavyHitters: under a known stream, five heavy keys mixed with
// thousands of keys seen once, the tracker stays within its capacity, ranks
// the heavy keys first with their exact counts (error 0), and every count
// it reports is within its stated error of the truth.
func TestTrackerHeavyHitters(t *testing.T) {
	t.Parallel()
	tr := statuspage.NewTracker(statuspage.TrackerOptions{Capacity: 32, Key: []byte("test key")})
	heavy := []int{900, 700, 500, 400, 300}
	truth := map[string]int{}
	noise := 0
	for round := 0; round < heavy[0]; round++ {
		for h, n := range heavy {
			if round < n {
				d := desc("tenant", fmt.Sprintf("heavy-%d", h), "user", "u")
				tr.Decided("api", d, limit, hit, over)
				truth[tr.Hash("api", d.Entries)]++
			}
		}
		for range 6 {
			d := desc("tenant", fmt.Sprintf("noise-%d", noise), "user", "u")
			noise++
			tr.Decided("api", d, limit, hit, over)
			truth[tr.Hash("api", d.Entries)]++
		}
	}
	top, seen := tr.Top(-1)
	if len(top) > 32 {
		t.Fatalf("%d keys tracked, capacity 32", len(top))
	}
	if want := uint64(900 + 700 + 500 + 400 + 300 + noise); seen != want {
		t.Errorf("seen %d over-limit answers, want %d", seen, want)
	}
	for i, n := range heavy {
		k := top[i]
		want := tr.Hash("api", desc("tenant", fmt.Sprintf("heavy-%d", i), "user", "u").Entries)
		if k.Hash != want || k.OverLimit != uint64(n) || k.MaxError != 0 {
			t.Errorf("top[%d] = %s %d ±%d, want %s %d ±0", i, k.Hash, k.OverLimit, k.MaxError, want, n)
		}
		if k.Domain != "api" || strings.Join(k.Keys, ",") != "tenant,user" || k.Rule != "per-tenant" {
			t.Errorf("top[%d] = %+v: want domain api, keys tenant,user, rule per-tenant", i, k)
		}
	}
	for _, k := range top {
		got, err := k.OverLimit, k.MaxError
		if real := uint64(truth[k.Hash]); real > got || got-err > real {
			t.Errorf("%s: reported %d ±%d, true count %d", k.Hash, got, err, real)
		}
	}
	if top20, _ := tr.Top(20); len(top20) != 20 {
		t.Errorf("Top(20) gave %d keys", len(top20))
	}
}

// TestTrackerOnlyOverLimit: admitted descriptors and backend failures are
// not counted.
func TestTrackerOnlyOverLimit(t *testing.T) {
	t.Parallel()
	tr := statuspage.NewTracker(statuspage.TrackerOptions{})
	tr.Decided("api", desc("k", "v"), limit, hit, fits)
	tr.Decided("api", desc("k", "v"), limit, hit, nil)
	if top, seen := tr.Top(20); len(top) != 0 || seen != 0 {
		t.Fatalf("tracked %v (%d seen), want nothing", top, seen)
	}
	tr.Decided("api", desc("k", "v"), &engine.Limit{ID: "s", Shadow: true}, hit, over)
	top, _ := tr.Top(20)
	if len(top) != 1 || !top[0].Shadow || top[0].Rule != "s" {
		t.Fatalf("top = %+v, want one shadow key of rule s", top)
	}
}

// TestTrackerShowsNoValue: what the tracker gives out holds the domain and
// the keys, never a value; the hash depends on the tracker's key.
func TestTrackerShowsNoValue(t *testing.T) {
	t.Parallel()
	secret := "Bearer eyJhbGciOiJSUzI1NiJ9.c2VjcmV0"
	a := statuspage.NewTracker(statuspage.TrackerOptions{})
	b := statuspage.NewTracker(statuspage.TrackerOptions{})
	d := desc("authorization", secret, "client_ip", "203.0.113.7")
	a.Decided("api", d, limit, hit, over)
	top, _ := a.Top(20)
	out, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{secret, "eyJhbGciOiJSUzI1NiJ9", "203.0.113.7"} {
		if strings.Contains(string(out), v) {
			t.Errorf("Top shows the value %q: %s", v, out)
		}
	}
	if len(top) != 1 || len(top[0].Hash) != statuspage.HashChars || top[0].Hash != a.Hash("api", d.Entries) {
		t.Fatalf("top = %+v, want one key hashed as Hash says", top)
	}
	if a.Hash("api", d.Entries) == b.Hash("api", d.Entries) {
		t.Error("two trackers with random keys gave the same hash")
	}
	// Keys and values cannot trade places to collide.
	if a.Hash("api", desc("ab", "c").Entries) == a.Hash("api", desc("a", "bc").Entries) {
		t.Error("k=ab,v=c and k=a,v=bc hash alike")
	}
}

// TestTrackerConcurrent: decisions from many goroutines are all counted,
// exactly, while the page reads (run with -race).
func TestTrackerConcurrent(t *testing.T) {
	t.Parallel()
	tr := statuspage.NewTracker(statuspage.TrackerOptions{Capacity: 16})
	const workers, per, keys = 8, 500, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				tr.Decided("api", desc("tenant", fmt.Sprintf("t%d", (w+i)%keys)), limit, hit, over)
				if i%100 == 0 {
					tr.Top(5)
				}
			}
		}()
	}
	wg.Wait()
	top, seen := tr.Top(-1)
	if seen != workers*per || len(top) != keys {
		t.Fatalf("seen %d in %d keys, want %d in %d", seen, len(top), workers*per, keys)
	}
	for _, k := range top {
		if k.OverLimit != workers*per/keys || k.MaxError != 0 {
			t.Errorf("%s: %d ±%d, want %d ±0", k.Hash, k.OverLimit, k.MaxError, workers*per/keys)
		}
	}
}

// TestTrackerBounded: a long descriptor and many keys keep the table at its
// capacity and the keys shown at their bound.
func TestTrackerBounded(t *testing.T) {
	t.Parallel()
	tr := statuspage.NewTracker(statuspage.TrackerOptions{Capacity: 4})
	long := &engine.Descriptor{}
	for i := range 12 {
		long.Entries = append(long.Entries, engine.Entry{Key: fmt.Sprintf("k%d", i), Value: strings.Repeat("v", 4096)})
	}
	tr.Decided("api", long, limit, hit, over)
	for i := range 1000 {
		tr.Decided("api", desc("k", fmt.Sprint(i)), limit, hit, over)
	}
	top, _ := tr.Top(-1)
	if len(top) != 4 || tr.Capacity() != 4 {
		t.Fatalf("%d keys tracked (capacity %d), want 4", len(top), tr.Capacity())
	}
	tr2 := statuspage.NewTracker(statuspage.TrackerOptions{})
	tr2.Decided("api", long, limit, hit, over)
	top, _ = tr2.Top(1)
	if len(top[0].Keys) != 8 || top[0].MoreKeys != 4 {
		t.Errorf("a 12-entry descriptor shows %d keys and %d more, want 8 and 4", len(top[0].Keys), top[0].MoreKeys)
	}
	if statuspage.NewTracker(statuspage.TrackerOptions{Capacity: 1 << 20}).Capacity() != statuspage.MaxCapacity {
		t.Error("capacity not bounded by MaxCapacity")
	}
}

// TestObserversFanOut: every observer is told, and the rules' state is
// the primary's.
func TestObserversFanOut(t *testing.T) {
	t.Parallel()
	p, o := &countObserver{state: "primary"}, &countObserver{state: "other"}
	obs := statuspage.Observers(p, nil, o)
	if got := obs.Prepare("api", nil); got != "primary" {
		t.Errorf("Prepare = %v, want the primary's state", got)
	}
	obs.Decided("api", desc("k", "v"), limit, hit, over)
	obs.UnknownDomain("x", 1)
	obs.BackendFailed()
	obs.ShadowAdmitted()
	for _, c := range []*countObserver{p, o} {
		if c.calls != 5 {
			t.Errorf("%s observer: %d calls, want 5", c.state, c.calls)
		}
	}
	if statuspage.Observers(nil, nil) != nil {
		t.Error("no observer gave a non-nil one")
	}
	if statuspage.Observers(nil, o) != engine.Observer(o) {
		t.Error("one observer was wrapped")
	}
}

type countObserver struct {
	state string
	calls int
}

func (c *countObserver) Prepare(string, *descriptors.Rule) any { c.calls++; return c.state }
func (c *countObserver) Decided(string, *engine.Descriptor, *engine.Limit, *quota.Hit, *quota.Decision) {
	c.calls++
}
func (c *countObserver) UnknownDomain(string, int) { c.calls++ }
func (c *countObserver) BackendFailed()            { c.calls++ }
func (c *countObserver) ShadowAdmitted()           { c.calls++ }
