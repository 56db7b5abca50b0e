// Package statuspage is the sidecar's live status page (GET /debug/) and
// its JSON (GET /debug/status.json): the config in force with its sources,
// per rule, auth policy and cache rule the totals and rates of its metrics,
// the keys most often over their limit, and the backend's health.
//
// Every number comes from the process's Prometheus registry, so the page
// agrees with /metrics: totals from a Gather made for the page, rates from
// the change against a sample kept by a goroutine that gathers once per
// interval (Status.Run). The keys over their limit come from a Tracker, an
// engine.Observer of bounded size that shows values only as a keyed hash.
//
// The page is server-rendered HTML with inline CSS and a small inline script
// (allowed by hash in its Content-Security-Policy, which forbids anything
// else): without JavaScript it refreshes itself with a meta refresh; with
// it, the script polls the JSON and updates the numbers in place.
package statuspage

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultInterval = time.Second
	DefaultWindow   = 10 * time.Second
	DefaultTopN     = 20
	DefaultRefresh  = 2 * time.Second
)

// Config is what the process has loaded, as the page lists it. The page
// fills in the numbers (the Num fields); the rest is shown as given.
type Config struct {
	Sources    []Source
	Domains    []Domain
	Policies   []Policy
	CacheRules []CacheRule
}

// Source is one config source.
type Source struct {
	// Name is what it configures: limits, auth, cache.
	Name string `json:"name"`
	// Origin is where it comes from: a file or directory, or an xDS server
	// with the version in force.
	Origin    string    `json:"origin"`
	Loaded    bool      `json:"loaded"`
	LoadedAt  time.Time `json:"loaded_at"`
	LastError string    `json:"last_error,omitempty"`
}

// Domain is one rate-limit domain.
type Domain struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
	Rules []Rule   `json:"rules"`
}

// Rule is one rate-limit rule.
type Rule struct {
	// StatName is the rule's metric label (rule="..."), Name its
	// rate_limit.name.
	StatName string `json:"stat_name"`
	Name     string `json:"name,omitempty"`
	// Descriptor is its keys and values, "key=value / key" (a key alone
	// matches any value).
	Descriptor string `json:"descriptor"`
	// Limit is "100 per minute", "unlimited", ...
	Limit     string `json:"limit"`
	Algorithm string `json:"algorithm,omitempty"`
	// Modes lists shadow_mode, quota_mode, overdraw when set.
	Modes  []string `json:"modes,omitempty"`
	Shadow bool     `json:"-"`
	// Source is FILE:LINE (or the xDS resource).
	Source string `json:"source"`

	// Hits is floodgate_ratelimit_total_hits; OverLimit
	// floodgate_ratelimit_over_limit (floodgate_ratelimit_shadow_mode for
	// a shadow-mode rule: over, admitted anyway).
	Hits      Num `json:"hits"`
	OverLimit Num `json:"over_limit"`
}

// Policy is one auth policy.
type Policy struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	Match     string `json:"match"`
	Auth      string `json:"auth"`
	RateLimit string `json:"rate_limit,omitempty"`

	// Allowed and Denied are floodgate_auth_decisions_total's result="ok"
	// and every other result.
	Allowed Num `json:"allowed"`
	Denied  Num `json:"denied"`
}

// CacheRule is one response-cache rule.
type CacheRule struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Match  string `json:"match"`
	Scope  string `json:"scope"`
	TTL    string `json:"ttl"`

	// Hits, Misses and Bypassed are floodgate_cache_requests_total's
	// result="hit", "miss" and "bypass".
	Hits     Num `json:"hits"`
	Misses   Num `json:"misses"`
	Bypassed Num `json:"bypassed"`
}

// BackendNode is one backend node's health.
type BackendNode struct {
	Name   string `json:"name"`
	Up     bool   `json:"up"`
	Detail string `json:"detail,omitempty"`
}

// Total is a labelled number of the page's summary.
type Total struct {
	Label string `json:"label"`
	Num
}

