// Package sidecar wires the rate-limit service into a running process:
// settings, listeners, the backend, config reload, health and shutdown. The
// binary's main is a thin shell around Main; tests start the same Main on
// 127.0.0.1:0.
package sidecar

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/floodgate/floodgate/pkg/cachestore"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memcachestore"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/nearcache"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
	"github.com/floodgate/floodgate/pkg/redisstore"
	"github.com/floodgate/floodgate/pkg/respcache"
)

// Settings are serve's settings. Every field is a flag; the flag's default is
// the field's default. Each flag also reads SIDECAR_<FLAG> from the
// environment (upper case, '-' → '_'); a flag given on the command line wins.
//
// Numbers and durations follow one convention: zero means the default (of
// the package the setting tunes), a negative value is an error that names
// the setting. --near-cache-size is the one exception: 0 turns the
// near-cache off, as it always has.
type Settings struct {
	Config       string        // --config: a YAML file, or a directory of them ("" with --config-xds-url)
	AuthConfig   string        // --auth-config: the ext_authz door's config ("" = no Check)
	GRPCAddr     string        // --grpc-addr
	HTTPAddr     string        // --http-addr
	Backend      string        // --backend: memory or redis ("" = redis when a Redis address is set, else memory)
	FailOpen     bool          // --fail-open
	MergeDomains bool          // --merge-domains
	LogLevel     string        // --log-level
	Headers      bool          // --ratelimit-headers
	ReloadEvery  time.Duration // --reload-interval
	ShutdownWait time.Duration // --shutdown-timeout
	PProf        bool          // --pprof
	// GRPCAllowRemote lets --auth-config serve on a gRPC listener that is
	// not loopback (--grpc-allow-remote): the network is fenced otherwise.
	GRPCAllowRemote bool
	// GRPCTLS serves the gRPC listener over TLS (--grpc-tls-*).
	GRPCTLS GRPCTLSSettings

	ShadowMode      bool // --shadow-mode: overall_code always OK (the reference's SHADOW_MODE)
	QuotaMode       bool // --quota-mode: every rule in quota_mode (QUOTA_MODE)
	DynamicMetadata bool // --response-dynamic-metadata (RESPONSE_DYNAMIC_METADATA)

	// CountRejected counts every hit, rejected ones too, as the reference
	// does (--count-rejected); by default a rejected request takes nothing.
	CountRejected bool
	// StopIncrementOverLimit: with CountRejected, a request that one
	// descriptor rejects adds nothing to its others
	// (--stop-increment-over-limit, STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT).
	StopIncrementOverLimit bool
	// DefaultAlgorithm is the algorithm of limits that name none
	// (--default-algorithm): sliding_window, fixed_window or token_bucket.
	DefaultAlgorithm string
	// NearLimitRatio is the share of a limit past which admitted hits count
	// as near_limit (--near-limit-ratio, NEAR_LIMIT_RATIO).
	NearLimitRatio float64

	MaxDescriptors int // --max-descriptors
	MaxEntries     int // --max-entries
	MaxValueBytes  int // --max-value-bytes

	MemoryMaxKeys     int // --memory-max-keys
	NearCacheSize     int // --near-cache-size (0 = off)
	NearCacheMaxBytes int // --near-cache-max-bytes

	Cache CacheSettings

	// XDS fetches the limits config from an xDS server instead of
	// --config (the reference's CONFIG_TYPE=GRPC_XDS_SOTW).
	XDS XDSSettings
	// ForceStart makes the sidecar ready without a limits config: before
	// the first arrives over xDS, or when --config does not load at start
	// (--force-start; the reference's FORCE_START_WITHOUT_INITIAL_CONFIG).
	// ShouldRateLimit answers UNAVAILABLE until a config is in force.
	ForceStart bool

	// AdminTokenFile holds the bearer token that /cache/purge, /debug/
	// and /debug/pprof/ require (--admin-token-file); without it they
	// answer loopback peers only.
	AdminTokenFile string

	Redis    RedisSettings
	Memcache MemcacheSettings // --memcache-*

	Ref RefSettings
	// RefStats: envoyproxy/ratelimit's stats, to statsd and Prometheus.
	RefStats RefStatsSettings

	// Tracing: OpenTelemetry traces over OTLP (--tracing-*), off by default.
	Tracing TracingSettings
}

