package envoy_test

// cache.yaml: Floodgate's response cache behind ext_authz and the
// rate-limit filter. validate (envoy_test.go) already holds every ext_proc
// filter to what the cache expects; these tests pin the rest of the design
// (the order, one gRPC listener for all three, the buffer and message
// limits that let a 1 MiB entry through, the routes where the cache is
// off) and prove the checks fail on the mistakes they exist for.

import (
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	cacheFile = "cache.yaml"
	// maxEntryBytes is the sidecar's default --cache-max-entry-bytes: the
	// largest body the cache asks Envoy to buffer and sends back on a hit.
	maxEntryBytes = 1 << 20
	// extProcFilter is the ext_proc filter's name, the key of its
	// per-route configs.
	extProcFilter = "envoy.filters.http.ext_proc"
)

// cacheOff lists the routes of cache.yaml where ext_proc is disabled, by
// routeName; on every other route the cache is asked.
var cacheOff = []string{"app path /healthz", "app prefix /v1/uploads/", "app prefix /v1/export"}

// TestCacheConfig holds cache.yaml to its design.
func TestCacheConfig(t *testing.T) {
	t.Parallel()
	b, err := load(cacheFile)
	if err != nil {
		t.Fatalf("%s is not a valid Envoy config:\n%v", cacheFile, err)
	}
	chains := authzChains(b)
	if len(chains) != 1 {
		t.Fatalf("want one HTTP connection manager, got %d", len(chains))
	}
	c := chains[0]
	// ext_authz < ratelimit < ext_proc < router: no cache read for a caller
	// Check refuses or a limit blocks, and the identity is known by then.
	order := []string{"ext_authz", "ratelimit", "ext_proc", "router"}
	last := -1
	for _, name := range order {
		i := slices.Index(c.names, name)
		if i <= last {
			t.Fatalf("http_filters %q: want %s in this order", c.names, strings.Join(order, " < "))
		}
		last = i
	}
	p := c.extProc

	// One gRPC listener for Check, ShouldRateLimit and Process.
	procCluster := p.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if a, r := c.extAuthz.GetGrpcService().GetEnvoyGrpc().GetClusterName(), c.rateLimit.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName(); procCluster != "floodgate" || a != procCluster || r != procCluster {
		t.Errorf("ext_proc calls %q, ext_authz %q, ratelimit %q: want all three on floodgate", procCluster, a, r)
	}

	// The settings, one by one (checkExtProc allows a default timeout and
	// more namespaces; this file says exactly what it means).
	if !proto.Equal(p.GetProcessingMode(), cacheMode) {
		t.Errorf("processing_mode %v, want %v", p.GetProcessingMode(), cacheMode)
	}
	if !p.GetAllowModeOverride() {
		t.Error("allow_mode_override is false")
	}
	if !p.GetFailureModeAllow() {
		t.Error("failure_mode_allow is false")
	}
	if got := p.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(); !slices.Equal(got, []string{extAuthzNamespace}) {
		t.Errorf("metadata_options.forwarding_namespaces.untyped %q, want [%s]", got, extAuthzNamespace)
	}
	if len(p.GetMetadataOptions().GetForwardingNamespaces().GetTyped()) > 0 || p.GetMetadataOptions().GetReceivingNamespaces() != nil {
		t.Error("metadata_options forwards typed or receives metadata: the cache needs neither")
	}
	if d := p.GetMessageTimeout().AsDuration(); p.GetMessageTimeout() == nil || d <= collapseWait || d > 300*time.Millisecond {
		t.Errorf("message_timeout %v: want it set, above --cache-collapse-wait (%s), at most 300ms", p.GetMessageTimeout(), collapseWait)
	}

	// A 1 MiB entry fits every buffer on its way: the listener's (Envoy
	// buffers the BUFFERED response body there), Envoy's gRPC receive limit
	// (a hit's body comes back in one message) and the connection to
	// Floodgate (the body goes out in one message).
	if n := p.GetGrpcService().GetEnvoyGrpc().GetMaxReceiveMessageLength(); n == nil || n.GetValue() < maxEntryBytes+64<<10 {
		t.Errorf("grpc_service.envoy_grpc.max_receive_message_length %v: want set, at least --cache-max-entry-bytes plus 64 KiB of headers", n)
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		if n := l.GetPerConnectionBufferLimitBytes(); n == nil || n.GetValue() <= maxEntryBytes {
			t.Errorf("listener %s: per_connection_buffer_limit_bytes %v: want above --cache-max-entry-bytes (%d), or a BUFFERED body of that size fails with 500", l.GetName(), n, maxEntryBytes)
		}
	}
	for _, cl := range b.GetStaticResources().GetClusters() {
		if n := cl.GetPerConnectionBufferLimitBytes(); cl.GetName() == procCluster && (n == nil || n.GetValue() <= maxEntryBytes) {
			t.Errorf("cluster %s: per_connection_buffer_limit_bytes %v: want above --cache-max-entry-bytes (%d)", cl.GetName(), n, maxEntryBytes)
		}
	}

	// The cache is off exactly where cacheOff says, and turned off the one
	// way the file uses: an ExtProcPerRoute with disabled (validated inside
	// its Any by load).
	var off []string
	for _, vh := range c.hcm.GetRouteConfig().GetVirtualHosts() {
		if _, ok := vh.GetTypedPerFilterConfig()[extProcFilter]; ok {
			t.Errorf("virtual host %s: an ext_proc config for every route; set it per route", vh.GetName())
		}
		for _, r := range vh.GetRoutes() {
			a, ok := r.GetTypedPerFilterConfig()[extProcFilter]
			if !ok {
				continue
			}
			per, ok := unpack(a).(*extprocv3.ExtProcPerRoute)
			if !ok {
				t.Errorf("%s: typed_per_filter_config[%s] is a %s, want an ExtProcPerRoute", routeName(vh, r), extProcFilter, a.GetTypeUrl())
				continue
			}
			if !per.GetDisabled() {
				t.Errorf("%s: an ExtProcPerRoute that does not disable: the cache's mode is not a route's to change", routeName(vh, r))
				continue
			}
			off = append(off, routeName(vh, r))
		}
	}
	if !slices.Equal(off, cacheOff) {
		t.Errorf("ext_proc disabled on %q, want %q", off, cacheOff)
	}
}