// Page is everything the page shows, also its JSON.
type Page struct {
	Generated time.Time `json:"generated"`
	// RateWindow is the seconds the rates are over (0: none yet).
	RateWindow float64     `json:"rate_window_seconds"`
	Refresh    float64     `json:"refresh_seconds"`
	Totals     []Total     `json:"totals"`
	Sources    []Source    `json:"sources"`
	Domains    []Domain    `json:"domains"`
	Policies   []Policy    `json:"policies,omitempty"`
	CacheRules []CacheRule `json:"cache_rules,omitempty"`
	// TopKeys are the keys most often over their limit; TopKeysSeen the
	// over-limit answers tracked in all, TopKeysCapacity how many keys are
	// followed.
	TopKeys         []TopKey      `json:"top_keys"`
	TopKeysSeen     uint64        `json:"top_keys_seen"`
	TopKeysCapacity int           `json:"top_keys_capacity"`
	Backend         []BackendNode `json:"backend"`
	BackendCounters []Total       `json:"backend_counters"`
	// GatherError is set when the registry could not gather everything.
	GatherError string `json:"gather_error,omitempty"`
}

// Options configure a Status. Gatherer is required; the zero value of
// every other field is its default.
type Options struct {
	// Gatherer is the registry /metrics serves.
	Gatherer prometheus.Gatherer
	// Config returns what is loaded now; nil shows nothing loaded.
	Config func() Config
	// Backend returns the backend's nodes; nil shows none.
	Backend func() []BackendNode
	// Tracker gives the top keys; nil shows none.
	Tracker *Tracker
	// TopN is how many top keys are shown; default DefaultTopN.
	TopN int
	// Interval is how often Run samples the registry; default
	// DefaultInterval.
	Interval time.Duration
	// Window is how far back the rates look; default DefaultWindow.
	Window time.Duration
	// Refresh is how often the page updates itself; default
	// DefaultRefresh.
	Refresh time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// families are the metric families the page reads (by prefix).
var families = []string{"floodgate_ratelimit_", "floodgate_auth_decisions_total", "floodgate_cache_requests_total",
	"floodgate_redis_", "floodgate_nearcache_hits_total"}

// Status serves the page.
type Status struct {
	opts    Options
	sampler *sampler
}

// New returns a Status; call Run for rates.
func New(o Options) (*Status, error) {
	if o.Gatherer == nil {
		return nil, errors.New("statuspage: Options.Gatherer is required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Window < o.Interval {
		return nil, errors.New("statuspage: Options.Window is shorter than Options.Interval")
	}
	if o.TopN <= 0 {
		o.TopN = DefaultTopN
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Status{opts: o, sampler: &sampler{
		g: o.Gatherer, prefixes: families, interval: o.Interval, now: o.Now,
		size: int(o.Window/o.Interval) + 1,
	}}, nil
}

// Run samples the registry every Interval until ctx ends, keeping the
// last Window of samples. It returns nil.
func (s *Status) Run(ctx context.Context) error { return s.sampler.run(ctx) }

// Sample takes one sample now, as Run does every Interval (for tests).
func (s *Status) Sample() { s.sampler.sample() }

// Page gathers the registry and builds the page.
func (s *Status) Page() Page {
	now := s.opts.Now()
	cur, err := gather(s.opts.Gatherer, families, now)
	old := s.sampler.oldest()
	p := Page{Generated: now.UTC(), Refresh: s.opts.Refresh.Seconds(), Sources: []Source{}, Domains: []Domain{},
		TopKeys: []TopKey{}, Backend: []BackendNode{}, Totals: []Total{}, BackendCounters: []Total{}}
	if err != nil {
		p.GatherError = err.Error()
	}
	if old != nil && cur.at.Sub(old.at) >= s.opts.Interval/2 {
		p.RateWindow = cur.at.Sub(old.at).Seconds()
	} else {
		old = nil
	}
	num := func(n Num) Num {
		fill(&n, cur, old)
		return n
	}
	total := func(into *[]Total, label string, n Num) {
		if _, ok := cur.families[n.Metric]; ok {
			*into = append(*into, Total{Label: label, Num: num(n)})
		}
	}
	total(&p.Totals, "rate-limit hits", Sel("floodgate_ratelimit_total_hits"))
	total(&p.Totals, "hits over limit", Sel("floodgate_ratelimit_over_limit"))
	total(&p.Totals, "shadow-mode hits over limit", Sel("floodgate_ratelimit_shadow_mode"))
	total(&p.Totals, "auth denials", Sel("floodgate_auth_decisions_total", Ne("result", "ok")))
	total(&p.Totals, "cache hits", Sel("floodgate_cache_requests_total", Eq("result", "hit")))
	total(&p.Totals, "unknown-domain calls", Sel("floodgate_ratelimit_unknown_domain_total"))
	total(&p.Totals, "invalid requests", Sel("floodgate_ratelimit_invalid_requests_total"))

	var cfg Config
	if s.opts.Config != nil {
		cfg = s.opts.Config()
	}
	p.Sources = append(p.Sources, cfg.Sources...)
	for _, d := range cfg.Domains {
		d.Rules = append([]Rule(nil), d.Rules...)
		for i := range d.Rules {
			r := &d.Rules[i]
			labels := []Match{Eq("domain", d.Name), Eq("rule", r.StatName)}
			r.Hits = num(Sel("floodgate_ratelimit_total_hits", labels...))
			over := "floodgate_ratelimit_over_limit"
			if r.Shadow {
				over = "floodgate_ratelimit_shadow_mode"
			}
			r.OverLimit = num(Sel(over, labels...))
		}
		p.Domains = append(p.Domains, d)
	}
	for _, pol := range cfg.Policies {
		pol.Allowed = num(Sel("floodgate_auth_decisions_total", Eq("policy", pol.Name), Eq("result", "ok")))
		pol.Denied = num(Sel("floodgate_auth_decisions_total", Eq("policy", pol.Name), Ne("result", "ok")))
		p.Policies = append(p.Policies, pol)
	}
	for _, cr := range cfg.CacheRules {
		cr.Hits = num(Sel("floodgate_cache_requests_total", Eq("rule", cr.Name), Eq("result", "hit")))
		cr.Misses = num(Sel("floodgate_cache_requests_total", Eq("rule", cr.Name), Eq("result", "miss")))
		cr.Bypassed = num(Sel("floodgate_cache_requests_total", Eq("rule", cr.Name), Eq("result", "bypass")))
		p.CacheRules = append(p.CacheRules, cr)
	}
	if t := s.opts.Tracker; t != nil {
		p.TopKeys, p.TopKeysSeen = t.Top(s.opts.TopN)
		p.TopKeysCapacity = t.Capacity()
	}
	if s.opts.Backend != nil {
		p.Backend = append(p.Backend, s.opts.Backend()...)
	}
	total(&p.BackendCounters, "backend errors (engine)", Sel("floodgate_ratelimit_backend_errors_total"))
	total(&p.BackendCounters, "answered OK by --fail-open", Sel("floodgate_ratelimit_fail_open_total"))
	total(&p.BackendCounters, "Redis errors", Sel("floodgate_redis_errors_total"))
	total(&p.BackendCounters, "Redis marked down (breaker trips)", Sel("floodgate_redis_down_total"))
	total(&p.BackendCounters, "refused at once while down", Sel("floodgate_redis_fast_fails_total"))
	total(&p.BackendCounters, "over-limit answers from the near-cache", Sel("floodgate_nearcache_hits_total"))
	return p
}

// HTML serves the page. HTML and JSON are mounted by the caller, behind
// its admin guard.
func (s *Status) HTML(w http.ResponseWriter, r *http.Request) {
	p := s.Page()
	setHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", csp)
	// A failed write is the client gone; headers are sent by then.
	_ = pageTemplate.Execute(w, view{Page: p, Script: script, Style: style})
}

// JSON serves the page's data.
func (s *Status) JSON(w http.ResponseWriter, r *http.Request) {
	p := s.Page()
	setHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, p)
}

func setHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}
