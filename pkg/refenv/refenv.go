// Package refenv runs Floodgate where envoyproxy/ratelimit ran: it reads
// the reference's environment variables (its settings have no flags) and
// turns them into serve's flags, so that the ratelimit mode has the same
// one settings path as serve (sidecar.ParseSettings).
//
// Vars is the table of every variable read: its name, the reference's
// default, what it means there and what it becomes here. Each variable
// is one of three kinds: mapped (it becomes flags), ignored (it only tunes
// the reference's own machinery; accepted, and logged once when set) or
// refused (a value Floodgate cannot honour fails start-up, naming the
// variable; its default is always honoured).
package refenv

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Kind says what becomes of a variable.
type Kind int

const (
	// Mapped variables become serve flags.
	Mapped Kind = iota
	// Ignored variables tune only the reference (pipelines, jitter,
	// backoffs, flush intervals): accepted, checked when they have a type,
	// and logged once when set.
	Ignored
	// Refused variables are honoured at their default only: any other
	// value fails start-up naming the variable.
	Refused
)

func (k Kind) String() string {
	switch k {
	case Mapped:
		return "mapped"
	case Ignored:
		return "ignored"
	}
	return "refused unless default"
}

// Var is one environment variable of the reference.
type Var struct {
	Name string
	// Default is the reference's default (settings.go's envconfig tags),
	// the value used when the variable is unset or empty.
	Default string
	// Type checks a value: "bool", "int", "duration", "float" or ""
	// (any string).
	Type string
	Kind Kind
	// Meaning is what it means to the reference; Becomes what it becomes
	// here.
	Meaning, Becomes string
}

// minLocalCacheBytes is the least LOCAL_CACHE_SIZE_IN_BYTES becomes, as the
// reference's freecache rounds smaller sizes up to it.
const minLocalCacheBytes = 512 << 10

// xdsInitialWait is how long, in GRPC_XDS_SOTW mode without
// FORCE_START_WITHOUT_INITIAL_CONFIG, gRPC calls wait for the first config.
const xdsInitialWait = "10s"

// DefaultAlgorithmVar opts a ratelimit-mode process into another algorithm
// than the reference's fixed windows (an extension: the reference has none).
const DefaultAlgorithmVar = "FLOODGATE_DEFAULT_ALGORITHM"

