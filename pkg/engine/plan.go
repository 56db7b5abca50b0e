package engine

import (
	"strconv"
	"time"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/quota"
)

// OverrideName names the limits Envoy gives with a request on descriptors
// that match no rule, in metrics and headers.
const OverrideName = "envoy_override"

// Limit is a limit resolved for deciding: a rule's, built once at config
// load, or an override's, built for one request. It is shared by the calls
// that use it and must not be modified.
type Limit struct {
	// Name is rate_limit.name; "" when the rule has none and for an
	// override (the reference names no overriding limit).
	Name string
	// ID names the limit stably within its domain: Name, else the rule's
	// StatName, else OverrideName. Headers and metrics use it.
	ID string
	// Quota is what is counted.
	Quota quota.Limit
	// Override is set when the limit came with the request.
	Override bool
	// Shadow: over the limit is reported but never rejects. An override is
	// never in shadow mode, even on a shadow rule (as the reference).
	Shadow bool
	// QuotaMode: over the limit rejects only when every quota-mode limit
	// of the request is over.
	QuotaMode bool
	// Overdraw: hits are taken in full whatever the decision (the rule's
	// overdraw; an override keeps its rule's).
	Overdraw bool

	rule      *descriptors.Rule // nil for an override on an unmatched descriptor, and for a door's own limit
	namespace string            // a door's own limit: names its counters instead of the request's domain
	header    string            // ID as a structured-field string
	policy    string            // the RateLimit-Policy member; "" until needed for overrides
	counters  ruleCounters
	obs       any // the Observer's state for the rule (ObserverState)
}

// NewLimit makes a door's own limit (see Descriptor.Limit), counted in
// its own namespace and in the metrics as domain namespace, rule name.
// Make it once, when the door's config loads, not per request.
func (e *Engine) NewLimit(namespace, name string, q quota.Limit) *Limit {
	l := &Limit{Name: name, ID: name, Quota: q, namespace: namespace}
	l.header = quoteSF(name)
	l.policy = policyMember(l.header, q)
	l.counters = e.metrics.forRule(namespace, name)
	return l
}

// Rule is the rule the limit belongs to (for an override, the rule the
// descriptor matched), or nil.
func (l *Limit) Rule() *descriptors.Rule { return l.rule }

// plan is a config compiled for deciding.
type plan struct {
	cfg    *descriptors.Config
	limits map[*descriptors.Rule]*Limit // limited rules only
	// overrides holds, per domain, the counters of overrides on
	// descriptors that match no rule.
	overrides map[string]ruleCounters
	// series are the metric label pairs this plan created, so that the
	// next SetConfig can drop those of rules it no longer has.
	series map[[2]string]struct{}
}

// SetConfig compiles cfg and makes it the config deciding new calls. Metric
// series of rules that cfg no longer has are dropped.
func (e *Engine) SetConfig(cfg *descriptors.Config) {
	p := &plan{
		cfg:       cfg,
		limits:    make(map[*descriptors.Rule]*Limit),
		overrides: make(map[string]ruleCounters),
		series:    make(map[[2]string]struct{}),
	}
	for _, d := range cfg.Domains() {
		p.overrides[d.Name] = e.metrics.forRule(d.Name, OverrideName)
		p.series[[2]string{d.Name, OverrideName}] = struct{}{}
		for _, r := range d.Rules() {
			p.series[[2]string{d.Name, r.StatName}] = struct{}{}
			if r.Unlimited {
				continue
			}
			l := &Limit{
				Name:      r.Name,
				ID:        limitID(r),
				Quota:     r.Limit,
				Shadow:    r.Shadow,
				QuotaMode: r.QuotaMode || e.quotaMode,
				Overdraw:  r.Overdraw,
				rule:      r,
				counters:  e.metrics.forRule(d.Name, r.StatName),
			}
			l.header = quoteSF(l.ID)
			l.policy = policyMember(l.header, l.Quota)
			if e.observer != nil {
				l.obs = e.observer.Prepare(d.Name, r)
			}
			p.limits[r] = l
		}
	}
	old := e.plan.Swap(p)
	if old != nil {
		for s := range old.series {
			if _, kept := p.series[s]; !kept {
				e.metrics.drop(s[0], s[1])
			}
		}
	}
}

// Config returns the config in force, or nil before the first SetConfig.
func (e *Engine) Config() *descriptors.Config {
	if p := e.plan.Load(); p != nil {
		return p.cfg
	}
	return nil
}

func limitID(r *descriptors.Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return r.StatName
}

// override resolves Envoy's limit for one descriptor, which matched r (or
// nil). It keeps the matched rule's algorithm (a token bucket's burst
// scaled to at least the new rate) and overdraw, else the config's default
// algorithm (sliding_window unless --default-algorithm says otherwise); its
// hits count under the rule's metrics, else the domain's OverrideName.
func (p *plan) override(domain string, r *descriptors.Rule, o Override, globalQuota bool) *Limit {
	l := &Limit{
		Override:  true,
		QuotaMode: globalQuota,
		Quota:     quota.Limit{Requests: o.Requests, Unit: o.Unit},
		rule:      r,
	}
	if rl := p.limits[r]; rl != nil {
		l.Quota.Algorithm = rl.Quota.Algorithm
		l.Overdraw = rl.Overdraw
		if b := rl.Quota.Burst; b != 0 {
			l.Quota.Burst = max(b, o.Requests)
		}
		l.ID, l.header, l.counters = rl.ID, rl.header, rl.counters
		return l
	}
	if r != nil { // an unlimited rule
		l.Quota.Algorithm = p.cfg.DefaultAlgorithm()
		l.ID = limitID(r)
		l.header = quoteSF(l.ID)
		l.counters = p.overrides[domain]
		return l
	}
	l.Quota.Algorithm = p.cfg.DefaultAlgorithm()
	l.ID, l.header, l.counters = OverrideName, `"`+OverrideName+`"`, p.overrides[domain]
	return l
}

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

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
