package ratelimitsvc_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
)

const testConfig = `
domain: api
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: api_key
    value: gold
    rate_limit: {unit: second, requests_per_unit: 10, algorithm: token_bucket, burst: 20, name: gold}
  - key: plan
    rate_limit: {unit: hour, requests_per_unit: 5, algorithm: fixed_window, name: plan}
  - key: path
    value: /search*
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1, name: search}
  - key: blocked
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: internal
    rate_limit: {unlimited: true}
  - key: tenant
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: 2, name: tenant-user}
  - key: old
    rate_limit: {unit: minute, requests_per_unit: 1, name: old-limit}
  - key: new
    rate_limit: {unit: minute, requests_per_unit: 100, name: new-limit, replaces: [{name: old-limit}]}
`

// start is a fixed instant on a minute boundary (and an hour boundary).
var start = time.Unix(1_700_000_000-1_700_000_000%3600, 0)

type fixture struct {
	svc   *ratelimitsvc.Service
	clock *backendtest.Clock
}

func newFixture(t testing.TB, opts ratelimitsvc.Options) *fixture {
	t.Helper()
	return newFixtureWith(t, testConfig, opts, engine.Options{})
}

func newFixtureWith(t testing.TB, config string, opts ratelimitsvc.Options, eopts engine.Options) *fixture {
	t.Helper()
	cfg, err := descriptors.Parse("test.yaml", []byte(config), descriptors.Options{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	clock := backendtest.NewClock(start)
	if eopts.Limiter == nil {
		store, err := memstore.New(memstore.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		eopts.Limiter = store
	}
	return &fixture{svc: newService(t, cfg, opts, eopts), clock: clock}
}

func newService(t testing.TB, cfg *descriptors.Config, opts ratelimitsvc.Options, eopts engine.Options) *ratelimitsvc.Service {
	t.Helper()
	eng, err := engine.New(eopts)
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(cfg)
	svc, err := ratelimitsvc.New(eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// desc builds a descriptor from k=v pairs.
func desc(kv ...string) *rlv3.RateLimitDescriptor {
	d := &rlv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &rlv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func (f *fixture) ask(t testing.TB, domain string, ds ...*rlv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := f.svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

func header(resp *rlsv3.RateLimitResponse, key string) (string, bool) {
	for _, h := range resp.ResponseHeadersToAdd {
		if h.Key == key {
			return h.Value, true
		}
	}
	return "", false
}

func TestLimitTripsWithRemainingAndHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	ip := desc("remote_address", "10.0.0.1")
	for i := 0; i < 3; i++ {
		resp := f.ask(t, "api", ip)
		st := resp.Statuses[0]
		if resp.OverallCode != rlsv3.RateLimitResponse_OK || st.Code != rlsv3.RateLimitResponse_OK {
			t.Fatalf("hit %d: got %v, want OK", i+1, resp.OverallCode)
		}
		if got, want := st.LimitRemaining, uint32(2-i); got != want {
			t.Errorf("hit %d: remaining %d, want %d", i+1, got, want)
		}
		if got := st.CurrentLimit.GetRequestsPerUnit(); got != 3 || st.CurrentLimit.Unit != rlsv3.RateLimitResponse_RateLimit_MINUTE {
			t.Errorf("current_limit %v, want 3/MINUTE", st.CurrentLimit)
		}
		if got, want := st.DurationUntilReset.AsDuration(), time.Minute; got != want {
			t.Errorf("duration_until_reset %v, want %v", got, want)
		}
		if _, ok := header(resp, "Retry-After"); ok {
			t.Errorf("Retry-After on an OK answer")
		}
	}
	f.clock.Advance(15 * time.Second)
	resp := f.ask(t, "api", ip)
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("4th hit: %v, want OVER_LIMIT", resp.OverallCode)
	}
	if got := resp.Statuses[0].LimitRemaining; got != 0 {
		t.Errorf("remaining %d, want 0", got)
	}
	// Sliding window with 3 hits in the current window: they only stop
	// counting once the next window has passed far enough that 3*weight+1 <= 3,
	// i.e. 1/3 into the next window: 45s + 20s from now.
	if got, want := resp.Statuses[0].DurationUntilReset.AsDuration(), 65*time.Second; got != want {
		t.Errorf("over-limit duration_until_reset %v, want %v", got, want)
	}
	wantHeaders := map[string]string{
		"RateLimit-Policy": `"remote_address";q=3;w=60`,
		"RateLimit":        `"remote_address";r=0;t=65`,
		"Retry-After":      "65",
	}
	for k, want := range wantHeaders {
		if got, _ := header(resp, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestStatusesInOrderAndUnmatched(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	resp := f.ask(t, "api",
		desc("nothing", "here"),
		desc("plan", "free"),
		desc("internal", "x"),
		desc("api_key", "silver"), // api_key has only a value rule: no limit
		desc("tenant", "acme", "user", "bob"),
		desc("tenant", "acme"), // the limit is only at depth 2
	)
	if len(resp.Statuses) != 6 {
		t.Fatalf("%d statuses, want 6", len(resp.Statuses))
	}
	wantLimit := []uint32{0, 5, 0, 0, 2, 0}
	for i, st := range resp.Statuses {
		if st.Code != rlsv3.RateLimitResponse_OK {
			t.Errorf("status %d: %v, want OK", i, st.Code)
		}
		if got := st.GetCurrentLimit().GetRequestsPerUnit(); got != wantLimit[i] {
			t.Errorf("status %d: limit %d, want %d", i, got, wantLimit[i])
		}
		if wantLimit[i] == 0 && st.CurrentLimit != nil {
			t.Errorf("status %d: current_limit %v, want none", i, st.CurrentLimit)
		}
	}
	if got := resp.Statuses[1].CurrentLimit.Name; got != "plan" {
		t.Errorf("name %q, want plan", got)
	}
}

func TestUnknownDomainIsOK(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	d := desc("blocked", "x")
	d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 0, Unit: typev3.RateLimitUnit_SECOND}
	resp := f.ask(t, "nope", d)
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit != nil {
		t.Fatalf("unknown domain: %v", resp)
	}
}

func TestAllOrNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	plan := desc("plan", "pro")
	// Exhaust the tenant/user limit (2/minute).
	tu := desc("tenant", "t", "user", "u")
	f.ask(t, "api", tu)
	f.ask(t, "api", tu)
	// Now a request over tenant/user must not take from plan.
	for i := 0; i < 3; i++ {
		resp := f.ask(t, "api", plan, tu)
		if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("want OVER_LIMIT")
		}
		if resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK {
			t.Errorf("plan status %v, want OK (it had room)", resp.Statuses[0].Code)
		}
		if got := resp.Statuses[0].LimitRemaining; got != 5 {
			t.Errorf("plan remaining %d, want 5 (nothing consumed)", got)
		}
	}
	// A token bucket in a rejected request keeps its tokens: still full.
	gold := desc("api_key", "gold")
	resp := f.ask(t, "api", gold, tu)
	if st := resp.Statuses[0]; st.LimitRemaining != 20 || st.DurationUntilReset.AsDuration() != 0 {
		t.Errorf("token bucket in a rejected request: remaining %d, reset %v; want 20 and 0 (full)",
			st.LimitRemaining, st.DurationUntilReset.AsDuration())
	}
	resp = f.ask(t, "api", plan)
	if got := resp.Statuses[0].LimitRemaining; got != 4 {
		t.Errorf("plan remaining after one admitted hit %d, want 4", got)
	}
}

func TestHitsAddend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	ctx := context.Background()
	ask := func(req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
		t.Helper()
		req.Domain = "api"
		resp, err := f.svc.ShouldRateLimit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Request-level hits_addend 3 takes 3 of plan's 5.
	resp := ask(&rlsv3.RateLimitRequest{Descriptors: []*rlv3.RateLimitDescriptor{desc("plan", "a")}, HitsAddend: 3})
	if got := resp.Statuses[0].LimitRemaining; got != 2 {
		t.Fatalf("remaining %d, want 2", got)
	}
	// A descriptor-level 0 checks without counting, overriding the request's 3.
	d := desc("plan", "a")
	d.HitsAddend = wrapperspb.UInt64(0)
	resp = ask(&rlsv3.RateLimitRequest{Descriptors: []*rlv3.RateLimitDescriptor{d}, HitsAddend: 3})
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 2 {
		t.Fatalf("check-only: %v remaining %d, want OK 2", resp.OverallCode, resp.Statuses[0].LimitRemaining)
	}
	// A descriptor-level 2 overrides the request's 3: fits exactly.
	d.HitsAddend = wrapperspb.UInt64(2)
	resp = ask(&rlsv3.RateLimitRequest{Descriptors: []*rlv3.RateLimitDescriptor{d}, HitsAddend: 3})
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("addend 2: %v remaining %d, want OK 0", resp.OverallCode, resp.Statuses[0].LimitRemaining)
	}
	// hits_addend 0 on the request counts as 1.
	resp = ask(&rlsv3.RateLimitRequest{Descriptors: []*rlv3.RateLimitDescriptor{desc("plan", "a")}})
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("6th hit: %v, want OVER_LIMIT", resp.OverallCode)
	}
}

func TestEnvoyOverride(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	// Unmatched descriptor in a known domain: the override applies.
	d := desc("unmatched", "x")
	d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_HOUR}
	resp := f.ask(t, "api", d)
	st := resp.Statuses[0]
	if st.Code != rlsv3.RateLimitResponse_OK || st.CurrentLimit.GetRequestsPerUnit() != 1 || st.CurrentLimit.Unit != rlsv3.RateLimitResponse_RateLimit_HOUR {
		t.Fatalf("override: %v", st)
	}
	if resp = f.ask(t, "api", d); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("second hit under override 1/hour: %v", resp.OverallCode)
	}
	// Matched descriptor: the override replaces the configured 3/minute,
	// and even an unlimited rule.
	d = desc("remote_address", "1.2.3.4")
	d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 50, Unit: typev3.RateLimitUnit_SECOND}
	if got := f.ask(t, "api", d).Statuses[0].CurrentLimit.GetRequestsPerUnit(); got != 50 {
		t.Errorf("matched override: limit %d, want 50", got)
	}
	d = desc("internal", "y")
	d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 7, Unit: typev3.RateLimitUnit_SECOND}
	if got := f.ask(t, "api", d).Statuses[0].CurrentLimit.GetRequestsPerUnit(); got != 7 {
		t.Errorf("override of unlimited: limit %d, want 7", got)
	}
}

