package envoy_test

// The ext_authz configs (authz-proxy.yaml, authz-metadata.yaml, cache.yaml)
// and the example auth config, keys and JWKS they go with: the filters in order and
// closed on failure, client-sent x-floodgate-* headers dropped before any
// filter, and the descriptors both Check (the policies' rate_limit) and the
// ratelimit filter (its actions, metadata included) make reaching rules of
// examples/limits/api.yaml, none counted twice. The auth config is decoded
// here strictly against the contract's format (docs/authorization.md); the
// sidecar's own loader checks it further.

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

const (
	// apiLimits holds the domain the ext_authz examples limit (api).
	apiLimits = "../examples/limits"
	// extAuthzNamespace is where Envoy keeps the dynamic metadata of
	// Check's answer.
	extAuthzNamespace = "envoy.filters.http.ext_authz"
)

// authzPairs maps each ext_authz Envoy config to the auth config it is
// written for.
var authzPairs = map[string]string{
	"authz-proxy.yaml":    "../examples/auth.yaml",
	"authz-metadata.yaml": "../examples/auth-metadata.yaml",
	"cache.yaml":          "../examples/auth.yaml",
}

// authzFilters is each ext_authz config's HTTP filter chain, in order.
var authzFilters = map[string][]string{
	"authz-proxy.yaml":    {"ext_authz", "ratelimit", "router"},
	"authz-metadata.yaml": {"ext_authz", "ratelimit", "router"},
	"cache.yaml":          {"ext_authz", "ratelimit", "ext_proc", "router"},
}

// checkFields are the top-level string fields of Check's dynamic metadata
// (docs/authorization.md): what a metadata action can read.
var checkFields = []string{"tenant", "tier", "user", "key_id", "subject", "issuer", "client_ip", "auth", "policy"}

// metadataEntry says what a metadata action adds: a value from Check's
// dynamic metadata, which a client cannot choose. An action that reads
// anything else is an error: Envoy would find nothing there and silently
// send no descriptor.
func metadataEntry(m *routev3.RateLimit_Action_MetaData) (entry, bool, error) {
	k := m.GetMetadataKey()
	switch {
	case m.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC:
		return entry{}, false, fmt.Errorf("metadata action %q: source %s, want DYNAMIC (Check's answer is dynamic metadata)", m.GetDescriptorKey(), m.GetSource())
	case k.GetKey() != extAuthzNamespace:
		return entry{}, false, fmt.Errorf("metadata action %q: metadata_key.key %q, want %s", m.GetDescriptorKey(), k.GetKey(), extAuthzNamespace)
	case len(k.GetPath()) != 1 || !slices.Contains(checkFields, k.GetPath()[0].GetKey()):
		return entry{}, false, fmt.Errorf("metadata action %q: path %v is not one field Check sets (%s)", m.GetDescriptorKey(), k.GetPath(), strings.Join(checkFields, ", "))
	}
	// Without a default, an absent value drops the descriptor, or with
	// skip_if_absent only this entry.
	return entry{key: m.GetDescriptorKey(), fromRequest: true}, m.GetDefaultValue() == "" && m.GetSkipIfAbsent(), nil
}

// authConfig is the auth config's format (docs/authorization.md), every
// field of it, so that strict decoding rejects any other.
type authConfig struct {
	APIKeys *struct {
		Header string   `yaml:"header"`
		Files  []string `yaml:"files"`
	} `yaml:"api_keys"`
	JWT []struct {
		Issuer      string            `yaml:"issuer"`
		Audiences   []string          `yaml:"audiences"`
		JWKSFile    string            `yaml:"jwks_file"`
		JWKSURL     string            `yaml:"jwks_url"`
		JWKSRefresh string            `yaml:"jwks_refresh"`
		Algorithms  []string          `yaml:"algorithms"`
		ClockSkew   string            `yaml:"clock_skew"`
		Claims      map[string]string `yaml:"claims"`
		Tenants     []string          `yaml:"tenants"`
	} `yaml:"jwt"`
	ClientAddress *struct {
		TrustedHops *int `yaml:"trusted_hops"`
	} `yaml:"client_address"`
	FailedAuthLimit *struct {
		Unit            string `yaml:"unit"`
		RequestsPerUnit int    `yaml:"requests_per_unit"`
	} `yaml:"failed_auth_limit"`
	Policies []struct {
		Name  string `yaml:"name"`
		Match struct {
			Hosts      []string `yaml:"hosts"`
			PathPrefix string   `yaml:"path_prefix"`
			Methods    []string `yaml:"methods"`
		} `yaml:"match"`
		Auth             string   `yaml:"auth"`
		Tiers            []string `yaml:"tiers"`
		StripCredentials bool     `yaml:"strip_credentials"`
		RateLimit        *struct {
			Domain      string `yaml:"domain"`
			Descriptors [][]struct {
				Key   string `yaml:"key"`
				Value string `yaml:"value"`
			} `yaml:"descriptors"`
		} `yaml:"rate_limit"`
	} `yaml:"policies"`
}

