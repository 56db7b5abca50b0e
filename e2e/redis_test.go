package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"

	"github.com/floodgate/floodgate/internal/redistest"
)

const outageConfig = `domain: outage
descriptors:
  - key: client
    rate_limit: {unit: hour, requests_per_unit: 1000000}
`

func outageRequest(value string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "outage", Descriptors: []*rlv3.RateLimitDescriptor{entry("client", value)}}
}

// Phases of the outage test's load.
const (
	beforeKill int32 = iota
	redisDown
	restarted // Redis is back; the sidecar may not know yet
	recovered // the sidecar decided again
)

// goroutineSlack is how many more goroutines than under normal load the
// process may have during and after an outage: a few per in-flight call and
// per scrape, not one per failed call.
const goroutineSlack = 25

// TestRedisOutage kills Redis under load. Without --fail-open calls get
// UNAVAILABLE (Envoy's failure_mode_deny then decides); with it they get
// OK. Either way the process keeps running and its goroutines stay bounded;
// /readyz turns 503 (but stays 200 when failing open, as the sidecar still
// serves), and once Redis is back the sidecar decides again by itself.
func TestRedisOutage(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		name := "fail-closed"
		if failOpen {
			name = "fail-open"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testRedisOutage(t, failOpen)
		})
	}
}

func testRedisOutage(t *testing.T, failOpen bool) {
	redis := redistest.StartServer(t)
	cfg := writeFile(t, t.TempDir(), "outage.yaml", outageConfig)
	args := []string{"--config", cfg, "--redis-url", redis.URL}
	if failOpen {
		args = append(args, "--fail-open")
	}
	sc := startSidecar(t, "sidecar", args...)
	ready := func(want int) func() error {
		return func() error {
			code, body, err := sc.get("/readyz")
			if err != nil {
				return err
			}
			if code != want {
				return fmt.Errorf("/readyz: %d %s", code, strings.TrimSpace(body))
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "ready", ready(http.StatusOK))

	l := startLoad(sc, loadOpts{
		workers: 3, maxCalls: 30000, maxTime: 60 * time.Second, pace: 2 * time.Millisecond,
		request: func(w, _ int) *rlsv3.RateLimitRequest { return outageRequest(fmt.Sprint("w", w)) },
	})
	defer l.stop()
	l.waitCalls(t, beforeKill, 200, 10*time.Second)
	base := sc.mustMetric("go_goroutines")

	l.phase.Store(redisDown)
	redis.Stop()
	if failOpen {
		eventually(t, 10*time.Second, "answers failing open", func() error {
			if v, err := sc.metric("floodgate_ratelimit_fail_open_total"); err != nil || v == 0 {
				return fmt.Errorf("fail_open_total %v (%v)", v, err)
			}
			return nil
		})
	} else {
		eventually(t, 10*time.Second, "UNAVAILABLE answers", func() error {
			if r := l.in(redisDown); r.codes[codes.Unavailable] == 0 {
				return fmt.Errorf("no UNAVAILABLE yet: %s", r)
			}
			return nil
		})
	}
	if failOpen {
		// Failing open, the sidecar still serves: it must stay in service.
		if err := ready(http.StatusOK)(); err != nil {
			t.Errorf("fail-open sidecar with Redis down: %v, want /readyz 200", err)
		}
	} else {
		eventually(t, 10*time.Second, "/readyz 503 with Redis down", ready(http.StatusServiceUnavailable))
	}
	// Keep the outage under load for a while: a leak per failed call would
	// show as goroutines growing with the calls.
	l.waitCalls(t, redisDown, 1500, 30*time.Second)
	if g := sc.mustMetric("go_goroutines"); g > base+goroutineSlack {
		t.Errorf("go_goroutines %v after %d failed-over calls, %v before the outage", g, l.in(redisDown).total(), base)
	} else {
		t.Logf("go_goroutines: %v under load, %v after %d calls with Redis down", base, g, l.in(redisDown).total())
	}
	if !sc.logHas("redis is down: failing fast until it answers") {
		t.Error(`no "redis is down" log line`)
	}

	l.phase.Store(restarted)
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "decisions again after Redis restarted", func() error {
		resp, err := sc.call(outageRequest("probe"))
		if err != nil {
			return err
		}
		if resp.GetStatuses()[0].GetCurrentLimit() == nil {
			return fmt.Errorf("answered without a decision (failing open): %v", resp)
		}
		return nil
	})
	eventually(t, 10*time.Second, "/readyz 200 again", ready(http.StatusOK))
	l.phase.Store(recovered)
	l.waitCalls(t, recovered, 200, 10*time.Second)
	l.stop()

	for phase, r := range map[int32]phaseResults{beforeKill: l.in(beforeKill), redisDown: l.in(redisDown), restarted: l.in(restarted), recovered: l.in(recovered)} {
		t.Logf("phase %d: %s", phase, r)
		allowed := r.codes[codes.OK] + r.codes[codes.Unavailable]
		if failOpen {
			allowed = r.codes[codes.OK]
		}
		if allowed != r.total() || r.overLimit != 0 {
			t.Errorf("phase %d: unexpected answers: %s", phase, r)
		}
	}
	down := l.in(redisDown)
	if failOpen && down.decided == down.total() {
		t.Errorf("with Redis down and --fail-open, every call was still decided: %s", down)
	}
	if !failOpen && down.codes[codes.Unavailable] == 0 {
		t.Errorf("with Redis down, no call got UNAVAILABLE: %s", down)
	}
	if r := l.in(recovered); r.codes[codes.OK] != r.total() || r.decided != r.total() {
		t.Errorf("after recovery, want every call decided: %s", r)
	}

	// Counting starts afresh in the restarted (empty) Redis, and counts.
	for i, want := range []uint32{999999, 999998} {
		resp, err := sc.call(outageRequest("after-restart"))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetStatuses()[0].GetLimitRemaining(); got != want {
			t.Errorf("after restart, call %d: limit_remaining %d, want %d", i, got, want)
		}
	}
	if n, err := redis.Do("DBSIZE"); err != nil || n == "0" {
		t.Errorf("Redis DBSIZE after recovery = %q (%v), want counters", n, err)
	}
	if !sc.running() {
		t.Fatal("the sidecar exited")
	}
	if code, _, err := sc.get("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz: %d %v", code, err)
	}
	if g := sc.mustMetric("go_goroutines"); g > base+goroutineSlack {
		t.Errorf("go_goroutines %v after recovery, %v before the outage", g, base)
	}
	if !sc.logHas("redis is back: deciding again") {
		t.Error(`no "redis is back" log line`)
	}
}

