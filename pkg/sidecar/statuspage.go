package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/statuspage"
)

// statusPage is the live status page, GET /debug/ and
// /debug/status.json (pkg/statuspage), fed by m's registry, config sources
// and the engine (its top limited keys).
type statusPage struct {
	page *statuspage.Status
	top  *statuspage.Tracker
}

// newStatusPage builds the page over m's registry; its config and backend
// are read from m when the page is asked for.
func (m *Main) newStatusPage() (*statusPage, error) {
	top := statuspage.NewTracker(statuspage.TrackerOptions{})
	page, err := statuspage.New(statuspage.Options{
		Gatherer: m.registry,
		Config:   m.statusConfig,
		Backend:  m.backendNodes,
		Tracker:  top,
	})
	if err != nil {
		return nil, err
	}
	return &statusPage{page: page, top: top}, nil
}

// observer is the engine's observer: the reference's stats (when on)
// and the page's top-keys tracker.
func (sp *statusPage) observer(ref engine.Observer) engine.Observer {
	return statuspage.Observers(ref, sp.top)
}

// run samples the registry for the page's rates until ctx ends.
func (sp *statusPage) run(ctx context.Context) error { return sp.page.Run(ctx) }

// routes mounts the page with admin, the guard of every /debug/ page.
func (sp *statusPage) routes(admin func(pattern string, h http.HandlerFunc)) {
	admin("GET /debug/{$}", sp.page.HTML)
	admin("GET /debug/status.json", sp.page.JSON)
}

// statusConfig is what /debug/config describes, as the page lists it.
func (m *Main) statusConfig() statuspage.Config {
	var c statuspage.Config
	st := m.limits.Status()
	c.Sources = append(c.Sources, pageSource("limits", st))
	if d, ok := st.Config.(descriptors.Description); ok {
		for _, dom := range d.Domains {
			pd := statuspage.Domain{Name: dom.Name, Files: dom.Files}
			for _, r := range dom.Rules {
				pd.Rules = append(pd.Rules, pageRule(r))
			}
			pd.Rules = append(pd.Rules, statuspage.Rule{
				StatName: engine.OverrideName, Descriptor: "(descriptors that match no rule)",
				Limit: "the limit Envoy sends", Source: "request",
			})
			c.Domains = append(c.Domains, pd)
		}
	}
	if m.authSrc != nil {
		st := m.authSrc.Status()
		c.Sources = append(c.Sources, pageSource("auth", st))
		if d, ok := st.Config.(authDescription); ok {
			for _, p := range d.Policies {
				c.Policies = append(c.Policies, pagePolicy(p))
			}
			c.Policies = append(c.Policies, statuspage.Policy{Match: "(requests no policy matches: 403)", Auth: "-", Source: "-"})
		}
	}
	if m.cacheSrc != nil {
		st := m.cacheSrc.Status()
		c.Sources = append(c.Sources, pageSource("cache", st))
		if d, ok := st.Config.(cacheDescription); ok {
			for _, r := range d.Rules {
				c.CacheRules = append(c.CacheRules, statuspage.CacheRule{
					Name: r.Name, Source: r.Source, Match: hostsPath(r.Hosts, r.PathPrefix, nil),
					Scope: r.Scope, TTL: r.TTL + " (max " + r.MaxTTL + ")",
				})
			}
		}
	}
	if m.grpcTLS != nil {
		c.Sources = append(c.Sources, pageSource("grpc tls", m.grpcTLS.Status()))
	}
	return c
}

func pageSource(name string, st configsource.Status) statuspage.Source {
	return statuspage.Source{Name: name, Origin: st.Path, Loaded: st.Config != nil, LoadedAt: st.LoadedAt, LastError: st.LastReloadError}
}

