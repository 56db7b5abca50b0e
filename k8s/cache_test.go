package k8s_test

// The response cache (overlays/cache): the authz overlay plus the cache
// rules in the ConfigMap floodgate-cache, mounted where SIDECAR_CACHE_CONFIG
// points, and the pod's Envoy with ext_proc after ext_authz and ratelimit
// (a copy of envoy/cache.yaml, whose every setting envoy/cache_test.go
// checks). Here: the rules decode strictly in the contract's format, each
// is reached by a route where ext_proc is on, Envoy's ext_proc calls
// Floodgate's gRPC port as the cache expects, the memory store fits the
// container, and the purge endpoint stays inside the pod.

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/floodgate/floodgate/pkg/cacheconfig"
)

// Defaults of the sidecar's cache flags (docs/cache.md).
const (
	defaultCacheMaxBytes    = 268435456
	defaultCollapseWait     = 150 * time.Millisecond
	defaultMaxTTL           = time.Hour
	extAuthzNamespace       = "envoy.filters.http.ext_authz"
	extProcFilterName       = "envoy.filters.http.ext_proc"
	cacheHeapHeadroomFactor = 2 // the Go heap around the entries, GC included
)

// cacheRules is the cache config's format (docs/cache.md), every field of
// it, so that strict decoding rejects any other.
type cacheRules struct {
	Rules []struct {
		Name  string `json:"name"`
		Match struct {
			Hosts      []string `json:"hosts"`
			PathPrefix string   `json:"path_prefix"`
		} `json:"match"`
		Scope       string   `json:"scope"`
		TTL         string   `json:"ttl"`
		MaxTTL      string   `json:"max_ttl"`
		KeyHeaders  []string `json:"key_headers"`
		IgnoreQuery []string `json:"ignore_query"`
		Invalidates []string `json:"invalidates"`
	} `json:"rules"`
}

var (
	ruleNameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	headerNameRE = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)
)

