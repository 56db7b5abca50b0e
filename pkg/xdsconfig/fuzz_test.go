package xdsconfig

import (
	"strings"
	"testing"

	rlconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// FuzzCompile checks the RateLimitConfig translation on any resource
// bytes: Compile fails with Problems, each naming the resource ("xds:…")
// and no line (the YAML is only an intermediate form), or gives a config
// with the resource's domain in which every descriptor that has a
// rate_limit is a rule with exactly the resource's keys and values,
// whatever characters they hold (the YAML written in between must quote
// them all right).
func FuzzCompile(f *testing.F) {
	for _, rc := range []*rlconf.RateLimitConfig{
		{Name: "edge", Domain: "edge", Descriptors: []*rlconf.RateLimitDescriptor{
			{Key: "remote_address", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_SECOND, RequestsPerUnit: 10}},
			{Key: "path", Value: "/login*", ShadowMode: true, DetailedMetric: true,
				RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_MINUTE, RequestsPerUnit: 5, Name: "login"}},
			{Key: "tenant", Descriptors: []*rlconf.RateLimitDescriptor{
				{Key: "user", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_DAY, RequestsPerUnit: 1000,
					Replaces: []*rlconf.RateLimitReplace{{Name: "login"}}}}}},
			{Key: "internal", RateLimit: &rlconf.RateLimitPolicy{Unlimited: true}},
		}},
		{Domain: "yes", Descriptors: []*rlconf.RateLimitDescriptor{
			{Key: "null", Value: "~", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_HOUR}},
			{Key: "a: b", Value: "- [x]\n#c", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_HOUR, RequestsPerUnit: 1}},
			{Key: "&anchor", Value: "*alias", RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_HOUR, RequestsPerUnit: 1}}}},
		{Name: "a", Domain: "a", Descriptors: []*rlconf.RateLimitDescriptor{{Key: "k", RateLimit: &rlconf.RateLimitPolicy{RequestsPerUnit: 1}}}},
		{Name: "a", Descriptors: []*rlconf.RateLimitDescriptor{{Key: "k"}, {Key: "k"}}},
	} {
		b, err := proto.Marshal(rc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rc rlconf.RateLimitConfig
		decodes := proto.Unmarshal(data, &rc) == nil
		cfg, err := Compile([]*anypb.Any{{TypeUrl: TypeURL, Value: data}}, descriptors.Options{})
		if err != nil {
			ps, ok := err.(descriptors.Problems)
			if !ok || len(ps) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, p := range ps {
				if !strings.HasPrefix(p.File, "xds:") || p.Line != 0 || p.Msg == "" {
					t.Fatalf("problem %+v: want an xds: resource name, no line and a message", p)
				}
			}
			return
		}
		if !decodes {
			t.Fatalf("bytes that do not decode compiled")
		}
		d := cfg.Domain(rc.GetDomain())
		if d == nil || len(cfg.Domains()) != 1 {
			t.Fatalf("domain %q: not in the compiled config", rc.GetDomain())
		}
		rules := map[string]bool{}
		for _, r := range d.Rules() {
			var kv []string
			for _, e := range r.Path {
				kv = append(kv, e.Key, e.Value)
			}
			rules[strings.Join(kv, "\x00")] = true
		}
		var walk func(prefix []string, ds []*rlconf.RateLimitDescriptor)
		walk = func(prefix []string, ds []*rlconf.RateLimitDescriptor) {
			for _, desc := range ds {
				path := append(append([]string(nil), prefix...), desc.GetKey(), desc.GetValue())
				if desc.GetRateLimit() != nil && !rules[strings.Join(path, "\x00")] {
					t.Fatalf("descriptor %q: no rule with its path; rules %v", path, rules)
				}
				walk(path, desc.GetDescriptors())
			}
		}
		walk(nil, rc.GetDescriptors())
	})
}
