package ratelimitsvc

import (
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/floodgate/floodgate/pkg/quota"
)

// quoteSF renders s as a structured-field string (RFC 8941): printable ASCII
// only, with '"' and '\' escaped; other bytes become '_'.
func quoteSF(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '_')
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// policyMember is one RateLimit-Policy list member: the quota q and its
// window w in seconds. A token bucket's quota is its capacity and its window
// the time it takes to refill from empty.
func policyMember(name string, l quota.Limit) string {
	q := l.Capacity()
	w := int64(l.Unit / time.Second)
	if l.Algorithm == quota.TokenBucket && l.Requests > 0 {
		w = ceilSeconds(time.Duration(float64(l.Unit) * float64(q) / float64(l.Requests)))
	}
	b := make([]byte, 0, len(name)+32)
	b = append(b, name...)
	b = append(b, ";q="...)
	b = strconv.AppendUint(b, q, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, w, 10)
	return string(b)
}

// headerBuilder collects the list members of one response's headers. It
// lives in the pooled scratch, so its buffers are reused across calls.
type headerBuilder struct {
	policy, state []byte
	members       int
	onlyPolicy    string // the policy member when there is exactly one
	retry         int64  // seconds until the rejected request would be admitted
}

func (h *headerBuilder) reset() {
	h.policy, h.state = h.policy[:0], h.state[:0]
	h.members, h.onlyPolicy, h.retry = 0, "", 0
}

func (h *headerBuilder) add(name, policy string, d *quota.Decision, over bool) {
	if h.members > 0 {
		h.policy = append(h.policy, ", "...)
		h.state = append(h.state, ", "...)
	}
	h.members++
	h.onlyPolicy = policy
	h.policy = append(h.policy, policy...)
	h.state = append(h.state, name...)
	h.state = append(h.state, ";r="...)
	h.state = strconv.AppendUint(h.state, d.Remaining, 10)
	h.state = append(h.state, ";t="...)
	t := ceilSeconds(d.ResetAfter)
	h.state = strconv.AppendInt(h.state, t, 10)
	if over && t > h.retry {
		h.retry = t
	}
}

// headers writes the headers into r and returns them; Retry-After only when
// the request is rejected.
func (h *headerBuilder) headers(r response, rejected bool) []*corev3.HeaderValue {
	if h.members == 0 {
		return nil
	}
	policy := h.onlyPolicy // precomputed at config load: no copy
	if h.members > 1 {
		policy = string(h.policy)
	}
	r.header(HeaderPolicy, policy)
	r.header(HeaderRateLimit, string(h.state))
	if rejected {
		r.header(HeaderRetryAfter, strconv.FormatInt(h.retry, 10))
	}
	return r.hdrPtrs
}
