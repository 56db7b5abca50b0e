package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"gopkg.in/yaml.v3"

	// The typed_configs of envoy/front-proxy.yaml must resolve to registered
	// types; these register the ones this file does not name. A new
	// extension in the config fails loadEnvoy until it is added here.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cache/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/cache/simple_http_cache/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// This file is a small model of Envoy's HTTP rate-limit filter: given an
// Envoy config and one HTTP request, it computes the RateLimitRequest the
// filter would send. The e2e tests use it so that the descriptors they send
// come from envoy/front-proxy.yaml itself (same keys, same order, same
// overrides), not from a hand-written copy that could drift from it. It
// models what the configs use and refuses the rest with an error, so a new
// kind of action or match in the config cannot pass unmodelled.

// rateLimitFilterType is the type of the ratelimit filter's typed_config.
const rateLimitFilterType = "envoy.extensions.filters.http.ratelimit.v3.RateLimit"

// envoyFilter is one ratelimit filter of an Envoy listener, with the routes
// it sees.
type envoyFilter struct {
	name   string // the filter's name: the key of its per-route configs
	domain string
	stage  uint32
	routes *routev3.RouteConfiguration
}

// httpRequest is the part of a downstream request that rate-limit actions
// read.
type httpRequest struct {
	path     string            // :path, with the query string
	headers  map[string]string // lower-case names
	clientIP string            // the downstream address Envoy trusts
	// hitsAddend is what a filter before the ratelimit filter stored in
	// the filter state envoy.ratelimit.hits_addend; 0 when none did.
	hitsAddend uint32
}

// loadEnvoy decodes an Envoy YAML config as Envoy does (YAML, then JSON,
// then the v3 protos), strictly: an unknown field or typed_config type is an
// error. It checks the config with the protos' own validation.
func loadEnvoy(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: yaml: %w", path, err)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: want exactly one YAML document (%v)", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: to json: %w", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &b, nil
}

// rateLimitFilters returns the ratelimit filters of every listener of b, in
// order, each with its listener's inline route config.
func rateLimitFilters(b *bootstrapv3.Bootstrap) ([]*envoyFilter, error) {
	var out []*envoyFilter
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, nf := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if nf.GetTypedConfig() == nil || !nf.GetTypedConfig().MessageIs(&hcm) {
					continue
				}
				if err := nf.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
				}
				if hcm.GetRouteConfig() == nil {
					return nil, fmt.Errorf("listener %s: only an inline route_config is modelled", l.GetName())
				}
				for _, hf := range hcm.GetHttpFilters() {
					if string(hf.GetTypedConfig().MessageName()) != rateLimitFilterType {
						continue
					}
					var rl ratelimitv3.RateLimit
					if err := hf.GetTypedConfig().UnmarshalTo(&rl); err != nil {
						return nil, fmt.Errorf("listener %s: filter %s: %w", l.GetName(), hf.GetName(), err)
					}
					out = append(out, &envoyFilter{name: hf.GetName(), domain: rl.GetDomain(), stage: rl.GetStage(), routes: hcm.GetRouteConfig()})
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no envoy.filters.http.ratelimit filter found")
	}
	return out, nil
}

// request returns what the filter sends for req, or nil when it makes no call
// (no route, or no descriptor: Envoy then does not ask at all).
func (f *envoyFilter) request(req httpRequest) (*rlsv3.RateLimitRequest, error) {
	vh, route, err := f.route(req)
	if err != nil || route == nil {
		return nil, err
	}
	perRoute, err := f.perRoute(route, vh)
	if err != nil {
		return nil, err
	}
	domain := cmp.Or(perRoute.GetDomain(), f.domain)

	// The order Envoy uses: the per-route filter config's rate_limits, when
	// set, instead of everything else; otherwise the route's own, then the
	// virtual host's as vh_rate_limits says.
	var policies [][]*routev3.RateLimit
	switch {
	case len(perRoute.GetRateLimits()) > 0:
		policies = append(policies, perRoute.GetRateLimits())
	default:
		own := route.GetRoute().GetRateLimits()
		policies = append(policies, own)
		switch perRoute.GetVhRateLimits() {
		case ratelimitv3.RateLimitPerRoute_INCLUDE:
			policies = append(policies, vh.GetRateLimits())
		case ratelimitv3.RateLimitPerRoute_OVERRIDE:
			if len(own) == 0 {
				policies = append(policies, vh.GetRateLimits())
			}
		case ratelimitv3.RateLimitPerRoute_IGNORE:
		}
	}
	out := &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: req.hitsAddend}
	for _, limits := range policies {
		for _, rl := range limits {
			if rl.GetStage().GetValue() != f.stage {
				continue
			}
			d, err := descriptor(rl, req)
			if err != nil {
				return nil, err
			}
			if d != nil {
				out.Descriptors = append(out.Descriptors, d)
			}
		}
	}
	if len(out.Descriptors) == 0 {
		return nil, nil
	}
	return out, nil
}

