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
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/nearcache"
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
	Config       string        // --config: a YAML file, or a directory of them
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

	ShadowMode      bool // --shadow-mode: overall_code always OK (the reference's SHADOW_MODE)
	QuotaMode       bool // --quota-mode: every rule in quota_mode (QUOTA_MODE)
	DynamicMetadata bool // --response-dynamic-metadata (RESPONSE_DYNAMIC_METADATA)

	MaxDescriptors int // --max-descriptors
	MaxEntries     int // --max-entries
	MaxValueBytes  int // --max-value-bytes

	MemoryMaxKeys     int // --memory-max-keys
	NearCacheSize     int // --near-cache-size (0 = off)
	NearCacheMaxBytes int // --near-cache-max-bytes

	Cache CacheSettings

	// AdminTokenFile holds the bearer token that /cache/purge, /debug/
	// and /debug/pprof/ require (--admin-token-file); without it they
	// answer loopback peers only.
	AdminTokenFile string

	Redis RedisSettings
}

// CacheSettings select and tune the response cache (the ext_proc door).
type CacheSettings struct {
	Config        string        // --cache-config ("" = no ext_proc door)
	MaxBytes      int64         // --cache-max-bytes (memory store)
	MaxEntryBytes int           // --cache-max-entry-bytes
	CollapseWait  time.Duration // --cache-collapse-wait
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
	fs.StringVar(&s.AuthConfig, "auth-config", "", "ext_authz config: a YAML file or a directory of them; when set, envoy.service.auth.v3.Authorization is served (hot-reloaded with its keys and JWKS files)")
	fs.BoolVar(&s.GRPCAllowRemote, "grpc-allow-remote", false, "with --auth-config or --cache-config, allow a gRPC listener that is not loopback (the network is fenced some other way, say a NetworkPolicy)")
	fs.StringVar(&s.GRPCAddr, "grpc-addr", ":8081", "gRPC listener (RateLimitService, grpc.health.v1, reflection)")
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
	default:
		bad("--backend=%q: must be memory or redis", s.Backend)
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
	if s.Redis.URL != "" && !strings.HasPrefix(s.Redis.URL, "redis://") && !strings.HasPrefix(s.Redis.URL, "rediss://") {
		bad("--redis-url=%q: must start with redis:// or rediss://", s.Redis.URL)
	}
	if _, err := ParseLogLevel(s.LogLevel); err != nil {
		bad("--log-level: %v", err)
	}
	if s.Config == "" {
		bad("--config: must not be empty")
	}
	if s.AuthConfig != "" && !s.GRPCAllowRemote && !loopback(s.GRPCAddr) {
		// Whoever reaches the listener can ask Check about any client
		// address, so an open one would let anyone probe keys and tokens.
		bad("--auth-config needs a loopback --grpc-addr (got %q), since whoever reaches the gRPC listener can ask Check about any address; set --grpc-allow-remote when the network is fenced some other way (a NetworkPolicy)", s.GRPCAddr)
	}
	if s.Cache.Config != "" && !s.GRPCAllowRemote && !loopback(s.GRPCAddr) {
		// Process trusts the identity in the metadata it is sent, so an
		// open listener would let anyone read any user's entries.
		bad("--cache-config needs a loopback --grpc-addr (got %q), since whoever reaches the gRPC listener can send Process any identity and read that user's cached responses; set --grpc-allow-remote when the network is fenced some other way (a NetworkPolicy)", s.GRPCAddr)
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

// loopback says whether a listener address binds only loopback: an IP
// loopback address or localhost (an empty host binds every interface).
func loopback(addr string) bool {
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
