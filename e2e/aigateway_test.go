package e2e

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/floodgate/floodgate/internal/redistest"
)

// Envoy AI Gateway's token limits, as Envoy Gateway turns them into Envoy's
// rate-limit filter config and the rate-limit service's config. These are the
// shapes (facts of envoyproxy/gateway's internal/xds/translator/ratelimit.go
// and internal/gatewayapi/backendtrafficpolicy.go, and of envoyproxy/ai-gateway's
// examples/token_ratelimit), for a BackendTrafficPolicy rule
//
//	clientSelectors: [{headers: [{name: x-tenant-id, type: Distinct}]}]
//	limit: {requests: 1000, unit: Hour}
//	cost:
//	  request: {from: Number, number: 0}
//	  response: {from: Metadata, metadata: {namespace: io.envoy.ai_gateway, key: llm_total_token}}
//
// on a Gateway default/envoy-ai-gateway-token-ratelimit, listener http, and
// the HTTPRoute that Envoy AI Gateway generates for its AIGatewayRoute:
//
//   - The domain of a rule that is not shared is the listener's IR name,
//     namespace/gateway/listener.
//   - Every rule's descriptor starts with a generic_key whose key and value
//     are both the IR route name (httproute/NAMESPACE/NAME/rule/I/match/J/HOST,
//     HOST "*" when the route names none); a shared rule uses the rule's name
//     instead, in a domain of its own.
//   - A Distinct header selector is a request_headers action with
//     descriptor_key rule-R-match-M (R the rule's index among the policy's
//     rules of its kind, M the match's index), its value the header's value;
//     in the service's config that key has no value and carries the limit,
//     nested under the route's key: requests_per_unit and an upper-case unit.
//   - A cost makes two RateLimit entries with the same actions: one for the
//     request, hits_addend {number: 0} (a check: the budget is looked at, not
//     charged), and one with apply_on_stream_done: true and hits_addend
//     {format: "%DYNAMIC_METADATA(io.envoy.ai_gateway:llm_total_token)%"},
//     which Envoy evaluates when the stream ends and sends as the
//     descriptor's hits_addend, ignoring the answer. Envoy sends the two in
//     separate ShouldRateLimit calls, each with the descriptors of its phase.
//   - The filter has enable_x_ratelimit_headers DRAFT_VERSION_03 (unless the
//     listener turns rate-limit headers off), so clients get
//     X-RateLimit-Limit/-Remaining/-Reset from the statuses beside the
//     service's own response headers.
const (
	aigwDomain   = "default/envoy-ai-gateway-token-ratelimit/http"
	aigwRoute    = "httproute/default/envoy-ai-gateway-token-ratelimit/rule/0/match/0/*"
	aigwRuleKey  = "rule-0-match-0"
	aigwTokenFmt = "%DYNAMIC_METADATA(io.envoy.ai_gateway:llm_total_token)%"
	aigwBudget   = 1000 // tokens per hour
)

// aigwConfig is the service config for that rule: Envoy Gateway's shape,
// with rateLimitExtra added inside the rule's rate_limit ("" for none).
func aigwConfig(rateLimitExtra string) string {
	return fmt.Sprintf(`domain: %s
descriptors:
  - key: %q
    value: %q
    descriptors:
      - key: %s
        rate_limit:
          requests_per_unit: %d
          unit: HOUR%s
`, aigwDomain, aigwRoute, aigwRoute, aigwRuleKey, aigwBudget, rateLimitExtra)
}

// aigwRequest is the ShouldRateLimit Envoy sends for tenant: in the request
// phase with hits 0, at stream done with hits = the tokens the response
// used (what aigwTokenFmt evaluated to).
func aigwRequest(tenant string, hits uint64) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{
		Domain: aigwDomain,
		Descriptors: []*rlv3.RateLimitDescriptor{{
			Entries: []*rlv3.RateLimitDescriptor_Entry{
				{Key: aigwRoute, Value: aigwRoute},
				{Key: aigwRuleKey, Value: tenant},
			},
			HitsAddend: wrapperspb.UInt64(hits),
		}},
	}
}

// aigwStep is one call of the sequence and what it must answer.
type aigwStep struct {
	what   string
	tenant string
	hits   uint64 // 0: the request-phase check
	over   bool
	rem    uint32 // limit_remaining (0 when over)
	// reset is duration_until_reset as a function of the time left in the
	// current hour window (measured before and after the call); nil: not
	// checked.
	reset func(left time.Duration) time.Duration
}

// perToken is the time a 1000-per-hour bucket takes to refill one token.
const perToken = time.Hour / aigwBudget // 3.6 s

func exact(d time.Duration) func(time.Duration) time.Duration {
	return func(time.Duration) time.Duration { return d }
}

func untilWindowEnd(left time.Duration) time.Duration { return left }