// RefSettings are what envoyproxy/ratelimit's users rely on beyond serve's
// own surface; the ratelimit mode (pkg/refenv) sets them from the
// reference's environment, and each is a flag of serve too.
type RefSettings struct {
	// DebugAddr is the debug listener (--debug-addr): GET /rlconfig in
	// the reference's line format. "" = none.
	DebugAddr string
	// LogFormat is json (default) or text (--log-format).
	LogFormat string
	// HeaderStyle is ietf (RateLimit-Policy, RateLimit, Retry-After) or
	// reference: the three headers of LIMIT_RESPONSE_HEADERS_ENABLED,
	// named by HeaderLimit, HeaderRemaining and HeaderReset
	// (--ratelimit-header-style, --ratelimit-header-limit, ...).
	HeaderStyle                               string
	HeaderLimit, HeaderRemaining, HeaderReset string
	// ConfigLayout says which files of a --config directory are read:
	// yaml (its *.yaml and *.yml files, no dotfiles, no subdirectories),
	// runtime (every file below it, recursively, as the reference's
	// runtime loader reads it, dotfiles skipped) or runtime-dotfiles (the
	// same with dotfiles, RUNTIME_IGNOREDOTFILES=false) (--config-layout).
	ConfigLayout string
	// HealthyNeedsConfig fails /healthcheck and readiness while the config
	// in force has no domain (--healthy-needs-config: the reference's
	// HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED).
	HealthyNeedsConfig bool
}

// CacheSettings select and tune the response cache (the ext_proc door).
type CacheSettings struct {
	Config        string        // --cache-config ("" = no ext_proc door)
	MaxBytes      int64         // --cache-max-bytes (memory store)
	MaxEntryBytes int           // --cache-max-entry-bytes
	CollapseWait  time.Duration // --cache-collapse-wait
}

// XDSSettings say where the limits config comes from over xDS.
type XDSSettings struct {
	URL    string // --config-xds-url: the xDS server's host:port ("" = the limits come from --config)
	NodeID string // --config-xds-node-id
	TLS    bool   // --config-xds-tls
	Cert   string // --config-xds-tls-cert: client certificate (mTLS)
	Key    string // --config-xds-tls-key: its key
	CA     string // --config-xds-tls-ca: CAs of the server's certificate ("" = the system's)
	SAN    string // --config-xds-tls-san: the name the server's certificate must carry ("" = the URL's host)
	// InitialWait is how long gRPC calls made before the first config wait
	// for it, without --force-start (--config-xds-initial-wait; 0 = none).
	InitialWait time.Duration
}

// MemcacheSettings select and tune the memcache backend (fixed windows only).
type MemcacheSettings struct {
	Addrs        string // --memcache-addrs (comma-separated host:port)
	MaxIdleConns int    // --memcache-max-idle-conns
	KeyPrefix    string // --memcache-key-prefix
}

// RedisSettings select and tune the Redis backend.
type RedisSettings struct {
	URL            string        // --redis-url
	Cluster        bool          // --redis-cluster
	SentinelMaster string        // --redis-sentinel-master
	SentinelAddrs  string        // --redis-sentinel-addrs (comma-separated host:port)
	KeyPrefix      string        // --redis-key-prefix
	PoolSize       int           // --redis-pool-size (0 = go-redis default)
	DialTimeout    time.Duration // --redis-dial-timeout
	ReadTimeout    time.Duration // --redis-read-timeout
	WriteTimeout   time.Duration // --redis-write-timeout
	BatchMax       int           // --redis-batch-max (1 = no batching)
	BatchWindow    time.Duration // --redis-batch-window (0 = no bound)
	// TLS client certificate, key and CA bundle (--redis-tls-cert,
	// --redis-tls-key, --redis-tls-ca), with a rediss:// URL. Without a CA
	// the system's roots are trusted.
	TLSCert, TLSKey, TLSCA string
	SentinelPassword       string // --redis-sentinel-password: to the sentinels themselves
}

