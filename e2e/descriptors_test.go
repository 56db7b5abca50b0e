package e2e

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/floodgate/floodgate/internal/redistest"
)

// The limits of examples/config.yaml, as a client sees them in answers.
type limitSpec struct {
	name   string // rate_limit.name, answered in current_limit.name
	header string // the RateLimit list member name: name, else the rule's path
	rpu    uint32
	unit   time.Duration
	alg    string // fixed, sliding or bucket
	burst  uint64 // bucket capacity (bucket only)
}

var (
	limRemote  = &limitSpec{header: "remote_address", rpu: 100, unit: time.Minute, alg: "sliding"}
	limAPIKey  = &limitSpec{name: "api-key", header: "api-key", rpu: 20, unit: time.Second, alg: "bucket", burst: 40}
	limPremium = &limitSpec{name: "api-key-premium", header: "api-key-premium", rpu: 200, unit: time.Second, alg: "bucket", burst: 400}
	limLogin   = &limitSpec{name: "login", header: "login", rpu: 5, unit: time.Minute, alg: "fixed"}
	limSearch  = &limitSpec{name: "search", header: "search", rpu: 30, unit: time.Minute, alg: "sliding"}
	limExport  = &limitSpec{name: "export", header: "export", rpu: 10, unit: time.Hour, alg: "sliding"}
	limTenant  = &limitSpec{name: "tenant-user", header: "tenant-user", rpu: 1000, unit: time.Hour, alg: "sliding"}
)

// override returns spec with Envoy's per-descriptor limit in place of the
// configured one: the rule's algorithm and header name stay, and
// current_limit carries no name (as the reference answers).
func (l *limitSpec) override(rpu uint32, unit time.Duration) *limitSpec {
	c := *l
	c.rpu, c.unit, c.name = rpu, unit, ""
	return &c
}

// capacity is the quota a full window or bucket holds.
func (l *limitSpec) capacity() uint64 {
	if l.alg == "bucket" && l.burst > 0 {
		return l.burst
	}
	return uint64(l.rpu)
}

// policy is the limit's RateLimit-Policy list member.
func (l *limitSpec) policy() string {
	w := int64(l.unit / time.Second)
	if l.alg == "bucket" {
		w = int64(math.Ceil(float64(l.unit) * float64(l.capacity()) / float64(l.rpu) / float64(time.Second)))
	}
	return fmt.Sprintf("%q;q=%d;w=%d", l.header, l.capacity(), w)
}

// wantStatus is what one descriptor's status should be.
type wantStatus struct {
	lim    *limitSpec
	code   rlsv3.RateLimitResponse_Code
	remLo  uint64 // limit_remaining within [remLo, remHi]
	remHi  uint64
	over   bool   // the hit did not fit (OVER_LIMIT, or OK under shadow mode)
	cur    uint64 // when over on a sliding window: the hits counted in the window
	hitLen uint64 // when over on a sliding window: the size of the rejected hit
}

func ok(l *limitSpec, rem uint64) wantStatus {
	return wantStatus{lim: l, code: rlsv3.RateLimitResponse_OK, remLo: rem, remHi: rem}
}

// okBucket: a token bucket refills between calls, so remaining is a range.
func okBucket(l *limitSpec, lo, hi uint64) wantStatus {
	return wantStatus{lim: l, code: rlsv3.RateLimitResponse_OK, remLo: lo, remHi: hi}
}

// over is an OVER_LIMIT status; cur and hits describe the window for the
// wait a sliding window reports.
func over(l *limitSpec, cur, hits uint64) wantStatus {
	return wantStatus{lim: l, code: rlsv3.RateLimitResponse_OVER_LIMIT, over: true, cur: cur, hitLen: hits}
}

// shadowOver is a shadow-mode rule past its limit: OK with nothing left.
func shadowOver(l *limitSpec, cur, hits uint64) wantStatus {
	w := over(l, cur, hits)
	w.code = rlsv3.RateLimitResponse_OK
	return w
}