func TestShadowModeNeverRejects(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	p := desc("path", "/search?q=1")
	for i := 0; i < 4; i++ {
		resp := f.ask(t, "api", p)
		if resp.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("hit %d: %v, want OK (shadow mode)", i+1, resp.OverallCode)
		}
		if i > 0 && resp.Statuses[0].LimitRemaining != 0 {
			t.Errorf("hit %d: remaining %d, want 0", i+1, resp.Statuses[0].LimitRemaining)
		}
		if _, ok := header(resp, "Retry-After"); ok {
			t.Errorf("Retry-After on a shadow-mode answer")
		}
	}
}

func TestZeroLimitBlocksAndReplaces(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	if got := f.ask(t, "api", desc("blocked", "a")).OverallCode; got != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("requests_per_unit 0: %v, want OVER_LIMIT", got)
	}
	// old-limit (1/minute) is replaced by new-limit when both match.
	for i := 0; i < 3; i++ {
		resp := f.ask(t, "api", desc("old", "x"), desc("new", "y"))
		if resp.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("hit %d: %v, want OK (old-limit replaced)", i+1, resp.OverallCode)
		}
		if resp.Statuses[0].CurrentLimit != nil {
			t.Errorf("replaced limit still reported: %v", resp.Statuses[0].CurrentLimit)
		}
	}
}

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{MaxDescriptors: 2, MaxEntries: 2, MaxValueBytes: 8})
	long := strings.Repeat("x", 9)
	tests := []struct {
		name string
		req  *rlsv3.RateLimitRequest
		want string
	}{
		{"empty domain", &rlsv3.RateLimitRequest{Descriptors: []*rlv3.RateLimitDescriptor{desc("a", "b")}}, "domain"},
		{"no descriptors", &rlsv3.RateLimitRequest{Domain: "api"}, "descriptors"},
		{"no entries", &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{{}}}, "descriptors[0].entries"},
		{"empty key", &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("", "b")}}, "entries[0].key"},
		{"too many descriptors", &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("a", "1"), desc("a", "2"), desc("a", "3")}}, "at most 2"},
		{"too many entries", &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("a", "1", "b", "2", "c", "3")}}, "at most 2"},
		{"long value", &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("a", long)}}, "value: 9 bytes"},
		{"long key", &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc(long, "v")}}, "key: 9 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.ShouldRateLimit(context.Background(), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want INVALID_ARGUMENT mentioning %q", err, tt.want)
			}
		})
	}
}

