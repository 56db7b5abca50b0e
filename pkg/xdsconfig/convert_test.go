package xdsconfig

import (
	"encoding/json"
	"strings"
	"testing"

	rlconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

func anys(t *testing.T, cs ...*rlconf.RateLimitConfig) []*anypb.Any {
	t.Helper()
	out := make([]*anypb.Any, len(cs))
	for i, c := range cs {
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

func policy(unit rlconf.RateLimitUnit, n uint32) *rlconf.RateLimitPolicy {
	return &rlconf.RateLimitPolicy{Unit: unit, RequestsPerUnit: n}
}

// rulesOf is a config's rules without where they are defined, to compare
// a converted config with the file that says the same.
func rulesOf(t *testing.T, c *descriptors.Config) string {
	t.Helper()
	d := c.Describe()
	for i := range d.Domains {
		d.Domains[i].Files = nil
		for j := range d.Domains[i].Rules {
			d.Domains[i].Rules[j].Source = ""
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCompileMatchesFile: a RateLimitConfig compiles to the config of the
// YAML file that says the same thing.
func TestCompileMatchesFile(t *testing.T) {
	t.Parallel()
	rc := &rlconf.RateLimitConfig{Name: "edge-config", Domain: "edge", Descriptors: []*rlconf.RateLimitDescriptor{
		{Key: "remote_address", RateLimit: policy(rlconf.RateLimitUnit_SECOND, 10)},
		{Key: "path", Value: "/login", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_MINUTE, RequestsPerUnit: 5, Name: "login"},
			ShadowMode: true, DetailedMetric: true},
		{Key: "tenant", Descriptors: []*rlconf.RateLimitDescriptor{
			{Key: "user", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_DAY, RequestsPerUnit: 1000,
				Replaces: []*rlconf.RateLimitReplace{{Name: "login"}}}},
			{Key: "plan", Value: "yes", RateLimit: &rlconf.RateLimitPolicy{Unlimited: true}},
			{Key: "blocked", Value: "1", RateLimit: policy(rlconf.RateLimitUnit_HOUR, 0)},
		}},
	}}
	const file = `domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: path
    value: /login
    rate_limit: {unit: minute, requests_per_unit: 5, name: login}
    shadow_mode: true
    detailed_metric: true
  - key: tenant
    descriptors:
      - key: user
        rate_limit: {unit: day, requests_per_unit: 1000, replaces: [{name: login}]}
      - key: plan
        value: "yes"
        rate_limit: {unlimited: true}
      - key: blocked
        value: "1"
        rate_limit: {unit: hour, requests_per_unit: 0}
`
	got, err := Compile(anys(t, rc), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := descriptors.Parse("edge.yaml", []byte(file), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g, w := rulesOf(t, got), rulesOf(t, want); g != w {
		t.Errorf("converted:\n%s\nfile:\n%s", g, w)
	}
	if files := got.Domain("edge").Files; len(files) != 1 || files[0] != "xds:edge-config" {
		t.Errorf("files %q, want [xds:edge-config]", files)
	}
}

// TestCompileProblems: a resource is validated as a file is; the problems
// name the resource and the field, with no line of the intermediate YAML.
func TestCompileProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		configs []*rlconf.RateLimitConfig
		opts    descriptors.Options
		want    []string
	}{
		{
			name:    "no unit",
			configs: []*rlconf.RateLimitConfig{{Name: "a", Domain: "a", Descriptors: []*rlconf.RateLimitDescriptor{{Key: "k", RateLimit: &rlconf.RateLimitPolicy{RequestsPerUnit: 1}}}}},
			want:    []string{"xds:a: descriptors[0].rate_limit.unit: missing; allowed: "},
		},
		{
			name:    "unit outside the enum",
			configs: []*rlconf.RateLimitConfig{{Name: "a", Domain: "a", Descriptors: []*rlconf.RateLimitDescriptor{{Key: "k", RateLimit: policy(9, 1)}}}},
			want:    []string{`xds:a: descriptors[0].rate_limit.unit: unknown unit "9"; allowed: `},
		},
		{
			name:    "empty domain and key",
			configs: []*rlconf.RateLimitConfig{{Name: "a", Descriptors: []*rlconf.RateLimitDescriptor{{RateLimit: policy(1, 1)}}}},
			want:    []string{"xds:a: domain: must not be empty", "xds:a: descriptors[0].key: must not be empty"},
		},
		{
			name: "unit with unlimited",
			configs: []*rlconf.RateLimitConfig{{Name: "a", Domain: "a", Descriptors: []*rlconf.RateLimitDescriptor{{Key: "k",
				RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_HOUR, Unlimited: true}}}}},
			want: []string{"xds:a: descriptors[0].rate_limit.unit: not allowed with unlimited: true"},
		},
		{
			name: "duplicate descriptor",
			configs: []*rlconf.RateLimitConfig{{Name: "a", Domain: "a", Descriptors: []*rlconf.RateLimitDescriptor{
				{Key: "k", Value: "v", RateLimit: policy(1, 1)},
				{Key: "other", RateLimit: policy(1, 1)},
				{Key: "k", Value: "v", RateLimit: policy(2, 1)},
			}}},
			want: []string{`xds:a: descriptors[2]: duplicate descriptor: key "k" with value "v" is already defined at this level at xds:a descriptors[0]`},
		},
		{
			name:    "duplicate domain",
			configs: []*rlconf.RateLimitConfig{xdsLimit("a", "d"), xdsLimit("b", "d")},
			want:    []string{`xds:b: domain: duplicate domain "d", also defined at xds:a domain; each domain must be in one file unless domains are merged (--merge-domains)`},
		},
		{
			name:    "self replace",
			configs: []*rlconf.RateLimitConfig{{Name: "a", Domain: "a", Descriptors: []*rlconf.RateLimitDescriptor{{Key: "k", RateLimit: &rlconf.RateLimitPolicy{Unit: 1, RequestsPerUnit: 1, Name: "n", Replaces: []*rlconf.RateLimitReplace{{Name: "n"}}}}}}},
			want:    []string{`xds:a: descriptors[0].rate_limit.replaces[0].name: names this rule's own limit "n"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(anys(t, tc.configs...), tc.opts)
			if err == nil {
				t.Fatal("compiled; want problems")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d", err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d:\n got %s\nwant %s...", i, lines[i], w)
				}
			}
		})
	}
}

// TestCompileMergeDomains: with MergeDomains two resources of one domain
// merge, as two files do.
func TestCompileMergeDomains(t *testing.T) {
	t.Parallel()
	cfg, err := Compile(anys(t, xdsLimit("a", "d"), &rlconf.RateLimitConfig{Name: "b", Domain: "d",
		Descriptors: []*rlconf.RateLimitDescriptor{{Key: "other", RateLimit: policy(1, 1)}}}), descriptors.Options{MergeDomains: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Domain("d").Rules()); n != 2 {
		t.Errorf("%d rules, want 2", n)
	}
}

// TestCompileOtherType: a resource of another type is a problem, not a
// crash.
func TestCompileOtherType(t *testing.T) {
	t.Parallel()
	a, err := anypb.New(durationpb.New(1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile([]*anypb.Any{a}, descriptors.Options{})
	if err == nil || !strings.Contains(err.Error(), "xds:resources[0]: resource of type") {
		t.Errorf("err %v", err)
	}
}

// TestCompileEmpty: no resources is a config with no domains.
func TestCompileEmpty(t *testing.T) {
	t.Parallel()
	cfg, err := Compile(nil, descriptors.Options{})
	if err != nil || len(cfg.Domains()) != 0 {
		t.Errorf("cfg %v, err %v", cfg, err)
	}
}

func xdsLimit(name, domain string) *rlconf.RateLimitConfig {
	return &rlconf.RateLimitConfig{Name: name, Domain: domain,
		Descriptors: []*rlconf.RateLimitDescriptor{{Key: "k", RateLimit: policy(rlconf.RateLimitUnit_MINUTE, 5)}}}
}