// parseCacheRules decodes a cache config strictly and checks what the
// contract says about each field: a unique name of [A-Za-z0-9_.-], a scope
// of public, tenant or user (default public), ttl and max_ttl durations
// (defaults 0 and 1h) with ttl not above max_ttl, absolute path prefixes,
// lower-case header names.
func parseCacheRules(data []byte) (*cacheRules, error) {
	var c cacheRules
	if err := sigsyaml.UnmarshalStrict(data, &c); err != nil {
		return nil, err
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if len(c.Rules) == 0 {
		bad("no rules")
	}
	seen := map[string]bool{}
	for i, r := range c.Rules {
		where := fmt.Sprintf("rules[%d] %s", i, r.Name)
		if !ruleNameRE.MatchString(r.Name) || seen[r.Name] {
			bad("%s: name missing, repeated or not [A-Za-z0-9_.-]", where)
		}
		seen[r.Name] = true
		if !slices.Contains([]string{"", "public", "tenant", "user"}, r.Scope) {
			bad("%s: scope %q: want public, tenant or user", where, r.Scope)
		}
		ttl, maxTTL := time.Duration(0), defaultMaxTTL
		for _, d := range []struct {
			field, v string
			to       *time.Duration
		}{{"ttl", r.TTL, &ttl}, {"max_ttl", r.MaxTTL, &maxTTL}} {
			if d.v == "" {
				continue
			}
			v, err := time.ParseDuration(d.v)
			if err != nil || v < 0 {
				bad("%s: %s %q: want a duration such as 60s", where, d.field, d.v)
			}
			*d.to = v
		}
		if ttl > maxTTL {
			bad("%s: ttl %s is above max_ttl %s", where, ttl, maxTTL)
		}
		for _, p := range append([]string{cmpOr(r.Match.PathPrefix, "/")}, r.Invalidates...) {
			if !strings.HasPrefix(p, "/") {
				bad("%s: path prefix %q does not start with /", where, p)
			}
		}
		for _, h := range r.KeyHeaders {
			if !headerNameRE.MatchString(h) {
				bad("%s: key_headers %q: want a lower-case header name", where, h)
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("cache config: %s", strings.Join(errs, "; "))
	}
	return &c, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// loadWithSidecar runs the sidecar's own loader (pkg/cacheconfig) on the
// file. implemented is false while that package is still the skeleton,
// whose functions panic "todo"; any other panic is a failure.
func loadWithSidecar(name string, data []byte) (cfg *cacheconfig.Config, implemented bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			if r != "todo" {
				panic(r)
			}
			implemented = false
		}
	}()
	cfg, err = cacheconfig.Parse(name, data)
	return cfg, true, err
}

// envoyRoute is the route Envoy picks for a request path, among the
// exact-path and prefix routes of the first virtual host (the configs here
// have one, for every domain).
func envoyRoute(rc *routev3.RouteConfiguration, p string) *routev3.Route {
	for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
		m := r.GetMatch()
		switch {
		case m.GetPath() != "" && m.GetPath() == p,
			m.GetPath() == "" && m.GetSafeRegex() == nil && strings.HasPrefix(p, m.GetPrefix()):
			return r
		}
	}
	return nil
}

// extProcOff reports whether a route turns the cache off.
func extProcOff(r *routev3.Route) bool {
	a, ok := r.GetTypedPerFilterConfig()[extProcFilterName]
	if !ok {
		return false
	}
	var per extprocv3.ExtProcPerRoute
	return a.UnmarshalTo(&per) == nil && per.GetDisabled()
}

// TestCacheOverlay follows the cache through overlays/cache.
func TestCacheOverlay(t *testing.T) {
	t.Parallel()
	b := buildNamed(t, "cache")
	// Everything the authz overlay guarantees still holds: the identity the
	// cache keys on comes from Check, and the gRPC port is fenced.
	dep, grpcPort := checkAuthzPod(t, b)
	tmpl := &dep.Spec.Template
	fg := container(tmpl, "floodgate")
	env := envLookup(fg)

	// The rules: a file of the ConfigMap floodgate-cache, mounted whole.
	cachePath := env("SIDECAR_CACHE_CONFIG")
	if !path.IsAbs(cachePath) || !strings.HasSuffix(cachePath, ".yaml") {
		t.Fatalf("SIDECAR_CACHE_CONFIG %q: want an absolute path to the cache config file", cachePath)
	}
	for _, m := range fg.VolumeMounts {
		if m.MountPath == path.Dir(cachePath) && (m.SubPath != "" || !m.ReadOnly) {
			t.Errorf("%s: mounted with a subPath or writable", m.MountPath)
		}
	}
	cmName := volumeConfigMap(tmpl, fg, path.Dir(cachePath))
	if cmName != "floodgate-cache" {
		t.Fatalf("%s: ConfigMap %q mounted, want floodgate-cache (no hash suffix: edits reload in place)", path.Dir(cachePath), cmName)
	}
	cm := find[*corev1.ConfigMap](b, "ConfigMap", cmName)
	if cm == nil {
		t.Fatal("ConfigMap floodgate-cache is not in the build")
	}
	data, ok := cm.Data[path.Base(cachePath)]
	if !ok {
		t.Fatalf("ConfigMap floodgate-cache has %v, no %s", keysOf(cm.Data), path.Base(cachePath))
	}
	rules, err := parseCacheRules([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	scopes := map[string]bool{}
	for _, r := range rules.Rules {
		scopes[cmpOr(r.Scope, "public")] = true
	}
	if len(scopes) != 3 {
		t.Errorf("the rules use scopes %v: the example should show public, tenant and user", scopes)
	}
	if cfg, implemented, err := loadWithSidecar(path.Base(cachePath), []byte(data)); !implemented {
		t.Log("pkg/cacheconfig is still the skeleton: only the strict decoding above checked the rules")
	} else if err != nil {
		t.Errorf("the sidecar's loader rejects the cache config: %v", err)
	} else if len(cfg.Rules) != len(rules.Rules) {
		t.Errorf("the sidecar's loader finds %d rules, the file has %d", len(cfg.Rules), len(rules.Rules))
	}

	// Envoy: ext_authz < ratelimit < ext_proc < router, ext_proc on
	// Floodgate's gRPC port and set up as the cache expects.
	envoyCM := find[*corev1.ConfigMap](b, "ConfigMap", volumeConfigMap(tmpl, container(tmpl, "envoy"), "/etc/envoy"))
	if envoyCM == nil {
		t.Fatal("Envoy's ConfigMap is not in the build")
	}
	boot, err := decodeEnvoyBootstrap([]byte(envoyCM.Data["envoy.yaml"]))
	if err != nil {
		t.Fatalf("Envoy config: %v", err)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := boot.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var order []string
	var proc *extprocv3.ExternalProcessor
	for _, f := range hcm.GetHttpFilters() {
		m, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		switch c := m.(type) {
		case *extauthzv3.ExtAuthz:
			order = append(order, "ext_authz")
		case *ratelimitv3.RateLimit:
			order = append(order, "ratelimit")
		case *extprocv3.ExternalProcessor:
			order = append(order, "ext_proc")
			proc = c
		default:
			order = append(order, f.GetName())
		}
	}
	if want := []string{"ext_authz", "ratelimit", "ext_proc", "envoy.filters.http.router"}; !slices.Equal(order, want) {
		t.Fatalf("http_filters %q, want %q", order, want)
	}
	if p := clusterPort(boot, proc.GetGrpcService().GetEnvoyGrpc().GetClusterName()); int32(p) != grpcPort {
		t.Errorf("ext_proc calls port %d, Floodgate's gRPC port is %d", p, grpcPort)
	}
	wantMode := &extprocv3.ProcessingMode{
		RequestHeaderMode: extprocv3.ProcessingMode_SEND, ResponseHeaderMode: extprocv3.ProcessingMode_SEND,
		RequestBodyMode: extprocv3.ProcessingMode_NONE, ResponseBodyMode: extprocv3.ProcessingMode_NONE,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
	}
	if !proto.Equal(proc.GetProcessingMode(), wantMode) || !proc.GetAllowModeOverride() || !proc.GetFailureModeAllow() ||
		!slices.Contains(proc.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), extAuthzNamespace) {
		t.Errorf("ext_proc: want headers SEND, bodies NONE, trailers SKIP, allow_mode_override, failure_mode_allow and %s forwarded; got %v", extAuthzNamespace, proc)
	}
	collapse := defaultCollapseWait
	if v := env("SIDECAR_CACHE_COLLAPSE_WAIT"); v != "" {
		if collapse, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SIDECAR_CACHE_COLLAPSE_WAIT: %v", err)
		}
	}
	if d := proc.GetMessageTimeout().AsDuration(); d <= collapse {
		t.Errorf("ext_proc message_timeout %s is not above --cache-collapse-wait %s: collapsed requests would time out", d, collapse)
	}

	// Every rule is reached: a request under its prefix takes a route on
	// which ext_proc is on. A rule under a disabled route would silently
	// never cache, and its writes would invalidate nothing.
	for _, r := range rules.Rules {
		p := cmpOr(r.Match.PathPrefix, "/") + "x"
		route := envoyRoute(hcm.GetRouteConfig(), p)
		switch {
		case route == nil:
			t.Errorf("rule %s: no Envoy route takes %s", r.Name, p)
		case extProcOff(route):
			t.Errorf("rule %s: Envoy's route for %s disables ext_proc; the rule never applies", r.Name, p)
		}
		for _, inv := range r.Invalidates {
			if route := envoyRoute(hcm.GetRouteConfig(), inv+"x"); route == nil || extProcOff(route) {
				t.Errorf("rule %s: invalidates %s, where Envoy does not ask the cache", r.Name, inv)
			}
		}
	}

	// The memory store fits the container: entries and the heap around them.
	maxBytes := int64(defaultCacheMaxBytes)
	if v := env("SIDECAR_CACHE_MAX_BYTES"); v != "" {
		if maxBytes, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("SIDECAR_CACHE_MAX_BYTES: %v", err)
		}
	}
	limit := fg.Resources.Limits[corev1.ResourceMemory]
	if need := resource.NewQuantity(maxBytes*cacheHeapHeadroomFactor+64<<20, resource.BinarySI); limit.Cmp(*need) < 0 {
		t.Errorf("floodgate's memory limit %s: --cache-max-bytes %d needs at least %s (twice the entries for the Go heap, plus 64Mi)", limit.String(), maxBytes, need)
	}

	// The purge endpoint stays inside the pod: loopback peers only (no
	// admin token), and nothing opens Floodgate's HTTP port to others.
	const httpPort = 8080
	if v := env("SIDECAR_ADMIN_TOKEN_FILE"); v != "" || slices.ContainsFunc(fg.Args, func(a string) bool { return strings.HasPrefix(a, "--admin-token-file") }) {
		t.Error("--admin-token-file is set: the purge endpoint would answer remote peers; keep it loopback-only here")
	}
	for _, o := range b.objects {
		switch v := o.typed.(type) {
		case *corev1.Service:
			for _, p := range v.Spec.Ports {
				if p.TargetPort.IntVal == httpPort || p.TargetPort.StrVal == "floodgate-http" {
					t.Errorf("Service %s leads to Floodgate's HTTP port (purge, debug)", v.Name)
				}
			}
		case *networkingv1.NetworkPolicy:
			for _, rule := range v.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port != nil && (p.Port.IntVal == httpPort || p.Port.StrVal == "floodgate-http") {
						t.Errorf("NetworkPolicy %s admits Floodgate's HTTP port from other pods", v.Name)
					}
				}
			}
		}
	}
}