// TestUnavailableBeforeConfig: before the engine's first config every
// request is UNAVAILABLE (a malformed one is still INVALID_ARGUMENT).
func TestUnavailableBeforeConfig(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Limiter: store})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ratelimitsvc.New(eng, ratelimitsvc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("a", "b")}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("before the config: %v, want UNAVAILABLE", err)
	}
	_, err = svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Descriptors: []*rlv3.RateLimitDescriptor{desc("a", "b")}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("malformed before the config: %v, want INVALID_ARGUMENT", err)
	}
}

// TestConcurrentAnswersDoNotMix: the door's pooled scratch is shared by
// concurrent calls; each answer must still be its own request's (64
// goroutines, each with its own plan value and descriptor count). The
// engine's own test counts what concurrent calls admit.
func TestConcurrentAnswersDoNotMix(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds := []*rlv3.RateLimitDescriptor{desc("plan", fmt.Sprint("p", g))}
			for range g % 3 {
				ds = append(ds, desc("nothing", "x"))
			}
			req := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: ds}
			for i := 0; i < 5; i++ {
				resp, err := f.svc.ShouldRateLimit(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				if len(resp.Statuses) != len(ds) || resp.Statuses[0].LimitRemaining != uint32(4-i) || resp.OverallCode != rlsv3.RateLimitResponse_OK {
					t.Errorf("goroutine %d call %d: %v, want %d statuses and %d left", g, i, resp, len(ds), 4-i)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkShouldRateLimit measures match plus decide on the memory
// backend. keys=1 is one hot counter that every goroutine contends for;
// keys=1024 spreads the goroutines over many clients, as a sidecar sees them.
func BenchmarkShouldRateLimit(b *testing.B) {
	cfg, err := descriptors.Parse("bench.yaml", []byte(`
domain: bench
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: api_key
    rate_limit: {unit: second, requests_per_unit: 1000000000, algorithm: token_bucket}
  - key: tenant
    descriptors:
      - key: user
        rate_limit: {unit: hour, requests_per_unit: 1000000000, algorithm: fixed_window}
`), descriptors.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 3} {
		for _, keys := range []int{1, 1024} {
			b.Run(fmt.Sprintf("descriptors=%d/keys=%d", n, keys), func(b *testing.B) {
				store, err := memstore.New(memstore.Options{})
				if err != nil {
					b.Fatal(err)
				}
				svc := newService(b, cfg, ratelimitsvc.Options{}, engine.Options{Limiter: store})
				reqs := make([]*rlsv3.RateLimitRequest, keys)
				for k := range reqs {
					id := fmt.Sprint(k)
					all := []*rlv3.RateLimitDescriptor{
						desc("remote_address", "10.1.2."+id),
						desc("api_key", "k-"+id),
						desc("tenant", "acme", "user", "u"+id),
					}
					reqs[k] = &rlsv3.RateLimitRequest{Domain: "bench", Descriptors: all[:n]}
				}
				var next atomic.Int64
				var failed atomic.Pointer[error]
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					// Each goroutine walks the keys from its own offset.
					k := int(next.Add(389))
					for pb.Next() {
						k++
						if _, err := svc.ShouldRateLimit(ctx, reqs[k%keys]); err != nil {
							// b.Fatal must not run outside the benchmark's goroutine.
							failure := err // only a failing call pays for the escape
							failed.CompareAndSwap(nil, &failure)
							return
						}
					}
				})
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
			})
		}
	}
}

// TestReferenceDetails covers the answers the contract pins to
// envoyproxy/ratelimit's ("Details as the reference answers them").
func TestReferenceDetails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ratelimitsvc.Options{})
	// An unlimited descriptor: OK, no current_limit, remaining 4294967295.
	st := f.ask(t, "api", desc("internal", "x")).Statuses[0]
	if st.Code != rlsv3.RateLimitResponse_OK || st.CurrentLimit != nil || st.LimitRemaining != math.MaxUint32 || st.DurationUntilReset != nil {
		t.Errorf("unlimited: %v, want OK, remaining 4294967295, no limit", st)
	}
	// An override keeps no name, and is enforced on a shadow-mode rule.
	d := desc("path", "/search/x")
	d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_MINUTE}
	resp := f.ask(t, "api", d)
	if cl := resp.Statuses[0].CurrentLimit; cl.GetName() != "" || cl.GetRequestsPerUnit() != 1 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE {
		t.Errorf("override current_limit %v, want 1/MINUTE without a name", cl)
	}
	if resp = f.ask(t, "api", d); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("override on a shadow rule: %v, want OVER_LIMIT", resp.OverallCode)
	}
	// duration_until_reset in whole seconds: 0.75 s into a per-second
	// window is 1 s, and over the limit never 0.
	f.clock.Advance(750 * time.Millisecond)
	gold := desc("api_key", "gold") // token bucket, 10/s, burst 20
	st = f.ask(t, "api", gold).Statuses[0]
	if got := st.DurationUntilReset.AsDuration(); got != time.Second {
		t.Errorf("token bucket short of one token: duration_until_reset %v, want 1s (0.1 s rounded up)", got)
	}
	blocked := f.ask(t, "api", desc("blocked", "x")).Statuses[0]
	if got := blocked.DurationUntilReset.AsDuration(); blocked.Code != rlsv3.RateLimitResponse_OVER_LIMIT || got < time.Second || got%time.Second != 0 {
		t.Errorf("over-limit duration_until_reset %v, want whole seconds, at least 1", got)
	}
}

