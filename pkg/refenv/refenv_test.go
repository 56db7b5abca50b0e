package refenv

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// contractVars are the variables the contract's drop-in section names
// (../shared/CONTRACT.md, "A drop-in for envoyproxy/ratelimit and Envoy
// Gateway"); TRACING_* stands for the ones Envoy Gateway sets.
var contractVars = []string{
	"RUNTIME_ROOT", "RUNTIME_SUBDIRECTORY", "RUNTIME_APPDIRECTORY", "RUNTIME_IGNOREDOTFILES", "RUNTIME_WATCH_ROOT",
	"GRPC_HOST", "GRPC_PORT", "HOST", "PORT", "DEBUG_HOST", "DEBUG_PORT", "GRPC_UDS", "LOG_LEVEL", "LOG_FORMAT",
	"USE_STATSD", "STATSD_PROTOCOL", "STATSD_HOST", "STATSD_PORT", "USE_PROMETHEUS", "PROMETHEUS_ADDR",
	"PROMETHEUS_MAPPER_YAML", "RESPONSE_DYNAMIC_METADATA", "QUOTA_MODE", "LIMIT_RESPONSE_HEADERS_ENABLED",
	"LIMIT_LIMIT_HEADER", "LIMIT_REMAINING_HEADER", "LIMIT_RESET_HEADER",
	"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED",
	"TRACING_ENABLED", "TRACING_SERVICE_NAME", "TRACING_SERVICE_NAMESPACE", "TRACING_SERVICE_INSTANCE_ID", "TRACING_SAMPLING_RATE",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "BACKEND_TYPE", "REDIS_SOCKET_TYPE", "REDIS_TYPE", "REDIS_URL",
	"REDIS_AUTH", "REDIS_TLS", "REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY", "REDIS_TLS_CACERT",
	"REDIS_POOL_SIZE", "LOCAL_CACHE_SIZE_IN_BYTES", "NEAR_LIMIT_RATIO", "CACHE_KEY_PREFIX", "SHADOW_MODE",
	"MERGE_DOMAIN_CONFIG", "FORCE_START_WITHOUT_INITIAL_CONFIG", "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
	"CONFIG_TYPE", "CONFIG_GRPC_XDS_SERVER_URL", "CONFIG_GRPC_XDS_NODE_ID",
	"CONFIG_GRPC_XDS_SERVER_USE_TLS", "CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY",
	"CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "CONFIG_GRPC_XDS_SERVER_TLS_SAN", "GRPC_SERVER_USE_TLS",
	"GRPC_SERVER_TLS_CERT", "GRPC_SERVER_TLS_KEY", "GRPC_CLIENT_TLS_CACERT", "GRPC_SERVER_TLS_CA_CERT", "GRPC_CLIENT_TLS_SAN",
	DefaultAlgorithmVar,
}