// TestCacheValidatorCatches proves validate fails cache.yaml on each
// mistake that would make the cache fail requests, serve the wrong
// clients, or never store.
func TestCacheValidatorCatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edits []edit
		want  string // in the error; empty: the edit is fine
	}{
		{"fails closed", []edit{{"failure_mode_allow: true", "failure_mode_allow: false"}}, "failure_mode_allow must be true"},
		{"no mode override", []edit{{"allow_mode_override: true", "allow_mode_override: false"}}, "allow_mode_override must be true"},
		{"bodies always buffered", []edit{{"response_body_mode: NONE", "response_body_mode: BUFFERED"}}, "processing_mode.response_body_mode is BUFFERED, want NONE"},
		{"request headers skipped", []edit{{"request_header_mode: SEND", "request_header_mode: SKIP"}}, "processing_mode.request_header_mode is SKIP, want SEND"},
		{"trailers sent", []edit{{"response_trailer_mode: SKIP", "response_trailer_mode: SEND"}}, "processing_mode.response_trailer_mode is SEND, want SKIP"},
		{"mode left to Envoy", []edit{{"                        response_header_mode: SEND\n", ""}}, "processing_mode.response_header_mode is DEFAULT, want SEND"},
		{"identity not forwarded", []edit{{"untyped: [envoy.filters.http.ext_authz]", "untyped: [envoy.filters.http.jwt_authn]"}}, "forwarding_namespaces.untyped must include envoy.filters.http.ext_authz"},
		{"timeout below the collapse wait", []edit{{"message_timeout: 0.25s", "message_timeout: 0.1s"}}, "message_timeout 100ms must be above --cache-collapse-wait"},
		{"timeout left at Envoy's 200ms", []edit{{"                      message_timeout: 0.25s\n", ""}}, ""},
		{"hits ignored", []edit{{"allow_mode_override: true", "allow_mode_override: true\n                      disable_immediate_response: true"}}, "cache hits are immediate responses"},
		{"missing cluster", []edit{{"envoy_grpc:\n                          cluster_name: floodgate", "envoy_grpc:\n                          cluster_name: flodgate"}}, `cluster "flodgate" is not defined`},
		{"unknown field in ext_proc", []edit{{"allow_mode_override: true", "allow_mode_overrides: true"}}, `unknown field "allow_mode_overrides"`},
		{"unknown field in ExtProcPerRoute", []edit{{"ExtProcPerRoute\n                              disabled: true", "ExtProcPerRoute\n                              disable: true"}}, `unknown field "disable"`},
		// ExtProcPerRoute.disabled must be true when set (its generated
		// validation): caught only because walk validates inside the Any.
		{"ExtProcPerRoute disabled: false", []edit{{"ExtProcPerRoute\n                              disabled: true", "ExtProcPerRoute\n                              disabled: false"}}, "invalid ExtProcPerRoute.Disabled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadBytes(mutate(t, cacheFile, tc.edits...))
			t.Logf("error: %v", err)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want no error, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}

	// The order, moved in the decoded config: ext_proc first would serve
	// cached answers to callers Check refuses and clients a limit blocks.
	for _, tc := range []struct {
		name string
		to   int // where ext_proc goes
		want string
	}{
		{"ext_proc before ratelimit", 1, "the ext_proc filter (the response cache) must come after the rate-limit filter"},
		{"ext_proc before ext_authz", 0, "the ext_proc filter (the response cache) must come after ext_authz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := load(cacheFile)
			if err != nil {
				t.Fatal(err)
			}
			nf := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
			hcm := unpack(nf.GetTypedConfig()).(*hcmv3.HttpConnectionManager)
			i := slices.IndexFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.GetName() == extProcFilter })
			if i < 0 {
				t.Fatal("no ext_proc filter")
			}
			f := hcm.HttpFilters[i]
			hcm.HttpFilters = slices.Insert(slices.Delete(hcm.HttpFilters, i, i+1), tc.to, f)
			a, err := anypb.New(hcm)
			if err != nil {
				t.Fatal(err)
			}
			nf.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			if err := validate(b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