// TestTwoSidecarsOneLimit runs two sidecar processes on one Redis, with
// clients calling both at once: for each algorithm they admit, together,
// exactly the limit.
func TestTwoSidecarsOneLimit(t *testing.T) {
	const limit = 60
	redis := redistest.StartServer(t)
	cfg := writeFile(t, t.TempDir(), "shared.yaml", fmt.Sprintf(`domain: shared
descriptors:
  - key: fixed
    rate_limit: {unit: day, requests_per_unit: %[1]d, algorithm: fixed_window}
  - key: sliding
    rate_limit: {unit: day, requests_per_unit: %[1]d, algorithm: sliding_window}
  - key: bucket
    rate_limit: {unit: day, requests_per_unit: %[1]d, algorithm: token_bucket}
`, limit))
	args := []string{"--config", cfg, "--redis-url", redis.URL}
	sidecars := []*sidecar{startSidecar(t, "sidecar-a", args...), startSidecar(t, "sidecar-b", args...)}
	// A day window (and a bucket refilling one token every 24 minutes) does
	// not move during the test, unless it starts just before midnight UTC.
	windowHeadroom(t, 24*time.Hour, 30*time.Second)

	const clientsPer, callsPer = 4, 30 // 240 attempts for 60 admissions
	for _, key := range []string{"fixed", "sliding", "bucket"} {
		t.Run(key, func(t *testing.T) {
			var admitted, rejected atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, len(sidecars)*clientsPer)
			req := &rlsv3.RateLimitRequest{Domain: "shared", Descriptors: []*rlv3.RateLimitDescriptor{entry(key, "global")}}
			for _, sc := range sidecars {
				for range clientsPer {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range callsPer {
							resp, err := sc.call(req)
							if err != nil {
								errs <- fmt.Errorf("%s: %w", sc.name, err)
								return
							}
							if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
								admitted.Add(1)
							} else {
								rejected.Add(1)
							}
						}
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := admitted.Load(); got != limit {
				t.Errorf("two sidecars admitted %d of %d calls, want exactly %d", got, admitted.Load()+rejected.Load(), limit)
			}
		})
	}
}
