// Package envoy_test checks the Envoy configs in this directory without an
// Envoy binary: each decodes strictly into Envoy's v3 Bootstrap and passes the
// protos' own validation, inside every typed_config too; every cluster it
// names exists; and the descriptors its routes can send agree with the rules
// of examples/config.yaml, in both directions (the ext_authz configs: with
// examples/limits and their auth config's policies, authz_test.go).
package envoy_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cache/v3"
	cachev2v3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cache_v2/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlyheadermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	// Every typed_config in the configs must resolve to a registered type:
	// these packages register the extensions the configs use that the code
	// below does not name. A type missing here fails decoding, by design.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/cache/simple_http_cache/v3"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

const (
	// exampleConfig is the Floodgate config the Envoy configs are written for.
	exampleConfig = "../examples/config.yaml"
	// sampleValue stands for an entry value that comes from the request (a
	// client address, a header), where any value may arrive.
	sampleValue = "1.2.3.4"
)

// configFiles lists every Envoy config (*.yaml, *.yml) under this directory.
func configFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return fs.SkipDir
			}
			return nil
		}
		if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing configs: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("no *.yaml files under envoy/")
	}
	return files
}

// decode reads one Envoy YAML config into a Bootstrap as Envoy does (YAML to
// JSON to protojson), but strictly: a field the protos do not define, or a
// typed_config whose type is not registered, is an error instead of ignored.
func decode(data []byte) (*bootstrapv3.Bootstrap, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	// Envoy reads one document; a second one would be silently dropped.
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("yaml: more than one document")
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("yaml to json: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return &b, nil
}

// validator is implemented by every generated Envoy message (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// typedStructs carry an extension's config as an untyped Struct, which would
// hide it from validation.
var typedStructs = []protoreflect.FullName{"xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct"}

// walk calls visit for m and every message below it, path naming each. The
// content of each google.protobuf.Any is unpacked with the global registry,
// validated with its own ValidateAll (the generated ValidateAll stops at Any
// fields, so an empty domain inside a filter's typed_config would pass it)
// and walked in turn. It returns the problems found at Any fields.
func walk(m protoreflect.Message, path string, visit func(path string, m protoreflect.Message)) []error {
	visit(path, m)
	var errs []error
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return append(errs, fmt.Errorf("%s: type %q: %w", path, a.GetTypeUrl(), err))
		}
		name := inner.ProtoReflect().Descriptor().FullName()
		if slices.Contains(typedStructs, name) {
			return append(errs, fmt.Errorf("%s: %s hides the config from validation; use the extension's own type", path, name))
		}
		if len(inner.ProtoReflect().GetUnknown()) > 0 {
			errs = append(errs, fmt.Errorf("%s: %s has unknown fields", path, name))
		}
		v, ok := inner.(validator)
		if !ok {
			return append(errs, fmt.Errorf("%s: %s has no generated validation", path, name))
		}
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
		return append(errs, walk(inner.ProtoReflect(), fmt.Sprintf("%s<%s>", path, name.Name()), visit)...)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := fd.TextName()
		if path != "" {
			p = path + "." + p
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			// Sorted keys keep the order of reported problems stable.
			var keys []protoreflect.MapKey
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return cmp.Compare(a.String(), b.String()) })
			for _, k := range keys {
				errs = append(errs, walk(v.Map().Get(k).Message(), fmt.Sprintf("%s[%q]", p, k.String()), visit)...)
			}
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			for i := range v.List().Len() {
				errs = append(errs, walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), visit)...)
			}
		case fd.Message() != nil:
			errs = append(errs, walk(v.Message(), p, visit)...)
		}
		return true
	})
	return errs
}

// clusterRefs names, for each message type that refers to a cluster by name,
// the field holding the name. A reference to a missing cluster passes the
// protos' validation; Envoy rejects it at start-up (or, for a route, answers
// 503 forever).
var clusterRefs = map[protoreflect.FullName]protoreflect.Name{
	"envoy.config.core.v3.GrpcService.EnvoyGrpc":             "cluster_name",
	"envoy.config.core.v3.HttpUri":                           "cluster",
	"envoy.config.route.v3.RouteAction":                      "cluster",
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy":  "cluster",
	"envoy.config.route.v3.WeightedCluster.ClusterWeight":    "name",
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": "cluster",
}

