package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/internal/redistest"
	"github.com/floodgate/floodgate/internal/shareddata"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// backends are the stores the counting tests run on: memory, and a real
// Redis on the test's clock (its time pinned through Options.Now).
var backends = []struct {
	name string
	new  func(t *testing.T, clock *backendtest.Clock) quota.Limiter
}{
	{"memory", func(t *testing.T, clock *backendtest.Clock) quota.Limiter {
		st, err := memstore.New(memstore.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
	{"redis", func(t *testing.T, clock *backendtest.Clock) quota.Limiter {
		c := redis.NewClient(&redis.Options{Addr: redistest.Shared(t).Addr})
		t.Cleanup(func() { c.Close() })
		st, err := redisstore.New(c, redisstore.Options{Now: clock.Now, KeyPrefix: "engine-" + t.Name() + ":"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

// countingFixture is an engine on one backend with its own config.
type countingFixture struct {
	eng   *engine.Engine
	clock *backendtest.Clock
}

func newCountingFixture(t *testing.T, newLimiter func(*testing.T, *backendtest.Clock) quota.Limiter, opts engine.Options, cfg *descriptors.Config) *countingFixture {
	t.Helper()
	clock := backendtest.NewClock(start)
	opts.Limiter = newLimiter(t, clock)
	eng, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(cfg)
	return &countingFixture{eng: eng, clock: clock}
}

func (f *countingFixture) decide(t *testing.T, domain string, ds ...engine.Descriptor) engine.Outcome {
	t.Helper()
	var out engine.Outcome
	if err := f.eng.Decide(context.Background(), &engine.Request{Domain: domain, Descriptors: ds}, &out); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	// Statuses are reused by the next call.
	out.Statuses = append([]engine.Status(nil), out.Statuses...)
	return out
}

// hits sets a descriptor's own hits_addend (present, possibly 0).
func hits(d engine.Descriptor, n uint64) engine.Descriptor {
	d.Hits, d.HasHits = n, true
	return d
}

// referenceExample loads envoyproxy/ratelimit's example.yaml (domain rl),
// whose service_1 (1 a minute) and service_2 (2 a minute) are the
// quota_mode rules of its token-quota routes; with overdraw it adds
// `overdraw: true` to every rate_limit, as a serve-mode user would.
func referenceExample(t *testing.T, overdraw bool, alg quota.Algorithm) *descriptors.Config {
	t.Helper()
	path := filepath.Join(shareddata.Dir(t, "envoy-ratelimit", "examples", "ratelimit", "config"), "example.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if overdraw {
		text = addOverdraw(text)
	}
	cfg, err := descriptors.Parse("example.yaml", []byte(text), descriptors.Options{DefaultAlgorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// addOverdraw adds `overdraw: true` after every `unit:` line of a config
// (each rate_limit has one), at the same indentation.
func addOverdraw(text string) string {
	var out []byte
	for len(text) > 0 {
		line := text
		if i := indexByte(text, '\n'); i >= 0 {
			line, text = text[:i+1], text[i+1:]
		} else {
			text = ""
		}
		out = append(out, line...)
		trimmed := trimLeft(line)
		if len(trimmed) > 5 && trimmed[:5] == "unit:" {
			out = append(out, line[:len(line)-len(trimmed)]...)
			out = append(out, "overdraw: true\n"...)
		}
	}
	return string(out)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func trimLeft(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	return s
}

// TestTokenQuota replays the reference's token-quota routes
// (examples/envoy/proxy.yaml /tokenquota and /multiservice-tokenquota, its
// integration-test scripts token-quota.sh and multiservice-tokenquota.sh):
// before each request a check with hits_addend 0, after it the debit of 1
// (apply_on_stream_done), answering OVER_LIMIT once the debits passed the
// limit. It runs as the reference counts (--count-rejected) and in serve
// mode with overdraw: true, on memory and on Redis; without overdraw, serve
// mode never refuses, which is what overdraw is for.
func TestTokenQuota(t *testing.T) {
	t.Parallel()
	// The reference counts in fixed windows; in serve mode the default
	// sliding window carries part of the last window's debt: a minute
	// after, service_2's 3 debits weigh 3 × (60 - e)/60, down to its 2 at
	// e = 20 s, and service_1's 2 down to 1 at e = 30 s.
	modes := []struct {
		name      string
		opts      engine.Options
		overdraw  bool
		algorithm quota.Algorithm
		recovered time.Duration // until both services have quota again
	}{
		{"count-rejected", engine.Options{CountRejected: true}, false, quota.FixedWindow, time.Minute},
		{"count-rejected and stop-increment", engine.Options{CountRejected: true, StopIncrementOverLimit: true}, false, quota.FixedWindow, time.Minute},
		{"serve with overdraw", engine.Options{}, true, quota.SlidingWindow, 90 * time.Second},
		{"serve with overdraw on fixed windows", engine.Options{}, true, quota.FixedWindow, time.Minute},
	}
	service := func(name string) engine.Descriptor { return d("service", name) }
	for _, b := range backends {
		for _, m := range modes {
			t.Run(b.name+"/"+m.name+"/tokenquota", func(t *testing.T) {
				t.Parallel()
				f := newCountingFixture(t, b.new, m.opts, referenceExample(t, m.overdraw, m.algorithm))
				// service_2 allows 2 a minute; the debit comes after the
				// response, so 3 requests pass and the 4th is refused.
				for i := 1; i <= 3; i++ {
					if out := f.decide(t, "rl", hits(service("service_2"), 0)); out.Code != engine.OK {
						t.Fatalf("request %d: check %v %+v, want OK", i, out.Code, out.Statuses[0])
					}
					debit := f.decide(t, "rl", hits(service("service_2"), 1))
					if wantOver := i == 3; (debit.Statuses[0].Code == engine.OverLimit) != wantOver {
						t.Errorf("request %d: debit %+v, want over %v", i, debit.Statuses[0], wantOver)
					}
				}
				out := f.decide(t, "rl", hits(service("service_2"), 0))
				if out.Code != engine.OverLimit || out.Statuses[0].Code != engine.OverLimit {
					t.Fatalf("request 4: %v %+v, want OVER_LIMIT", out.Code, out.Statuses[0])
				}
				f.clock.Advance(m.recovered)
				if out := f.decide(t, "rl", hits(service("service_2"), 0)); out.Code != engine.OK {
					t.Errorf("request 5, %v later: %v %+v, want OK", m.recovered, out.Code, out.Statuses[0])
				}
			})
			t.Run(b.name+"/"+m.name+"/multiservice-tokenquota", func(t *testing.T) {
				t.Parallel()
				f := newCountingFixture(t, b.new, m.opts, referenceExample(t, m.overdraw, m.algorithm))
				// Each request checks both services; the one with quota
				// (the first not over, as the reference's metadata names
				// it) serves it and is debited: service_1 serves 2, then
				// service_2 serves 3, then the 6th is refused.
				served := []string{"service_1", "service_1", "service_2", "service_2", "service_2"}
				for i, want := range served {
					out := f.decide(t, "rl", hits(service("service_1"), 0), hits(service("service_2"), 0))
					if out.Code != engine.OK {
						t.Fatalf("request %d: %v, want OK", i+1, out.Code)
					}
					got := "service_2"
					if out.Statuses[0].Code == engine.OK {
						got = "service_1"
					}
					if got != want {
						t.Fatalf("request %d served by %s, want %s", i+1, got, want)
					}
					f.decide(t, "rl", hits(service(got), 1))
				}
				out := f.decide(t, "rl", hits(service("service_1"), 0), hits(service("service_2"), 0))
				if out.Code != engine.OverLimit {
					t.Fatalf("request 6: %v %+v, want OVER_LIMIT", out.Code, out.Statuses)
				}
				f.clock.Advance(m.recovered)
				out = f.decide(t, "rl", hits(service("service_1"), 0), hits(service("service_2"), 0))
				if out.Code != engine.OK || out.Statuses[0].Code != engine.OK || out.Statuses[1].Code != engine.OK {
					t.Errorf("request 7, %v later: %v %+v, want OK, both with quota", m.recovered, out.Code, out.Statuses)
				}
			})
		}
	}
	t.Run("serve without overdraw never refuses", func(t *testing.T) {
		t.Parallel()
		f := newCountingFixture(t, backends[0].new, engine.Options{}, referenceExample(t, false, quota.SlidingWindow))
		for i := 1; i <= 4; i++ {
			if out := f.decide(t, "rl", hits(service("service_2"), 0)); out.Code != engine.OK {
				t.Fatalf("request %d: %v, want OK: a debit over the limit takes nothing", i, out.Code)
			}
			f.decide(t, "rl", hits(service("service_2"), 1))
		}
	})
}

const overdrawConfig = `
domain: ai
descriptors:
  - key: tokens
    rate_limit: {unit: hour, requests_per_unit: 100, algorithm: token_bucket, overdraw: true, name: llm-tokens}
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: window
    rate_limit: {unit: minute, requests_per_unit: 10, overdraw: true}
`

// TestOverdrawDebt: a token bucket owing 50 at 100 an hour refuses, checks
// included, for 30 minutes, and says so in its reset times.
func TestOverdrawDebt(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := newCountingFixture(t, b.new, engine.Options{}, mustParse(t, overdrawConfig))
			// 150 tokens on a bucket of 100: taken in full, OVER_LIMIT. A
			// hit of 150 never fits a bucket of 100: one unit.
			out := f.decide(t, "ai", hits(d("tokens", "alice"), 150))
			if st := out.Statuses[0]; out.Code != engine.OverLimit || st.Code != engine.OverLimit || st.Remaining != 0 || st.ResetAfter != time.Hour {
				t.Fatalf("charge of 150: %v %+v, want OVER_LIMIT, 0 left, 1h", out.Code, st)
			}
			// Owing 50 at 100 an hour: refused for 30 minutes.
			out = f.decide(t, "ai", hits(d("tokens", "alice"), 0))
			if st := out.Statuses[0]; out.Code != engine.OverLimit || st.ResetAfter != 30*time.Minute {
				t.Fatalf("check after the charge: %v %+v, want OVER_LIMIT for 30m", out.Code, st)
			}
			// At 29 minutes -50 + 48.33 tokens: 1.67 owed, 60 s.
			f.clock.Advance(29 * time.Minute)
			out = f.decide(t, "ai", hits(d("tokens", "alice"), 0))
			if st := out.Statuses[0]; out.Code != engine.OverLimit || st.ResetAfter != time.Minute {
				t.Fatalf("check after 29m: %v %+v, want OVER_LIMIT for 1m", out.Code, st)
			}
			f.clock.Advance(time.Minute)
			if out = f.decide(t, "ai", hits(d("tokens", "alice"), 0)); out.Code != engine.OK {
				t.Fatalf("check after 30m: %v %+v, want OK", out.Code, out.Statuses[0])
			}
			// A charge of 24 on the empty bucket: taken, owing 24; another
			// of 24 would wait for 48 tokens, 28m48s; a check 14m24s.
			out = f.decide(t, "ai", hits(d("tokens", "alice"), 24))
			if st := out.Statuses[0]; st.Code != engine.OverLimit || st.ResetAfter != 48*36*time.Second {
				t.Errorf("charge of 24 on an empty bucket: %+v, want OVER_LIMIT for 28m48s", st)
			}
			out = f.decide(t, "ai", hits(d("tokens", "alice"), 0))
			if st := out.Statuses[0]; st.Code != engine.OverLimit || st.ResetAfter != 24*36*time.Second {
				t.Errorf("check owing 24: %+v, want OVER_LIMIT for 14m24s", st)
			}
		})
	}
}

// TestOverdrawInARejectedBatch: a request that a normal rule rejects takes
// nothing from its normal limits, but its overdraw charges are taken in
// full (the cost was incurred), OK or not.
func TestOverdrawInARejectedBatch(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := newCountingFixture(t, b.new, engine.Options{}, mustParse(t, overdrawConfig))
			f.decide(t, "ai", d("user", "bob"))
			out := f.decide(t, "ai", d("user", "bob"), hits(d("window", "bob"), 4), hits(d("tokens", "bob"), 30))
			if out.Code != engine.OverLimit || out.Statuses[0].Code != engine.OverLimit {
				t.Fatalf("batch with user over: %v %+v", out.Code, out.Statuses)
			}
			if st := out.Statuses[1]; st.Code != engine.OK || st.Remaining != 6 {
				t.Errorf("window in the rejected batch: %+v, want OK with 6 left (taken)", st)
			}
			if st := out.Statuses[2]; st.Code != engine.OK || st.Remaining != 70 {
				t.Errorf("tokens in the rejected batch: %+v, want OK with 70 left (taken)", st)
			}
			out = f.decide(t, "ai", hits(d("window", "bob"), 0), hits(d("tokens", "bob"), 0))
			if out.Statuses[0].Remaining != 6 || out.Statuses[1].Remaining != 70 {
				t.Errorf("after the rejected batch: %+v, want 6 and 70 left", out.Statuses)
			}
		})
	}
}

// TestStopIncrementOverLimit: under --count-rejected a rejected request's
// descriptors with room take nothing when --stop-increment-over-limit is
// set, and take their hits when it is not; the one over counts either way.
func TestStopIncrementOverLimit(t *testing.T) {
	t.Parallel()
	cfg := `
domain: api
descriptors:
  - key: ip
    rate_limit: {unit: minute, requests_per_unit: 1, algorithm: fixed_window}
  - key: plan
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: fixed_window}
`
	for _, b := range backends {
		for _, stop := range []bool{false, true} {
			name := b.name + "/count every hit"
			if stop {
				name = b.name + "/stop increment"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				f := newCountingFixture(t, b.new, engine.Options{CountRejected: true, StopIncrementOverLimit: stop}, mustParse(t, cfg))
				f.decide(t, "api", d("ip", "a"), d("plan", "p"))
				out := f.decide(t, "api", d("ip", "a"), d("plan", "p"))
				if out.Code != engine.OverLimit || out.Statuses[0].Code != engine.OverLimit {
					t.Fatalf("second request: %v %+v, want ip over", out.Code, out.Statuses)
				}
				// The reference: an incremented descriptor reports what
				// its count leaves, one that was not what it had.
				wantPlan := uint64(8)
				if stop {
					wantPlan = 9
				}
				if got := out.Statuses[1].Remaining; got != wantPlan {
					t.Errorf("plan in the rejected request: %d left, want %d", got, wantPlan)
				}
				out = f.decide(t, "api", hits(d("ip", "a"), 0), hits(d("plan", "p"), 0))
				if out.Statuses[0].Code != engine.OverLimit {
					t.Errorf("ip after two hits on a limit of 1: %+v, want over (the rejected hit counted)", out.Statuses[0])
				}
				if got := out.Statuses[1].Remaining; got != wantPlan {
					t.Errorf("plan afterwards: %d left, want %d", got, wantPlan)
				}
			})
		}
	}
}

// TestDefaultAlgorithm: limits that name no algorithm count with
// descriptors.Options.DefaultAlgorithm, and so do Envoy's overrides of
// descriptors that match no rule.
func TestDefaultAlgorithm(t *testing.T) {
	t.Parallel()
	cfg, err := descriptors.Parse("test.yaml", []byte(config), descriptors.Options{DefaultAlgorithm: quota.FixedWindow})
	if err != nil {
		t.Fatal(err)
	}
	f := newCountingFixture(t, backends[0].new, engine.Options{}, cfg)
	out := f.decide(t, "api", d("ip", "a"))
	if got := out.Statuses[0].Limit.Quota.Algorithm; got != quota.FixedWindow {
		t.Errorf("ip's algorithm %v, want fixed_window", got)
	}
	over := d("nothing", "x")
	over.Override, over.HasOverride = engine.Override{Requests: 5, Unit: time.Minute}, true
	out = f.decide(t, "api", over, d("bucket", "b"))
	if got := out.Statuses[0].Limit.Quota.Algorithm; got != quota.FixedWindow {
		t.Errorf("override on an unmatched descriptor: %v, want fixed_window", got)
	}
	if got := out.Statuses[1].Limit.Quota.Algorithm; got != quota.TokenBucket {
		t.Errorf("bucket names its algorithm: %v, want token_bucket", got)
	}
}

// TestNearLimitRatio: an admitted hit is near the limit when the count
// after it exceeds floor(limit × ratio), as the reference's
// NEAR_LIMIT_RATIO says.
func TestNearLimitRatio(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ratio float64
		want  float64 // near_limit hits of 3 on per-ip (3 a minute)
	}{
		{0, 1},   // default 0.8: floor(2.4) = 2, only the 3rd
		{0.5, 2}, // floor(1.5) = 1: the 2nd and 3rd
		{1, 0},   // floor(3) = 3: never
	} {
		f := newFixture(t, engine.Options{NearLimitRatio: tt.ratio})
		for range 3 {
			f.decide(t, d("ip", "n"))
		}
		if got := counterValue(t, f.reg, "floodgate_ratelimit_near_limit", "ip"); got != tt.want {
			t.Errorf("ratio %v: near_limit %v, want %v", tt.ratio, got, tt.want)
		}
	}
	for _, bad := range []float64{-0.1, 1.5} {
		if _, err := engine.New(engine.Options{Limiter: backends[0].new(t, backendtest.NewClock(start)), NearLimitRatio: bad}); err == nil {
			t.Errorf("NearLimitRatio %v: no error", bad)
		}
	}
}

// TestCountRejectedLeavesDoorLimits: --count-rejected is about the
// config's limits; a door's own limit (the auth door's failed-auth
// counter) still takes nothing when it is over.
func TestCountRejectedLeavesDoorLimits(t *testing.T) {
	t.Parallel()
	f := newCountingFixture(t, backends[0].new, engine.Options{CountRejected: true}, mustParse(t, config))
	own := f.eng.NewLimit("door", "failed-auth", quota.Limit{Algorithm: quota.FixedWindow, Requests: 1, Unit: time.Minute})
	desc := d("client", "1.2.3.4")
	desc.Limit = own
	for i, want := range []engine.Code{engine.OK, engine.OverLimit, engine.OverLimit} {
		if out := f.decide(t, "", desc); out.Code != want {
			t.Fatalf("hit %d: %v, want %v", i+1, out.Code, want)
		}
	}
	check := hits(desc, 0)
	if out := f.decide(t, "", check); out.Code != engine.OK || out.Statuses[0].Remaining != 0 {
		t.Errorf("check: %v %+v, want OK with 0 left: the rejected hits took nothing", out.Code, out.Statuses[0])
	}
}
