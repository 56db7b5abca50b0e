package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/redistest"
)

// exactLimit is the limit of the exactness tests' key, per hour, so that
// no window boundary falls inside a run (windowHeadroom makes sure).
const exactLimit = 500

// exactConfig has one key per algorithm, each with exactLimit per hour.
var exactConfig = fmt.Sprintf(`domain: exact
descriptors:
  - key: fixed
    rate_limit: {unit: hour, requests_per_unit: %[1]d, algorithm: fixed_window}
  - key: sliding
    rate_limit: {unit: hour, requests_per_unit: %[1]d, algorithm: sliding_window}
  - key: bucket
    rate_limit: {unit: hour, requests_per_unit: %[1]d, algorithm: token_bucket}
`, exactLimit)

func exactRequest(key, value string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "exact", Descriptors: []*rlv3.RateLimitDescriptor{entry(key, value)}}
}

// exactCount is what a counting run saw.
type exactCount struct {
	Sent       int64 `json:"sent"`
	Admitted   int64 `json:"admitted"`    // OK answers with a decision (current_limit set)
	FailedOpen int64 `json:"failed_open"` // OK answers without one: --fail-open turned an error into OK
	Rejected   int64 `json:"rejected"`    // OVER_LIMIT answers
	Errors     int64 `json:"errors"`      // gRPC errors (UNAVAILABLE when failing closed)
	Other      int64 `json:"other"`       // errors other than UNAVAILABLE
}

// countAdmitted sends calls of req from clientsPer goroutines per sidecar,
// each call waiting for its answer, and counts the answers. Without during
// it sends post calls in all. With during (a fault injected mid-run), it
// calls during once pre calls have been answered, keeps the load going
// while during runs, and sends post more calls once it has returned.
func countAdmitted(sidecars []*sidecar, req *rlsv3.RateLimitRequest, clientsPer int, pre, post int64, during func()) exactCount {
	var answered, after atomic.Int64
	var faultDone atomic.Bool
	faultDone.Store(during == nil)
	var admitted, failedOpen, rejected, errs, other atomic.Int64
	var wg sync.WaitGroup
	for _, sc := range sidecars {
		for range clientsPer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if faultDone.Load() && after.Add(1) > post {
						return
					}
					resp, err := sc.call(req)
					answered.Add(1)
					switch {
					case err != nil:
						errs.Add(1)
						if status.Code(err) != codes.Unavailable {
							other.Add(1)
						}
					case resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT:
						rejected.Add(1)
					case len(resp.GetStatuses()) > 0 && resp.GetStatuses()[0].GetCurrentLimit() != nil:
						admitted.Add(1)
					default:
						failedOpen.Add(1)
					}
				}
			}()
		}
	}
	if during != nil {
		for answered.Load() < pre {
			time.Sleep(time.Millisecond)
		}
		during()
		faultDone.Store(true)
	}
	wg.Wait()
	return exactCount{
		Sent: answered.Load(), Admitted: admitted.Load(), FailedOpen: failedOpen.Load(),
		Rejected: rejected.Load(), Errors: errs.Load(), Other: other.Load(),
	}
}

// TestExactness: two sidecars on one Redis, 64 clients each, send three
// times the limit of one key: together they admit exactly the limit, for
// every algorithm, and answer every other call OVER_LIMIT.
func TestExactness(t *testing.T) {
	redis := redistest.StartServer(t)
	cfg := writeFile(t, t.TempDir(), "exact.yaml", exactConfig)
	args := []string{"--config", cfg, "--redis-url", redis.URL}
	sidecars := []*sidecar{startSidecar(t, "exact-a", args...), startSidecar(t, "exact-b", args...)}
	windowHeadroom(t, time.Hour, time.Minute)
	for _, key := range []string{"fixed", "sliding", "bucket"} {
		t.Run(key, func(t *testing.T) {
			const total = 3 * exactLimit
			got := countAdmitted(sidecars, exactRequest(key, "one"), 64, 0, total, nil)
			if got.Admitted != exactLimit || got.Rejected != total-exactLimit || got.Errors != 0 || got.FailedOpen != 0 {
				t.Errorf("two sidecars, 64 clients each, %d calls: %+v; want exactly %d admitted and the rest rejected", total, got, exactLimit)
			}
		})
	}
}