// route picks the virtual host and the first route that match req, as Envoy
// does; a nil route means Envoy answers 404 and never asks.
func (f *envoyFilter) route(req httpRequest) (*routev3.VirtualHost, *routev3.Route, error) {
	host := req.headers[":authority"]
	var vh *routev3.VirtualHost
	for _, v := range f.routes.GetVirtualHosts() {
		for _, d := range v.GetDomains() {
			if d == "*" || d == host {
				vh = v
				break
			}
		}
		if vh != nil {
			break
		}
	}
	if vh == nil {
		return nil, nil, nil
	}
	pathOnly, _, _ := strings.Cut(req.path, "?")
	for _, r := range vh.GetRoutes() {
		m := r.GetMatch()
		var ok bool
		switch p := m.GetPathSpecifier().(type) {
		case *routev3.RouteMatch_Prefix:
			ok = strings.HasPrefix(req.path, p.Prefix)
		case *routev3.RouteMatch_Path:
			ok = pathOnly == p.Path
		default:
			return nil, nil, fmt.Errorf("route %q: path match %T is not modelled", r.GetName(), p)
		}
		if ok {
			hm, err := headersMatch(m.GetHeaders(), req)
			if err != nil {
				return nil, nil, fmt.Errorf("route %q: %w", r.GetName(), err)
			}
			ok = hm
		}
		if ok {
			return vh, r, nil
		}
	}
	return vh, nil, nil
}

// perRoute is the filter's most specific per-route config for r: route, then
// virtual host, then route configuration. Nil when none is set.
func (f *envoyFilter) perRoute(r *routev3.Route, vh *routev3.VirtualHost) (*ratelimitv3.RateLimitPerRoute, error) {
	for _, m := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), f.routes.GetTypedPerFilterConfig()} {
		a, ok := m[f.name]
		if !ok {
			continue
		}
		var c ratelimitv3.RateLimitPerRoute
		if err := a.UnmarshalTo(&c); err != nil {
			return nil, fmt.Errorf("typed_per_filter_config %s: only RateLimitPerRoute is modelled: %w", f.name, err)
		}
		return &c, nil
	}
	return nil, nil
}