const quotaConfig = `
domain: q
descriptors:
  - key: small
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
    metadata: {tier: small, shared: from-small}
  - key: large
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 3}
    metadata: {tier: large, shared: from-large, budget: 3}
`

func TestQuotaModeAndDynamicMetadata(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, quotaConfig, ratelimitsvc.Options{DynamicMetadata: true}, engine.Options{})
	ask := func() *rlsv3.RateLimitResponse {
		t.Helper()
		resp, err := f.svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
			Domain: "q", HitsAddend: 1,
			Descriptors: []*rlv3.RateLimitDescriptor{desc("small", "u"), desc("large", "u")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := ask()
	md := resp.GetDynamicMetadata().AsMap()
	if md["domain"] != "q" || md["hitsAddend"] != float64(1) {
		t.Errorf("metadata %v", md)
	}
	descs, _ := md["descriptors"].([]any)
	if len(descs) != 2 || fmt.Sprint(descs[0].(map[string]any)["entries"]) != "[small=u]" {
		t.Errorf("metadata descriptors %v", md["descriptors"])
	}
	if got := fmt.Sprint(md["metadata"]); got != "map[budget:3 shared:from-small tier:small]" {
		t.Errorf("merged metadata %s, want the first rule to win", got)
	}
	// small is over, large has room: OK overall, small OVER in its status,
	// and only large's metadata.
	resp = ask()
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OK {
		t.Fatalf("quota mode: %v", resp)
	}
	if got := fmt.Sprint(resp.GetDynamicMetadata().AsMap()["metadata"]); got != "map[budget:3 shared:from-large tier:large]" {
		t.Errorf("metadata with small over: %s", got)
	}
	ask()
	if resp = ask(); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("every quota over: %v, want OVER_LIMIT", resp.OverallCode)
	}
	if _, has := resp.GetDynamicMetadata().AsMap()["metadata"]; has {
		t.Errorf("metadata of rules over their limit: %v", resp.GetDynamicMetadata())
	}
}

