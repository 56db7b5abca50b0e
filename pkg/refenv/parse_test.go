package refenv_test

import (
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/pkg/refenv"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// otherBranches are flags other branches were to add: all merged now,
// so every translated flag must parse.
var otherBranches []string

var undefined = regexp.MustCompile(`flag provided but not defined: -(\S+)`)

// parse feeds args to sidecar.ParseSettings, dropping flags of other
// branches that this build does not define yet (and logging them).
func parse(t *testing.T, args []string) (sidecar.Settings, error) {
	t.Helper()
	for {
		s, err := sidecar.ParseSettings(args, func(string) string { return "" }, io.Discard)
		if err == nil {
			return s, nil
		}
		m := undefined.FindStringSubmatch(err.Error())
		if m == nil || !slices.Contains(otherBranches, m[1]) {
			return s, err
		}
		t.Logf("--%s not defined in this build (another branch adds it): left out", m[1])
		args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--"+m[1]+"=") })
	}
}

func TestArgsParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want func(sidecar.Settings) bool
	}{
		{"defaults", map[string]string{"RUNTIME_SUBDIRECTORY": "ratelimit"}, func(s sidecar.Settings) bool {
			return s.HTTPAddr == "0.0.0.0:8080" && s.GRPCAddr == "0.0.0.0:8081" && s.Ref.DebugAddr == "0.0.0.0:6070" &&
				s.LogLevel == "warn" && s.Ref.LogFormat == "text" && s.Backend == "redis" &&
				s.Redis.URL == "unix:///var/run/nutcracker/ratelimit.sock" && s.Redis.PoolSize == 10 &&
				s.NearCacheSize == 0 && !s.Headers && s.Config == "/srv/runtime_data/current/ratelimit/config" &&
				s.Ref.ConfigLayout == "runtime-dotfiles"
		}},
		{"headers and modes", map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "r:6379",
			"LIMIT_RESPONSE_HEADERS_ENABLED": "true", "LIMIT_LIMIT_HEADER": "X-Limit", "SHADOW_MODE": "true", "QUOTA_MODE": "true",
			"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "true", "MERGE_DOMAIN_CONFIG": "true", "REDIS_TLS": "true", "REDIS_AUTH": "u:p"},
			func(s sidecar.Settings) bool {
				return s.Headers && s.Ref.HeaderStyle == "reference" && s.Ref.HeaderLimit == "X-Limit" &&
					s.Ref.HeaderRemaining == "RateLimit-Remaining" && s.ShadowMode && s.QuotaMode && s.MergeDomains &&
					s.Ref.HealthyNeedsConfig && s.Redis.URL == "rediss://u:p@r:6379"
			}},
		{"tracing", map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "TRACING_ENABLED": "true", "TRACING_EXPORTER_PROTOCOL": "grpc",
			"TRACING_SAMPLING_RATE": "0.5", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317"},
			func(s sidecar.Settings) bool {
				t := s.Tracing
				return t.Enabled && t.Protocol == "grpc" && t.SamplingRate == 0.5 && t.Endpoint == "http://otel:4317" && t.ServiceName == "RateLimit"
			}},
		{"sentinel", map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_TYPE": "sentinel", "REDIS_URL": "m,s1:1,s2:2"},
			func(s sidecar.Settings) bool {
				return s.Backend == "redis" && s.Redis.SentinelMaster == "m" && s.Redis.SentinelAddrs == "s1:1,s2:2"
			}},
		{"cluster", map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_TYPE": "CLUSTER", "REDIS_URL": "a:1,b:2"},
			func(s sidecar.Settings) bool { return s.Redis.Cluster && s.Redis.URL == "redis://a:1?addr=b%3A2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, err := refenv.Translate(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			s, err := parse(t, tr.Args)
			if err != nil {
				t.Fatalf("%q: %v", tr.Args, err)
			}
			if !tt.want(s) {
				t.Errorf("settings %+v from %q", s, tr.Args)
			}
		})
	}
}
