package engine

import "strconv"

// Header names of draft-ietf-httpapi-ratelimit-headers-11, as every door
// sends them.
const (
	HeaderPolicy     = "RateLimit-Policy"
	HeaderRateLimit  = "RateLimit"
	HeaderRetryAfter = "Retry-After"
)

// Headers are the values of the rate-limit headers of one outcome; a value
// is "" when its header is not sent.
type Headers struct {
	Policy, RateLimit, RetryAfter string
}

// HeaderBuilder renders an Outcome's headers. Its buffers are reused from
// one Build to the next, so keep one per goroutine (in pooled scratch).
type HeaderBuilder struct {
	policy, state []byte
}

// Build returns the headers of o: one RateLimit-Policy and RateLimit list
// member per limited descriptor, in order, and Retry-After (the longest
// wait of the descriptors over their limit, in seconds) when o rejects.
func (b *HeaderBuilder) Build(o *Outcome) Headers {
	b.policy, b.state = b.policy[:0], b.state[:0]
	members := 0
	onlyPolicy := ""
	var retry int64
	for i := range o.Statuses {
		st := &o.Statuses[i]
		l := st.Limit
		if l == nil {
			continue
		}
		if members > 0 {
			b.policy = append(b.policy, ", "...)
			b.state = append(b.state, ", "...)
		}
		members++
		policy := l.policy
		if policy == "" { // an override: built for this request only
			policy = policyMember(l.header, l.Quota)
		}
		onlyPolicy = policy
		b.policy = append(b.policy, policy...)
		b.state = append(b.state, l.header...)
		b.state = append(b.state, ";r="...)
		b.state = strconv.AppendUint(b.state, st.Remaining, 10)
		b.state = append(b.state, ";t="...)
		t := ceilSeconds(st.ResetAfter)
		b.state = strconv.AppendInt(b.state, t, 10)
		if st.Code == OverLimit && t > retry {
			retry = t
		}
	}
	if members == 0 {
		return Headers{}
	}
	h := Headers{Policy: onlyPolicy, RateLimit: string(b.state)}
	if members > 1 {
		h.Policy = string(b.policy)
	}
	if o.Code == OverLimit {
		h.RetryAfter = strconv.FormatInt(retry, 10)
	}
	return h
}