// descriptor is what one rate_limits entry adds for req: nil when one of its
// actions finds nothing to send.
func descriptor(rl *routev3.RateLimit, req httpRequest) (*rlv3.RateLimitDescriptor, error) {
	if rl.GetDisableKey() != "" {
		return nil, errors.New("rate_limits.disable_key is not modelled")
	}
	d := &rlv3.RateLimitDescriptor{}
	add := func(k, v string) { d.Entries = append(d.Entries, &rlv3.RateLimitDescriptor_Entry{Key: k, Value: v}) }
	for _, a := range rl.GetActions() {
		switch x := a.GetActionSpecifier().(type) {
		case *routev3.RateLimit_Action_RemoteAddress_:
			add("remote_address", req.clientIP)
		case *routev3.RateLimit_Action_RequestHeaders_:
			h := x.RequestHeaders
			v, ok := req.headers[strings.ToLower(h.GetHeaderName())]
			switch {
			case ok:
				add(h.GetDescriptorKey(), v)
			case h.GetSkipIfAbsent():
			default:
				// A missing header drops the whole descriptor.
				return nil, nil
			}
		case *routev3.RateLimit_Action_GenericKey_:
			g := x.GenericKey
			add(cmp.Or(g.GetDescriptorKey(), "generic_key"), g.GetDescriptorValue())
		case *routev3.RateLimit_Action_HeaderValueMatch_:
			h := x.HeaderValueMatch
			ok, err := headersMatch(h.GetHeaders(), req)
			if err != nil {
				return nil, err
			}
			// expect_match defaults to true: send when the headers match.
			expect := h.GetExpectMatch() == nil || h.GetExpectMatch().GetValue()
			if ok != expect {
				return nil, nil
			}
			add(cmp.Or(h.GetDescriptorKey(), "header_match"), h.GetDescriptorValue())
		default:
			return nil, fmt.Errorf("rate-limit action %T is not modelled: teach descriptor() what Envoy sends for it", x)
		}
	}
	if len(d.Entries) == 0 {
		return nil, nil
	}
	switch o := rl.GetLimit().GetOverrideSpecifier().(type) {
	case nil:
	case *routev3.RateLimit_Override_RateLimit:
		d.Limit = &rlv3.RateLimitDescriptor_RateLimitOverride{
			RequestsPerUnit: o.RateLimit.GetRequestsPerUnit(),
			Unit:            o.RateLimit.GetUnit(),
		}
	default:
		return nil, fmt.Errorf("limit override %T is not modelled", o)
	}
	if h := rl.GetHitsAddend(); h != nil {
		if h.GetFormat() != "" || h.GetIsNegativeHits() {
			return nil, errors.New("hits_addend: only number is modelled")
		}
		d.HitsAddend = wrapperspb.UInt64(h.GetNumber().GetValue())
	}
	return d, nil
}

// headersMatch reports whether every matcher matches req (true for none).
func headersMatch(ms []*routev3.HeaderMatcher, req httpRequest) (bool, error) {
	for _, m := range ms {
		name := strings.ToLower(m.GetName())
		v, present := req.headers[name]
		if name == ":path" {
			v, present = req.path, true
		}
		var ok bool
		switch s := m.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			ok = present == s.PresentMatch
		case *routev3.HeaderMatcher_StringMatch:
			if present {
				var err error
				if ok, err = stringMatch(s.StringMatch, v); err != nil {
					return false, fmt.Errorf("header %s: %w", name, err)
				}
			}
		default:
			return false, fmt.Errorf("header %s: matcher %T is not modelled", name, s)
		}
		if m.GetInvertMatch() {
			ok = !ok
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func stringMatch(m *matcherv3.StringMatcher, v string) (bool, error) {
	if m.GetIgnoreCase() {
		v = strings.ToLower(v)
	}
	low := func(s string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == low(p.Exact), nil
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, low(p.Prefix)), nil
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, low(p.Suffix)), nil
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, low(p.Contains)), nil
	}
	return false, fmt.Errorf("string match %T is not modelled", m.GetMatchPattern())
}

// withRoutes returns a copy of f whose route config is edited by edit, for a
// variant of the config a user might write (validated like the original).
func (f *envoyFilter) withRoutes(edit func(rc *routev3.RouteConfiguration) error) (*envoyFilter, error) {
	rc := proto.Clone(f.routes).(*routev3.RouteConfiguration)
	if err := edit(rc); err != nil {
		return nil, err
	}
	if err := rc.ValidateAll(); err != nil {
		return nil, err
	}
	g := *f
	g.routes = rc
	return &g, nil
}

// describe renders a request's descriptors as "k=v,k=v | k=v", for messages.
func describe(req *rlsv3.RateLimitRequest) string {
	if req == nil {
		return "<no call>"
	}
	parts := make([]string, len(req.GetDescriptors()))
	for i, d := range req.GetDescriptors() {
		es := make([]string, len(d.GetEntries()))
		for j, e := range d.GetEntries() {
			es[j] = e.GetKey() + "=" + e.GetValue()
		}
		parts[i] = strings.Join(es, ",")
		if l := d.GetLimit(); l != nil {
			parts[i] += fmt.Sprintf(" [limit %d/%s]", l.GetRequestsPerUnit(), l.GetUnit())
		}
		if h := d.GetHitsAddend(); h != nil {
			parts[i] += fmt.Sprintf(" [hits %d]", h.GetValue())
		}
	}
	return strings.Join(parts, " | ")
}