// referenceDefaults are the reference's defaults of the settings the brief
// and the contract call out (envoyproxy/ratelimit src/settings/settings.go).
var referenceDefaults = map[string]string{
	"PORT": "8080", "GRPC_PORT": "8081", "DEBUG_PORT": "6070", "HOST": "0.0.0.0", "GRPC_HOST": "0.0.0.0", "DEBUG_HOST": "0.0.0.0",
	"USE_STATSD": "true", "STATSD_HOST": "localhost", "STATSD_PORT": "8125", "LOG_LEVEL": "WARN", "LOG_FORMAT": "text",
	"REDIS_SOCKET_TYPE": "unix", "REDIS_TYPE": "SINGLE", "REDIS_URL": "/var/run/nutcracker/ratelimit.sock",
	"REDIS_POOL_SIZE": "10", "LOCAL_CACHE_SIZE_IN_BYTES": "0", "NEAR_LIMIT_RATIO": "0.8", "CACHE_KEY_PREFIX": "",
	"BACKEND_TYPE": "redis", "RUNTIME_ROOT": "/srv/runtime_data/current", "RUNTIME_SUBDIRECTORY": "",
	"RUNTIME_APPDIRECTORY": "config", "RUNTIME_IGNOREDOTFILES": "false", "RUNTIME_WATCH_ROOT": "true", "CONFIG_TYPE": "FILE",
	"USE_PROMETHEUS": "false", "PROMETHEUS_ADDR": ":9090", "CONFIG_GRPC_XDS_NODE_ID": "default",
	"CONFIG_GRPC_XDS_SERVER_URL": "localhost:18000", "LIMIT_RESPONSE_HEADERS_ENABLED": "false",
	"LIMIT_LIMIT_HEADER": "RateLimit-Limit", "LIMIT_REMAINING_HEADER": "RateLimit-Remaining", "LIMIT_RESET_HEADER": "RateLimit-Reset",
	"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "false", "REDIS_TIMEOUT": "10s", "FORCE_START_WITHOUT_INITIAL_CONFIG": "false",
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestTableCoversContract(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, v := range Vars {
		if seen[v.Name] {
			t.Errorf("%s listed twice", v.Name)
		}
		seen[v.Name] = true
		if v.Meaning == "" || v.Becomes == "" {
			t.Errorf("%s: meaning and what it becomes must be said", v.Name)
		}
	}
	for _, name := range contractVars {
		if !seen[name] {
			t.Errorf("%s: named by the contract, missing from Vars", name)
		}
	}
}

func TestReferenceDefaults(t *testing.T) {
	t.Parallel()
	for name, want := range referenceDefaults {
		v, ok := Lookup(name)
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if v.Default != want {
			t.Errorf("%s default %q, the reference's is %q", name, v.Default, want)
		}
	}
}

// TestDefaults: the reference's defaults with only the subdirectory set
// (without it the reference loads no config; see TestRefused).
func TestDefaults(t *testing.T) {
	t.Parallel()
	got, err := Translate(envOf(map[string]string{"RUNTIME_SUBDIRECTORY": "ratelimit"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--http-addr=0.0.0.0:8080", "--debug-addr=0.0.0.0:6070", "--grpc-addr=0.0.0.0:8081",
		"--log-level=warn", "--log-format=text",
		"--config=/srv/runtime_data/current/ratelimit/config", "--config-layout=runtime-dotfiles",
		"--statsd-addr=localhost:8125", "--stats-flush-interval=10s", "--statsd-protocol=tcp",
		"--count-rejected=true", "--default-algorithm=fixed_window", "--near-limit-ratio=0.8",
		"--ratelimit-headers=false",
		"--backend=redis", "--redis-url=unix:///var/run/nutcracker/ratelimit.sock", "--redis-pool-size=10",
		"--redis-dial-timeout=10s", "--redis-read-timeout=10s", "--redis-write-timeout=10s",
		"--near-cache-size=0",
	}
	if !slices.Equal(got.Args, want) {
		t.Errorf("args\n got %q\nwant %q", got.Args, want)
	}
	if len(got.Ignored) != 0 {
		t.Errorf("ignored %q, want none (nothing set)", got.Ignored)
	}
}

func TestMapped(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "r:6379", "USE_STATSD": "false"}
	tests := []struct {
		name string
		env  map[string]string
		want []string // each must be among the args
		not  []string // flag names that must be absent
	}{
		{"listeners", map[string]string{"HOST": "127.0.0.1", "PORT": "9080", "GRPC_HOST": "::1", "GRPC_PORT": "9081", "DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": "0"},
			[]string{"--http-addr=127.0.0.1:9080", "--grpc-addr=[::1]:9081", "--debug-addr=127.0.0.1:0"}, nil},
		{"uds", map[string]string{"GRPC_UDS": "/tmp/rl.sock"}, []string{"--grpc-addr=unix:///tmp/rl.sock"}, nil},
		{"grpc tls, reference CA", map[string]string{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "c", "GRPC_SERVER_TLS_KEY": "k", "GRPC_CLIENT_TLS_CACERT": "ca", "GRPC_CLIENT_TLS_SAN": "envoy"},
			[]string{"--grpc-tls-cert=c", "--grpc-tls-key=k", "--grpc-tls-client-ca=ca", "--grpc-tls-client-san=envoy"}, nil},
		{"grpc tls, EG's CA", map[string]string{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "c", "GRPC_SERVER_TLS_KEY": "k", "GRPC_SERVER_TLS_CA_CERT": "eg-ca"},
			[]string{"--grpc-tls-client-ca=eg-ca"}, nil},
		{"grpc tls off ignores the files", map[string]string{"GRPC_SERVER_TLS_CERT": "c", "GRPC_SERVER_TLS_KEY": "k"}, nil, []string{"grpc-tls-cert"}},
		{"log", map[string]string{"LOG_LEVEL": "trace", "LOG_FORMAT": "JSON"}, []string{"--log-level=debug", "--log-format=json"}, nil},
		{"log fatal", map[string]string{"LOG_LEVEL": "Fatal"}, []string{"--log-level=error"}, nil},
		{"runtime, no watch root, ignore dotfiles", map[string]string{"RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "ratelimit", "RUNTIME_WATCH_ROOT": "false", "RUNTIME_IGNOREDOTFILES": "true"},
			[]string{"--config=/data/ratelimit/config", "--config-layout=runtime"}, nil},
		{"runtime without subdirectory", map[string]string{"RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "", "RUNTIME_WATCH_ROOT": "false", "RUNTIME_APPDIRECTORY": "limits"},
			[]string{"--config=/data/limits"}, nil},
		{"xds", map[string]string{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "true", "CONFIG_GRPC_XDS_CLIENT_TLS_CERT": "c", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY": "k", "CONFIG_GRPC_XDS_SERVER_TLS_CACERT": "ca", "CONFIG_GRPC_XDS_SERVER_TLS_SAN": "eg", "FORCE_START_WITHOUT_INITIAL_CONFIG": "true"},
			[]string{"--config-xds-url=localhost:18000", "--config-xds-node-id=default", "--config-xds-tls=true", "--config-xds-tls-cert=c", "--config-xds-tls-key=k", "--config-xds-tls-ca=ca", "--config-xds-tls-san=eg", "--force-start=true"},
			[]string{"config", "config-layout", "config-xds-initial-wait"}},
		{"xds without force start: calls wait for the first config", map[string]string{"CONFIG_TYPE": "GRPC_XDS_SOTW"},
			[]string{"--config-xds-initial-wait=10s"}, []string{"force-start"}},
		{"statsd udp", map[string]string{"USE_STATSD": "true", "STATSD_HOST": "stats", "STATSD_PORT": "9125", "STATSD_PROTOCOL": "udp", "STATS_FLUSH_INTERVAL": "250ms"},
			[]string{"--statsd-addr=stats:9125", "--statsd-protocol=udp", "--stats-flush-interval=250ms"}, nil},
		{"extra tags", map[string]string{"USE_PROMETHEUS": "true", "EXTRA_TAGS": "env:prod,zone:eu-1"},
			[]string{"--stats-extra-tags=env:prod,zone:eu-1"}, nil},
		{"extra tags without stats", map[string]string{"EXTRA_TAGS": "env:prod"}, nil, []string{"stats-extra-tags"}},
		{"prometheus", map[string]string{"USE_PROMETHEUS": "true", "PROMETHEUS_MAPPER_YAML": "/m.yaml"},
			[]string{"--reference-metrics-addr=:9090", "--prometheus-mapper-yaml=/m.yaml"}, []string{"statsd-addr"}},
		{"stats disabled", map[string]string{"USE_STATSD": "true", "USE_PROMETHEUS": "true", "DISABLE_STATS": "true"}, nil, []string{"statsd-addr", "reference-metrics-addr"}},
		{"modes", map[string]string{"SHADOW_MODE": "true", "QUOTA_MODE": "1", "RESPONSE_DYNAMIC_METADATA": "true", "MERGE_DOMAIN_CONFIG": "true", "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT": "true", "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "true", "NEAR_LIMIT_RATIO": "0.9"},
			[]string{"--shadow-mode=true", "--quota-mode=true", "--response-dynamic-metadata=true", "--merge-domains=true", "--stop-increment-over-limit=true", "--healthy-needs-config=true", "--near-limit-ratio=0.9"}, nil},
		{"algorithm", map[string]string{DefaultAlgorithmVar: "sliding_window"}, []string{"--default-algorithm=sliding_window", "--count-rejected=true"}, nil},
		{"headers", map[string]string{"LIMIT_RESPONSE_HEADERS_ENABLED": "true", "LIMIT_RESET_HEADER": "X-Reset"},
			[]string{"--ratelimit-header-style=reference", "--ratelimit-header-limit=RateLimit-Limit", "--ratelimit-header-remaining=RateLimit-Remaining", "--ratelimit-header-reset=X-Reset"},
			[]string{"ratelimit-headers"}},
		{"local cache", map[string]string{"LOCAL_CACHE_SIZE_IN_BYTES": "1048576"}, []string{"--near-cache-max-bytes=1048576"}, []string{"near-cache-size"}},
		// freecache, the reference's, holds 512 KiB at least: 1000 bytes
		// there are 524288 (here 1000 would not hold a key per shard).
		{"small local cache", map[string]string{"LOCAL_CACHE_SIZE_IN_BYTES": "1000"}, []string{"--near-cache-max-bytes=524288"}, []string{"near-cache-size"}},
		{"memcache", map[string]string{"BACKEND_TYPE": "memcache", "MEMCACHE_HOST_PORT": "m1:11211,m2:11211", "MEMCACHE_MAX_IDLE_CONNS": "100", "CACHE_KEY_PREFIX": "p:"},
			[]string{"--backend=memcache", "--memcache-addrs=m1:11211,m2:11211", "--memcache-max-idle-conns=100", "--memcache-key-prefix=p:"},
			[]string{"redis-url", "backend=redis"}},
		{"redis auth", map[string]string{"REDIS_AUTH": "s3cr:t"}, []string{"--redis-url=redis://s3cr:t@r:6379"}, nil},
		{"redis password only", map[string]string{"REDIS_AUTH": "p@ss"}, []string{"--redis-url=redis://:p%40ss@r:6379"}, nil},
		{"redis tls", map[string]string{"REDIS_TLS": "true", "REDIS_TLS_CLIENT_CERT": "c", "REDIS_TLS_CLIENT_KEY": "k", "REDIS_TLS_CACERT": "ca"},
			[]string{"--redis-url=rediss://r:6379", "--redis-tls-cert=c", "--redis-tls-key=k", "--redis-tls-ca=ca"}, nil},
		{"redis cluster", map[string]string{"REDIS_TYPE": "cluster", "REDIS_URL": "a:1,b:2,c:3"},
			[]string{"--redis-url=redis://a:1?addr=b%3A2&addr=c%3A3", "--redis-cluster=true"}, nil},
		{"redis sentinel", map[string]string{"REDIS_TYPE": "SENTINEL", "REDIS_URL": "mymaster,s1:26379,s2:26379", "REDIS_AUTH": "pw", "REDIS_SENTINEL_AUTH": "spw"},
			[]string{"--redis-sentinel-master=mymaster", "--redis-sentinel-addrs=s1:26379,s2:26379", "--redis-url=redis://:pw@/", "--redis-sentinel-password=spw"}, nil},
		{"redis sentinel, no auth", map[string]string{"REDIS_TYPE": "SENTINEL", "REDIS_URL": "m,s1:26379"}, []string{"--redis-sentinel-master=m"}, []string{"redis-url"}},
		{"redis unix", map[string]string{"REDIS_SOCKET_TYPE": "unix", "REDIS_URL": "/run/redis.sock", "REDIS_AUTH": "pw"}, []string{"--redis-url=unix://:pw@/run/redis.sock"}, nil},
		{"tracing, the reference's defaults", map[string]string{"TRACING_ENABLED": "true"},
			[]string{"--tracing-enabled=true", "--tracing-protocol=http", "--tracing-service-name=RateLimit", "--tracing-sampling-rate=1"},
			[]string{"tracing-endpoint", "tracing-service-namespace", "tracing-service-instance-id"}},
		{"tracing over grpc", map[string]string{"TRACING_ENABLED": "true", "TRACING_EXPORTER_PROTOCOL": "grpc", "TRACING_SAMPLING_RATE": "0.1",
			"TRACING_SERVICE_NAME": "rl", "TRACING_SERVICE_NAMESPACE": "edge", "TRACING_SERVICE_INSTANCE_ID": "rl-0", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel:4317"},
			[]string{"--tracing-protocol=grpc", "--tracing-sampling-rate=0.1", "--tracing-service-name=rl", "--tracing-service-namespace=edge",
				"--tracing-service-instance-id=rl-0", "--tracing-endpoint=https://otel:4317"}, nil},
		// As the reference: without TRACING_ENABLED=true the rest is unread.
		{"tracing off", map[string]string{"TRACING_ENABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "TRACING_SERVICE_NAME": "rl"},
			nil, []string{"tracing-enabled", "tracing-endpoint", "tracing-service-name", "tracing-protocol"}},
		{"redis knobs", map[string]string{"REDIS_POOL_SIZE": "32", "CACHE_KEY_PREFIX": "rl:", "REDIS_TIMEOUT": "250ms"},
			[]string{"--redis-pool-size=32", "--redis-key-prefix=rl:", "--redis-read-timeout=250ms"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			got, err := Translate(envOf(env))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !slices.Contains(got.Args, w) {
					t.Errorf("missing %s in %q", w, got.Args)
				}
			}
			for _, n := range tt.not {
				for _, a := range got.Args {
					if strings.HasPrefix(a, "--"+n+"=") {
						t.Errorf("unexpected %s", a)
					}
				}
			}
		})
	}
}

// TestBadValues: a bad value, and one that cannot be honoured, fails with
// a message that names the variable.
func TestBadValues(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "r:6379"}
	tests := []struct {
		env  map[string]string
		name string // the variable the error must name
		says string // and part of what it says
	}{
		{map[string]string{"PORT": "http"}, "PORT", "whole number"},
		{map[string]string{"GRPC_PORT": "70000"}, "GRPC_PORT", "port"},
		{map[string]string{"USE_STATSD": "yes"}, "USE_STATSD", "boolean"},
		{map[string]string{"REDIS_TIMEOUT": "10"}, "REDIS_TIMEOUT", "duration"},
		{map[string]string{"NEAR_LIMIT_RATIO": "most"}, "NEAR_LIMIT_RATIO", "number"},
		{map[string]string{"NEAR_LIMIT_RATIO": "1.5"}, "NEAR_LIMIT_RATIO", "between 0 and 1"},
		{map[string]string{"XDS_CLIENT_BACKOFF_JITTER": "sometimes"}, "XDS_CLIENT_BACKOFF_JITTER", "boolean"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL", "must be trace"},
		{map[string]string{"CONFIG_TYPE": "GRPC_XDS_DELTA"}, "CONFIG_TYPE", "FILE or GRPC_XDS_SOTW"},
		{map[string]string{"REDIS_TYPE": "ring"}, "REDIS_TYPE", "SINGLE, SENTINEL or CLUSTER"},
		{map[string]string{"REDIS_URL": "redis://r:6379"}, "REDIS_URL", "not a redis:// URL"},
		{map[string]string{"REDIS_TYPE": "sentinel", "REDIS_URL": "mymaster"}, "REDIS_URL", "master,host:port"},
		{map[string]string{"REDIS_SOCKET_TYPE": "udp"}, "REDIS_SOCKET_TYPE", "tcp or unix"},
		{map[string]string{"REDIS_POOL_SIZE": "0"}, "REDIS_POOL_SIZE", "at least 1"},
		{map[string]string{"STATSD_PROTOCOL": "quic"}, "STATSD_PROTOCOL", "tcp or udp"},
		{map[string]string{"TRACING_EXPORTER_PROTOCOL": "zipkin"}, "TRACING_EXPORTER_PROTOCOL", "http or grpc"},
		{map[string]string{"TRACING_ENABLED": "true", "TRACING_SAMPLING_RATE": "50"}, "TRACING_SAMPLING_RATE", "from 0 to 1"},
		{map[string]string{"TRACING_SAMPLING_RATE": "half"}, "TRACING_SAMPLING_RATE", "number"},
		{map[string]string{"TRACING_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "otel:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "http:// or https:// URL"},
		{map[string]string{"GRPC_SERVER_USE_TLS": "true"}, "GRPC_SERVER_USE_TLS", "GRPC_SERVER_TLS_CERT"},
		{map[string]string{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "c", "GRPC_SERVER_TLS_KEY": "k", "GRPC_CLIENT_TLS_SAN": "envoy"}, "GRPC_CLIENT_TLS_SAN", "needs GRPC_CLIENT_TLS_CACERT"},
		{map[string]string{"RUNTIME_SUBDIRECTORY": ""}, "RUNTIME_SUBDIRECTORY", "loads no config"},
		// Cannot be honoured.
		{map[string]string{"BACKEND_TYPE": "memcache"}, "BACKEND_TYPE", "needs MEMCACHE_HOST_PORT"},
		{map[string]string{"BACKEND_TYPE": "memcache", "MEMCACHE_HOST_PORT": "m1"}, "MEMCACHE_HOST_PORT", "host:port"},
		{map[string]string{"BACKEND_TYPE": "memcache", "MEMCACHE_HOST_PORT": "m1:11211", "MEMCACHE_SRV": "_mc._tcp.example"}, "MEMCACHE_SRV", "cannot be honoured"},
		{map[string]string{"BACKEND_TYPE": "cassandra"}, "BACKEND_TYPE", "redis or memcache"},
		{map[string]string{"USE_DOG_STATSD": "true"}, "USE_DOG_STATSD", "cannot be honoured"},
		{map[string]string{"EXTRA_TAGS": "prod"}, "EXTRA_TAGS", "key:value pairs"},
		{map[string]string{"PROMETHEUS_PATH": "/stats"}, "PROMETHEUS_PATH", "cannot be honoured"},
		{map[string]string{"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION": "true"}, "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "cannot be honoured"},
		{map[string]string{"REDIS_POOL_ON_EMPTY_BEHAVIOR": "CREATE"}, "REDIS_POOL_ON_EMPTY_BEHAVIOR", "cannot be honoured"},
		{map[string]string{"CONFIG_GRPC_XDS_NODE_METADATA": "a:b"}, "CONFIG_GRPC_XDS_NODE_METADATA", "cannot be honoured"},
		{map[string]string{"USE_PROMETHEUS": "true"}, "USE_PROMETHEUS", "USE_STATSD=false"},
		{map[string]string{"REDIS_SOCKET_TYPE": "unix", "REDIS_TYPE": "cluster"}, "REDIS_SOCKET_TYPE", "cannot be honoured"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.env[tt.name], func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			_, err := Translate(envOf(env))
			if err == nil {
				t.Fatalf("no error for %v", tt.env)
			}
			if !strings.Contains(err.Error(), tt.name+"=") || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q: want it to name %s and say %q", err, tt.name, tt.says)
			}
		})
	}
}

// TestRefusedAtDefault: a refused variable set to its default is fine.
func TestRefusedAtDefault(t *testing.T) {
	t.Parallel()
	env := map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "r:6379",
		"REDIS_POOL_ON_EMPTY_BEHAVIOR": "wait", "PROMETHEUS_PATH": "/metrics", "REDIS_PERSECOND": "False", "USE_DOG_STATSD": "0"}
	if _, err := Translate(envOf(env)); err != nil {
		t.Fatal(err)
	}
}

func TestIgnoredListed(t *testing.T) {
	t.Parallel()
	env := map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "r:6379",
		"REDIS_PIPELINE_WINDOW": "150us", "EXPIRATION_JITTER_MAX_SECONDS": "60", "GRPC_MAX_CONNECTION_AGE": "1h"}
	got, err := Translate(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GRPC_MAX_CONNECTION_AGE", "EXPIRATION_JITTER_MAX_SECONDS", "REDIS_PIPELINE_WINDOW"} // table order
	if !slices.Equal(got.Ignored, want) {
		t.Errorf("ignored %q, want %q", got.Ignored, want)
	}
}

// readEnvFile reads KEY=VALUE lines, skipping comments and blank lines.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		env[k] = v
	}
	return env
}

// TestEnvoyGateway: the environment Envoy Gateway sets translates, and
// every variable it sets is one this package knows.
func TestEnvoyGateway(t *testing.T) {
	t.Parallel()
	env := readEnvFile(t, "testdata/envoy-gateway.env")
	for k := range env {
		if _, ok := Lookup(k); !ok {
			t.Errorf("Envoy Gateway sets %s, which Vars lacks", k)
		}
	}
	got, err := Translate(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"--http-addr=0.0.0.0:8080", "--grpc-addr=0.0.0.0:8081", "--log-level=info",
		"--config-xds-url=envoy-gateway:18001", "--config-xds-node-id=envoy-ratelimit", "--config-xds-tls=true",
		"--config-xds-tls-cert=/certs/tls.crt", "--config-xds-tls-ca=/certs/ca.crt", "--force-start=true",
		"--grpc-tls-cert=/certs/tls.crt", "--grpc-tls-key=/certs/tls.key", "--grpc-tls-client-ca=/certs/ca.crt",
		"--redis-url=rediss://redis.redis-system.svc.cluster.local:6379", "--redis-tls-cert=/redis-certs/tls.crt",
		"--reference-metrics-addr=:19001", "--prometheus-mapper-yaml=/etc/statsd-exporter/conf.yaml",
		"--count-rejected=true", "--default-algorithm=fixed_window", "--ratelimit-headers=false",
		"--tracing-enabled=true", "--tracing-protocol=http", "--tracing-service-name=envoy-ratelimit",
		"--tracing-service-namespace=envoy-gateway-system", "--tracing-service-instance-id=envoy-ratelimit-5d9c7b6f4-abcde",
		"--tracing-sampling-rate=1.0", "--tracing-endpoint=http://otel-collector.monitoring.svc:4318",
	} {
		if !slices.Contains(got.Args, w) {
			t.Errorf("missing %s in %q", w, got.Args)
		}
	}
	for _, a := range got.Args {
		if strings.HasPrefix(a, "--statsd-addr=") || strings.HasPrefix(a, "--config=") {
			t.Errorf("unexpected %s", a)
		}
	}
	if len(got.Ignored) != 0 {
		t.Errorf("ignored %q, want none: Envoy Gateway sets nothing the sidecar ignores", got.Ignored)
	}
}

// TestMigrationDocListsEveryVar: docs/migration.md's table has a row for
// every variable, with its default.
func TestMigrationDocListsEveryVar(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/migration.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 5 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`") {
			continue
		}
		rows[strings.Trim(strings.TrimSpace(cols[1]), "`")] = strings.TrimSpace(cols[2])
	}
	for _, v := range Vars {
		def, ok := rows[v.Name]
		want := "`" + v.Default + "`"
		if v.Default == "" {
			want = "empty"
		}
		if !ok || def != want {
			t.Errorf("docs/migration.md: %s row %q, want default %s", v.Name, def, want)
		}
	}
}

// TestPerSecondRedisIgnored: REDIS_PERSECOND=true (which the reference's own
// integration tests set) starts, with per-second limits counted in the one
// Redis of REDIS_URL; the second Redis's settings are listed as ignored.
func TestPerSecondRedisIgnored(t *testing.T) {
	t.Parallel()
	env := map[string]string{"RUNTIME_SUBDIRECTORY": "rl", "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "main:6379",
		"REDIS_PERSECOND": "true", "REDIS_PERSECOND_SOCKET_TYPE": "tcp", "REDIS_PERSECOND_URL": "second:6380"}
	got, err := Translate(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"REDIS_PERSECOND", "REDIS_PERSECOND_URL"} {
		if !slices.Contains(got.Ignored, name) {
			t.Errorf("%s not among the ignored: %q", name, got.Ignored)
		}
	}
	if all := strings.Join(got.Args, " "); strings.Contains(all, "second:6380") || !strings.Contains(all, "main:6379") {
		t.Errorf("args %q: want main:6379 and not second:6380", got.Args)
	}
}