// failingLimiter cannot decide.
type failingLimiter struct{}

func (failingLimiter) Take(context.Context, []quota.Hit, []quota.Decision) error {
	return fmt.Errorf("redis: EVALSHA: dial tcp 10.1.2.3:6379: connection refused")
}

func TestBackendErrorAnswersWithoutInternals(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, testConfig, ratelimitsvc.Options{}, engine.Options{Limiter: failingLimiter{}})
	_, err := f.svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("plan", "x")}})
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "rate-limit backend unavailable" {
		t.Fatalf("err = %v, want UNAVAILABLE with a fixed message", err)
	}
}

func TestNegativeBoundIsAnError(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(engine.Options{Limiter: failingLimiter{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ratelimitsvc.New(eng, ratelimitsvc.Options{MaxEntries: -1}); err == nil || !strings.Contains(err.Error(), "MaxEntries") {
		t.Fatalf("err = %v, want one naming MaxEntries", err)
	}
}

// TestShouldRateLimitAllocations: one descriptor costs the response block,
// the counter key and the RateLimit header value (run without -race by
// `make test`).
func TestShouldRateLimitAllocations(t *testing.T) {
	f := newFixture(t, ratelimitsvc.Options{})
	req := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*rlv3.RateLimitDescriptor{desc("plan", "alloc")}}
	ctx := context.Background()
	f.svc.ShouldRateLimit(ctx, req)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := f.svc.ShouldRateLimit(ctx, req); err != nil {
			t.Fatal(err)
		}
	})
	if raceEnabled {
		t.Logf("race detector on: %v allocs per call not checked", allocs)
		return
	}
	if allocs > 3 {
		t.Errorf("%v allocations per call, want at most 3", allocs)
	}
}