// step is one request, sent times times; want gives the expected statuses
// of the i-th send.
type step struct {
	req   httpRequest
	desc  string // the descriptors Envoy sends, as describe() shows them
	times int
	over  bool // the overall code is OVER_LIMIT
	want  func(i uint64) []wantStatus
}

// TestEnvoyRouteDescriptors sends, through gRPC to the real binary, the
// exact requests that envoy/front-proxy.yaml's ratelimit filter makes for
// sample HTTP requests (derived from the file by a model of the filter), and
// checks every answer against examples/config.yaml's limits: codes,
// current_limit, limit_remaining, duration_until_reset and the RateLimit,
// RateLimit-Policy and Retry-After headers. Each case runs on the memory
// backend and on a real Redis.
func TestEnvoyRouteDescriptors(t *testing.T) {
	b, err := loadEnvoy(filepath.Join(moduleRoot, "envoy", "front-proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	filters, err := rateLimitFilters(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(filters) != 1 {
		t.Fatalf("front-proxy.yaml has %d ratelimit filters; this test models one", len(filters))
	}
	front := filters[0]
	if front.domain != "edge" {
		t.Fatalf("front-proxy.yaml's ratelimit domain is %q, examples/config.yaml's is edge", front.domain)
	}
	variant := overridesVariant(t, front)

	hdr := func(kv ...string) map[string]string {
		m := map[string]string{":authority": "shop.example", ":method": "GET"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name   string
		filter *envoyFilter
		steps  []step
	}{{
		name:   "login: route limit, then the virtual host's (INCLUDE)",
		filter: front,
		steps: []step{{
			req:   httpRequest{path: "/login", headers: hdr(), clientIP: "192.0.2.1"},
			desc:  "generic_key=login | remote_address=192.0.2.1",
			times: 5,
			want: func(i uint64) []wantStatus {
				return []wantStatus{ok(limLogin, 4-i), ok(limRemote, 99-i)}
			},
		}, {
			// The sixth login: the fixed window is full; all-or-nothing
			// leaves the address's count where it was.
			req:   httpRequest{path: "/login?next=%2F", headers: hdr(), clientIP: "192.0.2.1"},
			desc:  "generic_key=login | remote_address=192.0.2.1",
			times: 1, over: true,
			want: func(uint64) []wantStatus { return []wantStatus{over(limLogin, 5, 1), ok(limRemote, 95)} },
		}, {
			// Another client: login is one global counter, and the rejected
			// request costs the new address nothing.
			req:   httpRequest{path: "/login", headers: hdr(), clientIP: "192.0.2.2"},
			desc:  "generic_key=login | remote_address=192.0.2.2",
			times: 1, over: true,
			want: func(uint64) []wantStatus { return []wantStatus{over(limLogin, 5, 1), ok(limRemote, 100)} },
		}},
	}, {
		name:   "export: every virtual-host limit, in declaration order",
		filter: front,
		steps: []step{{
			req:   httpRequest{path: "/export/q3?format=csv", headers: hdr("x-api-key", "key-1", "x-tenant", "acme", "x-user", "bob"), clientIP: "192.0.2.3"},
			desc:  "remote_address=192.0.2.3 | api_key=key-1 | header_match=export | tenant=acme,user=bob",
			times: 10,
			want: func(i uint64) []wantStatus {
				return []wantStatus{ok(limRemote, 99-i), okBucket(limAPIKey, 39-i, 39), ok(limExport, 9-i), ok(limTenant, 999-i)}
			},
		}, {
			req:   httpRequest{path: "/export/q4", headers: hdr("x-api-key", "key-1", "x-tenant", "acme", "x-user", "bob"), clientIP: "192.0.2.3"},
			desc:  "remote_address=192.0.2.3 | api_key=key-1 | header_match=export | tenant=acme,user=bob",
			times: 1, over: true,
			want: func(uint64) []wantStatus {
				return []wantStatus{ok(limRemote, 90), okBucket(limAPIKey, 30, 40), over(limExport, 10, 1), ok(limTenant, 990)}
			},
		}},
	}, {
		name:   "missing headers drop whole descriptors",
		filter: front,
		steps: []step{{
			// x-tenant without x-user: the tenant/user descriptor is not sent
			// at all (a lone tenant entry would reach no limit anyway).
			req:   httpRequest{path: "/profile", headers: hdr("x-tenant", "acme"), clientIP: "192.0.2.4"},
			desc:  "remote_address=192.0.2.4",
			times: 1,
			want:  func(uint64) []wantStatus { return []wantStatus{ok(limRemote, 99)} },
		}, {
			// A path that merely contains /export is no export.
			req:   httpRequest{path: "/reports/export", headers: hdr("x-user", "bob", "x-api-key", "premium"), clientIP: "192.0.2.4"},
			desc:  "remote_address=192.0.2.4 | api_key=premium",
			times: 1,
			want: func(uint64) []wantStatus {
				return []wantStatus{ok(limRemote, 98), okBucket(limPremium, 399, 399)}
			},
		}},
	}, {
		name:   "search: shadow mode reports but never blocks",
		filter: front,
		steps: []step{{
			// A filter before the ratelimit filter set hits_addend 10.
			req:   httpRequest{path: "/search?q=floodgate", headers: hdr("x-api-key", "premium"), clientIP: "192.0.2.5", hitsAddend: 10},
			desc:  "generic_key=search | remote_address=192.0.2.5 | api_key=premium",
			times: 3,
			want: func(i uint64) []wantStatus {
				return []wantStatus{ok(limSearch, 20-10*i), ok(limRemote, 90-10*i), okBucket(limPremium, 390-10*i, 390)}
			},
		}, {
			req:   httpRequest{path: "/search?q=more", headers: hdr("x-api-key", "premium"), clientIP: "192.0.2.5", hitsAddend: 10},
			desc:  "generic_key=search | remote_address=192.0.2.5 | api_key=premium",
			times: 1,
			want: func(uint64) []wantStatus {
				return []wantStatus{shadowOver(limSearch, 30, 10), ok(limRemote, 60), okBucket(limPremium, 360, 390)}
			},
		}},
	}, {
		name:   "overrides and hits_addend",
		filter: variant,
		steps: []step{{
			// Route-level `limit` override: 2 a minute instead of 5; the
			// rule's name and fixed window stay.
			req:   httpRequest{path: "/login", headers: hdr(), clientIP: "192.0.2.6"},
			desc:  "generic_key=login [limit 2/MINUTE] | remote_address=192.0.2.6",
			times: 2,
			want: func(i uint64) []wantStatus {
				return []wantStatus{ok(limLogin.override(2, time.Minute), 1-i), ok(limRemote, 99-i)}
			},
		}, {
			req:   httpRequest{path: "/login", headers: hdr(), clientIP: "192.0.2.6"},
			desc:  "generic_key=login [limit 2/MINUTE] | remote_address=192.0.2.6",
			times: 1, over: true,
			want: func(uint64) []wantStatus {
				return []wantStatus{over(limLogin.override(2, time.Minute), 2, 1), ok(limRemote, 98)}
			},
		}, {
			// An override on a descriptor no rule matches still limits it
			// (sliding window, named envoy_override); the request's
			// hits_addend (2) counts for both descriptors.
			req:   httpRequest{path: "/reports/weekly", headers: hdr(), clientIP: "192.0.2.7", hitsAddend: 2},
			desc:  "report=weekly [limit 3/HOUR] | remote_address=192.0.2.7",
			times: 1,
			want: func(uint64) []wantStatus {
				return []wantStatus{ok(limEnvoyOverride(3, time.Hour), 1), ok(limRemote, 98)}
			},
		}, {
			req:   httpRequest{path: "/reports/weekly", headers: hdr(), clientIP: "192.0.2.7", hitsAddend: 2},
			desc:  "report=weekly [limit 3/HOUR] | remote_address=192.0.2.7",
			times: 1, over: true,
			want: func(uint64) []wantStatus {
				return []wantStatus{over(limEnvoyOverride(3, time.Hour), 2, 2), ok(limRemote, 98)}
			},
		}, {
			// Per-descriptor hits_addend: 5 for the address, and 0 for the
			// key, which checks without counting.
			req:   httpRequest{path: "/bulk/upload", headers: hdr("x-api-key", "key-8"), clientIP: "192.0.2.8", hitsAddend: 3},
			desc:  "remote_address=192.0.2.8 [hits 5] | api_key=key-8 [hits 0]",
			times: 2,
			want: func(i uint64) []wantStatus {
				return []wantStatus{ok(limRemote, 95-5*i), okBucket(limAPIKey, 40, 40)}
			},
		}},
	}}

	// Requests Envoy never sends: pinned here so that a change to the routes
	// that starts limiting them shows.
	for _, req := range []httpRequest{
		{path: "/healthz", headers: hdr("x-api-key", "key-1"), clientIP: "192.0.2.9"},
	} {
		if got, err := front.request(req); err != nil || got != nil {
			t.Errorf("GET %s: Envoy sends %s (err %v), want no call (vh_rate_limits: IGNORE)", req.path, describe(got), err)
		}
	}

	redis := redistest.StartServer(t)
	for ci, c := range cases {
		for _, backend := range []string{"memory", "redis"} {
			t.Run(backend+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				args := []string{"--config", exampleConfig}
				if backend == "redis" {
					args = append(args, "--redis-url", redis.URL, "--redis-key-prefix", fmt.Sprintf("e2e-desc-%d:", ci))
				}
				sc := startSidecar(t, "sidecar-"+backend, args...)
				// Every case counts within one minute window.
				windowHeadroom(t, time.Minute, 10*time.Second)
				for si, st := range c.steps {
					req, err := c.filter.request(st.req)
					if err != nil {
						t.Fatalf("step %d: %v", si, err)
					}
					if got := describe(req); got != st.desc {
						t.Fatalf("step %d: GET %s: Envoy sends %s, the test expects %s", si, st.req.path, got, st.desc)
					}
					for i := range uint64(st.times) {
						before := time.Now()
						resp, err := sc.call(req)
						after := time.Now()
						if err != nil {
							t.Fatalf("step %d call %d: %v", si, i, err)
						}
						checkResponse(t, fmt.Sprintf("step %d call %d (%s)", si, i, st.desc), resp, st.over, st.want(i), before, after)
					}
				}
			})
		}
	}
}

// limEnvoyOverride is an Envoy override on a descriptor that matches no rule.
func limEnvoyOverride(rpu uint32, unit time.Duration) *limitSpec {
	return &limitSpec{header: "envoy_override", rpu: rpu, unit: unit, alg: "sliding"}
}

// overridesVariant is front-proxy.yaml's filter with what a user adds to
// use Envoy's per-descriptor overrides: a `limit` override on /login's
// route limit, a route /reports whose own limit carries an override for a
// descriptor no rule matches, and a route /bulk whose per-route filter
// config sets hits_addend per descriptor.
func overridesVariant(t *testing.T, front *envoyFilter) *envoyFilter {
	t.Helper()
	route := func(js string) *routev3.Route {
		var r routev3.Route
		if err := protojson.Unmarshal([]byte(js), &r); err != nil {
			t.Fatalf("variant route: %v", err)
		}
		return &r
	}
	reports := route(`{
		"match": {"prefix": "/reports"},
		"route": {"cluster": "app", "rate_limits": [{
			"actions": [{"generic_key": {"descriptor_key": "report", "descriptor_value": "weekly"}}],
			"limit": {"rate_limit": {"requests_per_unit": 3, "unit": "HOUR"}}
		}]},
		"typed_per_filter_config": {"envoy.filters.http.ratelimit": {
			"@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute",
			"vh_rate_limits": "INCLUDE"
		}}
	}`)
	bulk := route(`{
		"match": {"prefix": "/bulk"},
		"route": {"cluster": "app"},
		"typed_per_filter_config": {"envoy.filters.http.ratelimit": {
			"@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute",
			"rate_limits": [
				{"actions": [{"remote_address": {}}], "hits_addend": {"number": 5}},
				{"actions": [{"request_headers": {"header_name": "x-api-key", "descriptor_key": "api_key"}}], "hits_addend": {"number": 0}}
			]
		}}
	}`)
	f, err := front.withRoutes(func(rc *routev3.RouteConfiguration) error {
		vh := rc.GetVirtualHosts()[0]
		var login *routev3.Route
		for _, r := range vh.GetRoutes() {
			if r.GetMatch().GetPrefix() == "/login" {
				login = r
			}
		}
		if login == nil || len(login.GetRoute().GetRateLimits()) != 1 {
			return fmt.Errorf("front-proxy.yaml: want a /login route with one rate limit")
		}
		login.GetRoute().GetRateLimits()[0].Limit = &routev3.RateLimit_Override{
			OverrideSpecifier: &routev3.RateLimit_Override_RateLimit{RateLimit: &routev3.RateLimit_Override_RateLimitOverride{
				RequestsPerUnit: 2, Unit: typev3.RateLimitUnit_MINUTE,
			}},
		}
		// Before the catch-all, which is last.
		n := len(vh.Routes)
		vh.Routes = slices.Insert(vh.Routes, n-1, reports, bulk)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// checkResponse compares one answer with the expected statuses; before and
// after are clock readings taken around the call, between which the server
// decided.
func checkResponse(t *testing.T, what string, resp *rlsv3.RateLimitResponse, wantOver bool, want []wantStatus, before, after time.Time) {
	t.Helper()
	wantOverall := rlsv3.RateLimitResponse_OK
	if wantOver {
		wantOverall = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	if resp.GetOverallCode() != wantOverall {
		t.Errorf("%s: overall_code %s, want %s", what, resp.GetOverallCode(), wantOverall)
	}
	if len(resp.GetStatuses()) != len(want) {
		t.Fatalf("%s: %d statuses, want %d: %v", what, len(resp.GetStatuses()), len(want), resp)
	}
	var policies, states []string
	var retry int64 = -1
	for i, w := range want {
		st := resp.GetStatuses()[i]
		where := fmt.Sprintf("%s: status %d", what, i)
		if st.GetCode() != w.code {
			t.Errorf("%s: code %s, want %s", where, st.GetCode(), w.code)
		}
		cl := st.GetCurrentLimit()
		if cl.GetRequestsPerUnit() != w.lim.rpu || cl.GetName() != w.lim.name || unitOf(cl.GetUnit()) != w.lim.unit {
			t.Errorf("%s: current_limit {%d/%s name %q}, want {%d/%s name %q}", where,
				cl.GetRequestsPerUnit(), cl.GetUnit(), cl.GetName(), w.lim.rpu, w.lim.unit, w.lim.name)
		}
		rem := uint64(st.GetLimitRemaining())
		if w.over {
			w.remLo, w.remHi = 0, 0
		}
		if rem < w.remLo || rem > w.remHi {
			t.Errorf("%s (%s): limit_remaining %d, want %s", where, w.lim.header, rem, span(w.remLo, w.remHi))
		}
		reset := st.GetDurationUntilReset().AsDuration()
		if st.GetDurationUntilReset() == nil {
			t.Errorf("%s: no duration_until_reset", where)
		} else if lo, hi := wantReset(w, rem, before, after); reset < wholeSeconds(lo, w.over) || reset > wholeSeconds(hi, w.over) || reset%time.Second != 0 {
			t.Errorf("%s (%s): duration_until_reset %s, want within [%s, %s]", where, w.lim.header, reset, lo, hi)
		}
		secs := int64((reset + time.Second - 1) / time.Second)
		policies = append(policies, w.lim.policy())
		states = append(states, fmt.Sprintf("%q;r=%d;t=%d", w.lim.header, rem, secs))
		if st.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT && secs > retry {
			retry = secs
		}
	}
	headers := map[string]string{}
	for _, h := range resp.GetResponseHeadersToAdd() {
		if _, dup := headers[h.GetKey()]; dup {
			t.Errorf("%s: header %s twice", what, h.GetKey())
		}
		headers[h.GetKey()] = h.GetValue()
	}
	wantHeaders := map[string]string{}
	if len(policies) > 0 {
		wantHeaders["RateLimit-Policy"] = strings.Join(policies, ", ")
		wantHeaders["RateLimit"] = strings.Join(states, ", ")
	}
	if wantOver {
		wantHeaders["Retry-After"] = strconv.FormatInt(retry, 10)
	}
	for _, k := range []string{"RateLimit-Policy", "RateLimit", "Retry-After"} {
		if headers[k] != wantHeaders[k] {
			t.Errorf("%s: header %s = %q, want %q", what, k, headers[k], wantHeaders[k])
		}
	}
	if len(headers) != len(wantHeaders) {
		t.Errorf("%s: headers %v, want %v", what, headers, wantHeaders)
	}
}

// wholeSeconds is d as duration_until_reset reports it: rounded up to
// whole seconds, and at least one over the limit.
func wholeSeconds(d time.Duration, over bool) time.Duration {
	s := (d + time.Second - 1) / time.Second * time.Second
	if over && s < time.Second {
		s = time.Second
	}
	return s
}

func span(lo, hi uint64) string {
	if lo == hi {
		return strconv.FormatUint(lo, 10)
	}
	return fmt.Sprintf("within [%d, %d]", lo, hi)
}

// slack covers the rounding of times to whole microseconds in the backends.
const slack = time.Millisecond

// wantReset is the range duration_until_reset must fall in. Windows are
// aligned to the Unix epoch and the server decided between before and
// after, so a window's end is known to within that interval. A token
// bucket's time until full follows from the tokens left: remaining is
// their floor.
func wantReset(w wantStatus, rem uint64, before, after time.Time) (lo, hi time.Duration) {
	l := w.lim
	left := func(at time.Time) time.Duration {
		return l.unit - time.Duration(at.UnixNano()%int64(l.unit))
	}
	switch {
	case l.alg == "bucket":
		perToken := float64(l.unit) / float64(l.rpu)
		c := float64(l.capacity())
		if w.over {
			// Until enough tokens are back for the hit; at most the time to fill.
			return time.Duration(0), time.Duration(c*perToken) + slack
		}
		lo = time.Duration((c - float64(rem) - 1) * perToken)
		hi = time.Duration((c-float64(rem))*perToken) + slack
		return max(lo, 0), hi
	case w.over && l.alg == "sliding":
		// Past the window's end, until the previous window's weight has
		// fallen enough for the hit: unit * (1 - room/cur).
		room := float64(uint64(l.rpu) - w.hitLen)
		extra := time.Duration(math.Ceil(float64(l.unit) * (1 - room/float64(w.cur))))
		return left(after) + extra - slack, left(before) + extra + slack
	default:
		// OK on a window, or over a fixed window: until the window ends.
		return left(after) - slack, left(before) + slack
	}
}

// unitOf is the length of a current_limit unit.
func unitOf(u rlsv3.RateLimitResponse_RateLimit_Unit) time.Duration {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return time.Second
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return time.Minute
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return time.Hour
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 24 * time.Hour
	}
	return 0
}
