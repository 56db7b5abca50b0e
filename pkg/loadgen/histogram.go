package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, in the manner of HdrHistogram: values below
// 2^subBits nanoseconds get one bucket each, and every power of two above
// that is split into 2^subBits equal buckets. A bucket is therefore never
// wider than 1/2^subBits of its lower bound (under 0.8% with 7 bits), the
// whole array is fixed at construction, and Record is an index computation
// and an increment: no allocation on the request path.
const (
	subBits = 7
	// maxBits bounds the tracked range to 2^40 ns (about 18 minutes); larger
	// values land in the last bucket. Latencies that long cannot happen with
	// a per-request timeout, so nothing real is lost.
	maxBits    = 40
	numBuckets = (maxBits-subBits-1)<<subBits + 1<<(subBits+1)
	maxTracked = uint64(1)<<maxBits - 1
)

// Histogram records durations with bounded relative error and answers
// quantiles. The zero value is not usable; call NewHistogram. A Histogram is
// not safe for concurrent use: give each worker its own and Merge them.
type Histogram struct {
	counts []uint64
	total  uint64
	sum    uint64 // nanoseconds; overflows only after ~584 years of latency
	min    uint64
	max    uint64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, numBuckets), min: ^uint64(0)}
}

// bucketIndex maps a value in nanoseconds to its bucket. For v below
// 2^(subBits+1) the index is v itself; above, shift is how many low bits the
// bucket ignores and v>>shift keeps the top subBits+1 bits (the leading one
// included), so consecutive powers of two continue the index seamlessly.
func bucketIndex(v uint64) int {
	if v > maxTracked {
		v = maxTracked
	}
	shift := bits.Len64(v) - 1 - subBits
	if shift < 0 {
		shift = 0
	}
	return shift<<subBits + int(v>>uint(shift))
}

// bucketBounds is the inverse of bucketIndex: the lowest and highest values
// (inclusive) that land in bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 1<<(subBits+1) {
		return uint64(i), uint64(i)
	}
	shift := i>>subBits - 1
	lo = uint64(i-shift<<subBits) << uint(shift)
	return lo, lo + uint64(1)<<uint(shift) - 1
}

// Record adds one observation. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketIndex(v)]++
	h.total++
	h.sum += v
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Reset forgets every observation, keeping the bucket array.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.total, h.sum, h.min, h.max = 0, 0, ^uint64(0), 0
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest observation, exactly; 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min is the smallest observation, exactly; 0 when empty.
func (h *Histogram) Min() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Mean is the arithmetic mean of the observations; 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / h.total)
}

// Quantile returns a value v such that at least q of the observations are
// at most v: the upper bound of the bucket holding the observation of rank
// ceil(q*Count), clamped to the exact minimum and maximum, so it
// overstates the true quantile by less than one bucket width. q is clamped
// to [0, 1]; an empty histogram answers 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	// The small subtraction keeps a product that is mathematically whole
	// (0.999*1000) from being pushed to the next rank by float rounding.
	rank := uint64(math.Ceil(q*float64(h.total) - 1e-7))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == numBuckets-1 {
				// Values beyond the tracked range share this bucket; the
				// exact maximum is the best answer there is.
				return time.Duration(h.max)
			}
			_, hi := bucketBounds(i)
			return time.Duration(min(max(hi, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}
