// Package refstats keeps envoyproxy/ratelimit's stats, with its names and
// its counting rules, so that dashboards and alerts built for the reference
// keep working: per stat key (the domain and descriptor path, as the
// reference builds it) total_hits, over_limit, near_limit, within_limit and
// shadow_mode; per domain that no config defines, domain_not_found; for the
// service, config_load_success and config_load_error, global_shadow_mode,
// call.should_rate_limit.redis_error and service_error; per gRPC method,
// ratelimit_server.METHOD.total_requests and the response_time timer.
//
// The stats are fed by the engine (Stats is an engine.Observer), the gRPC
// server (UnaryServerInterceptor) and the config loader (ConfigLoaded),
// and go out as the reference sends them: to statsd (counter deltas as
// `name:N|c` lines, timers as `name:N|ms`, flushed periodically; see
// StatsdOptions) and to Prometheus through a statsd_exporter mapping (see
// Mapper and Handler).
package refstats

import (
	"log/slog"
	"math"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Defaults (see Options).
const (
	DefaultNearLimitRatio = 0.8
	DefaultMaxKeys        = 100000
)

// Stat name prefixes, as the reference's scopes make them.
const (
	serviceScope   = "ratelimit.service."
	rateLimitScope = "ratelimit.service.rate_limit."
	callScope      = "ratelimit.service.call.should_rate_limit."
	serverScope    = "ratelimit_server."
)

// Options configure Stats. The zero value of each field is its default.
type Options struct {
	// NearLimitRatio is the reference's NEAR_LIMIT_RATIO (default 0.8):
	// hits above this share of a limit count as near_limit.
	NearLimitRatio float32
	// MaxKeys bounds the stat keys made per request (detailed_metric,
	// value_to_metric and Envoy's limit overrides name one per value; the
	// reference never stops): past it those hits count under the rule's
	// configured key, or, for an override, not at all (default 100000).
	MaxKeys int
	// Statsd, when its Addr is set, sends the stats to statsd.
	Statsd StatsdOptions
	// Prometheus, when set, keeps the stats for Handler under the names
	// this mapping gives (DefaultMapper is the reference's).
	Prometheus *Mapper
	// Log receives statsd connection trouble (default: discarded).
	Log *slog.Logger
	// ExtraTags are added to every stat but the local-cache gauges (the
	// reference's EXTRA_TAGS), as its stats library writes tags into a
	// name: NAME.__KEY=VALUE for each, by key.
	ExtraTags map[string]string
}

// Stats are the reference's stats of one process. Make one with New, start
// its statsd sink with Start, and Close it at the end.
type Stats struct {
	ratio   float32
	maxKeys int
	log     *slog.Logger
	tags    string // ExtraTags as a name suffix

	mu       sync.RWMutex
	counters map[string]*counter
	list     []*counter // in creation order
	timers   map[string]*timer
	gauges   []*gauge
	keys     map[string]*keyStats // by stat key
	dynamic  map[string]*keyStats // by unsanitized key made from a request
	notFound map[string]*counter  // by domain
	methods  map[string]*method   // by gRPC full method
	dropped  atomic.Uint64        // hits not counted: MaxKeys reached

	configOK, configErr, redisErr, serviceErr, globalShadow *counter

	statsd *statsdSink
	prom   *promExporter
}

var _ engine.Observer = (*Stats)(nil)

// counter is one stat counter: cumulative, read by the sinks.
type counter struct {
	name string
	v    atomic.Uint64
	sent uint64 // the value statsd has been sent; the flusher's alone

	mapped *Mapped // the Prometheus mapping, resolved at the first scrape
}

func (c *counter) add(n uint64) { c.v.Add(n) }

// keyStats are the counters of one stat key.
type keyStats struct {
	total, over, near, within, shadow *counter
	overLocal                         *counter // over_limit_with_local_cache
}

// gauge is one stat gauge, read when the sinks send.
type gauge struct {
	name string
	read func() uint64

	mapped *Mapped // the Prometheus mapping, resolved at the first scrape
}

// New returns Stats; nothing is sent until Start.
func New(opts Options) *Stats {
	s := &Stats{
		ratio:    opts.NearLimitRatio,
		maxKeys:  opts.MaxKeys,
		log:      opts.Log,
		counters: map[string]*counter{},
		timers:   map[string]*timer{},
		keys:     map[string]*keyStats{},
		dynamic:  map[string]*keyStats{},
		notFound: map[string]*counter{},
		methods:  map[string]*method{},
		tags:     tagSuffix(opts.ExtraTags),
	}
	if s.ratio <= 0 {
		s.ratio = DefaultNearLimitRatio
	}
	if s.maxKeys <= 0 {
		s.maxKeys = DefaultMaxKeys
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Statsd.Addr != "" {
		s.statsd = newStatsdSink(opts.Statsd, s.log)
	}
	if opts.Prometheus != nil {
		s.prom = newPromExporter(opts.Prometheus)
	}
	s.mu.Lock()
	s.configOK = s.counterLocked(serviceScope + "config_load_success")
	s.configErr = s.counterLocked(serviceScope + "config_load_error")
	s.globalShadow = s.counterLocked(serviceScope + "global_shadow_mode")
	s.redisErr = s.counterLocked(callScope + "redis_error")
	s.serviceErr = s.counterLocked(callScope + "service_error")
	s.mu.Unlock()
	return s
}

// tagSuffix is tags written as the reference's stats library (gostats)
// writes them into a stat's name: .__KEY=VALUE for each, sorted by key.
func tagSuffix(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(".__" + sanitize(k) + "=" + sanitize(tags[k]))
	}
	return b.String()
}

// counterLocked returns the counter named name (and the extra tags), made
// if new; s.mu is held.
func (s *Stats) counterLocked(name string) *counter {
	name += s.tags
	if c := s.counters[name]; c != nil {
		return c
	}
	c := &counter{name: name}
	s.counters[name] = c
	s.list = append(s.list, c)
	return c
}

// snapshot returns every counter.
func (s *Stats) snapshot() []*counter {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.list[:len(s.list):len(s.list)]
}

// keyStatsLocked returns the counters of stat key (sanitized); s.mu is held.
func (s *Stats) keyStatsLocked(key string) *keyStats {
	if k := s.keys[key]; k != nil {
		return k
	}
	p := rateLimitScope + key + "."
	k := &keyStats{
		total:  s.counterLocked(p + "total_hits"),
		over:   s.counterLocked(p + "over_limit"),
		near:   s.counterLocked(p + "near_limit"),
		within: s.counterLocked(p + "within_limit"),
		shadow: s.counterLocked(p + "shadow_mode"),

		overLocal: s.counterLocked(p + "over_limit_with_local_cache"),
	}
	s.keys[key] = k
	return k
}

// ConfigLoaded counts a config load: config_load_success, or
// config_load_error when ok is false.
func (s *Stats) ConfigLoaded(ok bool) {
	if ok {
		s.configOK.add(1)
	} else {
		s.configErr.add(1)
	}
}

// ruleState is what Prepare keeps for a rule.
type ruleState struct {
	static *keyStats
	// perRequest: the stat key depends on the request's values
	// (detailed_metric, or value_to_metric on a level that matched a
	// default or a pattern).
	perRequest bool
	detailed   bool
	path       []descriptors.PathEntry
	shared     []string
}

// Prepare makes a rule's stat key, as the reference names the rule's
// limit: the domain, then each level's key, with "_" and its configured
// value or pattern when it has one.
func (s *Stats) Prepare(domain string, r *descriptors.Rule) any {
	b := []byte(domain)
	for _, p := range r.Path {
		b = append(b, '.')
		b = append(b, p.Key...)
		if p.Value != "" {
			b = append(b, '_')
			b = append(b, p.Value...)
		}
	}
	st := &ruleState{detailed: r.DetailedMetric, path: r.Path, shared: r.SharedValue}
	for _, p := range r.Path {
		if p.ValueToMetric && (p.Value == "" || strings.Contains(p.Value, "*")) {
			st.perRequest = true
		}
	}
	st.perRequest = st.perRequest || r.DetailedMetric
	s.mu.Lock()
	st.static = s.keyStatsLocked(sanitize(string(b)))
	s.mu.Unlock()
	return st
}

// key appends the stat key the reference gives a request's descriptor on
// this rule.
func (st *ruleState) key(b []byte, domain string, entries []engine.Entry) []byte {
	b = append(b, domain...)
	sharedAt := func(i int) string {
		if i < len(st.shared) {
			return st.shared[i]
		}
		return ""
	}
	if st.detailed {
		anyShared := false
		for i := range entries {
			anyShared = anyShared || sharedAt(i) != ""
		}
		for i, e := range entries {
			b = append(b, '.')
			b = append(b, e.Key...)
			switch {
			case sharedAt(i) != "":
				b = append(b, '_')
				b = append(b, sharedAt(i)...)
			case !anyShared || e.Value != "":
				b = append(b, '_')
				b = append(b, e.Value...)
			}
		}
		return b
	}
	// value_to_metric, on some level of the rule's path.
	for i, e := range entries {
		b = append(b, '.')
		b = append(b, e.Key...)
		v := ""
		if i < len(st.path) {
			p := st.path[i]
			switch {
			case strings.Contains(p.Value, "*"):
				v = p.Value
				if sharedAt(i) == "" && p.ValueToMetric {
					v = e.Value
				}
			case p.Value != "":
				v = e.Value
			case p.ValueToMetric:
				v = e.Value
			}
		}
		if v != "" {
			b = append(b, '_')
			b = append(b, v...)
		}
	}
	return b
}

// overrideKey appends the stat key of a descriptor that brings its own
// limit: the domain and every entry, key_value (key alone when the value
// is empty).
func overrideKey(b []byte, domain string, entries []engine.Entry) []byte {
	b = append(b, domain...)
	for _, e := range entries {
		b = append(b, '.')
		b = append(b, e.Key...)
		if e.Value != "" {
			b = append(b, '_')
			b = append(b, e.Value...)
		}
	}
	return b
}

// perRequest returns the counters of a key made from a request, made if
// new; nil past MaxKeys.
func (s *Stats) perRequest(raw []byte) *keyStats {
	s.mu.RLock()
	k := s.dynamic[string(raw)]
	s.mu.RUnlock()
	if k != nil {
		return k
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k = s.dynamic[string(raw)]; k != nil {
		return k
	}
	if len(s.dynamic) >= s.maxKeys {
		return nil
	}
	k = s.keyStatsLocked(sanitize(string(raw)))
	s.dynamic[string(raw)] = k
	return k
}

// Decided counts one descriptor's decision as the reference counts it.
func (s *Stats) Decided(domain string, d *engine.Descriptor, l *engine.Limit, hit *quota.Hit, dec *quota.Decision) {
	st, _ := l.ObserverState().(*ruleState)
	var k *keyStats
	switch {
	case st != nil && !st.perRequest:
		k = st.static
	case st != nil:
		var buf [256]byte
		if k = s.perRequest(st.key(buf[:0], domain, d.Entries)); k == nil {
			s.dropped.Add(1)
			k = st.static
		}
	case l.Override:
		var buf [256]byte
		if k = s.perRequest(overrideKey(buf[:0], domain, d.Entries)); k == nil {
			s.dropped.Add(1)
			return
		}
	default:
		return // a door's own limit: the reference has none
	}
	s.count(k, l, hit, dec)
}

// count adds one decision to k: every hit to total_hits (those the backend
// failed to decide too, as the reference counts them first); a hit that did
// not fit to over_limit (and shadow_mode on a shadow rule); one that did
// to within_limit, and to near_limit too for the part of it above the
// near-limit threshold, floor(limit × NearLimitRatio).
//
// The reference splits a batch of hits that crosses the limit between
// near_limit and over_limit; the backend does not say where the count
// stood before a batch that did not fit, so all of it is over_limit here
// (exact for single hits).
func (s *Stats) count(k *keyStats, l *engine.Limit, hit *quota.Hit, dec *quota.Decision) {
	n := hit.N
	k.total.add(n)
	if dec == nil {
		return // the backend failed: asked, not decided
	}
	if !dec.Fits {
		k.over.add(n)
		if dec.FromCache {
			k.overLocal.add(n)
		}
		if l.Shadow {
			k.shadow.add(n)
		}
		return
	}
	k.within.add(n)
	limit := hit.Limit.Capacity()
	threshold := uint64(math.Floor(float64(float32(limit) * s.ratio)))
	var after uint64
	if dec.Remaining < limit {
		after = limit - dec.Remaining
	}
	before := uint64(0)
	if after > n {
		before = after - n
	}
	if after > threshold {
		if before >= threshold {
			k.near.add(n)
		} else {
			k.near.add(after - threshold)
		}
	}
}

// UnknownDomain counts domain_not_found once per descriptor, as the
// reference looks each one up.
func (s *Stats) UnknownDomain(domain string, descriptors int) {
	s.mu.RLock()
	c := s.notFound[domain]
	s.mu.RUnlock()
	if c == nil {
		s.mu.Lock()
		if c = s.notFound[domain]; c == nil {
			if len(s.notFound) >= s.maxKeys {
				s.mu.Unlock()
				s.dropped.Add(1)
				return
			}
			c = s.counterLocked(rateLimitScope + sanitize(domain) + ".domain_not_found")
			s.notFound[domain] = c
		}
		s.mu.Unlock()
	}
	c.add(uint64(descriptors))
}

// BackendFailed counts call.should_rate_limit.redis_error.
func (s *Stats) BackendFailed() { s.redisErr.add(1) }

// ShadowAdmitted counts global_shadow_mode.
func (s *Stats) ShadowAdmitted() { s.globalShadow.add(1) }

// ipv4 is an IPv4 address inside a stat name: the reference writes its
// dots as '_', so that they do not split the name.
var ipv4 = regexp.MustCompile(`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`)

// sanitize is the reference's stat name clean-up: ':' and '|' (statsd's
// separators) become '_', and so do the dots of IPv4 addresses.
func sanitize(s string) string {
	s = strings.NewReplacer(":", "_", "|", "_").Replace(s)
	return ipv4.ReplaceAllStringFunc(s, func(ip string) string { return strings.ReplaceAll(ip, ".", "_") })
}

// LocalCache adds the reference's local-cache gauges, ratelimit.localcache.*
// (hitCount, missCount, lookupCount, entryCount), read from lookups (hits
// answered and not) and entries when the sinks send.
func (s *Stats) LocalCache(lookups func() (hits, misses uint64), entries func() int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range []*gauge{
		{name: "ratelimit.localcache.hitCount", read: func() uint64 { h, _ := lookups(); return h }},
		{name: "ratelimit.localcache.missCount", read: func() uint64 { _, m := lookups(); return m }},
		{name: "ratelimit.localcache.lookupCount", read: func() uint64 { h, m := lookups(); return h + m }},
		{name: "ratelimit.localcache.entryCount", read: func() uint64 { return uint64(max(0, entries())) }},
	} {
		s.gauges = append(s.gauges, g)
	}
}

// gaugeList returns every gauge.
func (s *Stats) gaugeList() []*gauge {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gauges[:len(s.gauges):len(s.gauges)]
}

// Gauges returns every gauge's value, by its statsd name.
func (s *Stats) Gauges() map[string]uint64 {
	out := map[string]uint64{}
	for _, g := range s.gaugeList() {
		out[g.name] = g.read()
	}
	return out
}

// Counters returns every counter that has moved, by its statsd name.
func (s *Stats) Counters() map[string]uint64 {
	out := map[string]uint64{}
	for _, c := range s.snapshot() {
		if v := c.v.Load(); v != 0 {
			out[c.name] = v
		}
	}
	return out
}