// validate checks a decoded Bootstrap as far as can be done without Envoy:
// the generated validation of the Bootstrap and of the content of every
// typed_config, every cluster reference, HTTP/2 on gRPC clusters, and the
// order of HTTP filters. It returns every problem found, joined.
func validate(b *bootstrapv3.Bootstrap) error {
	var errs []error
	if err := b.ValidateAll(); err != nil {
		errs = append(errs, fmt.Errorf("bootstrap: %w", err))
	}
	clusters := map[string]*clusterv3.Cluster{}
	for i, c := range b.GetStaticResources().GetClusters() {
		if _, dup := clusters[c.GetName()]; dup {
			errs = append(errs, fmt.Errorf("static_resources.clusters[%d]: cluster %q is defined twice", i, c.GetName()))
		}
		clusters[c.GetName()] = c
	}
	errs = append(errs, walk(b.ProtoReflect(), "", func(path string, m protoreflect.Message) {
		if hcm, ok := m.Interface().(*hcmv3.HttpConnectionManager); ok {
			errs = append(errs, checkHTTPFilters(path, hcm)...)
		}
		field, ok := clusterRefs[m.Descriptor().FullName()]
		if !ok {
			return
		}
		fd := m.Descriptor().Fields().ByName(field)
		if fd == nil || !m.Has(fd) {
			return // e.g. a RouteAction that picks its cluster from a header
		}
		name := m.Get(fd).String()
		c, ok := clusters[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s.%s: cluster %q is not defined in static_resources.clusters", path, field, name))
			return
		}
		if m.Descriptor().FullName() == "envoy.config.core.v3.GrpcService.EnvoyGrpc" && !http2(c) {
			errs = append(errs, fmt.Errorf("%s.%s: cluster %q carries gRPC but is not HTTP/2: set typed_extension_protocol_options."+
				"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config.http2_protocol_options", path, field, name))
		}
	})...)
	return errors.Join(errs...)
}

// http2 reports whether Envoy speaks HTTP/2 to the cluster's hosts.
func http2(c *clusterv3.Cluster) bool {
	a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if a == nil {
		return false
	}
	var opts upstreamhttpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&opts); err != nil {
		return false
	}
	return opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}

// checkHTTPFilters checks what Envoy checks when it builds an HTTP filter
// chain, plus the order this project documents: the router last, the
// rate-limit filter before the cache so a blocked client never reaches it,
// ext_authz (Floodgate's Check) before every rate-limit filter, closed
// on failure, behind the removal of client-sent x-floodgate-* headers, and
// ext_proc (Floodgate's response cache) after both, set up as the cache
// expects (checkExtProc).
func checkHTTPFilters(path string, hcm *hcmv3.HttpConnectionManager) []error {
	var errs []error
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 {
		return []error{fmt.Errorf("%s: no http_filters (the router must be last)", path)}
	}
	// The last rate-limit filter and the last cache: a cache hit skips every
	// filter after the cache. The first rate-limit filter and the last
	// ext_authz: a limit must key on a verified identity only.
	rateLimit, firstRateLimit, cache, extAuthz, extProc := -1, -1, -1, -1, -1
	for i, f := range filters {
		if f.GetTypedConfig() == nil {
			errs = append(errs, fmt.Errorf("%s.http_filters[%d] %q: no typed_config", path, i, f.GetName()))
			continue
		}
		switch c := unpack(f.GetTypedConfig()).(type) {
		case *extauthzv3.ExtAuthz:
			extAuthz = i
			errs = append(errs, checkExtAuthz(fmt.Sprintf("%s.http_filters[%d]", path, i), c)...)
		case *ratelimitv3.RateLimit:
			rateLimit = i
			if firstRateLimit < 0 {
				firstRateLimit = i
			}
		case *cachev3.CacheConfig, *cachev2v3.CacheV2Config:
			cache = i
		case *extprocv3.ExternalProcessor:
			if extProc < 0 {
				extProc = i
			}
			errs = append(errs, checkExtProc(fmt.Sprintf("%s.http_filters[%d]", path, i), c)...)
		case *routerv3.Router:
			if i != len(filters)-1 {
				errs = append(errs, fmt.Errorf("%s.http_filters[%d]: the router must be the last filter", path, i))
			}
		}
	}
	if _, ok := unpack(filters[len(filters)-1].GetTypedConfig()).(*routerv3.Router); !ok {
		errs = append(errs, fmt.Errorf("%s: the last of http_filters must be the router", path))
	}
	if cache >= 0 && rateLimit > cache {
		errs = append(errs, fmt.Errorf("%s.http_filters[%d]: the cache filter must come after the rate-limit filter", path, cache))
	}
	if extProc >= 0 {
		if rateLimit > extProc {
			errs = append(errs, fmt.Errorf("%s.http_filters[%d]: the ext_proc filter (the response cache) must come after the rate-limit filter (http_filters[%d]): a limited client must never cost a cache read", path, extProc, rateLimit))
		}
		if extAuthz > extProc {
			errs = append(errs, fmt.Errorf("%s.http_filters[%d]: the ext_proc filter (the response cache) must come after ext_authz (http_filters[%d]): it keys on the identity Check returns", path, extProc, extAuthz))
		}
	}
	if extAuthz >= 0 {
		if firstRateLimit >= 0 && extAuthz > firstRateLimit {
			errs = append(errs, fmt.Errorf("%s.http_filters[%d]: the ext_authz filter must come before the rate-limit filter (http_filters[%d])", path, extAuthz, firstRateLimit))
		}
		if !dropsIdentityHeaders(hcm) {
			errs = append(errs, fmt.Errorf("%s: with ext_authz, early_header_mutation_extensions must remove client-sent %s* headers before any filter runs", path, identityHeaderPrefix))
		}
	}
	return errs
}

// collapseWait is the sidecar's default --cache-collapse-wait: requests
// behind a miss wait this long in their request_headers message, so the
// ext_proc message_timeout must be longer.
const collapseWait = 150 * time.Millisecond

