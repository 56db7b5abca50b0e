package refstats_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/shareddata"
	"github.com/floodgate/floodgate/pkg/refstats"
)

type mapCase struct {
	stat, kind string
	name       string
	labels     string // name=value,... sorted; "" none
	scale      float64
	drop       bool
}

func checkMap(t *testing.T, m *refstats.Mapper, cases []mapCase) {
	t.Helper()
	for _, c := range cases {
		got := m.Map(c.stat, c.kind)
		var labels []string
		for i, n := range got.LabelNames {
			labels = append(labels, n+"="+got.LabelValues[i])
		}
		scale := 0.0
		if got.Scaled {
			scale = got.Scale
		}
		if got.Name != c.name || strings.Join(labels, ",") != c.labels || scale != c.scale || got.Drop != c.drop {
			t.Errorf("Map(%q, %s) = %s{%s} scale %v drop %v, want %s{%s} scale %v drop %v",
				c.stat, c.kind, got.Name, strings.Join(labels, ","), scale, got.Drop, c.name, c.labels, c.scale, c.drop)
		}
	}
}

// TestDefaultMapping applies the reference's default mapping to the stats
// its example configs make (examples/ratelimit/config: mongo_cps, rl).
func TestDefaultMapping(t *testing.T) {
	t.Parallel()
	checkMap(t, refstats.DefaultMapper(), []mapCase{
		// config.yaml: database=users, one level.
		{"ratelimit.service.rate_limit.mongo_cps.database_users.total_hits", "counter", "ratelimit_service_rate_limit_total_hits", "domain=mongo_cps,key1=database_users", 0, false},
		{"ratelimit.service.rate_limit.mongo_cps.database_default.over_limit", "counter", "ratelimit_service_rate_limit_over_limit", "domain=mongo_cps,key1=database_default", 0, false},
		// example.yaml: two levels (source_cluster → destination_cluster), the regex mappings.
		{"ratelimit.service.rate_limit.rl.source_cluster_proxy.destination_cluster_mock.near_limit", "counter", "ratelimit_service_rate_limit_near_limit", "domain=rl,key1=source_cluster_proxy,key2=destination_cluster_mock", 0, false},
		{"ratelimit.service.rate_limit.rl.foo_pelle.bar.within_limit", "counter", "ratelimit_service_rate_limit_within_limit", "domain=rl,key1=foo_pelle,key2=bar", 0, false},
		{"ratelimit.service.rate_limit.rl.category_account.shadow_mode", "counter", "ratelimit_service_rate_limit_shadow_mode", "domain=rl,key1=category_account", 0, false},
		// Deeper levels fold into key2, as the regex's (\..*)? has them.
		{"ratelimit.service.rate_limit.rl.foo_a.bar_b.baz_c.total_hits", "counter", "ratelimit_service_rate_limit_total_hits", "domain=rl,key1=foo_a,key2=bar_b", 0, false},
		// The regexes are unanchored: a two-level over_limit_with_local_cache
		// matches over_limit; a one-level one matches nothing and keeps its name.
		{"ratelimit.service.rate_limit.rl.a.b.over_limit_with_local_cache", "counter", "ratelimit_service_rate_limit_over_limit", "domain=rl,key1=a,key2=b", 0, false},
		{"ratelimit.service.rate_limit.rl.a.over_limit_with_local_cache", "counter", "ratelimit_service_rate_limit_rl_a_over_limit_with_local_cache", "", 0, false},
		{"ratelimit.service.rate_limit.nope.domain_not_found", "counter", "ratelimit_service_rate_limit_nope_domain_not_found", "", 0, false},
		// Service stats.
		{"ratelimit.service.call.should_rate_limit.redis_error", "counter", "ratelimit_service_should_rate_limit_error", "err_type=redis_error", 0, false},
		{"ratelimit.service.call.should_rate_limit.service_error", "counter", "ratelimit_service_should_rate_limit_error", "err_type=service_error", 0, false},
		{"ratelimit.service.config_load_success", "counter", "ratelimit_service_config_load_success", "", 0, false},
		{"ratelimit.service.config_load_error", "counter", "ratelimit_service_config_load_error", "", 0, false},
		{"ratelimit.service.global_shadow_mode", "counter", "ratelimit_service_global_shadow_mode", "", 0, false},
		{"ratelimit_server.ShouldRateLimit.total_requests", "counter", "ratelimit_service_total_requests", "grpc_method=ShouldRateLimit", 0, false},
		{"ratelimit_server.ShouldRateLimit.response_time", "observer", "ratelimit_service_response_time_seconds", "grpc_method=ShouldRateLimit", 0.001, false},
		// match_metric_type: a timer is not the counter the mapping wants.
		{"ratelimit.service.config_load_success", "observer", "ratelimit_service_config_load_success", "", 0, false},
		{"ratelimit_server.ShouldRateLimit.total_requests", "observer", "ratelimit_server_ShouldRateLimit_total_requests", "", 0, false},
	})
	m := refstats.DefaultMapper().Map("ratelimit_server.ShouldRateLimit.response_time", "observer")
	if m.Observer != "histogram" || len(m.Buckets) != 11 || m.Buckets[0] != 0.005 {
		t.Errorf("response_time: observer %s buckets %v, want a histogram with the default buckets", m.Observer, m.Buckets)
	}
}