// Vars is every variable the ratelimit mode reads, with the reference's
// defaults (envoyproxy/ratelimit src/settings/settings.go).
var Vars = []Var{
	// Listeners.
	{"HOST", "0.0.0.0", "", Mapped, "HTTP listener host (/healthcheck, /json)", "--http-addr=HOST:PORT"},
	{"PORT", "8080", "int", Mapped, "HTTP listener port", "--http-addr=HOST:PORT"},
	{"DEBUG_HOST", "0.0.0.0", "", Mapped, "debug listener host (/rlconfig)", "--debug-addr=DEBUG_HOST:DEBUG_PORT"},
	{"DEBUG_PORT", "6070", "int", Mapped, "debug listener port", "--debug-addr=DEBUG_HOST:DEBUG_PORT"},
	{"GRPC_HOST", "0.0.0.0", "", Mapped, "gRPC listener host", "--grpc-addr=GRPC_HOST:GRPC_PORT"},
	{"GRPC_PORT", "8081", "int", Mapped, "gRPC listener port", "--grpc-addr=GRPC_HOST:GRPC_PORT"},
	{"GRPC_UDS", "", "", Mapped, "serve gRPC on this Unix socket instead of GRPC_HOST:GRPC_PORT", "--grpc-addr=unix://GRPC_UDS"},
	{"GRPC_MAX_CONNECTION_AGE", "24h", "duration", Ignored, "close gRPC connections after this long (GOAWAY)", "ignored: connections are kept"},
	{"GRPC_MAX_CONNECTION_AGE_GRACE", "1h", "duration", Ignored, "grace after GRPC_MAX_CONNECTION_AGE", "ignored"},

	// gRPC TLS.
	{"GRPC_SERVER_USE_TLS", "false", "bool", Mapped, "serve gRPC over TLS", "with true: --grpc-tls-cert, --grpc-tls-key (and the CA below)"},
	{"GRPC_SERVER_TLS_CERT", "", "", Mapped, "server certificate chain (PEM)", "--grpc-tls-cert"},
	{"GRPC_SERVER_TLS_KEY", "", "", Mapped, "server private key (PEM)", "--grpc-tls-key"},
	{"GRPC_CLIENT_TLS_CACERT", "", "", Mapped, "CA of client certificates: requires and verifies them", "--grpc-tls-client-ca"},
	{"GRPC_SERVER_TLS_CA_CERT", "", "", Mapped, "not read by the reference; Envoy Gateway sets it for the client CA", "--grpc-tls-client-ca (when GRPC_CLIENT_TLS_CACERT is unset)"},
	{"GRPC_CLIENT_TLS_SAN", "", "", Mapped, "SAN the client certificate must carry", "--grpc-tls-client-san"},

	// Logs.
	{"LOG_LEVEL", "WARN", "", Mapped, "logrus level: trace, debug, info, warn, error, fatal, panic", "--log-level (trace→debug; fatal, panic→error)"},
	{"LOG_FORMAT", "text", "", Mapped, "json, or anything else for text", "--log-format=json|text"},

	// Config source.
	{"CONFIG_TYPE", "FILE", "", Mapped, "FILE (runtime directory) or GRPC_XDS_SOTW", "FILE: --config and --config-layout; GRPC_XDS_SOTW: --config-xds-* (with --config-xds-initial-wait=10s unless FORCE_START_WITHOUT_INITIAL_CONFIG); other values fail"},
	{"RUNTIME_ROOT", "/srv/runtime_data/current", "", Mapped, "runtime root directory", "--config=RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY"},
	{"RUNTIME_SUBDIRECTORY", "", "", Mapped, "directory below RUNTIME_ROOT", "part of --config (empty with RUNTIME_WATCH_ROOT=true fails: the reference then loads no config)"},
	{"RUNTIME_APPDIRECTORY", "config", "", Mapped, "directory below it holding the config files", "part of --config"},
	{"RUNTIME_IGNOREDOTFILES", "false", "bool", Mapped, "skip files and directories starting with '.'", "--config-layout=runtime (true) or runtime-dotfiles (false)"},
	{"RUNTIME_WATCH_ROOT", "true", "bool", Mapped, "watch RUNTIME_ROOT for a swapped symlink (true) or the config directory for changes (false)", "the same directory either way; the poller sees both kinds of change"},
	{"MERGE_DOMAIN_CONFIG", "false", "bool", Mapped, "files sharing a domain merge", "--merge-domains"},
	{"FORCE_START_WITHOUT_INITIAL_CONFIG", "false", "bool", Mapped, "start before a first config arrives", "--force-start"},
	{"CONFIG_GRPC_XDS_SERVER_URL", "localhost:18000", "", Mapped, "xDS server host:port", "--config-xds-url"},
	{"CONFIG_GRPC_XDS_NODE_ID", "default", "", Mapped, "xDS node id", "--config-xds-node-id"},
	{"CONFIG_GRPC_XDS_NODE_METADATA", "", "", Refused, "xDS node metadata", "refused when set: no node metadata is sent"},
	{"CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "", "", Refused, "headers added to the xDS stream", "refused when set"},
	{"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "3s", "duration", Ignored, "xDS reconnect interval", "ignored: the xDS client's own backoff"},
	{"CONFIG_GRPC_XDS_SERVER_USE_TLS", "false", "bool", Mapped, "TLS to the xDS server", "--config-xds-tls"},
	{"CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "", "", Mapped, "client certificate to the xDS server", "--config-xds-tls-cert"},
	{"CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "", "", Mapped, "its key", "--config-xds-tls-key"},
	{"CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "", "", Mapped, "CA of the xDS server's certificate", "--config-xds-tls-ca"},
	{"CONFIG_GRPC_XDS_SERVER_TLS_SAN", "", "", Mapped, "SAN the xDS server's certificate must carry", "--config-xds-tls-san"},
	{"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "10s", "duration", Ignored, "xDS backoff", "ignored"},
	{"XDS_CLIENT_BACKOFF_MAX_INTERVAL", "60s", "duration", Ignored, "xDS backoff", "ignored"},
	{"XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "0.5", "float", Ignored, "xDS backoff", "ignored"},
	{"XDS_CLIENT_BACKOFF_JITTER", "true", "bool", Ignored, "xDS backoff", "ignored"},
	{"XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "", "int", Ignored, "largest xDS message", "ignored"},

	// Stats.
	{"USE_STATSD", "true", "bool", Mapped, "statsd sink (TCP)", "--statsd-addr=STATSD_HOST:STATSD_PORT, empty when false"},
	{"STATSD_HOST", "localhost", "", Mapped, "statsd host", "part of --statsd-addr"},
	{"STATSD_PORT", "8125", "int", Mapped, "statsd port", "part of --statsd-addr"},
	{"STATSD_PROTOCOL", "tcp", "", Mapped, "not read by the reference (always TCP): tcp or udp", "--statsd-protocol"},
	{"USE_DOG_STATSD", "false", "bool", Refused, "DogStatsD sink", "refused when true"},
	{"USE_DOG_STATSD_MOGRIFIERS", "", "", Ignored, "DogStatsD tag mogrifiers", "ignored (DogStatsD is refused)"},
	{"USE_PROMETHEUS", "false", "bool", Mapped, "Prometheus sink", "--reference-metrics-addr=PROMETHEUS_ADDR"},
	{"PROMETHEUS_ADDR", ":9090", "", Mapped, "Prometheus listener", "--reference-metrics-addr"},
	{"PROMETHEUS_PATH", "/metrics", "", Refused, "Prometheus path", "refused unless /metrics"},
	{"PROMETHEUS_MAPPER_YAML", "", "", Mapped, "statsd→Prometheus mapping file", "--prometheus-mapper-yaml"},
	{"PROMETHEUS_RESPONSE_TIME_AS_MILLISECONDS", "false", "bool", Refused, "response time histogram in ms", "refused when true"},
	{"DISABLE_STATS", "false", "bool", Mapped, "no stats sink at all", "no --statsd-addr and no --reference-metrics-addr"},
	{"EXTRA_TAGS", "", "", Mapped, "tags added to every stat, key:value,key:value", "--stats-extra-tags"},
	{"STATS_FLUSH_INTERVAL", "10s", "duration", Mapped, "how often stats are flushed", "--stats-flush-interval (with USE_STATSD)"},

	// Limits and counting.
	{"BACKEND_TYPE", "redis", "", Mapped, "redis or memcache", "redis (or empty): --backend=redis; memcache: --backend=memcache (fixed windows only); others fail"},
	{"SHADOW_MODE", "false", "bool", Mapped, "overall_code always OK", "--shadow-mode"},
	{"QUOTA_MODE", "false", "bool", Mapped, "every rule in quota mode", "--quota-mode"},
	{"RESPONSE_DYNAMIC_METADATA", "false", "bool", Mapped, "dynamic metadata on answers", "--response-dynamic-metadata"},
	{"NEAR_LIMIT_RATIO", "0.8", "float", Mapped, "share of the limit counted as near it (stats)", "--near-limit-ratio"},
	{"LOCAL_CACHE_SIZE_IN_BYTES", "0", "int", Mapped, "local cache of over-limit keys, bytes; 0 = off", "0: --near-cache-size=0; N: --near-cache-max-bytes=N (at least 524288, as freecache there)"},
	{"CACHE_KEY_PREFIX", "", "", Mapped, "prefix of every Redis key", "--redis-key-prefix when set (keys differ from the reference's anyway)"},
	{"STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "false", "bool", Mapped, "a request one descriptor rejects adds nothing to the others", "--stop-increment-over-limit"},
	{"EXPIRATION_JITTER_MAX_SECONDS", "300", "int", Ignored, "random extra TTL on Redis keys", "ignored"},
	{DefaultAlgorithmVar, "fixed_window", "", Mapped, "Floodgate's extension: the default algorithm here", "--default-algorithm (with --count-rejected always)"},

	// Response headers and health.
	{"LIMIT_RESPONSE_HEADERS_ENABLED", "false", "bool", Mapped, "add the three headers below", "false: --ratelimit-headers=false; true: --ratelimit-header-style=reference"},
	{"LIMIT_LIMIT_HEADER", "RateLimit-Limit", "", Mapped, "header with the limit", "--ratelimit-header-limit"},
	{"LIMIT_REMAINING_HEADER", "RateLimit-Remaining", "", Mapped, "header with the hits left", "--ratelimit-header-remaining"},
	{"LIMIT_RESET_HEADER", "RateLimit-Reset", "", Mapped, "header with the seconds to the window's end", "--ratelimit-header-reset"},
	{"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED", "false", "bool", Mapped, "unhealthy while no domain is loaded", "--healthy-needs-config"},

	// Tracing: the reference's OpenTelemetry settings, as Envoy Gateway sets them.
	{"TRACING_ENABLED", "false", "bool", Mapped, "export OTLP traces", "--tracing-enabled; the other TRACING_* and OTEL_EXPORTER_OTLP_ENDPOINT are read only with true"},
	{"TRACING_SERVICE_NAME", "RateLimit", "", Mapped, "trace service name", "--tracing-service-name"},
	{"TRACING_SERVICE_NAMESPACE", "", "", Mapped, "trace service namespace", "--tracing-service-namespace"},
	{"TRACING_SERVICE_INSTANCE_ID", "", "", Mapped, "trace service instance (empty: a random UUID)", "--tracing-service-instance-id"},
	{"TRACING_EXPORTER_PROTOCOL", "http", "", Mapped, "http or grpc", "--tracing-protocol"},
	{"TRACING_SAMPLING_RATE", "1", "float", Mapped, "sampling rate 0..1", "--tracing-sampling-rate (outside 0..1 fails)"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "", Mapped, "OTLP endpoint URL, read by the exporter", "--tracing-endpoint (empty: the exporter's default, localhost)"},

	// Redis.
	{"REDIS_SOCKET_TYPE", "unix", "", Mapped, "tcp or unix", "tcp: redis:// or rediss://; unix: unix://REDIS_URL"},
	{"REDIS_TYPE", "SINGLE", "", Mapped, "SINGLE, SENTINEL (REDIS_URL \"master,host:port,...\") or CLUSTER (REDIS_URL \"host:port,...\")", "--redis-url, --redis-cluster, --redis-sentinel-master/-addrs"},
	{"REDIS_URL", "/var/run/nutcracker/ratelimit.sock", "", Mapped, "host:port, a socket path, or the lists above", "--redis-url (and --redis-sentinel-addrs)"},
	{"REDIS_POOL_SIZE", "10", "int", Mapped, "connections per node", "--redis-pool-size"},
	{"REDIS_AUTH", "", "", Mapped, "password, or user:password", "the user and password of --redis-url"},
	{"REDIS_SENTINEL_AUTH", "", "", Mapped, "password of the sentinels themselves", "--redis-sentinel-password"},
	{"REDIS_TLS", "false", "bool", Mapped, "TLS to Redis", "rediss://"},
	{"REDIS_TLS_CLIENT_CERT", "", "", Mapped, "client certificate to Redis", "--redis-tls-cert"},
	{"REDIS_TLS_CLIENT_KEY", "", "", Mapped, "its key", "--redis-tls-key"},
	{"REDIS_TLS_CACERT", "", "", Mapped, "CA of Redis's certificate", "--redis-tls-ca"},
	{"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "false", "bool", Refused, "skip the Redis certificate's name check", "refused when true"},
	{"REDIS_TIMEOUT", "10s", "duration", Mapped, "connect and I/O timeout", "--redis-dial-timeout, --redis-read-timeout, --redis-write-timeout"},
	{"REDIS_PIPELINE_WINDOW", "0", "duration", Ignored, "write flush interval", "ignored: --redis-batch-* pipeline by themselves"},
	{"REDIS_PIPELINE_LIMIT", "0", "int", Ignored, "deprecated there", "ignored"},
	{"REDIS_CLUSTER_PIPELINE_PARALLELISM", "1", "int", Ignored, "cluster pipeline groups in flight", "ignored"},
	{"REDIS_HEALTH_CHECK_ACTIVE_CONNECTION", "false", "bool", Ignored, "health follows the Redis connection", "ignored: readiness pings Redis always"},
	{"REDIS_POOL_ON_EMPTY_BEHAVIOR", "WAIT", "", Refused, "WAIT (CREATE and ERROR fail there too)", "refused unless WAIT"},
	{"REDIS_STARTUP_INITIAL_INTERVAL", "1s", "duration", Ignored, "start-up connect backoff", "ignored: start-up does not wait for Redis"},
	{"REDIS_STARTUP_MAX_INTERVAL", "30s", "duration", Ignored, "start-up connect backoff", "ignored"},
	{"REDIS_STARTUP_MAX_ELAPSED_TIME", "0", "duration", Ignored, "start-up connect deadline", "ignored"},
	{"REDIS_PERSECOND", "false", "bool", Ignored, "a second Redis for per-second limits", "ignored: per-second limits are counted in REDIS_URL's Redis with the others"},
	{"REDIS_PERSECOND_SOCKET_TYPE", "unix", "", Ignored, "per-second Redis", "ignored (as REDIS_PERSECOND)"},
	{"REDIS_PERSECOND_TYPE", "SINGLE", "", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_URL", "/var/run/nutcracker/ratelimitpersecond.sock", "", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_POOL_SIZE", "10", "int", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_AUTH", "", "", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_TLS", "false", "bool", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_SENTINEL_AUTH", "", "", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_PIPELINE_WINDOW", "0", "duration", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_PIPELINE_LIMIT", "0", "int", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_CLUSTER_PIPELINE_PARALLELISM", "1", "int", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_TIMEOUT", "10s", "duration", Ignored, "per-second Redis", "ignored"},
	{"REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR", "WAIT", "", Ignored, "per-second Redis", "ignored"},

	// Memcache: refused as a backend (BACKEND_TYPE=memcache), so ignored.
	{"MEMCACHE_HOST_PORT", "", "", Mapped, "memcache servers, host:port,host:port", "--memcache-addrs (with BACKEND_TYPE=memcache)"},
	{"MEMCACHE_MAX_IDLE_CONNS", "2", "int", Mapped, "idle connections per memcache server", "--memcache-max-idle-conns (with BACKEND_TYPE=memcache)"},
	{"MEMCACHE_SRV", "", "", Refused, "memcache servers from a DNS SRV record", "refused when set"},
	{"MEMCACHE_SRV_REFRESH", "0", "duration", Ignored, "memcache", "ignored"},
	{"MEMCACHE_TLS", "false", "bool", Refused, "TLS to memcache", "refused when true"},
	{"MEMCACHE_TLS_CLIENT_CERT", "", "", Ignored, "memcache", "ignored"},
	{"MEMCACHE_TLS_CLIENT_KEY", "", "", Ignored, "memcache", "ignored"},
	{"MEMCACHE_TLS_CACERT", "", "", Ignored, "memcache", "ignored"},
	{"MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION", "false", "bool", Ignored, "memcache", "ignored"},
}

// Lookup returns the table's entry for name.
func Lookup(name string) (Var, bool) {
	for _, v := range Vars {
		if v.Name == name {
			return v, true
		}
	}
	return Var{}, false
}

// Translation is what an environment becomes.
type Translation struct {
	// Args are serve's flags, --name=value, for sidecar.ParseSettings.
	Args []string
	// Ignored names the set variables that are accepted and ignored, for
	// the one log line that says so.
	Ignored []string
}

// env reads variables through the table: every read must be a listed
// variable, an unset or empty one gives its default, and a typed one is
// checked; problems collect, each naming its variable.
type env struct {
	getenv func(string) string
	errs   []error
}

func (e *env) str(name string) string {
	v, ok := Lookup(name)
	if !ok {
		panic("refenv: " + name + " is not in Vars") // a bug here, never input
	}
	if s := e.getenv(name); s != "" {
		return s
	}
	return v.Default
}

func (e *env) set(name string) bool { return e.getenv(name) != "" }

func (e *env) bad(name, value, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: %s", name, value, fmt.Sprintf(format, args...)))
}

// boolean parses as envconfig does (strconv.ParseBool).
func (e *env) boolean(name string) bool {
	s := e.str(name)
	b, err := strconv.ParseBool(s)
	if err != nil {
		e.bad(name, s, "must be true or false")
	}
	return b
}

func (e *env) integer(name string) int {
	s := e.str(name)
	n, err := strconv.Atoi(s)
	if err != nil {
		e.bad(name, s, "must be a whole number")
	}
	return n
}

func (e *env) port(name string) string {
	n := e.integer(name)
	if n < 0 || n > 65535 {
		e.bad(name, e.str(name), "must be a port, 0 to 65535")
	}
	return strconv.Itoa(n)
}

// check parses every set variable with a type, so that a bad value names
// its variable even where the value is not used.
func (e *env) check() {
	for _, v := range Vars {
		s := e.getenv(v.Name)
		if s == "" {
			continue
		}
		var err error
		switch v.Type {
		case "bool":
			_, err = strconv.ParseBool(s)
		case "int":
			_, err = strconv.Atoi(s)
		case "float":
			_, err = strconv.ParseFloat(s, 64)
		case "duration":
			_, err = time.ParseDuration(s)
		}
		if err != nil {
			e.bad(v.Name, s, "must be a %s", map[string]string{"bool": "boolean (true or false)", "int": "whole number", "float": "number", "duration": "duration such as 10s"}[v.Type])
		}
	}
}

// Translate turns the reference's environment into serve's flags. The
// error, when not nil, lists every problem, each naming its variable.
func Translate(getenv func(string) string) (Translation, error) {
	e := &env{getenv: getenv}
	e.check()
	if len(e.errs) > 0 {
		// Typed values are bad: the rest would only repeat them.
		return Translation{}, errors.Join(e.errs...)
	}
	var t Translation
	flag := func(name, value string) { t.Args = append(t.Args, "--"+name+"="+value) }

	// Refused variables: only their defaults are honoured.
	for _, v := range Vars {
		if v.Kind != Refused || !e.set(v.Name) {
			continue
		}
		s := e.str(v.Name)
		same := s == v.Default
		if v.Type == "bool" {
			b, _ := strconv.ParseBool(s)
			d, _ := strconv.ParseBool(v.Default)
			same = b == d
		}
		if v.Name == "REDIS_POOL_ON_EMPTY_BEHAVIOR" {
			same = strings.EqualFold(s, v.Default)
		}
		if !same {
			e.bad(v.Name, s, "cannot be honoured by Floodgate (%s); unset it or set %q", v.Meaning, v.Default)
		}
	}
	for _, v := range Vars {
		if v.Kind == Ignored && e.set(v.Name) {
			t.Ignored = append(t.Ignored, v.Name)
		}
	}

	// Listeners.
	flag("http-addr", net.JoinHostPort(e.str("HOST"), e.port("PORT")))
	flag("debug-addr", net.JoinHostPort(e.str("DEBUG_HOST"), e.port("DEBUG_PORT")))
	if uds := e.str("GRPC_UDS"); uds != "" {
		flag("grpc-addr", "unix://"+uds)
	} else {
		flag("grpc-addr", net.JoinHostPort(e.str("GRPC_HOST"), e.port("GRPC_PORT")))
	}
	if e.boolean("GRPC_SERVER_USE_TLS") {
		cert, key := e.str("GRPC_SERVER_TLS_CERT"), e.str("GRPC_SERVER_TLS_KEY")
		if cert == "" || key == "" {
			e.bad("GRPC_SERVER_USE_TLS", "true", "needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY")
		}
		flag("grpc-tls-cert", cert)
		flag("grpc-tls-key", key)
		ca := e.str("GRPC_CLIENT_TLS_CACERT")
		if ca == "" {
			ca = e.str("GRPC_SERVER_TLS_CA_CERT")
		}
		san := e.str("GRPC_CLIENT_TLS_SAN")
		switch {
		case ca != "":
			flag("grpc-tls-client-ca", ca)
			if san != "" {
				flag("grpc-tls-client-san", san)
			}
		case san != "":
			e.bad("GRPC_CLIENT_TLS_SAN", san, "needs GRPC_CLIENT_TLS_CACERT: a client certificate's SAN is checked only when client certificates are required")
		}
	}

	// Logs.
	level := strings.ToLower(e.str("LOG_LEVEL"))
	switch level {
	case "trace":
		level = "debug"
	case "warning":
		level = "warn"
	case "fatal", "panic":
		level = "error"
	case "debug", "info", "warn", "error":
	default:
		e.bad("LOG_LEVEL", e.str("LOG_LEVEL"), "must be trace, debug, info, warn, error, fatal or panic")
	}
	flag("log-level", level)
	format := "text"
	if strings.EqualFold(e.str("LOG_FORMAT"), "json") {
		format = "json"
	}
	flag("log-format", format)

	// Config.
	if e.boolean("MERGE_DOMAIN_CONFIG") {
		flag("merge-domains", "true")
	}
	if e.boolean("FORCE_START_WITHOUT_INITIAL_CONFIG") {
		flag("force-start", "true")
	}
	switch ct := e.str("CONFIG_TYPE"); ct {
	case "FILE":
		root, sub, app := e.str("RUNTIME_ROOT"), e.str("RUNTIME_SUBDIRECTORY"), e.str("RUNTIME_APPDIRECTORY")
		watchRoot := e.boolean("RUNTIME_WATCH_ROOT")
		if watchRoot && sub == "" {
			e.bad("RUNTIME_SUBDIRECTORY", "", "is empty with RUNTIME_WATCH_ROOT=true, where the reference loads no config at all; set it, or RUNTIME_WATCH_ROOT=false")
		}
		if app == "" {
			e.bad("RUNTIME_APPDIRECTORY", "", "must name the config directory")
		}
		flag("config", filepath.Join(root, sub, app))
		layout := "runtime-dotfiles"
		if e.boolean("RUNTIME_IGNOREDOTFILES") {
			layout = "runtime"
		}
		flag("config-layout", layout)
	case "GRPC_XDS_SOTW":
		xdsURL := e.str("CONFIG_GRPC_XDS_SERVER_URL")
		// serve takes host:port only; refusing anything else here names
		// the variable rather than the flag it becomes.
		if host, port, err := net.SplitHostPort(xdsURL); err != nil || host == "" || port == "" || strings.Contains(xdsURL, "/") {
			e.bad("CONFIG_GRPC_XDS_SERVER_URL", xdsURL, "must be host:port, without a scheme")
		}
		flag("config-xds-url", xdsURL)
		flag("config-xds-node-id", e.str("CONFIG_GRPC_XDS_NODE_ID"))
		if !e.boolean("FORCE_START_WITHOUT_INITIAL_CONFIG") {
			// The reference serves gRPC only once it has a config; calls
			// made before wait for it here, for a while.
			flag("config-xds-initial-wait", xdsInitialWait)
		}
		if e.boolean("CONFIG_GRPC_XDS_SERVER_USE_TLS") {
			flag("config-xds-tls", "true")
			if cert, key := e.str("CONFIG_GRPC_XDS_CLIENT_TLS_CERT"), e.str("CONFIG_GRPC_XDS_CLIENT_TLS_KEY"); (cert == "") != (key == "") {
				e.bad("CONFIG_GRPC_XDS_CLIENT_TLS_CERT", cert, "and CONFIG_GRPC_XDS_CLIENT_TLS_KEY go together")
			}
			for _, x := range []struct{ env, flag string }{
				{"CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "config-xds-tls-cert"},
				{"CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "config-xds-tls-key"},
				{"CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "config-xds-tls-ca"},
				{"CONFIG_GRPC_XDS_SERVER_TLS_SAN", "config-xds-tls-san"},
			} {
				if v := e.str(x.env); v != "" {
					flag(x.flag, v)
				}
			}
		}
	default:
		e.bad("CONFIG_TYPE", ct, "must be FILE or GRPC_XDS_SOTW")
	}

	// Stats. The reference refuses more than one sink.
	statsd, prom := e.boolean("USE_STATSD"), e.boolean("USE_PROMETHEUS")
	if e.boolean("DISABLE_STATS") {
		statsd, prom = false, false
	} else if statsd && prom {
		e.bad("USE_PROMETHEUS", "true", "beside USE_STATSD=true (its default): the reference runs one stats sink; set USE_STATSD=false")
	}
	if statsd || prom {
		if tags := e.str("EXTRA_TAGS"); tags != "" {
			for _, pair := range strings.Split(tags, ",") {
				if k, _, ok := strings.Cut(pair, ":"); !ok || k == "" {
					e.bad("EXTRA_TAGS", tags, "must be key:value pairs separated by commas")
					break
				}
			}
			flag("stats-extra-tags", tags)
		}
	}
	if statsd {
		flag("statsd-addr", net.JoinHostPort(e.str("STATSD_HOST"), e.port("STATSD_PORT")))
		flag("stats-flush-interval", e.str("STATS_FLUSH_INTERVAL"))
		switch p := strings.ToLower(e.str("STATSD_PROTOCOL")); p {
		case "tcp", "udp":
			flag("statsd-protocol", p)
		default:
			e.bad("STATSD_PROTOCOL", e.str("STATSD_PROTOCOL"), "must be tcp or udp")
		}
	}
	if prom {
		flag("reference-metrics-addr", e.str("PROMETHEUS_ADDR"))
		if m := e.str("PROMETHEUS_MAPPER_YAML"); m != "" {
			flag("prometheus-mapper-yaml", m)
		}
	}

	// Limits and counting: the reference counts every hit in fixed windows.
	flag("count-rejected", "true")
	flag("default-algorithm", e.str(DefaultAlgorithmVar))
	if e.boolean("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT") {
		flag("stop-increment-over-limit", "true")
	}
	flag("near-limit-ratio", e.str("NEAR_LIMIT_RATIO"))
	if r, _ := strconv.ParseFloat(e.str("NEAR_LIMIT_RATIO"), 64); r < 0 || r > 1 {
		e.bad("NEAR_LIMIT_RATIO", e.str("NEAR_LIMIT_RATIO"), "must be between 0 and 1")
	}
	for _, b := range []struct{ env, flag string }{
		{"SHADOW_MODE", "shadow-mode"}, {"QUOTA_MODE", "quota-mode"}, {"RESPONSE_DYNAMIC_METADATA", "response-dynamic-metadata"},
	} {
		if e.boolean(b.env) {
			flag(b.flag, "true")
		}
	}
	if e.boolean("LIMIT_RESPONSE_HEADERS_ENABLED") {
		flag("ratelimit-header-style", "reference")
		flag("ratelimit-header-limit", e.str("LIMIT_LIMIT_HEADER"))
		flag("ratelimit-header-remaining", e.str("LIMIT_REMAINING_HEADER"))
		flag("ratelimit-header-reset", e.str("LIMIT_RESET_HEADER"))
	} else {
		flag("ratelimit-headers", "false")
	}
	if e.boolean("HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED") {
		flag("healthy-needs-config", "true")
	}

	e.tracing(flag)

	// Backend.
	switch bt := e.str("BACKEND_TYPE"); strings.ToLower(bt) {
	case "redis":
		e.redis(flag)
	case "memcache":
		e.memcache(flag)
	default:
		e.bad("BACKEND_TYPE", bt, "must be redis or memcache")
	}
	if n := e.integer("LOCAL_CACHE_SIZE_IN_BYTES"); n < 0 {
		e.bad("LOCAL_CACHE_SIZE_IN_BYTES", e.str("LOCAL_CACHE_SIZE_IN_BYTES"), "must not be negative")
	} else if n == 0 {
		flag("near-cache-size", "0")
	} else {
		// The reference's cache (freecache) holds at least 512 KiB, whatever
		// is asked for; below that the keys of a few counters would not fit.
		flag("near-cache-max-bytes", strconv.Itoa(max(n, minLocalCacheBytes)))
	}
	return t, errors.Join(e.errs...)
}

// tracing maps TRACING_* and OTEL_EXPORTER_OTLP_ENDPOINT to --tracing-*
// flags. As the reference, only TRACING_ENABLED=true reads the others.
func (e *env) tracing(flag func(name, value string)) {
	p := e.str("TRACING_EXPORTER_PROTOCOL")
	if p != "http" && p != "grpc" {
		e.bad("TRACING_EXPORTER_PROTOCOL", p, "must be http or grpc")
	}
	if !e.boolean("TRACING_ENABLED") {
		return
	}
	flag("tracing-enabled", "true")
	flag("tracing-protocol", p)
	flag("tracing-service-name", e.str("TRACING_SERVICE_NAME"))
	for _, v := range []struct{ env, flag string }{
		{"TRACING_SERVICE_NAMESPACE", "tracing-service-namespace"},
		{"TRACING_SERVICE_INSTANCE_ID", "tracing-service-instance-id"},
	} {
		if s := e.str(v.env); s != "" {
			flag(v.flag, s)
		}
	}
	rate := e.str("TRACING_SAMPLING_RATE")
	if r, _ := strconv.ParseFloat(rate, 64); !(r >= 0 && r <= 1) {
		e.bad("TRACING_SAMPLING_RATE", rate, "must be from 0 to 1")
	}
	flag("tracing-sampling-rate", rate)
	if ep := e.str("OTEL_EXPORTER_OTLP_ENDPOINT"); ep != "" {
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
			e.bad("OTEL_EXPORTER_OTLP_ENDPOINT", ep, "must be an http:// or https:// URL (the scheme says whether TLS is used)")
		}
		flag("tracing-endpoint", ep)
	}
}

// memcache maps BACKEND_TYPE=memcache and MEMCACHE_* to --memcache-* flags.
func (e *env) memcache(flag func(name, value string)) {
	flag("backend", "memcache")
	addrs := e.str("MEMCACHE_HOST_PORT")
	if addrs == "" {
		e.bad("BACKEND_TYPE", "memcache", "needs MEMCACHE_HOST_PORT (MEMCACHE_SRV cannot be honoured)")
	}
	for _, a := range strings.Split(addrs, ",") {
		if _, _, err := net.SplitHostPort(a); addrs != "" && err != nil {
			e.bad("MEMCACHE_HOST_PORT", addrs, "must be host:port,host:port")
			break
		}
	}
	flag("memcache-addrs", addrs)
	if n := e.integer("MEMCACHE_MAX_IDLE_CONNS"); n < 1 {
		e.bad("MEMCACHE_MAX_IDLE_CONNS", e.str("MEMCACHE_MAX_IDLE_CONNS"), "must be at least 1")
	} else {
		flag("memcache-max-idle-conns", strconv.Itoa(n))
	}
	if p := e.str("CACHE_KEY_PREFIX"); p != "" {
		flag("memcache-key-prefix", p)
	}
}

// redis maps REDIS_* to --redis-* flags, parsing REDIS_URL as the
// reference does: host:port (or a socket path with REDIS_SOCKET_TYPE=unix)
// for SINGLE, "host:port,host:port,..." for CLUSTER and
// "master,host:port,..." (the sentinels) for SENTINEL; not redis:// URLs.
func (e *env) redis(flag func(name, value string)) {
	flag("backend", "redis")
	raw := e.str("REDIS_URL")
	socket := strings.ToLower(e.str("REDIS_SOCKET_TYPE"))
	useTLS := e.boolean("REDIS_TLS")
	scheme := "redis"
	if useTLS {
		scheme = "rediss"
	}
	var user *url.Userinfo
	if auth := e.str("REDIS_AUTH"); auth != "" {
		if u, p, ok := strings.Cut(auth, ":"); ok {
			user = url.UserPassword(u, p)
		} else {
			user = url.UserPassword("", auth)
		}
	}
	hostPort := func(name, addr string) bool {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			e.bad(name, addr, "must be host:port with REDIS_SOCKET_TYPE=tcp (not a redis:// URL)")
			return false
		}
		return true
	}
	switch socket {
	case "tcp":
	case "unix":
		if useTLS {
			e.bad("REDIS_TLS", "true", "with REDIS_SOCKET_TYPE=unix: TLS over a Unix socket cannot be honoured")
		}
	default:
		e.bad("REDIS_SOCKET_TYPE", e.str("REDIS_SOCKET_TYPE"), "must be tcp or unix")
		return
	}
	switch rt := strings.ToLower(e.str("REDIS_TYPE")); rt {
	case "single":
		u := url.URL{Scheme: scheme, User: user, Host: raw}
		if socket == "unix" {
			u = url.URL{Scheme: "unix", User: user, Path: raw}
		} else if !hostPort("REDIS_URL", raw) {
			return
		}
		flag("redis-url", u.String())
	case "cluster", "sentinel":
		if socket == "unix" {
			e.bad("REDIS_SOCKET_TYPE", "unix", "with REDIS_TYPE=%s: a cluster or sentinels over Unix sockets cannot be honoured", e.str("REDIS_TYPE"))
			return
		}
		parts := strings.Split(raw, ",")
		if rt == "sentinel" {
			if len(parts) < 2 {
				e.bad("REDIS_URL", raw, "with REDIS_TYPE=SENTINEL must be \"master,host:port[,host:port...]\"")
				return
			}
			for _, p := range parts[1:] {
				if !hostPort("REDIS_URL", p) {
					return
				}
			}
			flag("redis-sentinel-master", parts[0])
			flag("redis-sentinel-addrs", strings.Join(parts[1:], ","))
			if user != nil || useTLS {
				// No host: only the scheme and the password reach the data nodes.
				flag("redis-url", (&url.URL{Scheme: scheme, User: user, Path: "/"}).String())
			}
			if a := e.str("REDIS_SENTINEL_AUTH"); a != "" {
				_, pass, ok := strings.Cut(a, ":")
				if !ok {
					pass = a
				}
				flag("redis-sentinel-password", pass)
			}
			break
		}
		for _, p := range parts {
			if !hostPort("REDIS_URL", p) {
				return
			}
		}
		u := url.URL{Scheme: scheme, User: user, Host: parts[0]}
		if len(parts) > 1 {
			q := url.Values{"addr": parts[1:]}
			u.RawQuery = q.Encode()
		}
		flag("redis-url", u.String())
		flag("redis-cluster", "true")
	default:
		e.bad("REDIS_TYPE", e.str("REDIS_TYPE"), "must be SINGLE, SENTINEL or CLUSTER")
		return
	}
	if useTLS {
		cert, key := e.str("REDIS_TLS_CLIENT_CERT"), e.str("REDIS_TLS_CLIENT_KEY")
		if (cert == "") != (key == "") {
			e.bad("REDIS_TLS_CLIENT_CERT", cert, "and REDIS_TLS_CLIENT_KEY go together")
		}
		if cert != "" && key != "" {
			flag("redis-tls-cert", cert)
			flag("redis-tls-key", key)
		}
		if ca := e.str("REDIS_TLS_CACERT"); ca != "" {
			flag("redis-tls-ca", ca)
		}
	}
	if n := e.integer("REDIS_POOL_SIZE"); n < 1 {
		e.bad("REDIS_POOL_SIZE", e.str("REDIS_POOL_SIZE"), "must be at least 1")
	} else {
		flag("redis-pool-size", strconv.Itoa(n))
	}
	if p := e.str("CACHE_KEY_PREFIX"); p != "" {
		flag("redis-key-prefix", p)
	}
	timeout := e.str("REDIS_TIMEOUT")
	for _, f := range []string{"redis-dial-timeout", "redis-read-timeout", "redis-write-timeout"} {
		flag(f, timeout)
	}
}