// defaultMessageTimeout is Envoy's ext_proc message_timeout when unset.
const defaultMessageTimeout = 200 * time.Millisecond

// cacheMode is the processing_mode Floodgate's response cache expects
// (docs/cache.md): headers both ways, no bodies unless it asks for one
// with a mode_override, no trailers.
var cacheMode = &extprocv3.ProcessingMode{
	RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
	ResponseHeaderMode:  extprocv3.ProcessingMode_SEND,
	RequestBodyMode:     extprocv3.ProcessingMode_NONE,
	ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
	RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
	ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
}

// checkExtProc checks an ext_proc filter, which in these configs is always
// Floodgate's response cache: gRPC to a cluster; cacheMode, spelt out
// (DEFAULT would leave the choice to Envoy); mode overrides allowed (the
// cache asks for storable bodies that way); open on failure (a cache must
// never fail a request); the ext_authz metadata forwarded (user and tenant
// rules key on it); immediate responses and answers honoured (hits are
// immediate responses); and a message_timeout above --cache-collapse-wait
// and at most a second.
func checkExtProc(path string, c *extprocv3.ExternalProcessor) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: ext_proc %s", path, fmt.Sprintf(format, args...)))
	}
	if c.GetGrpcService().GetEnvoyGrpc().GetClusterName() == "" {
		bad("must call Floodgate over grpc_service.envoy_grpc")
	}
	m := c.GetProcessingMode()
	for _, f := range []struct {
		name      string
		got, want protoreflect.Enum
	}{
		{"request_header_mode", m.GetRequestHeaderMode(), cacheMode.GetRequestHeaderMode()},
		{"response_header_mode", m.GetResponseHeaderMode(), cacheMode.GetResponseHeaderMode()},
		{"request_body_mode", m.GetRequestBodyMode(), cacheMode.GetRequestBodyMode()},
		{"response_body_mode", m.GetResponseBodyMode(), cacheMode.GetResponseBodyMode()},
		{"request_trailer_mode", m.GetRequestTrailerMode(), cacheMode.GetRequestTrailerMode()},
		{"response_trailer_mode", m.GetResponseTrailerMode(), cacheMode.GetResponseTrailerMode()},
	} {
		if f.got.Number() != f.want.Number() {
			bad("processing_mode.%s is %s, want %s", f.name, enumName(f.got), enumName(f.want))
		}
	}
	if !c.GetAllowModeOverride() {
		bad("allow_mode_override must be true: the cache asks for a storable response's body with a mode_override")
	}
	if !c.GetFailureModeAllow() {
		bad("failure_mode_allow must be true: a cache that cannot answer must let the request through, not fail it")
	}
	if !slices.Contains(c.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), extAuthzNamespace) {
		bad("metadata_options.forwarding_namespaces.untyped must include %s: without the identity every user and tenant rule bypasses", extAuthzNamespace)
	}
	if c.GetObservabilityMode() || c.GetDisableImmediateResponse() {
		bad("observability_mode and disable_immediate_response must be false: cache hits are immediate responses")
	}
	timeout := defaultMessageTimeout
	if c.GetMessageTimeout() != nil {
		timeout = c.GetMessageTimeout().AsDuration()
	}
	if timeout <= collapseWait || timeout > time.Second {
		bad("message_timeout %s must be above --cache-collapse-wait (%s) and at most 1s", timeout, collapseWait)
	}
	return errs
}

// enumName is an enum value's name, for messages.
func enumName(e protoreflect.Enum) string {
	if v := e.Descriptor().Values().ByNumber(e.Number()); v != nil {
		return string(v.Name())
	}
	return fmt.Sprint(e.Number())
}

// identityHeaderPrefix starts the headers Check sets to the verified
// identity; upstreams trust them, so no client may send them.
const identityHeaderPrefix = "x-floodgate-"

// checkExtAuthz checks an ext_authz filter that calls Floodgate: gRPC with
// the v3 API, closed on failure (an error must never let a request in
// unauthenticated), a cluster and a timeout.
func checkExtAuthz(path string, c *extauthzv3.ExtAuthz) []error {
	var errs []error
	if c.GetTransportApiVersion().String() != "V3" {
		errs = append(errs, fmt.Errorf("%s: ext_authz transport_api_version must be V3", path))
	}
	if c.GetFailureModeAllow() {
		errs = append(errs, fmt.Errorf("%s: ext_authz failure_mode_allow must be false: a failed Check would let the request in unauthenticated", path))
	}
	g := c.GetGrpcService()
	if g == nil || g.GetEnvoyGrpc().GetClusterName() == "" {
		errs = append(errs, fmt.Errorf("%s: ext_authz must call Floodgate over grpc_service.envoy_grpc", path))
	} else if g.GetTimeout() == nil {
		errs = append(errs, fmt.Errorf("%s: ext_authz grpc_service has no timeout (Envoy's default is 200ms)", path))
	}
	return errs
}