func pageRule(r descriptors.RuleDescription) statuspage.Rule {
	path := make([]string, 0, len(r.Path))
	for _, e := range r.Path {
		if e.Value == "" {
			path = append(path, e.Key)
		} else {
			path = append(path, e.Key+"="+e.Value)
		}
	}
	pr := statuspage.Rule{StatName: r.StatName, Name: r.Name, Descriptor: strings.Join(path, " / "),
		Algorithm: r.Algorithm, Shadow: r.Shadow, Source: r.Source}
	switch {
	case r.Unlimited:
		pr.Limit = "unlimited"
	case r.RequestsPerUnit != nil:
		pr.Limit = strconv.FormatUint(*r.RequestsPerUnit, 10) + " per " + r.Unit
		if r.Burst != 0 {
			pr.Limit += ", burst " + strconv.FormatUint(r.Burst, 10)
		}
	}
	for _, mode := range []struct {
		on   bool
		name string
	}{{r.Shadow, "shadow_mode"}, {r.QuotaMode, "quota_mode"}, {r.Overdraw, "overdraw"}} {
		if mode.on {
			pr.Modes = append(pr.Modes, mode.name)
		}
	}
	return pr
}

func pagePolicy(p policyDescription) statuspage.Policy {
	pp := statuspage.Policy{Name: p.Name, Source: p.Source, Match: hostsPath(p.Hosts, p.PathPrefix, p.Methods), Auth: p.Auth}
	if len(p.Tiers) > 0 {
		pp.Auth += " (tiers " + strings.Join(p.Tiers, ", ") + ")"
	}
	if rl := p.RateLimit; rl != nil {
		pp.RateLimit = fmt.Sprintf("domain %s (descriptors: %d)", rl.Domain, len(rl.Descriptors))
	}
	return pp
}

// hostsPath is a match as "GET,POST api.example.com/v1/".
func hostsPath(hosts []string, prefix string, methods []string) string {
	h := "*"
	if len(hosts) > 0 {
		h = strings.Join(hosts, ",")
	}
	s := h + prefix
	if len(methods) > 0 {
		s = strings.Join(methods, ",") + " " + s
	}
	return s
}

// backendNodes is the backend's health for the page: Redis up or marked
// down (its breaker) from floodgate_redis_up, the memory backend always up.
func (m *Main) backendNodes() []statuspage.BackendNode {
	s := m.settings
	switch s.Backend {
	case "memory":
		return []statuspage.BackendNode{{Name: "memory", Up: true, Detail: "counters in this process"}}
	case "memcache":
		return []statuspage.BackendNode{{Name: "memcache " + s.Memcache.Addrs, Up: true, Detail: "no health is tracked for memcached"}}
	case "redis":
	default:
		return nil
	}
	name := "redis"
	switch {
	case s.Redis.Cluster:
		name = "redis cluster"
	case s.Redis.SentinelMaster != "":
		name = "redis sentinel " + s.Redis.SentinelMaster
	}
	if u, err := url.Parse(s.Redis.URL); err == nil && u.Host != "" {
		name += " " + u.Host // the host only: no password, no query
	}
	if m.redisHealth == nil {
		return []statuspage.BackendNode{{Name: name, Detail: "no health reported"}}
	}
	nodes := m.redisHealth()
	if len(nodes) == 0 {
		return []statuspage.BackendNode{{Name: name, Up: true, Detail: "no call sent yet"}}
	}
	out := make([]statuspage.BackendNode, 0, len(nodes))
	for _, n := range nodes {
		b := statuspage.BackendNode{Name: name, Up: n.Up}
		if n.Addr != "" {
			b.Name = name + " node " + n.Addr
		}
		switch {
		case n.Up && n.Since.IsZero():
			b.Detail = "breaker closed: deciding"
		case n.Up:
			b.Detail = "breaker closed: deciding again since " + n.Since.UTC().Format(time.RFC3339)
		default:
			b.Detail = "breaker open since " + n.Since.UTC().Format(time.RFC3339) + ": failing fast until it answers (" + n.LastError + ")"
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