// Defaults of the settings the sidecar itself consumes (the others are
// the constants of the packages they tune).
const (
	DefaultConfig          = "./config"
	DefaultReloadInterval  = 500 * time.Millisecond
	DefaultShutdownTimeout = 15 * time.Second
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "SIDECAR_"

// flagSet declares serve's flags into s.
func (s *Settings) flagSet(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sidecar serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&s.Config, "config", DefaultConfig, "descriptor config: a YAML file, or a directory whose *.yaml/*.yml files are each one domain")
	fs.StringVar(&s.XDS.URL, "config-xds-url", "", "fetch the limits config from this xDS server (host:port) over a state-of-the-world ADS stream of RateLimitConfig resources, instead of --config")
	fs.DurationVar(&s.XDS.InitialWait, "config-xds-initial-wait", 0, "with --config-xds-url and without --force-start: gRPC calls made before the first config wait up to this long for it (envoyproxy/ratelimit opens its gRPC port only once it has one), then are served; 0 answers them UNAVAILABLE at once")
	fs.StringVar(&s.XDS.NodeID, "config-xds-node-id", "", "with --config-xds-url: the node id sent to the xDS server (required)")
	fs.BoolVar(&s.XDS.TLS, "config-xds-tls", false, "with --config-xds-url: connect over TLS")
	fs.StringVar(&s.XDS.Cert, "config-xds-tls-cert", "", "with --config-xds-tls: client certificate (PEM) for servers that require one")
	fs.StringVar(&s.XDS.Key, "config-xds-tls-key", "", "with --config-xds-tls: the client certificate's key (PEM)")
	fs.StringVar(&s.XDS.CA, "config-xds-tls-ca", "", "with --config-xds-tls: CA certificates (PEM) that sign the server's certificate (default: the system's)")
	fs.StringVar(&s.XDS.SAN, "config-xds-tls-san", "", "with --config-xds-tls: the name the server's certificate must carry (default: the host of --config-xds-url)")
	fs.BoolVar(&s.ForceStart, "force-start", false, "start and be ready without a limits config: before the first arrives over xDS, or when --config does not load (it is loaded once it changes); ShouldRateLimit answers UNAVAILABLE until a config is in force")
	fs.StringVar(&s.AuthConfig, "auth-config", "", "ext_authz config: a YAML file or a directory of them; when set, envoy.service.auth.v3.Authorization is served (hot-reloaded with its keys and JWKS files)")
	fs.BoolVar(&s.GRPCAllowRemote, "grpc-allow-remote", false, "with --auth-config or --cache-config, allow a gRPC listener that is not loopback (the network is fenced some other way, say a NetworkPolicy)")
	fs.StringVar(&s.GRPCAddr, "grpc-addr", ":8081", "gRPC listener (RateLimitService, grpc.health.v1, reflection): host:port, or unix:///path for a Unix socket")
	s.GRPCTLS.flags(fs)
	fs.StringVar(&s.HTTPAddr, "http-addr", ":8080", "HTTP listener (/healthz, /readyz, /healthcheck, /metrics, /debug/config)")
	fs.StringVar(&s.Backend, "backend", "", "where counters live: memory or redis (default: redis when --redis-url or --redis-sentinel-master is set, else memory)")
	fs.BoolVar(&s.FailOpen, "fail-open", false, "on a backend error answer OK (and count it) instead of gRPC UNAVAILABLE")
	fs.BoolVar(&s.MergeDomains, "merge-domains", false, "files that share a domain merge instead of failing")
	fs.StringVar(&s.LogLevel, "log-level", "info", "debug, info, warn or error; logs are JSON lines on stderr")
	fs.BoolVar(&s.Headers, "ratelimit-headers", true, "add RateLimit, RateLimit-Policy and Retry-After headers to answers")
	fs.DurationVar(&s.ReloadEvery, "reload-interval", DefaultReloadInterval, "how often the config path is checked for changes")
	fs.DurationVar(&s.ShutdownWait, "shutdown-timeout", DefaultShutdownTimeout, "how long in-flight calls may take to finish on SIGTERM")
	fs.BoolVar(&s.PProf, "pprof", false, "serve Go's profiler (net/http/pprof) under /debug/pprof/ on the HTTP listener")
	fs.BoolVar(&s.ShadowMode, "shadow-mode", false, "answer overall_code OK whatever the limits say; statuses still say OVER_LIMIT (envoyproxy/ratelimit's SHADOW_MODE)")
	fs.BoolVar(&s.QuotaMode, "quota-mode", false, "treat every rule as quota_mode (envoyproxy/ratelimit's QUOTA_MODE)")
	fs.BoolVar(&s.DynamicMetadata, "response-dynamic-metadata", false, "answers carry dynamic_metadata: domain, descriptors, hitsAddend and the matched rules' metadata (envoyproxy/ratelimit's RESPONSE_DYNAMIC_METADATA)")
	fs.BoolVar(&s.CountRejected, "count-rejected", false, "count every hit, rejected ones and those of rejected requests too, as envoyproxy/ratelimit does; by default a request answered OVER_LIMIT takes nothing")
	fs.BoolVar(&s.StopIncrementOverLimit, "stop-increment-over-limit", false, "with --count-rejected: a request that one descriptor rejects adds nothing to its other descriptors (envoyproxy/ratelimit's STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT)")
	fs.StringVar(&s.DefaultAlgorithm, "default-algorithm", quota.SlidingWindow.String(), "algorithm of the limits whose file and rate_limit name none: sliding_window, fixed_window or token_bucket")
	fs.Float64Var(&s.NearLimitRatio, "near-limit-ratio", engine.DefaultNearLimitRatio, "share of a limit past which admitted hits count as near_limit in the metrics, above 0 and at most 1 (envoyproxy/ratelimit's NEAR_LIMIT_RATIO)")
	fs.IntVar(&s.MaxDescriptors, "max-descriptors", ratelimitsvc.DefaultMaxDescriptors, "most descriptors per request")
	fs.IntVar(&s.MaxEntries, "max-entries", ratelimitsvc.DefaultMaxEntries, "most entries per descriptor")
	fs.IntVar(&s.MaxValueBytes, "max-value-bytes", ratelimitsvc.DefaultMaxValueBytes, "most bytes per entry key or value")
	fs.IntVar(&s.MemoryMaxKeys, "memory-max-keys", memstore.DefaultMaxKeys, "memory backend: most counters kept; beyond it the soonest-expiring are evicted")
	fs.IntVar(&s.NearCacheSize, "near-cache-size", nearcache.DefaultMaxEntries, "Redis backend: most over-limit counters remembered locally, so hits on them need no Redis call; 0 disables")
	fs.IntVar(&s.NearCacheMaxBytes, "near-cache-max-bytes", nearcache.DefaultMaxBytes, "Redis backend: most bytes of counter keys the near-cache holds")
	fs.StringVar(&s.Cache.Config, "cache-config", "", "response cache rules: a YAML file, hot-reloaded; when set, envoy.service.ext_proc.v3.ExternalProcessor is served")
	fs.Int64Var(&s.Cache.MaxBytes, "cache-max-bytes", cachestore.DefaultMaxBytes, "memory cache store: most bytes of stored responses; the least recently used are evicted first")
	fs.IntVar(&s.Cache.MaxEntryBytes, "cache-max-entry-bytes", respcache.DefaultMaxEntryBytes, "a larger response body is neither buffered nor stored")
	fs.DurationVar(&s.Cache.CollapseWait, "cache-collapse-wait", respcache.DefaultCollapseWait, "how long requests wait behind a cache miss for the same key; keep it below the ext_proc filter's message_timeout")
	fs.StringVar(&s.AdminTokenFile, "admin-token-file", "", "a file holding the bearer token that /cache/purge, /debug/ and /debug/pprof/ require; without it they answer loopback peers only")
	fs.StringVar(&s.Memcache.Addrs, "memcache-addrs", "", "memcache backend: comma-separated memcached host:port list (a key goes to one by its CRC-32); fixed windows only")
	fs.IntVar(&s.Memcache.MaxIdleConns, "memcache-max-idle-conns", memcachestore.DefaultMaxIdleConns, "memcache backend: idle connections kept per server")
	fs.StringVar(&s.Memcache.KeyPrefix, "memcache-key-prefix", redisstore.DefaultKeyPrefix, "memcache backend: prefix of every key")
	fs.StringVar(&s.Redis.URL, "redis-url", "", "redis://[user:pass@]host:port[/db], rediss:// for TLS; with --redis-cluster, seed nodes as ?addr=h2:p2&addr=h3:p3")
	fs.BoolVar(&s.Redis.Cluster, "redis-cluster", false, "treat --redis-url as a Redis Cluster")
	fs.StringVar(&s.Redis.SentinelMaster, "redis-sentinel-master", "", "Sentinel: the master's name (needs --redis-sentinel-addrs)")
	fs.StringVar(&s.Redis.SentinelAddrs, "redis-sentinel-addrs", "", "Sentinel: comma-separated sentinel host:port list")
	fs.StringVar(&s.Redis.KeyPrefix, "redis-key-prefix", redisstore.DefaultKeyPrefix, "prefix of every Redis key")
	fs.IntVar(&s.Redis.PoolSize, "redis-pool-size", 0, "connections per Redis node (0 = 10 per CPU)")
	fs.DurationVar(&s.Redis.DialTimeout, "redis-dial-timeout", redisstore.DefaultDialTimeout, "Redis connect timeout")
	fs.DurationVar(&s.Redis.ReadTimeout, "redis-read-timeout", redisstore.DefaultReadTimeout, "Redis read timeout")
	fs.DurationVar(&s.Redis.WriteTimeout, "redis-write-timeout", redisstore.DefaultWriteTimeout, "Redis write timeout")
	fs.IntVar(&s.Redis.BatchMax, "redis-batch-max", redisstore.DefaultBatchMax, "most concurrent decisions sent to one Redis node as one pipeline; 1 sends each on its own")
	fs.DurationVar(&s.Redis.BatchWindow, "redis-batch-window", 0, "longest a queued decision waits for a pipeline in flight before its queue goes on its own; 0 sets no bound (a decision that finds at most one other in flight never waits)")
	fs.StringVar(&s.Redis.TLSCert, "redis-tls-cert", "", "with rediss://: a client certificate (PEM) to present to Redis (needs --redis-tls-key)")
	fs.StringVar(&s.Redis.TLSKey, "redis-tls-key", "", "with rediss://: the client certificate's private key (PEM)")
	fs.StringVar(&s.Redis.TLSCA, "redis-tls-ca", "", "with rediss://: CA certificates (PEM) that Redis's certificate must chain to, instead of the system's")
	fs.StringVar(&s.Redis.SentinelPassword, "redis-sentinel-password", "", "Sentinel: the password of the sentinels themselves")
	fs.StringVar(&s.Ref.DebugAddr, "debug-addr", "", "debug listener: GET /rlconfig lists the limits in envoyproxy/ratelimit's line format; empty: none")
	fs.StringVar(&s.Ref.LogFormat, "log-format", "json", "json (one object a line) or text (key=value lines)")
	fs.StringVar(&s.Ref.HeaderStyle, "ratelimit-header-style", "ietf", "ietf: RateLimit-Policy, RateLimit and Retry-After; reference: envoyproxy/ratelimit's three headers of the descriptor nearest its limit, named by --ratelimit-header-limit/-remaining/-reset")
	fs.StringVar(&s.Ref.HeaderLimit, "ratelimit-header-limit", "RateLimit-Limit", "with --ratelimit-header-style=reference: the header carrying the limit")
	fs.StringVar(&s.Ref.HeaderRemaining, "ratelimit-header-remaining", "RateLimit-Remaining", "with --ratelimit-header-style=reference: the header carrying the hits left")
	fs.StringVar(&s.Ref.HeaderReset, "ratelimit-header-reset", "RateLimit-Reset", "with --ratelimit-header-style=reference: the header carrying the seconds until the window ends")
	fs.StringVar(&s.Ref.ConfigLayout, "config-layout", "yaml", "which files of a --config directory are read: yaml (its *.yaml/*.yml files), runtime (every file below it, recursively, as envoyproxy/ratelimit reads its runtime directory; dotfiles skipped) or runtime-dotfiles (the same with dotfiles)")
	fs.BoolVar(&s.Ref.HealthyNeedsConfig, "healthy-needs-config", false, "/healthcheck and readiness fail while the config in force has no domain (envoyproxy/ratelimit's HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED)")
	s.RefStats.flags(fs)
	s.Tracing.flags(fs)
	return fs
}