// dropsIdentityHeaders reports whether the HCM's early header mutation
// removes every header starting with identityHeaderPrefix, whatever its
// case: a remove_on_match rule whose matcher matches the prefix and the
// identity header names (and, to be sure it is not too broad, no other
// header Floodgate reads).
func dropsIdentityHeaders(hcm *hcmv3.HttpConnectionManager) bool {
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		hm, ok := unpack(ext.GetTypedConfig()).(*earlyheadermutationv3.HeaderMutation)
		if !ok {
			continue
		}
		for _, m := range hm.GetMutations() {
			km := m.GetRemoveOnMatch().GetKeyMatcher()
			if km == nil {
				continue
			}
			all := true
			for _, h := range []string{"x-floodgate-tenant", "X-Floodgate-Tier", "x-floodgate-user", "x-floodgate-key-id", "x-floodgate-subject", "x-floodgate-auth", "x-floodgate-policy", "x-floodgate-anything"} {
				if !stringMatches(km.GetPrefix(), km.GetExact(), km.GetIgnoreCase(), h) {
					all = false
				}
			}
			if all && !stringMatches(km.GetPrefix(), km.GetExact(), km.GetIgnoreCase(), "x-api-key") {
				return true
			}
		}
	}
	return false
}

// stringMatches is Envoy's StringMatcher for the prefix and exact forms (the
// others are not used for this and count as no match).
func stringMatches(prefix, exact string, ignoreCase bool, s string) bool {
	if ignoreCase {
		prefix, exact, s = strings.ToLower(prefix), strings.ToLower(exact), strings.ToLower(s)
	} else {
		// Envoy keeps header names lower case.
		s = strings.ToLower(s)
	}
	switch {
	case prefix != "":
		return strings.HasPrefix(s, prefix)
	case exact != "":
		return s == exact
	}
	return false
}

// unpack returns the content of a, or nil when it does not resolve (which
// validate reports).
func unpack(a *anypb.Any) proto.Message {
	if a == nil {
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil
	}
	return m
}

// load reads, decodes and validates one Envoy config.
func load(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return loadBytes(data)
}

// loadBytes decodes and validates one Envoy config's text.
func loadBytes(data []byte) (*bootstrapv3.Bootstrap, error) {
	b, err := decode(data)
	if err != nil {
		return nil, err
	}
	if err := validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// TestConfigsValid proves every Envoy config here loads as Envoy would load it.
func TestConfigsValid(t *testing.T) {
	t.Parallel()
	for _, file := range configFiles(t) {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			if _, err := load(file); err != nil {
				t.Errorf("%s is not a valid Envoy config:\n%v", file, err)
			}
		})
	}
}

// An edit replaces every Old in a config's text with New.
type edit struct{ Old, New string }

// mutate returns the file's text with the edits applied in order, failing
// the test when an Old is absent so the negative cases cannot go stale.
func mutate(t *testing.T, file string, edits ...edit) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		if !bytes.Contains(data, []byte(e.Old)) {
			t.Fatalf("%s no longer contains %q; update this test case", file, e.Old)
		}
		data = bytes.ReplaceAll(data, []byte(e.Old), []byte(e.New))
	}
	return data
}

