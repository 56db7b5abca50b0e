package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/quota"
)

const config = `
domain: api
descriptors:
  - key: ip
    rate_limit: {unit: minute, requests_per_unit: 3, name: per-ip}
  - key: plan
    rate_limit: {unit: hour, requests_per_unit: 5, algorithm: fixed_window}
  - key: bucket
    rate_limit: {unit: second, requests_per_unit: 10, algorithm: token_bucket, burst: 20}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1, name: shadowed}
  - key: free
    rate_limit: {unlimited: true}
  - key: old
    rate_limit: {unit: minute, requests_per_unit: 1, name: old-limit}
  - key: new
    rate_limit: {unit: minute, requests_per_unit: 100, replaces: [{name: old-limit}]}
  - key: q1
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: q2
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 2}
`

// start is on a minute and an hour boundary.
var start = time.Unix(1_700_000_000-1_700_000_000%3600, 0)

type fixture struct {
	eng   *engine.Engine
	clock *backendtest.Clock
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, opts engine.Options) *fixture {
	t.Helper()
	clock := backendtest.NewClock(start)
	if opts.Limiter == nil {
		store, err := memstore.New(memstore.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		opts.Limiter = store
	}
	reg := prometheus.NewRegistry()
	opts.Metrics = engine.NewMetrics(reg)
	eng, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(mustParse(t, config))
	return &fixture{eng: eng, clock: clock, reg: reg}
}

func mustParse(t *testing.T, text string) *descriptors.Config {
	t.Helper()
	cfg, err := descriptors.Parse("test.yaml", []byte(text), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// d builds a descriptor from k, v pairs.
func d(kv ...string) engine.Descriptor {
	var out engine.Descriptor
	for i := 0; i+1 < len(kv); i += 2 {
		out.Entries = append(out.Entries, engine.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func (f *fixture) decide(t *testing.T, ds ...engine.Descriptor) engine.Outcome {
	t.Helper()
	var out engine.Outcome
	if err := f.eng.Decide(context.Background(), &engine.Request{Domain: "api", Descriptors: ds}, &out); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return out
}

func TestWindowTripsAndReportsWholeSeconds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	f.clock.Advance(200 * time.Millisecond) // sub-second reset times below
	for i := 0; i < 3; i++ {
		out := f.decide(t, d("ip", "a"))
		st := out.Statuses[0]
		if out.Code != engine.OK || st.Code != engine.OK || st.Remaining != uint64(2-i) {
			t.Fatalf("hit %d: %v %+v, want OK with %d left", i+1, out.Code, st, 2-i)
		}
		// 59.8 s until the window ends, reported as 60.
		if st.ResetAfter != time.Minute {
			t.Errorf("hit %d: ResetAfter %v, want 1m0s (59.8 s rounded up)", i+1, st.ResetAfter)
		}
		if st.Limit.Name != "per-ip" || st.Limit.ID != "per-ip" || st.Limit.Quota.Requests != 3 {
			t.Errorf("hit %d: limit %+v", i+1, st.Limit)
		}
	}
	out := f.decide(t, d("ip", "a"))
	if out.Code != engine.OverLimit || out.Statuses[0].Code != engine.OverLimit || out.Statuses[0].Remaining != 0 {
		t.Fatalf("4th hit: %+v, want over", out)
	}
	if got := out.Statuses[0].ResetAfter; got%time.Second != 0 || got < time.Second {
		t.Errorf("over-limit ResetAfter %v, want whole seconds, at least 1", got)
	}
}

func TestOverLimitResetIsNeverZero(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	f.clock.Advance(59*time.Second + 900*time.Millisecond)
	for i := 0; i < 3; i++ {
		f.decide(t, d("ip", "b"))
	}
	// A sliding window 0.1 s before its end still holds the hits; whatever
	// the wait, it is reported as at least one whole second.
	out := f.decide(t, d("ip", "b"))
	if st := out.Statuses[0]; st.Code != engine.OverLimit || st.ResetAfter < time.Second || st.ResetAfter%time.Second != 0 {
		t.Fatalf("status %+v, want over with a whole, non-zero reset", st)
	}
}

func TestUnmatchedUnlimitedAndUnknownDomain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	out := f.decide(t, d("nothing", "x"), d("free", "y"), d("plan", "p"))
	if !out.KnownDomain || out.Code != engine.OK {
		t.Fatalf("outcome %+v", out)
	}
	if st := out.Statuses[0]; st.Limit != nil || st.Unlimited || st.Rule != nil {
		t.Errorf("unmatched: %+v, want no limit", st)
	}
	if st := out.Statuses[1]; st.Limit != nil || !st.Unlimited || st.Rule == nil {
		t.Errorf("unlimited: %+v, want Unlimited with its rule", st)
	}
	if st := out.Statuses[2]; st.Limit == nil || st.Limit.Name != "" || st.Limit.ID != "plan" {
		t.Errorf("plan: %+v, want the unnamed rule, ID from its path", st.Limit)
	}
	var o engine.Outcome
	if err := f.eng.Decide(context.Background(), &engine.Request{Domain: "other", Descriptors: []engine.Descriptor{d("ip", "a")}}, &o); err != nil {
		t.Fatal(err)
	}
	if o.KnownDomain || o.Code != engine.OK || o.Statuses[0].Limit != nil {
		t.Errorf("unknown domain: %+v", o)
	}
}

func TestAllOrNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	for i := 0; i < 3; i++ {
		f.decide(t, d("ip", "c"))
	}
	for i := 0; i < 4; i++ {
		out := f.decide(t, d("plan", "p"), d("bucket", "b"), d("ip", "c"))
		if out.Code != engine.OverLimit {
			t.Fatalf("want the request rejected by ip")
		}
		if st := out.Statuses[0]; st.Code != engine.OK || st.Remaining != 5 {
			t.Errorf("plan in a rejected request: %+v, want OK and all 5 left", st)
		}
		if st := out.Statuses[1]; st.Remaining != 20 || st.ResetAfter != 0 {
			t.Errorf("bucket in a rejected request: %+v, want full (20 left, reset 0)", st)
		}
	}
	if st := f.decide(t, d("plan", "p")).Statuses[0]; st.Remaining != 4 {
		t.Errorf("plan after one admitted hit: %d left, want 4", st.Remaining)
	}
}

func TestHits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	ask := func(req engine.Request) engine.Outcome {
		t.Helper()
		req.Domain = "api"
		var out engine.Outcome
		if err := f.eng.Decide(context.Background(), &req, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if st := ask(engine.Request{Descriptors: []engine.Descriptor{d("plan", "h")}, Hits: 3}).Statuses[0]; st.Remaining != 2 || st.Hits != 3 {
		t.Fatalf("request hits 3: %+v", st)
	}
	check := d("plan", "h")
	check.HasHits = true // and Hits 0: check without counting
	if st := ask(engine.Request{Descriptors: []engine.Descriptor{check}, Hits: 3}).Statuses[0]; st.Remaining != 2 {
		t.Fatalf("check-only: %+v, want 2 left", st)
	}
	two := d("plan", "h")
	two.Hits, two.HasHits = 2, true
	if out := ask(engine.Request{Descriptors: []engine.Descriptor{two}, Hits: 3}); out.Code != engine.OK || out.Statuses[0].Remaining != 0 {
		t.Fatalf("descriptor hits 2 over the request's 3: %+v", out)
	}
	if out := ask(engine.Request{Descriptors: []engine.Descriptor{d("plan", "h")}}); out.Code != engine.OverLimit {
		t.Fatalf("request hits 0 counts as 1: %+v", out)
	}
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	over := func(desc engine.Descriptor, n uint64, unit time.Duration) engine.Descriptor {
		desc.Override, desc.HasOverride = engine.Override{Requests: n, Unit: unit}, true
		return desc
	}
	// On a descriptor that matches nothing.
	st := f.decide(t, over(d("nothing", "x"), 1, time.Hour)).Statuses[0]
	if st.Limit == nil || !st.Limit.Override || st.Limit.Name != "" || st.Limit.ID != engine.OverrideName || st.Limit.Quota.Requests != 1 {
		t.Fatalf("unmatched override: %+v", st.Limit)
	}
	if out := f.decide(t, over(d("nothing", "x"), 1, time.Hour)); out.Code != engine.OverLimit {
		t.Fatalf("second hit under 1/hour: %v", out.Code)
	}
	// On a named rule: no name (the reference sends none), the rule's algorithm.
	st = f.decide(t, over(d("bucket", "x"), 50, time.Second)).Statuses[0]
	if st.Limit.Name != "" || st.Limit.Quota.Algorithm != quota.TokenBucket || st.Limit.Quota.Burst != 50 {
		t.Errorf("override of a token bucket: %+v, want unnamed, token bucket, burst raised to 50", st.Limit)
	}
	// On an unlimited rule: limited.
	if st = f.decide(t, over(d("free", "x"), 7, time.Second)).Statuses[0]; st.Limit == nil || st.Unlimited || st.Limit.Quota.Requests != 7 {
		t.Errorf("override of an unlimited rule: %+v", st)
	}
	// On a shadow-mode rule: enforced.
	f.decide(t, over(d("shadow", "s"), 1, time.Minute))
	if out := f.decide(t, over(d("shadow", "s"), 1, time.Minute)); out.Code != engine.OverLimit || out.Statuses[0].Code != engine.OverLimit {
		t.Errorf("override of a shadow rule: %+v, want it enforced", out)
	}
}

func TestShadowRuleAndShadowMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	for i := 0; i < 3; i++ {
		out := f.decide(t, d("shadow", "x"))
		if out.Code != engine.OK || out.Statuses[0].Code != engine.OK {
			t.Fatalf("shadow rule, hit %d: %+v, want OK", i+1, out)
		}
	}
	g := newFixture(t, engine.Options{ShadowMode: true})
	for i := 0; i < 3; i++ {
		g.decide(t, d("ip", "s"))
	}
	out := g.decide(t, d("ip", "s"), d("plan", "s"))
	if out.Code != engine.OK || out.Statuses[0].Code != engine.OverLimit {
		t.Fatalf("--shadow-mode: %+v, want OK overall and OVER in the status", out)
	}
	// The request was admitted, so the limit with room took its hit.
	if st := g.decide(t, d("plan", "s")).Statuses[0]; st.Remaining != 3 {
		t.Errorf("plan after two admitted hits: %d left, want 3", st.Remaining)
	}
}

func TestQuotaMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	// q1 holds 1, q2 holds 2.
	if out := f.decide(t, d("q1", "u"), d("q2", "u")); out.Code != engine.OK {
		t.Fatalf("first: %+v", out)
	}
	out := f.decide(t, d("q1", "u"), d("q2", "u"))
	if out.Code != engine.OK || out.Statuses[0].Code != engine.OverLimit || out.Statuses[1].Code != engine.OK {
		t.Fatalf("q1 over, q2 has room: %+v, want OK overall, q1 OVER, q2 OK", out)
	}
	out = f.decide(t, d("q1", "u"), d("q2", "u"))
	if out.Code != engine.OverLimit || out.Statuses[0].Code != engine.OverLimit || out.Statuses[1].Code != engine.OverLimit {
		t.Fatalf("both over: %+v, want OVER", out)
	}
	// Another descriptor over its limit rejects whatever the quotas say.
	for i := 0; i < 3; i++ {
		f.decide(t, d("ip", "q"))
	}
	if out = f.decide(t, d("q2", "v"), d("ip", "q")); out.Code != engine.OverLimit {
		t.Fatalf("ip over beside a quota with room: %+v", out)
	}
	if st := f.decide(t, d("q2", "v")).Statuses[0]; st.Remaining != 1 {
		t.Errorf("q2 took nothing in the rejected request: %d left, want 1", st.Remaining)
	}
	// --quota-mode makes every rule a quota rule.
	g := newFixture(t, engine.Options{QuotaMode: true})
	for i := 0; i < 3; i++ {
		g.decide(t, d("ip", "g"))
	}
	if out = g.decide(t, d("ip", "g"), d("plan", "g")); out.Code != engine.OK || out.Statuses[0].Code != engine.OverLimit {
		t.Fatalf("--quota-mode: %+v, want OK with ip OVER", out)
	}
}

func TestReplacesAndZero(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	for i := 0; i < 3; i++ {
		out := f.decide(t, d("old", "x"), d("new", "y"))
		if out.Code != engine.OK || out.Statuses[0].Limit != nil || out.Statuses[0].Rule != nil {
			t.Fatalf("hit %d: %+v, want old-limit replaced", i+1, out)
		}
	}
	// Alone, old-limit applies.
	f.decide(t, d("old", "z"))
	if out := f.decide(t, d("old", "z")); out.Code != engine.OverLimit {
		t.Fatalf("old-limit alone: %v", out.Code)
	}
}

// failing is a backend that cannot decide.
type failing struct{ err error }

func (f failing) Take(context.Context, []quota.Hit, []quota.Decision) error { return f.err }

func TestBackendFailure(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	cause := errors.New("redis: dial tcp 127.0.0.1:1: connection refused")
	f := newFixture(t, engine.Options{Limiter: failing{cause}, Log: log})
	var out engine.Outcome
	for i := 0; i < 50; i++ {
		err := f.eng.Decide(context.Background(), &engine.Request{Domain: "api", Descriptors: []engine.Descriptor{d("ip", "a")}}, &out)
		if !errors.Is(err, engine.ErrUnavailable) || strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("err = %v, want ErrUnavailable without the cause", err)
		}
	}
	mu.Lock()
	lines := strings.Count(logs.String(), "\n")
	text := logs.String()
	mu.Unlock()
	if lines != 1 || !strings.Contains(text, "connection refused") {
		t.Errorf("log has %d lines, want the cause once (rate-limited): %s", lines, text)
	}
	// A request with nothing to count never asks the backend.
	if err := f.eng.Decide(context.Background(), &engine.Request{Domain: "api", Descriptors: []engine.Descriptor{d("nothing", "x")}}, &out); err != nil {
		t.Errorf("no limit: %v", err)
	}
	open := newFixture(t, engine.Options{Limiter: failing{cause}, FailOpen: true})
	if err := open.eng.Decide(context.Background(), &engine.Request{Domain: "api", Descriptors: []engine.Descriptor{d("ip", "a")}}, &out); err != nil || out.Code != engine.OK || out.Statuses[0].Limit != nil {
		t.Errorf("fail-open: %v %+v, want OK", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.eng.Decide(ctx, &engine.Request{Domain: "api", Descriptors: []engine.Descriptor{d("ip", "a")}}, &out); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v, want context.Canceled", err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestReloadDropsSeriesOfRemovedRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	f.decide(t, d("ip", "a"), d("plan", "p"))
	series := func() int {
		n, err := testutil.GatherAndCount(f.reg, "floodgate_ratelimit_total_hits")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := series()
	f.eng.SetConfig(mustParse(t, "domain: api\ndescriptors:\n  - key: ip\n    rate_limit: {unit: minute, requests_per_unit: 3, name: per-ip}\n"))
	// Rule ip and the domain's envoy_override stay; every other rule's series go.
	if got := series(); got != 2 || before <= got {
		t.Errorf("total_hits series: %d before, %d after; want 2 after", before, got)
	}
	if got := counterValue(t, f.reg, "floodgate_ratelimit_total_hits", "ip"); got != 1 {
		t.Errorf("rule ip kept its count: %v, want 1", got)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "rule" && lp.GetValue() == rule {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{rule=%q} not found", name, rule)
	return 0
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	var b engine.HeaderBuilder
	out := f.decide(t, d("ip", "h"), d("nothing", "x"), d("bucket", "h"))
	h := b.Build(&out)
	if want := `"per-ip";q=3;w=60, "bucket";q=20;w=2`; h.Policy != want {
		t.Errorf("policy %q, want %q", h.Policy, want)
	}
	if want := `"per-ip";r=2;t=60, "bucket";r=19;t=1`; h.RateLimit != want {
		t.Errorf("RateLimit %q, want %q", h.RateLimit, want)
	}
	if h.RetryAfter != "" {
		t.Errorf("Retry-After %q on an OK outcome", h.RetryAfter)
	}
	f.decide(t, d("ip", "h"))
	f.decide(t, d("ip", "h"))
	out = f.decide(t, d("ip", "h"))
	if h = b.Build(&out); h.RetryAfter == "" || h.RetryAfter == "0" {
		t.Errorf("Retry-After %q on a rejection", h.RetryAfter)
	}
	out = f.decide(t, d("nothing", "x"))
	if h = b.Build(&out); h != (engine.Headers{}) {
		t.Errorf("headers %+v for no limit", h)
	}
}

// TestConcurrentExactCount: 64 goroutines on one key admit exactly the
// limit, per algorithm.
func TestConcurrentExactCount(t *testing.T) {
	t.Parallel()
	for _, algo := range []string{"sliding_window", "fixed_window", "token_bucket"} {
		t.Run(algo, func(t *testing.T) {
			t.Parallel()
			store, err := memstore.New(memstore.Options{Now: backendtest.NewClock(start).Now})
			if err != nil {
				t.Fatal(err)
			}
			eng, err := engine.New(engine.Options{Limiter: store})
			if err != nil {
				t.Fatal(err)
			}
			eng.SetConfig(mustParse(t, fmt.Sprintf("domain: race\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 500, algorithm: %s}\n", algo)))
			var ok, over atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < 64; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := &engine.Request{Domain: "race", Descriptors: []engine.Descriptor{d("k", "v")}}
					var out engine.Outcome
					for i := 0; i < 20; i++ {
						if err := eng.Decide(context.Background(), req, &out); err != nil {
							t.Error(err)
							return
						}
						if out.Code == engine.OK {
							ok.Add(1)
						} else {
							over.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if ok.Load() != 500 || over.Load() != 64*20-500 {
				t.Fatalf("admitted %d, rejected %d; want 500 and %d", ok.Load(), over.Load(), 64*20-500)
			}
		})
	}
}

// TestDoorLimits: a door's own limit is decided in the same batch as the
// config's, in its own namespace, whatever the request's domain.
func TestDoorLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	// Two failures a minute: counted against 2, read (without counting)
	// against 1, since a check fits while the count has not passed its
	// limit and the door must refuse once the count reaches 2.
	count := f.eng.NewLimit("failed-auth", "failed-auth", quota.Limit{Requests: 2, Unit: time.Minute, Algorithm: quota.FixedWindow})
	read := f.eng.NewLimit("failed-auth", "failed-auth", quota.Limit{Requests: 1, Unit: time.Minute, Algorithm: quota.FixedWindow})
	own := func(ip string, hits uint64) engine.Descriptor {
		desc := d("client_ip", ip)
		desc.Limit, desc.Hits, desc.HasHits = count, hits, true
		if hits == 0 {
			desc.Limit = read
		}
		return desc
	}
	// Counted on a request with no known domain...
	var out engine.Outcome
	for i := 0; i < 2; i++ {
		if err := f.eng.Decide(context.Background(), &engine.Request{Descriptors: []engine.Descriptor{own("192.0.2.1", 1)}}, &out); err != nil {
			t.Fatal(err)
		}
	}
	// ...and read, without counting, beside a policy's limits: over, so
	// the whole request is rejected and plan keeps its hits.
	out = f.decide(t, d("plan", "door"), own("192.0.2.1", 0))
	if out.Code != engine.OverLimit || out.Statuses[1].Code != engine.OverLimit || out.Statuses[1].Limit.Name != "failed-auth" {
		t.Fatalf("outcome %+v, want rejected by failed-auth", out)
	}
	if st := out.Statuses[0]; st.Remaining != 5 {
		t.Errorf("plan in the rejected request: %d left, want 5", st.Remaining)
	}
	// Another address has its own counter; a config rule on the same
	// entries is a different counter (the namespace differs).
	if out = f.decide(t, d("plan", "door"), own("192.0.2.2", 0)); out.Code != engine.OK {
		t.Errorf("another address: %+v", out)
	}
}

// TestDoorOnlyBatchIsNoUnknownDomain: a batch of a door's own limits
// alone (Domain "") is decided without counting an unknown domain; a
// client's unknown domain still counts, own limits beside it or not.
func TestDoorOnlyBatchIsNoUnknownDomain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	lim := f.eng.NewLimit("failed-auth", "failed-auth", quota.Limit{Requests: 2, Unit: time.Minute, Algorithm: quota.FixedWindow})
	own := d("client_ip", "192.0.2.1")
	own.Limit = lim
	unknown := func() float64 {
		t.Helper()
		mfs, err := f.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "floodgate_ratelimit_unknown_domain_total" {
				return mf.Metric[0].GetCounter().GetValue()
			}
		}
		t.Fatal("floodgate_ratelimit_unknown_domain_total is not registered")
		return 0
	}
	var out engine.Outcome
	decide := func(req engine.Request) {
		t.Helper()
		if err := f.eng.Decide(context.Background(), &req, &out); err != nil {
			t.Fatal(err)
		}
	}
	decide(engine.Request{Descriptors: []engine.Descriptor{own}})
	if out.Statuses[0].Remaining != 1 {
		t.Fatalf("the door's own limit was not decided: %+v", out)
	}
	if n := unknown(); n != 0 {
		t.Errorf("a door-only batch counted %v unknown domains, want 0", n)
	}
	decide(engine.Request{Domain: "other", Descriptors: []engine.Descriptor{own}})
	decide(engine.Request{Descriptors: []engine.Descriptor{own, d("ip", "a")}})
	decide(engine.Request{Domain: "other", Descriptors: []engine.Descriptor{d("ip", "a")}})
	if n := unknown(); n != 3 {
		t.Errorf("%v unknown domains, want 3 (a named unknown domain, or a descriptor without its own limit)", n)
	}
}