// ParseSettings parses serve's arguments, with environment fallbacks from
// getenv, and checks the result. Errors name the setting.
func ParseSettings(args []string, getenv func(string) string, usage io.Writer) (Settings, error) {
	var s Settings
	fs := s.flagSet(usage)
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q: settings are flags (--name=value)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q (for --%s): %w", env, v, f.Name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	if s.XDS.URL != "" {
		// The limits come from the xDS server: --config's default does
		// not apply, and a --config given as well contradicts it.
		if !given["config"] && getenv(EnvPrefix+"CONFIG") == "" {
			s.Config = ""
		} else if s.Config != "" {
			return s, fmt.Errorf("--config=%s and --config-xds-url=%s are exclusive: the limits config comes from a file or from an xDS server, drop one", s.Config, s.XDS.URL)
		}
	}
	return s, s.check()
}

// check rejects unusable and contradictory settings.
func (s *Settings) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	redisSet := s.Redis.URL != "" || s.Redis.SentinelMaster != ""
	switch s.Backend {
	case "":
		s.Backend = "memory"
		if redisSet {
			s.Backend = "redis"
		}
	case "memory":
		if redisSet {
			bad("--backend=memory contradicts --redis-url/--redis-sentinel-master: drop one")
		}
	case "redis":
		if !redisSet {
			bad("--backend=redis needs --redis-url (or --redis-sentinel-master with --redis-sentinel-addrs)")
		}
	case "memcache":
		if s.Memcache.Addrs == "" {
			bad("--backend=memcache needs --memcache-addrs")
		}
		if redisSet {
			bad("--backend=memcache contradicts --redis-url/--redis-sentinel-master: drop one")
		}
		if s.DefaultAlgorithm != quota.FixedWindow.String() {
			bad("--backend=memcache keeps fixed windows only: it needs --default-algorithm=%s (not %q)", quota.FixedWindow, s.DefaultAlgorithm)
		}
		if s.Memcache.MaxIdleConns < 1 {
			bad("--memcache-max-idle-conns=%d: must be at least 1", s.Memcache.MaxIdleConns)
		}
	default:
		bad("--backend=%q: must be memory, redis or memcache", s.Backend)
	}
	if s.XDS.InitialWait < 0 {
		bad("--config-xds-initial-wait=%s: must not be negative", s.XDS.InitialWait)
	}
	if s.Memcache.Addrs != "" && s.Backend != "memcache" {
		bad("--memcache-addrs needs --backend=memcache")
	}
	if s.Redis.Cluster && s.Redis.URL == "" {
		bad("--redis-cluster needs --redis-url with the cluster's seed nodes")
	}
	if s.Redis.Cluster && s.Redis.SentinelMaster != "" {
		bad("--redis-cluster contradicts --redis-sentinel-master: a deployment is one or the other")
	}
	if (s.Redis.SentinelMaster == "") != (s.Redis.SentinelAddrs == "") {
		bad("--redis-sentinel-master and --redis-sentinel-addrs go together")
	}
	if s.Redis.URL != "" && !strings.HasPrefix(s.Redis.URL, "redis://") && !strings.HasPrefix(s.Redis.URL, "rediss://") && !strings.HasPrefix(s.Redis.URL, "unix://") {
		bad("--redis-url=%q: must start with redis://, rediss:// or unix://", s.Redis.URL)
	}
	if strings.HasPrefix(s.Redis.URL, "unix://") && (s.Redis.Cluster || s.Redis.SentinelMaster != "") {
		bad("--redis-url=%q: a unix:// socket is one Redis, not a cluster or sentinels", s.Redis.URL)
	}
	if (s.Redis.TLSCert == "") != (s.Redis.TLSKey == "") {
		bad("--redis-tls-cert and --redis-tls-key go together")
	}
	if (s.Redis.TLSCert != "" || s.Redis.TLSCA != "") && !strings.HasPrefix(s.Redis.URL, "rediss://") {
		bad("--redis-tls-cert/--redis-tls-ca need a rediss:// --redis-url")
	}
	switch s.Ref.LogFormat {
	case "json", "text":
	default:
		bad("--log-format=%q: must be json or text", s.Ref.LogFormat)
	}
	switch s.Ref.HeaderStyle {
	case "ietf", "reference":
	default:
		bad("--ratelimit-header-style=%q: must be ietf or reference", s.Ref.HeaderStyle)
	}
	for _, h := range []struct{ flag, v string }{
		{"--ratelimit-header-limit", s.Ref.HeaderLimit}, {"--ratelimit-header-remaining", s.Ref.HeaderRemaining}, {"--ratelimit-header-reset", s.Ref.HeaderReset},
	} {
		if !headerName(h.v) {
			bad("%s=%q: must be a header name (letters, digits and -)", h.flag, h.v)
		}
	}
	switch s.Ref.ConfigLayout {
	case "yaml", "runtime", "runtime-dotfiles":
	default:
		bad("--config-layout=%q: must be yaml, runtime or runtime-dotfiles", s.Ref.ConfigLayout)
	}
	if _, err := ParseLogLevel(s.LogLevel); err != nil {
		bad("--log-level: %v", err)
	}
	switch {
	case s.XDS.URL == "" && s.Config == "":
		bad("--config: must not be empty")
	case s.XDS.URL != "" && s.Config != "":
		bad("--config=%s and --config-xds-url=%s are exclusive: the limits config comes from a file or from an xDS server, drop one", s.Config, s.XDS.URL)
	}
	s.checkXDS(bad)
	s.GRPCTLS.check(s.GRPCAddr, bad)
	if s.AuthConfig != "" && !s.GRPCAllowRemote && !loopback(s.GRPCAddr) && s.GRPCTLS.ClientCA == "" {
		// Whoever reaches the listener can ask Check about any client
		// address, so an open one would let anyone probe keys and tokens.
		// Required client certificates fence it as well as loopback does:
		// only holders of a certificate from the CA get a call in.
		bad("--auth-config needs a loopback --grpc-addr (got %q), since whoever reaches the gRPC listener can ask Check about any address; require client certificates (--grpc-tls-client-ca), or set --grpc-allow-remote when the network is fenced some other way (a NetworkPolicy)", s.GRPCAddr)
	}
	if s.Cache.Config != "" && !s.GRPCAllowRemote && !loopback(s.GRPCAddr) && s.GRPCTLS.ClientCA == "" {
		// Process trusts the identity in the metadata it is sent, so an
		// open listener would let anyone read any user's entries.
		bad("--cache-config needs a loopback --grpc-addr (got %q), since whoever reaches the gRPC listener can send Process any identity and read that user's cached responses; require client certificates (--grpc-tls-client-ca), or set --grpc-allow-remote when the network is fenced some other way (a NetworkPolicy)", s.GRPCAddr)
	}
	// Zero means the default; negative is an error (see Settings).
	for _, n := range []struct {
		flag string
		v    int
	}{
		{"--max-descriptors", s.MaxDescriptors}, {"--max-entries", s.MaxEntries},
		{"--max-value-bytes", s.MaxValueBytes}, {"--memory-max-keys", s.MemoryMaxKeys},
		{"--near-cache-max-bytes", s.NearCacheMaxBytes},
		{"--redis-pool-size", s.Redis.PoolSize}, {"--redis-batch-max", s.Redis.BatchMax},
		{"--cache-max-entry-bytes", s.Cache.MaxEntryBytes},
	} {
		if n.v < 0 {
			bad("%s=%d: must not be negative (0 means the default)", n.flag, n.v)
		}
	}
	if _, ok := quota.ParseAlgorithm(s.DefaultAlgorithm); !ok {
		bad("--default-algorithm=%q: must be sliding_window, fixed_window or token_bucket", s.DefaultAlgorithm)
	}
	if s.NearLimitRatio == 0 {
		s.NearLimitRatio = engine.DefaultNearLimitRatio
	}
	if !(s.NearLimitRatio > 0 && s.NearLimitRatio <= 1) {
		bad("--near-limit-ratio=%g: must be above 0 and at most 1 (0 means the default)", s.NearLimitRatio)
	}
	if s.NearCacheSize < 0 {
		bad("--near-cache-size=%d: must not be negative (0 turns the near-cache off)", s.NearCacheSize)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--reload-interval", s.ReloadEvery}, {"--shutdown-timeout", s.ShutdownWait},
		{"--redis-dial-timeout", s.Redis.DialTimeout}, {"--redis-read-timeout", s.Redis.ReadTimeout},
		{"--redis-write-timeout", s.Redis.WriteTimeout}, {"--redis-batch-window", s.Redis.BatchWindow},
		{"--cache-collapse-wait", s.Cache.CollapseWait},
	} {
		if d.v < 0 {
			bad("%s=%s: must not be negative (0 means the default)", d.flag, d.v)
		}
	}
	errs = append(errs, s.RefStats.check()...)
	s.Tracing.check(bad)
	if s.Cache.MaxBytes < 0 {
		bad("--cache-max-bytes=%d: must not be negative (0 means the default)", s.Cache.MaxBytes)
	}
	if s.ReloadEvery == 0 {
		s.ReloadEvery = DefaultReloadInterval
	}
	if s.ShutdownWait == 0 {
		s.ShutdownWait = DefaultShutdownTimeout
	}
	return errors.Join(errs...)
}