// TestValidatorCatches proves the validation above fails on the mistakes it
// exists for, each made in an otherwise valid config.
func TestValidatorCatches(t *testing.T) {
	t.Parallel()
	const file = "front-proxy.yaml"
	tests := []struct {
		name     string
		old, new string
		want     string // in the error
	}{
		{
			name: "empty domain inside typed_config",
			old:  "domain: edge", new: `domain: ""`,
			want: "invalid RateLimit.Domain",
		},
		{
			name: "unknown field inside typed_config",
			old:  "failure_mode_deny: false", new: "failure_mode_denied: false",
			want: `unknown field "failure_mode_denied"`,
		},
		{
			name: "unknown top-level field",
			old:  "static_resources:", new: "static_resource:",
			want: `unknown field "static_resource"`,
		},
		{
			name: "unregistered typed_config type",
			old:  "envoy.extensions.filters.http.cache.v3.CacheConfig", new: "envoy.extensions.filters.http.cache.v3.NoSuchConfig",
			want: "NoSuchConfig",
		},
		{
			name: "missing rate-limit service cluster",
			old:  "envoy_grpc: {cluster_name: floodgate}", new: "envoy_grpc: {cluster_name: flodgate}",
			want: `cluster "flodgate" is not defined`,
		},
		{
			name: "missing route cluster",
			old:  "route: {cluster: app}", new: "route: {cluster: ap}",
			want: `cluster "ap" is not defined`,
		},
		{
			name: "empty cluster_name inside typed_config",
			old:  "envoy_grpc: {cluster_name: floodgate}", new: `envoy_grpc: {cluster_name: ""}`,
			want: "invalid GrpcService_EnvoyGrpc.ClusterName",
		},
		{
			name: "rate-limit service over HTTP/1.1",
			old:  "http2_protocol_options: {}", new: "http_protocol_options: {}",
			want: `cluster "floodgate" carries gRPC but is not HTTP/2`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadBytes(mutate(t, file, edit{tc.old, tc.new}))
			t.Logf("error: %v", err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestValidatorCatchesFilterOrder moves the cache filter in front of the
// rate-limit filter, where a cached answer would be served to a client the
// limit should have blocked (and not count against its limit).
func TestValidatorCatchesFilterOrder(t *testing.T) {
	t.Parallel()
	b, err := load("front-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	moved := false
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm, ok := unpack(f.GetTypedConfig()).(*hcmv3.HttpConnectionManager)
				if !ok {
					continue
				}
				filters := hcm.GetHttpFilters()
				i := slices.IndexFunc(filters, func(hf *hcmv3.HttpFilter) bool {
					_, ok := unpack(hf.GetTypedConfig()).(*cachev3.CacheConfig)
					return ok
				})
				if i < 1 {
					continue
				}
				cache := filters[i]
				filters = slices.Delete(filters, i, i+1)
				hcm.HttpFilters = slices.Insert(filters, 0, cache)
				a, err := anypb.New(hcm)
				if err != nil {
					t.Fatal(err)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
				moved = true
			}
		}
	}
	if !moved {
		t.Fatal("front-proxy.yaml has no cache filter after another filter; update this test")
	}
	const want = "the cache filter must come after the rate-limit filter"
	if err := validate(b); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want one containing %q", err, want)
	}
}

// An entry is one entry of a descriptor that Envoy can send.
type entry struct {
	key string
	// value is the value Envoy sends, when the config fixes it
	// (generic_key, header_value_match); fromRequest when it comes from the
	// request (a client address, a header) and can be anything.
	value       string
	fromRequest bool
}

// A shape is one descriptor Envoy can send: its domain and its entries in
// order, with the routes that send it.
type shape struct {
	domain  string
	entries []entry
	routes  []string
}

// String shows the shape as in messages: "edge: (key=value, key=<from request>)".
func (s *shape) String() string {
	parts := make([]string, len(s.entries))
	for i, e := range s.entries {
		v := e.value
		if e.fromRequest {
			v = "<from request>"
		}
		parts[i] = e.key + "=" + v
	}
	return s.domain + ": (" + strings.Join(parts, ", ") + ")"
}

// actionEntry says what entry a rate-limit action adds to its descriptor,
// and whether it may add none and let the descriptor go on without it. An
// action this test does not model is an error, so a new kind of action in
// the configs cannot pass unchecked.
func actionEntry(a *routev3.RateLimit_Action) (e entry, optional bool, err error) {
	switch x := a.GetActionSpecifier().(type) {
	case *routev3.RateLimit_Action_RemoteAddress_:
		return entry{key: "remote_address", fromRequest: true}, false, nil
	case *routev3.RateLimit_Action_RequestHeaders_:
		// Without skip_if_absent a missing header drops the whole descriptor,
		// with it just this entry.
		h := x.RequestHeaders
		return entry{key: h.GetDescriptorKey(), fromRequest: true}, h.GetSkipIfAbsent(), nil
	case *routev3.RateLimit_Action_GenericKey_:
		g := x.GenericKey
		return entry{key: cmp.Or(g.GetDescriptorKey(), "generic_key"), value: g.GetDescriptorValue()}, false, nil
	case *routev3.RateLimit_Action_Metadata:
		return metadataEntry(x.Metadata)
	case *routev3.RateLimit_Action_HeaderValueMatch_:
		// The value is fixed; whether the headers match only decides whether
		// the descriptor is sent.
		h := x.HeaderValueMatch
		return entry{key: cmp.Or(h.GetDescriptorKey(), "header_match"), value: h.GetDescriptorValue()}, false, nil
	}
	which := a.ProtoReflect().WhichOneof(a.ProtoReflect().Descriptor().Oneofs().ByName("action_specifier"))
	if which == nil {
		return entry{}, false, errors.New("an action with no action set")
	}
	return entry{}, false, fmt.Errorf("action %s is not modelled by this test: teach actionEntry what it sends", which.Name())
}

// limitShapes returns the entry lists one rate_limits entry can send: one,
// or more when optional entries may be left out.
func limitShapes(rl *routev3.RateLimit) ([][]entry, error) {
	variants := [][]entry{nil}
	for _, a := range rl.GetActions() {
		e, optional, err := actionEntry(a)
		if err != nil {
			return nil, err
		}
		var next [][]entry
		for _, v := range variants {
			next = append(next, append(slices.Clone(v), e))
			if optional {
				next = append(next, v)
			}
		}
		variants = next
	}
	// Envoy sends no descriptor without entries.
	return slices.DeleteFunc(variants, func(v []entry) bool { return len(v) == 0 }), nil
}

// perFilterConfig returns the ratelimit filter's per-route config that Envoy
// uses for a route, the most specific of route, virtual host and route
// configuration; disabled reports that the filter is turned off there.
func perFilterConfig(name string, r *routev3.Route, vh *routev3.VirtualHost, rc *routev3.RouteConfiguration) (cfg *ratelimitv3.RateLimitPerRoute, disabled bool, err error) {
	for _, m := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), rc.GetTypedPerFilterConfig()} {
		a, ok := m[name]
		if !ok {
			continue
		}
		switch c := unpack(a).(type) {
		case *ratelimitv3.RateLimitPerRoute:
			return c, false, nil
		case *routev3.FilterConfig:
			if c.GetDisabled() {
				return nil, true, nil
			}
			if c.GetConfig() == nil {
				return nil, false, nil
			}
			if pr, ok := unpack(c.GetConfig()).(*ratelimitv3.RateLimitPerRoute); ok {
				return pr, false, nil
			}
		}
		return nil, false, fmt.Errorf("typed_per_filter_config[%q] is a %s, not a RateLimitPerRoute", name, a.GetTypeUrl())
	}
	return nil, false, nil
}