// TestExampleMapping reads the reference's examples/prom-statsd-exporter
// mapping (statsd_exporter's own format, globs only).
func TestExampleMapping(t *testing.T) {
	t.Parallel()
	m, err := refstats.LoadMapper("testdata/prom-statsd-exporter-conf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checkMap(t, m, []mapCase{
		{"ratelimit.service.rate_limit.rl.foo_a.bar_b.shadow_mode", "counter", "ratelimit_service_rate_limit_shadow_mode", "domain=rl,key1=foo_a,key2=bar_b", 0, false},
		{"ratelimit.service.rate_limit.mongo_cps.database_users.total_hits", "counter", "ratelimit_service_rate_limit_total_hits", "domain=mongo_cps,key1=database_users", 0, false},
		// No regexes here: a third level matches nothing.
		{"ratelimit.service.rate_limit.rl.a.b.c.total_hits", "counter", "ratelimit_service_rate_limit_rl_a_b_c_total_hits", "", 0, false},
		{"ratelimit_server.ShouldRateLimit.response_time", "observer", "ratelimit_service_response_time_seconds", "grpc_method=ShouldRateLimit", 0, false},
	})
}

func TestMappingSemantics(t *testing.T) {
	t.Parallel()
	m, err := refstats.ParseMapper("m.yaml", []byte(`
mappings:
  - match: "a.*.c"
    name: "first_$1"
    labels: {xx: "${1}-y", junk: "$7"}
  - match: "a.b.c"
    name: "second"
  - match: "d.*"
    name: "dropped"
    action: drop
  - match: "e-f.*"
    name: "ef"
    match_metric_type: gauge
`))
	if err != nil {
		t.Fatal(err)
	}
	checkMap(t, m, []mapCase{
		{"a.b.c", "counter", "first_b", "junk=,xx=b-y", 0, false}, // the earlier glob wins
		{"a.zz.c", "counter", "first_zz", "junk=,xx=zz-y", 0, false},
		{"a.b.c.d", "counter", "a_b_c_d", "", 0, false}, // a glob matches whole parts only
		{"d.q", "counter", "dropped", "", 0, true},
		{"e-f.q", "counter", "e_f_q", "", 0, false},
		{"1x--y.z", "counter", "_1x_y_z", "", 0, false},
	})
}

// TestBadMappingNamesFile: a mapping file statsd_exporter would refuse is
// refused, with its name and the line at fault.
func TestBadMappingNamesFile(t *testing.T) {
	t.Parallel()
	for file, want := range map[string]string{
		"testdata/unknown_field.yaml": "testdata/unknown_field.yaml: line 7: field unknown_field not found",
		"testdata/bad_regex.yaml":     "testdata/bad_regex.yaml:4: invalid regex",
		"testdata/bad_observer.yaml":  "testdata/bad_observer.yaml:2: invalid observer type 'sometimes'",
		"testdata/not_yaml.yaml":      "testdata/not_yaml.yaml: ",
		"testdata/absent.yaml":        "testdata/absent.yaml",
	} {
		_, err := refstats.LoadMapper(file)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadMapper(%s) = %v, want an error with %q", file, err, want)
		}
	}
}

// TestEmbeddedMappingIsTheReferences: the embedded default is the
// reference's file, byte for byte after our header.
func TestEmbeddedMappingIsTheReferences(t *testing.T) {
	t.Parallel()
	ref, err := os.ReadFile(filepath.Join(shareddata.Dir(t, "envoy-ratelimit", "src", "stats", "prom"), "default_mapper.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile("default_mapper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(ours), string(ref)) {
		t.Error("default_mapper.yaml differs from the reference's src/stats/prom/default_mapper.yaml")
	}
}