var (
	// templateRE matches one template of a descriptor value.
	templateRE = regexp.MustCompile(`%[^%]*%`)
	// namedTemplateRE matches the templates that take a name.
	namedTemplateRE = regexp.MustCompile(`^%(header|claim):[A-Za-z0-9_.-]+%$`)
)

// knownTemplate reports whether t (with its percent signs) is a template
// the contract defines.
func knownTemplate(t string) bool {
	switch t {
	case "%tenant%", "%tier%", "%user%", "%key_id%", "%subject%", "%issuer%", "%client_ip%", "%auth%", "%method%", "%host%", "%path%":
		return true
	}
	return namedTemplateRE.MatchString(t)
}

// loadAuthConfig decodes an auth config strictly and checks what the
// descriptors and the files it names depend on. dir resolves its relative
// file names.
func loadAuthConfig(data []byte, dir string) (*authConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c authConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("auth config: %w", err)
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	exists := func(what, name string) {
		if name == "" {
			bad("%s: no file named", what)
			return
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			bad("%s: %v", what, err)
		}
	}
	if c.APIKeys != nil {
		for _, f := range c.APIKeys.Files {
			exists("api_keys.files", f)
		}
	}
	for i, j := range c.JWT {
		if j.Issuer == "" || len(j.Audiences) == 0 {
			bad("jwt[%d]: issuer and audiences are required", i)
		}
		if j.JWKSURL == "" {
			exists(fmt.Sprintf("jwt[%d].jwks_file", i), j.JWKSFile)
		}
		for field := range j.Claims {
			if !slices.Contains([]string{"tenant", "tier", "user"}, field) {
				bad("jwt[%d].claims: %q is not an identity field", i, field)
			}
		}
	}
	names := map[string]bool{}
	for i, p := range c.Policies {
		if p.Name == "" || names[p.Name] {
			bad("policies[%d]: name %q missing or repeated", i, p.Name)
		}
		names[p.Name] = true
		if !slices.Contains([]string{"none", "api_key", "jwt", "any"}, p.Auth) {
			bad("policies[%d] %s: auth %q: must be none, api_key, jwt or any", i, p.Name, p.Auth)
		}
		if p.RateLimit == nil {
			continue
		}
		if p.RateLimit.Domain == "" || len(p.RateLimit.Descriptors) == 0 {
			bad("policies[%d] %s: rate_limit needs a domain and descriptors", i, p.Name)
		}
		for k, d := range p.RateLimit.Descriptors {
			if len(d) == 0 {
				bad("policies[%d] %s: rate_limit.descriptors[%d] is empty", i, p.Name, k)
			}
			for _, e := range d {
				if e.Key == "" || e.Value == "" {
					bad("policies[%d] %s: rate_limit.descriptors[%d]: an entry needs a key and a value", i, p.Name, k)
				}
				for _, t := range templateRE.FindAllString(e.Value, -1) {
					if !knownTemplate(t) {
						bad("policies[%d] %s: rate_limit.descriptors[%d]: unknown template %s", i, p.Name, k, t)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("auth config: %s", strings.Join(errs, "; "))
	}
	return &c, nil
}

// policyShapes returns the descriptors Check makes for the policies: an
// entry whose value has a template is the request's (the identity, a
// header...), any other is fixed.
func policyShapes(c *authConfig) []*shape {
	var out []*shape
	for _, p := range c.Policies {
		if p.RateLimit == nil {
			continue
		}
		for _, d := range p.RateLimit.Descriptors {
			s := &shape{domain: p.RateLimit.Domain, routes: []string{"policy " + p.Name}}
			for _, e := range d {
				if templateRE.MatchString(e.Value) {
					s.entries = append(s.entries, entry{key: e.Key, fromRequest: true})
				} else {
					s.entries = append(s.entries, entry{key: e.Key, value: e.Value})
				}
			}
			out = append(out, s)
		}
	}
	return out
}

// checkAuthzAgreement is the agreement of an ext_authz Envoy config and the
// auth config at authPath with the api domain's limits.
func checkAuthzAgreement(t *testing.T, b *bootstrapv3.Bootstrap, authPath string) []string {
	t.Helper()
	data, err := os.ReadFile(authPath)
	if err != nil {
		t.Fatal(err)
	}
	return checkAuthzAgreementBytes(t, b, data)
}

func checkAuthzAgreementBytes(t *testing.T, b *bootstrapv3.Bootstrap, auth []byte) []string {
	t.Helper()
	ac, err := loadAuthConfig(auth, "../examples")
	if err != nil {
		return []string{err.Error()}
	}
	limits, err := descriptors.Load(apiLimits, descriptors.Options{})
	if err != nil {
		t.Fatalf("loading %s: %v", apiLimits, err)
	}
	return checkAgreementWith(t, b, limits, apiLimits, policyShapes(ac))
}

// authzChain is what an ext_authz config's HTTP filters are, in order.
type authzChain struct {
	names     []string
	extAuthz  *extauthzv3.ExtAuthz
	rateLimit *ratelimitv3.RateLimit
	extProc   *extprocv3.ExternalProcessor
	hcm       *hcmv3.HttpConnectionManager
}

// authzChains returns each HTTP connection manager's chain.
func authzChains(b *bootstrapv3.Bootstrap) []authzChain {
	var out []authzChain
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, nf := range fc.GetFilters() {
				hcm, ok := unpack(nf.GetTypedConfig()).(*hcmv3.HttpConnectionManager)
				if !ok {
					continue
				}
				c := authzChain{hcm: hcm}
				for _, hf := range hcm.GetHttpFilters() {
					switch f := unpack(hf.GetTypedConfig()).(type) {
					case *extauthzv3.ExtAuthz:
						c.names = append(c.names, "ext_authz")
						c.extAuthz = f
					case *ratelimitv3.RateLimit:
						c.names = append(c.names, "ratelimit")
						c.rateLimit = f
					case *extprocv3.ExternalProcessor:
						c.names = append(c.names, "ext_proc")
						c.extProc = f
					case *routerv3.Router:
						c.names = append(c.names, "router")
					default:
						c.names = append(c.names, hf.GetName())
					}
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// TestAuthzConfigs holds each ext_authz config to its design: exactly
// ext_authz, ratelimit (domain api), router (cache.yaml: ext_proc before
// the router); ext_authz over gRPC V3 to the
// cluster the ratelimit filter calls (Floodgate's one listener), closed on
// failure, with a timeout; client-sent x-floodgate-* headers dropped by the
// early header mutation; and, in the metadata variant, limits keyed on
// Check's metadata.
func TestAuthzConfigs(t *testing.T) {
	t.Parallel()
	for file := range authzPairs {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			b, err := load(file)
			if err != nil {
				t.Fatalf("%s is not a valid Envoy config:\n%v", file, err)
			}
			chains := authzChains(b)
			if len(chains) != 1 {
				t.Fatalf("want one HTTP connection manager, got %d", len(chains))
			}
			c := chains[0]
			if want := authzFilters[file]; !slices.Equal(c.names, want) {
				t.Errorf("http_filters %q, want %q", c.names, want)
			}
			if c.extAuthz == nil || c.rateLimit == nil {
				t.Fatal("no ext_authz or ratelimit filter")
			}
			if c.extAuthz.GetFailureModeAllow() {
				t.Error("ext_authz failure_mode_allow is true")
			}
			if got := c.extAuthz.GetTransportApiVersion().String(); got != "V3" {
				t.Errorf("ext_authz transport_api_version %s, want V3", got)
			}
			if d := c.extAuthz.GetGrpcService().GetTimeout().AsDuration(); d <= 0 || d > time.Second {
				t.Errorf("ext_authz timeout %s, want set and at most 1s", d)
			}
			if a, r := c.extAuthz.GetGrpcService().GetEnvoyGrpc().GetClusterName(), c.rateLimit.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName(); a != "floodgate" || r != a {
				t.Errorf("ext_authz calls %q and ratelimit %q: want both on floodgate", a, r)
			}
			if c.rateLimit.GetDomain() != "api" {
				t.Errorf("ratelimit domain %q, want api", c.rateLimit.GetDomain())
			}
			if !dropsIdentityHeaders(c.hcm) {
				t.Error("client-sent x-floodgate-* headers are not removed before the filters")
			}
			shapes, errs := routeShapes(b)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			metadataKeys := 0
			for _, vh := range c.hcm.GetRouteConfig().GetVirtualHosts() {
				for _, rl := range slices.Concat(vh.GetRateLimits(), routeLimits(vh)) {
					for _, a := range rl.GetActions() {
						if a.GetMetadata() != nil {
							metadataKeys++
						}
						if h := a.GetRequestHeaders(); h != nil && strings.HasPrefix(strings.ToLower(h.GetHeaderName()), identityHeaderPrefix) {
							t.Errorf("a request_headers action reads %s: use a metadata action on %s", h.GetHeaderName(), extAuthzNamespace)
						}
					}
				}
			}
			if file == "authz-metadata.yaml" && metadataKeys == 0 {
				t.Error("the metadata variant has no metadata actions")
			}
			t.Logf("%d descriptor shapes, %d metadata actions", len(shapes), metadataKeys)
		})
	}
}

func routeLimits(vh *routev3.VirtualHost) []*routev3.RateLimit {
	var out []*routev3.RateLimit
	for _, r := range vh.GetRoutes() {
		out = append(out, r.GetRoute().GetRateLimits()...)
	}
	return out
}

// TestAuthzValidatorCatches proves the checks above fail on the mistakes
// they exist for, each made in an otherwise valid authz-proxy.yaml.
func TestAuthzValidatorCatches(t *testing.T) {
	t.Parallel()
	const file = "authz-proxy.yaml"
	tests := []struct {
		name  string
		edits []edit
		want  string
	}{
		{"fail open", []edit{{"failure_mode_allow: false", "failure_mode_allow: true"}}, "failure_mode_allow must be false"},
		{"no timeout", []edit{{"                        timeout: 0.25s\n", ""}}, "grpc_service has no timeout"},
		{"unknown field in ext_authz", []edit{{"include_peer_certificate: false", "include_peer_certificates: false"}}, `unknown field "include_peer_certificates"`},
		{"missing cluster", []edit{{"                      grpc_service:\n                        envoy_grpc: {cluster_name: floodgate}", "                      grpc_service:\n                        envoy_grpc: {cluster_name: flodgate}"}}, `cluster "flodgate" is not defined`},
		{"one header only", []edit{{"key_matcher: {prefix: x-floodgate-, ignore_case: true}", "key_matcher: {exact: x-floodgate-tenant}"}}, "must remove client-sent x-floodgate-* headers"},
		{"case-sensitive mixed-case prefix", []edit{{"key_matcher: {prefix: x-floodgate-, ignore_case: true}", "key_matcher: {prefix: X-Floodgate-}"}}, "must remove client-sent x-floodgate-* headers"},
		{"too broad", []edit{{"key_matcher: {prefix: x-floodgate-, ignore_case: true}", "key_matcher: {prefix: x-}"}}, "must remove client-sent x-floodgate-* headers"},
		{"no early mutation", []edit{{"                      mutations:\n                        - remove_on_match:\n                            key_matcher: {prefix: x-floodgate-, ignore_case: true}\n", "                      mutations:\n                        - remove: x-floodgate-tenant\n"}}, "must remove client-sent x-floodgate-* headers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadBytes(mutate(t, file, tc.edits...))
			t.Logf("error: %v", err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}

	// ext_authz after ratelimit: limits would be decided before (and for)
	// requests that Check then refuses.
	t.Run("ext_authz after ratelimit", func(t *testing.T) {
		t.Parallel()
		b, err := load(file)
		if err != nil {
			t.Fatal(err)
		}
		nf := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
		hcm := unpack(nf.GetTypedConfig()).(*hcmv3.HttpConnectionManager)
		f := hcm.HttpFilters
		f[0], f[1] = f[1], f[0]
		a, err := anypb.New(hcm)
		if err != nil {
			t.Fatal(err)
		}
		nf.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		const want = "the ext_authz filter must come before the rate-limit filter"
		if err := validate(b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want one containing %q", err, want)
		}
	})
}

// TestAuthzAgreementCatches proves the agreement of policies, actions and
// limits fails on the mistakes it exists for.
func TestAuthzAgreementCatches(t *testing.T) {
	t.Parallel()
	auth, err := os.ReadFile("../examples/auth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	authMetadata, err := os.ReadFile("../examples/auth-metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		file      string
		edits     []edit
		auth      []byte
		authEdits []edit
		want      []string
	}{
		{
			name: "metadata variant with policies that limit too",
			file: "authz-metadata.yaml", auth: auth,
			want: []string{"api: (tenant=<from request>, tier=<from request>) is sent by", "every request counts twice"},
		},
		{
			name: "metadata path Check does not set",
			file: "authz-metadata.yaml", auth: authMetadata,
			edits: []edit{{"path: [{key: tier}]", "path: [{key: plan}]"}},
			want:  []string{`metadata action "tier": path`, "is not one field Check sets"},
		},
		{
			name: "metadata from another filter",
			file: "authz-metadata.yaml", auth: authMetadata,
			edits: []edit{{"key: envoy.filters.http.ext_authz\n                                  path: [{key: tenant}]", "key: envoy.filters.http.jwt_authn\n                                  path: [{key: tenant}]"}},
			want:  []string{`metadata action "tenant": metadata_key.key "envoy.filters.http.jwt_authn"`},
		},
		{
			name: "metadata descriptor key no rule has",
			file: "authz-metadata.yaml", auth: authMetadata,
			edits: []edit{{"descriptor_key: tier", "descriptor_key: plan"}},
			want:  []string{"api: (tenant=<from request>, plan=<from request>) (sent by", "matches no rule", "(tenant-pro) of domain \"api\" is reached by no descriptor"},
		},
		{
			name: "policy descriptor key no rule has",
			file: "authz-proxy.yaml", auth: auth,
			authEdits: []edit{{`{key: tier, value: "%tier%"}`, `{key: plan, value: "%tier%"}`}},
			want:      []string{"(sent by policy api) matches no rule"},
		},
		{
			name: "policy domain the limits lack",
			file: "authz-proxy.yaml", auth: auth,
			authEdits: []edit{{"      domain: api\n      descriptors:\n        - [{key: tenant", "      domain: apii\n      descriptors:\n        - [{key: tenant"}},
			want:      []string{`defines no domain "apii"`},
		},
		{
			name: "unknown field in the auth config",
			file: "authz-proxy.yaml", auth: auth,
			authEdits: []edit{{"strip_credentials: true", "strip_credential: true"}},
			want:      []string{"field strip_credential not found"},
		},
		{
			name: "unknown template",
			file: "authz-proxy.yaml", auth: auth,
			authEdits: []edit{{`"%tier%"`, `"%plan%"`}},
			want:      []string{"unknown template %plan%"},
		},
		{
			name: "a limit nobody reaches",
			file: "authz-proxy.yaml", auth: auth,
			edits: []edit{{"generic_key: {descriptor_value: export}", "generic_key: {descriptor_value: exports}"}},
			want:  []string{"(export) of domain \"api\" is reached by no descriptor"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := loadBytes(mutate(t, tc.file, tc.edits...))
			if err != nil {
				t.Fatalf("the mutated config must stay valid Envoy config: %v", err)
			}
			a := tc.auth
			for _, e := range tc.authEdits {
				if !bytes.Contains(a, []byte(e.Old)) {
					t.Fatalf("the auth config no longer contains %q; update this test case", e.Old)
				}
				a = bytes.ReplaceAll(a, []byte(e.Old), []byte(e.New))
			}
			problems := checkAuthzAgreementBytes(t, b, a)
			t.Logf("problems found:\n%s", strings.Join(problems, "\n"))
			for _, want := range tc.want {
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
					t.Errorf("no problem contains %q; got:\n%s", want, strings.Join(problems, "\n"))
				}
			}
		})
	}
}

// exampleKeyRE matches one line of keys.yaml's comment: a key id and its
// TEST ONLY key, in the clear, for trying the examples.
var exampleKeyRE = regexp.MustCompile(`^#\s+(k-[a-z0-9-]+)\s+(fgk_[A-Za-z0-9_-]{43})\b`)

// TestExampleKeys checks examples/keys.yaml: the contract's fields only,
// hex SHA-256 digests, unique ids, RFC 3339 expiries, each key documented
// in the comment as TEST ONLY and hashing to its digest.
func TestExampleKeys(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../examples/keys.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("TEST ONLY")) {
		t.Error("keys.yaml does not say its keys are TEST ONLY")
	}
	var f struct {
		Keys []struct {
			ID      string `yaml:"id"`
			SHA256  string `yaml:"sha256"`
			Tenant  string `yaml:"tenant"`
			Tier    string `yaml:"tier"`
			User    string `yaml:"user"`
			Expires string `yaml:"expires"`
		} `yaml:"keys"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if m := exampleKeyRE.FindStringSubmatch(sc.Text()); m != nil {
			documented[m[1]] = m[2]
		}
	}
	if len(f.Keys) == 0 {
		t.Fatal("no keys")
	}
	seen := map[string]bool{}
	for _, k := range f.Keys {
		if k.ID == "" || seen[k.ID] || k.Tenant == "" || k.Tier == "" {
			t.Errorf("key %q: id missing or repeated, or no tenant or tier", k.ID)
		}
		seen[k.ID] = true
		if d, err := hex.DecodeString(k.SHA256); err != nil || len(d) != sha256.Size || k.SHA256 != strings.ToLower(k.SHA256) {
			t.Errorf("key %s: sha256 %q is not 64 lower-case hex digits", k.ID, k.SHA256)
		}
		if k.Expires != "" {
			if _, err := time.Parse(time.RFC3339, k.Expires); err != nil {
				t.Errorf("key %s: expires: %v", k.ID, err)
			}
		}
		plain, ok := documented[k.ID]
		if !ok {
			t.Errorf("key %s: its TEST ONLY key is not in the comment", k.ID)
			continue
		}
		if sum := sha256.Sum256([]byte(plain)); hex.EncodeToString(sum[:]) != k.SHA256 {
			t.Errorf("key %s: sha256 of the documented key is %x, the file says %s", k.ID, sum, k.SHA256)
		}
	}
}

// TestExampleJWKS checks examples/jwks.json: public keys only (no private
// member of RFC 7518), each a usable RSA (2048 bits or more) or P-256 key
// with a unique kid and an algorithm the auth config allows.
func TestExampleJWKS(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../examples/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) == 0 {
		t.Fatal("no keys")
	}
	field := func(k map[string]any, name string) []byte {
		s, _ := k[name].(string)
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			t.Errorf("kid %v: %s is not base64url: %q", k["kid"], name, s)
		}
		return b
	}
	kids := map[any]bool{}
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("kid %v: has the private member %q: a JWKS file holds public keys only", k["kid"], private)
			}
		}
		if k["kid"] == nil || kids[k["kid"]] {
			t.Errorf("kid %v missing or repeated", k["kid"])
		}
		kids[k["kid"]] = true
		switch k["kty"] {
		case "RSA":
			pub := rsa.PublicKey{N: new(big.Int).SetBytes(field(k, "n")), E: int(new(big.Int).SetBytes(field(k, "e")).Int64())}
			if pub.N.BitLen() < 2048 || pub.E < 3 || k["alg"] != "RS256" {
				t.Errorf("kid %v: RSA key of %d bits, e=%d, alg %v: want 2048 or more, RS256", k["kid"], pub.N.BitLen(), pub.E, k["alg"])
			}
		case "EC":
			x, y := field(k, "x"), field(k, "y")
			if _, err := ecdh.P256().NewPublicKey(slices.Concat([]byte{4}, x, y)); err != nil || k["crv"] != "P-256" || k["alg"] != "ES256" {
				t.Errorf("kid %v: not a P-256 ES256 public key: %v", k["kid"], err)
			}
		default:
			t.Errorf("kid %v: kty %v", k["kid"], k["kty"])
		}
	}
}

// TestExampleAuthConfigs decodes each example auth config strictly: every
// field is the contract's, the files it names exist, and every template is
// one the contract defines.
func TestExampleAuthConfigs(t *testing.T) {
	t.Parallel()
	for _, path := range authzPairs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := loadAuthConfig(data, filepath.Dir(path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if c.APIKeys == nil || len(c.JWT) == 0 || len(c.Policies) == 0 {
			t.Errorf("%s: want API keys, a JWT issuer and policies", path)
		}
	}
}