// atStage keeps the rate_limits entries a filter of the given stage sends.
func atStage(limits []*routev3.RateLimit, stage uint32) []*routev3.RateLimit {
	var out []*routev3.RateLimit
	for _, rl := range limits {
		if rl.GetStage().GetValue() == stage {
			out = append(out, rl)
		}
	}
	return out
}

// routeName names a route in messages.
func routeName(vh *routev3.VirtualHost, r *routev3.Route) string {
	if r.GetName() != "" {
		return vh.GetName() + "/" + r.GetName()
	}
	m := r.GetMatch()
	switch {
	case m.GetPath() != "":
		return vh.GetName() + " path " + m.GetPath()
	case m.GetPrefix() != "":
		return vh.GetName() + " prefix " + m.GetPrefix()
	case m.GetSafeRegex() != nil:
		return vh.GetName() + " regex " + m.GetSafeRegex().GetRegex()
	}
	return vh.GetName() + " " + protojson.Format(m)
}

// routeShapes returns every descriptor shape the routes of b can send, found
// the way Envoy's ratelimit filter picks rate_limits for a route: the
// per-route config's rate_limits, else the filter's own, else the route's
// and (as vh_rate_limits says) the virtual host's entries of the filter's
// stage. It also reports rate_limits entries that no route ever sends, the
// usual silent mistake (a stage without a filter, a virtual-host entry that
// every route overrides).
func routeShapes(b *bootstrapv3.Bootstrap) ([]*shape, []error) {
	var errs []error
	byKey := map[string]*shape{}
	var shapes []*shape
	add := func(domain, where string, rl *routev3.RateLimit) {
		variants, err := limitShapes(rl)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return
		}
		for _, v := range variants {
			s := &shape{domain: domain, entries: v}
			if old, ok := byKey[s.String()]; ok {
				if !slices.Contains(old.routes, where) {
					old.routes = append(old.routes, where)
				}
				continue
			}
			s.routes = []string{where}
			byKey[s.String()] = s
			shapes = append(shapes, s)
		}
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		chains := append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain())
		for _, fc := range chains {
			for _, nf := range fc.GetFilters() {
				hcm, ok := unpack(nf.GetTypedConfig()).(*hcmv3.HttpConnectionManager)
				if !ok {
					continue
				}
				type rlFilter struct {
					name string
					cfg  *ratelimitv3.RateLimit
				}
				var filters []rlFilter
				for _, hf := range hcm.GetHttpFilters() {
					if cfg, ok := unpack(hf.GetTypedConfig()).(*ratelimitv3.RateLimit); ok {
						filters = append(filters, rlFilter{hf.GetName(), cfg})
					}
				}
				rc := hcm.GetRouteConfig()
				if rc == nil {
					if len(filters) > 0 {
						errs = append(errs, fmt.Errorf("listener %s: routes come from RDS, which this test cannot see", l.GetName()))
					}
					continue
				}
				sent := map[*routev3.RateLimit]bool{}
				for _, vh := range rc.GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						ra := r.GetRoute()
						if ra == nil {
							continue // a redirect or direct response calls no rate-limit service
						}
						where := "listener " + l.GetName() + ", " + routeName(vh, r)
						for _, f := range filters {
							per, disabled, err := perFilterConfig(f.name, r, vh, rc)
							if err != nil {
								errs = append(errs, fmt.Errorf("%s: %w", where, err))
								continue
							}
							if disabled {
								continue
							}
							domain := cmp.Or(per.GetDomain(), f.cfg.GetDomain())
							var limits []*routev3.RateLimit
							switch {
							case len(per.GetRateLimits()) > 0:
								limits = per.GetRateLimits()
							case len(f.cfg.GetRateLimits()) > 0:
								limits = f.cfg.GetRateLimits()
							default:
								limits = atStage(ra.GetRateLimits(), f.cfg.GetStage())
								// include_vh_rate_limits (deprecated) wins over the
								// per-route option, as in Envoy.
								mode := per.GetVhRateLimits() // OVERRIDE when unset
								if ra.GetIncludeVhRateLimits().GetValue() {
									mode = ratelimitv3.RateLimitPerRoute_INCLUDE
								}
								if mode == ratelimitv3.RateLimitPerRoute_INCLUDE ||
									mode == ratelimitv3.RateLimitPerRoute_OVERRIDE && len(ra.GetRateLimits()) == 0 {
									limits = append(limits, atStage(vh.GetRateLimits(), f.cfg.GetStage())...)
								}
							}
							for _, rl := range limits {
								sent[rl] = true
								add(domain, where, rl)
							}
						}
					}
				}
				for _, vh := range rc.GetVirtualHosts() {
					for i, rl := range vh.GetRateLimits() {
						if !sent[rl] {
							errs = append(errs, fmt.Errorf("listener %s, virtual host %s: rate_limits[%d] is never sent by any route", l.GetName(), vh.GetName(), i))
						}
					}
					for _, r := range vh.GetRoutes() {
						for i, rl := range r.GetRoute().GetRateLimits() {
							if !sent[rl] {
								errs = append(errs, fmt.Errorf("listener %s, %s: rate_limits[%d] is never sent (no rate-limit filter of stage %d)",
									l.GetName(), routeName(vh, r), i, rl.GetStage().GetValue()))
							}
						}
					}
				}
			}
		}
	}
	return shapes, errs
}

