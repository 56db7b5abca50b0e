package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// load sends calls from a few goroutines until stopped or until its bounds:
// at most maxCalls per worker and maxTime in all. Each call is recorded
// under the phase that was current when it was sent, so a test can tell
// calls sent before an event (a signal, a Redis kill) from calls after it.
type load struct {
	phase    atomic.Int32
	inflight atomic.Int64
	done     atomic.Int64 // calls answered or failed

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	results map[int32]*phaseResults
}

// phaseResults counts the outcomes of one phase's calls.
type phaseResults struct {
	codes     map[codes.Code]int // gRPC status of each call
	overLimit int                // OK calls answered OVER_LIMIT
	decided   int                // OK calls whose first status carries a current_limit
	errs      []string           // the first few errors that are not UNAVAILABLE
}

// loadOpts configure startLoad.
type loadOpts struct {
	workers  int
	maxCalls int           // per worker
	maxTime  time.Duration // for the whole run
	pace     time.Duration // pause after each call of a worker, to leave CPU to the rest
	// request builds the call a worker sends; seq counts that worker's calls.
	request func(worker, seq int) *rlsv3.RateLimitRequest
}

// startLoad starts the workers against s.
func startLoad(s *sidecar, o loadOpts) *load {
	ctx, cancel := context.WithTimeout(context.Background(), o.maxTime)
	l := &load{cancel: cancel, results: map[int32]*phaseResults{}}
	for w := range o.workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for seq := 0; seq < o.maxCalls && ctx.Err() == nil; seq++ {
				phase := l.phase.Load()
				l.inflight.Add(1)
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				resp, err := s.rls.ShouldRateLimit(cctx, o.request(w, seq))
				ccancel()
				l.inflight.Add(-1)
				if err != nil && ctx.Err() != nil {
					// Cut by the end of the run, not by the server.
					return
				}
				l.record(phase, resp, err)
				l.done.Add(1)
				if o.pace > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(o.pace):
					}
				}
			}
		}()
	}
	return l
}

func (l *load) record(phase int32, resp *rlsv3.RateLimitResponse, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.results[phase]
	if r == nil {
		r = &phaseResults{codes: map[codes.Code]int{}}
		l.results[phase] = r
	}
	code := status.Code(err)
	r.codes[code]++
	switch {
	case err != nil:
		if code != codes.Unavailable && len(r.errs) < 5 {
			r.errs = append(r.errs, err.Error())
		}
	case resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT:
		r.overLimit++
	}
	if err == nil && len(resp.GetStatuses()) > 0 && resp.GetStatuses()[0].GetCurrentLimit() != nil {
		r.decided++
	}
}

// stop ends the run and waits for the workers.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// in returns a copy of one phase's results.
func (l *load) in(phase int32) phaseResults {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.results[phase]
	if r == nil {
		return phaseResults{codes: map[codes.Code]int{}}
	}
	c := *r
	c.codes = make(map[codes.Code]int, len(r.codes))
	for k, v := range r.codes {
		c.codes[k] = v
	}
	c.errs = append([]string(nil), r.errs...)
	return c
}

// total is the number of calls recorded in the phase.
func (r phaseResults) total() int {
	n := 0
	for _, v := range r.codes {
		n += v
	}
	return n
}

// String shows the counts, for messages.
func (r phaseResults) String() string {
	var parts []string
	for c, n := range r.codes {
		parts = append(parts, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(parts)
	s := strings.Join(parts, " ") + fmt.Sprintf(" (over_limit=%d decided=%d)", r.overLimit, r.decided)
	if len(r.errs) > 0 {
		s += "; errors: " + strings.Join(r.errs, "; ")
	}
	return s
}

// waitCalls waits until the phase has recorded at least n calls.
func (l *load) waitCalls(t testing.TB, phase int32, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for l.in(phase).total() < n {
		if time.Now().After(deadline) {
			t.Fatalf("load: phase %d recorded %d calls within %s, want %d: %s", phase, l.in(phase).total(), timeout, n, l.in(phase))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
