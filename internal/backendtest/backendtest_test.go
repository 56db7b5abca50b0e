package backendtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

// refLimiter is the simplest backend that can be right: one mutex, one map,
// quota.Evaluate. It checks the suite (and quota.Evaluate) on its own,
// independently of any real backend's sharding or scripts.
type refLimiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]quota.State
}

var _ quota.Limiter = (*refLimiter)(nil)

func (r *refLimiter) Take(_ context.Context, hits []quota.Hit, out []quota.Decision) error {
	if len(out) != len(hits) {
		return fmt.Errorf("ref: %d decisions for %d hits", len(out), len(hits))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := quota.Micros(r.now())
	chained := make(map[string]quota.State)
	for i := range hits {
		h := &hits[i]
		s, ok := chained[h.Key]
		if !ok {
			s = r.m[h.Key]
		}
		var next quota.State
		out[i], next, _ = quota.EvaluateHit(h, s, now)
		if quota.Chains(h, &out[i]) {
			chained[h.Key] = next
		}
	}
	// What is written is the taken hits' effect, applied in order to the
	// stored state.
	rejected, allFit := quota.Rejects(hits, out), quota.AllFit(out)
	for i := range hits {
		h := &hits[i]
		if quota.Taken(h, &out[i], rejected, allFit) {
			_, r.m[h.Key], _ = quota.Evaluate(h.Limit, r.m[h.Key], now, h.N)
		}
	}
	return nil
}

func (r *refLimiter) Ping(context.Context) error { return nil }

func newRef(_ *testing.T, clock *Clock) quota.Limiter {
	return &refLimiter{now: clock.Now, m: make(map[string]quota.State)}
}

func TestScenariosOnReference(t *testing.T) {
	t.Parallel()
	RunScenarios(t, newRef)
}

func TestConcurrentOnReference(t *testing.T) {
	t.Parallel()
	RunConcurrent(t, func(t *testing.T, clock *Clock) (a, b quota.Limiter) {
		l := newRef(t, clock)
		return l, l
	})
}

func TestConcurrentCountingOnReference(t *testing.T) {
	t.Parallel()
	RunConcurrentCounting(t, func(t *testing.T, clock *Clock) (a, b quota.Limiter) {
		l := newRef(t, clock)
		return l, l
	})
}

func TestClock(t *testing.T) {
	t.Parallel()
	c := NewClock(Base)
	c.Advance(1500 * time.Millisecond)
	if got, want := c.Now(), Base.Add(1500*time.Millisecond); !got.Equal(want) {
		t.Errorf("after Advance: got %v, want %v", got, want)
	}
	c.Set(Base)
	if got := c.Now(); !got.Equal(Base) {
		t.Errorf("after Set: got %v, want %v", got, Base)
	}
}

// TestScenarioKeysDistinct guards the suite itself: the odd-keys scenario
// only proves something if its keys really differ.
func TestScenarioKeysDistinct(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios() {
		for i, st := range sc.steps {
			if len(st.hits) != len(st.want) {
				t.Errorf("%s step %d: %d hits, %d wants", sc.name, i, len(st.hits), len(st.want))
			}
		}
		if sc.name != "keys/arbitrary bytes stay distinct" {
			continue
		}
		seen := map[string]bool{}
		for _, h := range sc.steps[0].hits {
			if seen[h.Key] {
				t.Errorf("duplicate key %q", printable(h.Key))
			}
			seen[h.Key] = true
		}
	}
}