// TestCacheRulesCatch proves the strict decoding of the cache rules fails
// on the mistakes it exists for.
func TestCacheRulesCatch(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"unknown field", "rules: [{name: a, match: {path_prefix: /a/}, tll: 1s}]", `unknown field "tll"`},
		{"unknown match field", "rules: [{name: a, match: {prefix: /a/}}]", `unknown field "prefix"`},
		{"no name", "rules: [{match: {path_prefix: /a/}}]", "name missing"},
		{"repeated name", "rules: [{name: a}, {name: a}]", "repeated"},
		{"bad name", "rules: [{name: 'a b'}]", "not [A-Za-z0-9_.-]"},
		{"bad scope", "rules: [{name: a, scope: private}]", `scope "private"`},
		{"bad ttl", "rules: [{name: a, ttl: 1 minute}]", `ttl "1 minute"`},
		{"ttl above the default max_ttl", "rules: [{name: a, ttl: 2h}]", "above max_ttl 1h0m0s"},
		{"relative prefix", "rules: [{name: a, match: {path_prefix: v1/}}]", `"v1/" does not start with /`},
		{"relative invalidation", "rules: [{name: a, invalidates: [teams/]}]", `"teams/" does not start with /`},
		{"header name", "rules: [{name: a, key_headers: [Accept Language]}]", "lower-case header name"},
	}
	for _, tt := range tests {
		if _, err := parseCacheRules([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := parseCacheRules([]byte("rules: [{name: a.b-c_1, match: {hosts: [api.example.com], path_prefix: /a/}, scope: user, ttl: 0s, max_ttl: 10m}]")); err != nil {
		t.Errorf("a good rule: %v", err)
	}
}