// The sequence: a check, 700 tokens charged, a check, 600 charged (the
// budget is overdrawn by 300), then checks refused while the debt lasts, a
// late stream charged on top, and another tenant untouched.
func aigwSequence(alg string) []aigwStep {
	var chargeOver, checkOver, lateOver, checkLate func(time.Duration) time.Duration
	switch alg {
	case "token_bucket":
		// The debt of 300 tokens refills in 300 × 3.6 s; the stream-done
		// answer tells when 600 would fit again (900 tokens); 100 more owed
		// make the debt 400.
		chargeOver, checkOver = exact(900*perToken), exact(300*perToken)
		lateOver, checkLate = exact(500*perToken), exact(400*perToken)
	case "sliding_window":
		// The window ends holding 1300: the next window refuses checks for
		// its first 300/1300 (then 1300 × (1 - e) <= 1000), 400/1400 after
		// the late stream. A charge of 600 waits for 1300 × (1 - e) <= 400.
		next := func(cur, room float64) func(time.Duration) time.Duration {
			return func(left time.Duration) time.Duration {
				return left + time.Duration(math.Ceil(float64(time.Hour)*(1-room/cur)))
			}
		}
		chargeOver, checkOver = next(1300, 400), next(1300, 1000)
		lateOver, checkLate = next(1400, 900), next(1400, 1000)
	default: // fixed_window, and the reference's counting
		chargeOver, checkOver, lateOver, checkLate = untilWindowEnd, untilWindowEnd, untilWindowEnd, untilWindowEnd
	}
	okReset := untilWindowEnd
	if alg == "token_bucket" {
		okReset = nil // until full: checked by the remaining tokens instead
	}
	return []aigwStep{
		{what: "request phase, fresh budget", tenant: "tenant-a", rem: 1000, reset: okReset},
		{what: "stream done, 700 tokens", tenant: "tenant-a", hits: 700, rem: 300, reset: okReset},
		{what: "request phase after 700", tenant: "tenant-a", rem: 300, reset: okReset},
		{what: "stream done, 600 tokens (overdrawn by 300)", tenant: "tenant-a", hits: 600, over: true, reset: chargeOver},
		{what: "request phase while owing 300", tenant: "tenant-a", over: true, reset: checkOver},
		{what: "request phase again: a check adds nothing", tenant: "tenant-a", over: true, reset: checkOver},
		{what: "another tenant's request phase", tenant: "tenant-b", rem: 1000, reset: okReset},
		{what: "a late stream done, 100 tokens", tenant: "tenant-a", hits: 100, over: true, reset: lateOver},
		{what: "request phase while owing 400", tenant: "tenant-a", over: true, reset: checkLate},
	}
}