// agreement compares the shapes Envoy can send with the rules of cfg, using
// the descriptors package's own matching. Every shape must match a rule
// when its request-supplied values are arbitrary (sampleValue); otherwise
// Floodgate answers OK and counts nothing. Every rule must be matched by
// some shape with some value a client can send: the sample, or a value the
// config itself names for that key (a pattern with its stars dropped).
func agreement(shapes []*shape, cfg *descriptors.Config, cfgName string) []string {
	var problems []string
	reached := map[*descriptors.Rule]bool{}
	domains := map[string]*descriptors.Domain{}
	for _, s := range shapes {
		d := cfg.Domain(s.domain)
		if d == nil {
			problems = append(problems, fmt.Sprintf("descriptor %s (sent by %s): %s defines no domain %q",
				s, strings.Join(s.routes, "; "), cfgName, s.domain))
			continue
		}
		domains[s.domain] = d
		named := map[string][]string{}
		for _, r := range d.Rules() {
			for _, p := range r.Path {
				if v := strings.ReplaceAll(p.Value, "*", ""); v != "" && !slices.Contains(named[p.Key], v) {
					named[p.Key] = append(named[p.Key], v)
				}
			}
		}
		if r := d.Match(requestEntries(s.entries, nil)); r == nil {
			problems = append(problems, fmt.Sprintf("descriptor %s (sent by %s) matches no rule of %s: Floodgate answers OK and counts nothing",
				s, strings.Join(s.routes, "; "), cfgName))
		}
		// Every combination of candidate values: few keys, few values.
		var try func(i int, values []string)
		try = func(i int, values []string) {
			if i == len(s.entries) {
				if r := d.Match(requestEntries(s.entries, values)); r != nil {
					reached[r] = true
				}
				return
			}
			if !s.entries[i].fromRequest {
				try(i+1, append(slices.Clone(values), s.entries[i].value))
				return
			}
			for _, v := range append([]string{sampleValue}, named[s.entries[i].key]...) {
				try(i+1, append(slices.Clone(values), v))
			}
		}
		try(0, nil)
	}
	for _, d := range domains {
		for _, r := range d.Rules() {
			if !reached[r] {
				problems = append(problems, fmt.Sprintf("%s:%d: rule %s (%s) of domain %q is reached by no descriptor the Envoy routes (or the auth policies) send",
					r.File, r.Line, r.StatName, cmp.Or(r.Name, "no name"), d.Name))
			}
		}
	}
	return problems
}

// requestEntries builds a request descriptor for a shape, with values[i]
// for each entry, or the fixed value (or sampleValue) when values is nil.
func requestEntries(entries []entry, values []string) []descriptors.Entry {
	out := make([]descriptors.Entry, len(entries))
	for i, e := range entries {
		v := e.value
		switch {
		case values != nil:
			v = values[i]
		case e.fromRequest:
			v = sampleValue
		}
		out[i] = descriptors.Entry{Key: e.key, Value: v}
	}
	return out
}

// loadExample loads the Floodgate config the Envoy configs are written for.
func loadExample(t *testing.T) *descriptors.Config {
	t.Helper()
	cfg, err := descriptors.Load(exampleConfig, descriptors.Options{})
	if err != nil {
		t.Fatalf("loading %s: %v", exampleConfig, err)
	}
	return cfg
}

// checkAgreement returns every disagreement between an Envoy config and
// cfg (examples/config.yaml): problems in the routes' rate limits, then in
// the matching.
func checkAgreement(t *testing.T, b *bootstrapv3.Bootstrap, cfg *descriptors.Config) []string {
	t.Helper()
	return checkAgreementWith(t, b, cfg, exampleConfig, nil)
}

// checkAgreementWith is checkAgreement against the limits cfg (read from
// cfgName), with more descriptors decided by the same limits: those of an
// auth config's policies, which Check decides (policyShapes). A descriptor
// both sent by a route and made by a policy is counted twice per request,
// once in Check and once in ShouldRateLimit: that is a problem too.
func checkAgreementWith(t *testing.T, b *bootstrapv3.Bootstrap, cfg *descriptors.Config, cfgName string, policies []*shape) []string {
	t.Helper()
	shapes, errs := routeShapes(b)
	var problems []string
	for _, err := range errs {
		problems = append(problems, err.Error())
	}
	if len(shapes) == 0 {
		problems = append(problems, "the routes send no descriptors at all")
	}
	for _, s := range shapes {
		t.Logf("sends %s from %s", s, strings.Join(s.routes, "; "))
	}
	for _, p := range policies {
		t.Logf("Check makes %s for %s", p, strings.Join(p.routes, "; "))
		for _, s := range shapes {
			if s.domain == p.domain && slices.EqualFunc(s.entries, p.entries, func(a, b entry) bool { return a.key == b.key }) {
				problems = append(problems, fmt.Sprintf("descriptor %s is sent by %s and also made by %s: every request counts twice against it",
					s, strings.Join(s.routes, "; "), strings.Join(p.routes, "; ")))
			}
		}
	}
	return append(problems, agreement(slices.Concat(shapes, policies), cfg, cfgName)...)
}

