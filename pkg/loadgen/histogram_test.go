package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketBoundsContainValue(t *testing.T) {
	t.Parallel()
	values := []uint64{0, 1, 127, 128, 255, 256, 257, 1000, 1 << 20, 1<<20 + 12345, 1<<39 + 7, maxTracked}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, rng.Uint64N(maxTracked))
	}
	for _, v := range values {
		i := bucketIndex(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketIndex(%d) = %d, want in [0, %d)", v, i, numBuckets)
		}
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d with bounds [%d, %d]", v, i, lo, hi)
		}
		// Relative width is the promise of a log-linear histogram.
		if width := hi - lo + 1; width > 1 && float64(width-1) > float64(lo)/float64(1<<subBits) {
			t.Errorf("bucket %d [%d, %d] is wider than 1/%d of its lower bound", i, lo, hi, 1<<subBits)
		}
	}
	if got := bucketIndex(^uint64(0)); got != numBuckets-1 {
		t.Errorf("bucketIndex(max uint64) = %d, want the last bucket %d", got, numBuckets-1)
	}
	// Buckets tile the range: each starts one past the previous one's end.
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestQuantileExactRange(t *testing.T) {
	t.Parallel()
	// Values 1..100 ns fall in one-value buckets, so quantiles are exact.
	h := NewHistogram()
	for v := 100; v >= 1; v-- { // order must not matter
		h.Record(time.Duration(v))
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1}, {0.01, 1}, {0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 100}, {1, 100}, {-1, 1}, {2, 100},
	}
	for _, tc := range tests {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got, want := h.Count(), uint64(100); got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
	if got, want := h.Mean(), time.Duration(50); got != want { // 5050/100 truncated
		t.Errorf("Mean = %v, want %v", got, want)
	}
	if h.Min() != 1 || h.Max() != 100 {
		t.Errorf("Min, Max = %v, %v, want 1ns, 100ns", h.Min(), h.Max())
	}
}

func TestQuantileWithinBucketError(t *testing.T) {
	t.Parallel()
	// 1..10000 µs: each quantile is reported at most one bucket above the
	// true value, i.e. within 1/128 of it, and never below it.
	h := NewHistogram()
	for v := 1; v <= 10000; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		true time.Duration
	}{
		{0.5, 5000 * time.Microsecond},
		{0.9, 9000 * time.Microsecond},
		{0.99, 9900 * time.Microsecond},
		{0.999, 9990 * time.Microsecond},
		{1, 10000 * time.Microsecond},
	}
	for _, tc := range tests {
		got := h.Quantile(tc.q)
		limit := tc.true + tc.true/(1<<subBits)
		if got < tc.true || got > limit {
			t.Errorf("Quantile(%v) = %v, want in [%v, %v]", tc.q, got, tc.true, limit)
		}
	}
	if got, want := h.Max(), 10000*time.Microsecond; got != want {
		t.Errorf("Max = %v, want %v (exact)", got, want)
	}
}

func TestQuantileSkewed(t *testing.T) {
	t.Parallel()
	// 990 fast answers and 10 slow ones: p99 is fast, p99.9 is slow.
	h := NewHistogram()
	for range 990 {
		h.Record(100 * time.Microsecond)
	}
	for range 10 {
		h.Record(50 * time.Millisecond)
	}
	if got, lo, hi := h.Quantile(0.99), 100*time.Microsecond, 100*time.Microsecond+100*time.Microsecond/(1<<subBits); got < lo || got > hi {
		t.Errorf("p99 = %v, want in [%v, %v]", got, lo, hi)
	}
	if got, want := h.Quantile(0.999), 50*time.Millisecond; got != want {
		t.Errorf("p99.9 = %v, want %v", got, want)
	}
}

func TestHistogramEmptyMergeReset(t *testing.T) {
	t.Parallel()
	empty := NewHistogram()
	if empty.Quantile(0.5) != 0 || empty.Min() != 0 || empty.Max() != 0 || empty.Mean() != 0 {
		t.Errorf("empty histogram: p50 %v min %v max %v mean %v, want all 0",
			empty.Quantile(0.5), empty.Min(), empty.Max(), empty.Mean())
	}

	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		d := time.Duration(rng.Int64N(int64(time.Second)))
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	a.Merge(empty)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		if got, want := a.Quantile(q), all.Quantile(q); got != want {
			t.Errorf("merged Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if a.Count() != all.Count() || a.Min() != all.Min() || a.Max() != all.Max() || a.Mean() != all.Mean() {
		t.Errorf("merged count/min/max/mean = %d/%v/%v/%v, want %d/%v/%v/%v",
			a.Count(), a.Min(), a.Max(), a.Mean(), all.Count(), all.Min(), all.Max(), all.Mean())
	}

	a.Reset()
	if a.Count() != 0 || a.Quantile(0.5) != 0 || a.Max() != 0 {
		t.Errorf("after Reset: count %d p50 %v max %v, want 0", a.Count(), a.Quantile(0.5), a.Max())
	}
	a.Record(-time.Second)
	if a.Max() != 0 || a.Count() != 1 {
		t.Errorf("negative duration: max %v count %d, want 0 and 1", a.Max(), a.Count())
	}
	a.Record(time.Hour) // beyond the tracked range: clamped bucket, exact max
	if got := a.Quantile(1); got != time.Hour {
		t.Errorf("Quantile(1) after 1h = %v, want 1h (clamped to max)", got)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	h := NewHistogram()
	d := time.Duration(1)
	if n := testing.AllocsPerRun(1000, func() { d = d*3 + 17; h.Record(d % time.Second) }); n != 0 {
		t.Errorf("Record allocates %v times per call, want 0", n)
	}
}