// runAIGWSequence replays the sequence against s. serveHeaders: s sends
// serve's RateLimit and Retry-After headers (else no headers at all, as the
// reference's default).
func runAIGWSequence(t *testing.T, s *sidecar, alg string, serveHeaders bool) {
	t.Helper()
	// An hour window (and a bucket refilling a token every 3.6 s) does not
	// move during the sequence, unless it starts just before the hour.
	windowHeadroom(t, time.Hour, 30*time.Second)
	for i, st := range aigwSequence(alg) {
		what := fmt.Sprintf("step %d (%s)", i+1, st.what)
		before := time.Now()
		resp, err := s.call(aigwRequest(st.tenant, st.hits))
		after := time.Now()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want := rlsv3.RateLimitResponse_OK
		if st.over {
			want = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if resp.GetOverallCode() != want || len(resp.GetStatuses()) != 1 {
			t.Fatalf("%s: %s with %d statuses, want %s with 1: %v", what, resp.GetOverallCode(), len(resp.GetStatuses()), want, resp)
		}
		ds := resp.GetStatuses()[0]
		if cl := ds.GetCurrentLimit(); cl.GetRequestsPerUnit() != aigwBudget || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_HOUR {
			t.Errorf("%s: current_limit %v, want %d per HOUR", what, cl, aigwBudget)
		}
		if ds.GetLimitRemaining() != st.rem {
			t.Errorf("%s: limit_remaining %d, want %d", what, ds.GetLimitRemaining(), st.rem)
		}
		reset := ds.GetDurationUntilReset().AsDuration()
		if st.reset != nil {
			// Whole seconds, rounded up; the window's end is known to within
			// the call, and a bucket refills a little meanwhile (3.6 s a token).
			leftAt := func(at time.Time) time.Duration {
				return time.Hour - time.Duration(at.UnixNano()%int64(time.Hour))
			}
			lo := st.reset(leftAt(after)) - time.Since(before) - time.Second
			hi := st.reset(leftAt(before)) + time.Second
			if reset < lo || reset > hi || reset%time.Second != 0 {
				t.Errorf("%s: duration_until_reset %s, want whole seconds within [%s, %s]", what, reset, lo.Round(time.Millisecond), hi)
			}
		}
		headers := map[string]string{}
		for _, h := range resp.GetResponseHeadersToAdd() {
			headers[h.GetKey()] = h.GetValue()
		}
		if !serveHeaders {
			if len(headers) != 0 {
				t.Errorf("%s: headers %v, want none (the reference's default)", what, headers)
			}
			continue
		}
		secs := strconv.FormatInt(int64(reset/time.Second), 10)
		if got := headers["RateLimit"]; !strings.HasSuffix(got, ";t="+secs) || !strings.Contains(got, fmt.Sprintf(";r=%d;", st.rem)) {
			t.Errorf("%s: RateLimit %q, want r=%d and t=%s", what, got, st.rem, secs)
		}
		if st.over && headers["Retry-After"] != secs {
			t.Errorf("%s: Retry-After %q, want %s (the debt's wait)", what, headers["Retry-After"], secs)
		}
		if !st.over && headers["Retry-After"] != "" {
			t.Errorf("%s: Retry-After %q on an admitted call", what, headers["Retry-After"])
		}
	}
}

// TestAIGatewayTokenBudgetServe: serve with overdraw: true on each
// algorithm, memory and Redis. A check (hits 0) passes while tokens remain;
// the stream-done charge that overdraws the budget is taken in full, and the
// following checks are refused for as long as the debt lasts: a token
// bucket until it has refilled the debt, a sliding window until the
// previous window's weight has fallen enough, a fixed window until its end.
func TestAIGatewayTokenBudgetServe(t *testing.T) {
	redis := redistest.StartServer(t)
	for _, alg := range []string{"token_bucket", "sliding_window", "fixed_window"} {
		for _, backend := range []string{"memory", "redis"} {
			t.Run(alg+"/"+backend, func(t *testing.T) {
				t.Parallel()
				cfg := writeFile(t, t.TempDir(), "aigw.yaml", aigwConfig("\n          algorithm: "+alg+"\n          overdraw: true"))
				args := []string{"--config", cfg, "--log-format", "json"}
				if backend == "redis" {
					// One Redis for all: the prefix keeps each run's counters apart.
					args = append(args, "--redis-url", redis.URL, "--redis-key-prefix", fmt.Sprintf("aigw-%s-%d:", alg, time.Now().UnixNano()))
				}
				s := startSidecar(t, "sidecar-"+alg+"-"+backend, args...)
				runAIGWSequence(t, s, alg, true)
			})
		}
	}
}

// TestAIGatewayTokenBudgetRatelimitMode: the ratelimit mode, configured by
// envoyproxy/ratelimit's environment with the config Envoy Gateway
// generates (no Floodgate extensions), counts as the reference does: every
// hit is added (INCRBY), a call is over when the count after it exceeds
// the limit, a check is over once the count is past it, and the window's
// end ends the debt. FLOODGATE_DEFAULT_ALGORITHM opts into the other
// algorithms, which carry the debt as serve's overdraw rules do: under the
// reference's counting every hit is taken in full already. On Redis as the
// reference runs it, and on memory with flags after the mode (a test-only
// override: BACKEND_TYPE is redis only).
func TestAIGatewayTokenBudgetRatelimitMode(t *testing.T) {
	redis := redistest.StartServer(t)
	for _, alg := range []string{"", "token_bucket", "sliding_window"} {
		for _, backend := range []string{"memory", "redis"} {
			name := alg
			if name == "" {
				name = "default"
			}
			t.Run(name+"/"+backend, func(t *testing.T) {
				t.Parallel()
				testRatelimitMode(t, redis, alg, backend)
			})
		}
	}
}

func testRatelimitMode(t *testing.T, redis *redistest.Server, alg, backend string) {
	root := t.TempDir()
	dir := filepath.Join(root, "current", "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "aigw.yaml", aigwConfig(""))
	env := []string{
		"RUNTIME_ROOT=" + root, "RUNTIME_SUBDIRECTORY=current", "RUNTIME_IGNOREDOTFILES=true",
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=0", "HOST=127.0.0.1", "PORT=0",
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=0", "USE_STATSD=false",
		"LOG_FORMAT=json", "LOG_LEVEL=info",
		"BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redis.Addr,
		"CACHE_KEY_PREFIX=" + fmt.Sprintf("aigw-ref-%s-%s-%d:", alg, backend, time.Now().UnixNano()),
	}
	if alg != "" {
		env = append(env, "FLOODGATE_DEFAULT_ALGORITHM="+alg)
	}
	args := []string{"ratelimit"}
	if backend == "memory" {
		args = append(args, "--backend=memory", "--redis-url=")
	}
	s := startProcess(t, "ratelimit-"+backend, env, args...)
	if alg == "" {
		alg = "fixed_window"
	}
	runAIGWSequence(t, s, alg, false)
}