// TestConfigsAgreeWithExample proves each Envoy config and
// examples/config.yaml agree: every descriptor any route can send has a rule,
// and every rule is reached by some route. The ext_authz configs agree with
// examples/limits instead, together with their auth config's policies
// (authz_test.go). Either failure is silent in
// production: the first lets traffic through unlimited, the second leaves a
// limit that never applies.
func TestConfigsAgreeWithExample(t *testing.T) {
	t.Parallel()
	cfg := loadExample(t)
	for _, file := range configFiles(t) {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			b, err := load(file)
			if err != nil {
				t.Fatalf("%s is not a valid Envoy config:\n%v", file, err)
			}
			// The ext_authz configs go with an auth config and the api
			// domain's limits (authz_test.go).
			if auth, ok := authzPairs[file]; ok {
				for _, p := range checkAuthzAgreement(t, b, auth) {
					t.Errorf("%s with %s: %s", file, auth, p)
				}
				return
			}
			for _, p := range checkAgreement(t, b, cfg) {
				t.Errorf("%s: %s", file, p)
			}
		})
	}
}

// TestAgreementCatches proves the agreement check fails on the mistakes it
// exists for, each made in an otherwise agreeing front-proxy.yaml.
func TestAgreementCatches(t *testing.T) {
	t.Parallel()
	cfg := loadExample(t)
	const file = "front-proxy.yaml"
	tests := []struct {
		name  string
		edits []edit
		want  []string // each in some problem; none: no problem at all
	}{
		{
			name:  "misspelt generic_key value",
			edits: []edit{{"generic_key: {descriptor_value: login}", "generic_key: {descriptor_value: logon}"}},
			want: []string{
				"descriptor edge: (generic_key=logon) (sent by listener ingress, app prefix /login) matches no rule",
				`(login) of domain "edge" is reached by no descriptor`,
			},
		},
		{
			name: "nested pair split into two descriptors",
			edits: []edit{{
				"                            - request_headers: {header_name: x-tenant, descriptor_key: tenant}\n" +
					"                            - request_headers: {header_name: x-user, descriptor_key: user}",
				"                            - request_headers: {header_name: x-tenant, descriptor_key: tenant}\n" +
					"                        - actions:\n" +
					"                            - request_headers: {header_name: x-user, descriptor_key: user}",
			}},
			want: []string{
				"descriptor edge: (tenant=<from request>)",
				"descriptor edge: (user=<from request>)",
				`(tenant-user) of domain "edge" is reached by no descriptor`,
			},
		},
		{
			name:  "wrong domain",
			edits: []edit{{"domain: edge", "domain: api"}},
			want:  []string{`defines no domain "api"`},
		},
		{
			name: "route limits of a stage without a filter",
			edits: []edit{{
				"- generic_key: {descriptor_value: search}",
				"- generic_key: {descriptor_value: search}\n                                stage: 1",
			}},
			want: []string{
				"app prefix /search: rate_limits[0] is never sent (no rate-limit filter of stage 1)",
				`(search) of domain "edge" is reached by no descriptor`,
			},
		},
		{
			// Not a mistake: the catch-all route still sends every
			// virtual-host descriptor.
			name:  "route limits that replace the virtual host's",
			edits: []edit{{"vh_rate_limits: INCLUDE", "vh_rate_limits: OVERRIDE"}},
		},
		{
			name: "virtual-host limits no route sends",
			edits: []edit{
				{"vh_rate_limits: INCLUDE", "vh_rate_limits: OVERRIDE"},
				{"                        - match: {prefix: /}\n                          route: {cluster: app}\n", ""},
			},
			want: []string{
				"virtual host app: rate_limits[0] is never sent by any route",
				"virtual host app: rate_limits[3] is never sent by any route",
				`(tenant-user) of domain "edge" is reached by no descriptor`,
			},
		},
		{
			name:  "action the test does not model",
			edits: []edit{{"- remote_address: {}", "- masked_remote_address: {}"}},
			want:  []string{"action masked_remote_address is not modelled by this test"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := loadBytes(mutate(t, file, tc.edits...))
			if err != nil {
				t.Fatalf("the mutated config must stay valid Envoy config: %v", err)
			}
			problems := checkAgreement(t, b, cfg)
			t.Logf("problems found:\n%s", strings.Join(problems, "\n"))
			for _, want := range tc.want {
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
					t.Errorf("no problem contains %q; got:\n%s", want, strings.Join(problems, "\n"))
				}
			}
			if len(tc.want) == 0 && len(problems) > 0 {
				t.Errorf("want no problems, got:\n%s", strings.Join(problems, "\n"))
			}
		})
	}
}