// checkXDS rejects xDS settings that cannot work together.
func (s *Settings) checkXDS(bad func(string, ...any)) {
	x := s.XDS
	if x.URL == "" {
		for _, f := range []struct {
			flag string
			set  bool
		}{
			{"--config-xds-node-id", x.NodeID != ""}, {"--config-xds-tls", x.TLS},
		} {
			if f.set {
				bad("%s needs --config-xds-url", f.flag)
			}
		}
	} else {
		if host, port, err := net.SplitHostPort(x.URL); err != nil || host == "" || port == "" || strings.Contains(x.URL, "/") {
			bad("--config-xds-url=%q: must be host:port, without a scheme", x.URL)
		}
		if x.NodeID == "" {
			bad("--config-xds-url needs --config-xds-node-id: the xDS server keys its snapshots by node id")
		}
	}
	if !x.TLS {
		for _, f := range []struct{ flag, v string }{
			{"--config-xds-tls-cert", x.Cert}, {"--config-xds-tls-key", x.Key},
			{"--config-xds-tls-ca", x.CA}, {"--config-xds-tls-san", x.SAN},
		} {
			if f.v != "" {
				bad("%s needs --config-xds-tls", f.flag)
			}
		}
	} else if (x.Cert == "") != (x.Key == "") {
		bad("--config-xds-tls-cert and --config-xds-tls-key go together")
	}
}

// loopback says whether a listener address binds only loopback: an IP
// loopback address, localhost (an empty host binds every interface), or a
// Unix socket, which only processes sharing its file system reach.
func loopback(addr string) bool {
	if _, ok := socketPath(addr); ok {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// headerName says whether h is an HTTP header name: a non-empty token.
func headerName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}

// ParseLogLevel maps debug, info, warn or error to a slog level.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: must be debug, info, warn or error", s)
}

// descriptorOptions are the settings that shape how limit files load.
func (s *Settings) descriptorOptions() descriptors.Options {
	alg, _ := quota.ParseAlgorithm(s.DefaultAlgorithm) // checked by check
	return descriptors.Options{MergeDomains: s.MergeDomains, DefaultAlgorithm: alg}
}
