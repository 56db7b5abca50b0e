package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Options.
const (
	DefaultKeyPrefix       = "floodgate:"
	DefaultDialTimeout     = time.Second
	DefaultReadTimeout     = 500 * time.Millisecond
	DefaultWriteTimeout    = 500 * time.Millisecond
	DefaultProbeInterval   = 250 * time.Millisecond
	DefaultBreakerFailures = 3
	DefaultBatchMax        = 64
)

// Options configure a Store. The zero value of every field but the address
// (URL, or SentinelAddrs) is a documented default. A field set here wins
// over the same setting given as a URL query parameter (go-redis's
// dial_timeout=, pool_size=, ...), which wins over the default.
type Options struct {
	// URL is the Redis to use: redis://[user:pass@]host:port[/db], or
	// rediss:// for TLS. With Cluster, it lists seed nodes as go-redis does:
	// redis://[user:pass@]h1:p1?addr=h2:p2&addr=h3:p3 (no /db: a cluster has
	// only database 0). With SentinelMaster, it is optional and must have no
	// host: only its user, password, /db and scheme (rediss:// for TLS to the
	// data nodes) are used, e.g. redis://:secret@/2.
	URL string
	// Cluster treats URL as a Redis Cluster.
	Cluster bool
	// SentinelMaster, when set, finds the master through Redis Sentinel
	// under this name; SentinelAddrs must then list the sentinels
	// (host:port). Not with Cluster.
	SentinelMaster string
	// SentinelAddrs are the sentinels' host:port addresses.
	SentinelAddrs []string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (default: none).
	SentinelUsername, SentinelPassword string
	// TLSConfig replaces the TLS settings a rediss:// URL implies (server
	// name from the host, TLS 1.2 or later), e.g. to trust a private CA or
	// present a client certificate. Only with rediss://.
	TLSConfig *tls.Config

	// KeyPrefix starts every counter key; default DefaultKeyPrefix. It may
	// not contain '{' or '}', which would move the Redis Cluster hash tag.
	KeyPrefix string
	// PoolSize is the number of connections per Redis node; default
	// go-redis's, 10 per GOMAXPROCS.
	PoolSize int
	// DialTimeout bounds connecting; default DefaultDialTimeout. A failed
	// dial is not retried by go-redis itself (its default is 5 tries): the
	// breaker below deals with a Redis that cannot be reached.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound each command on the socket;
	// default DefaultReadTimeout and DefaultWriteTimeout. A request's own
	// context deadline, when shorter, applies too.
	ReadTimeout, WriteTimeout time.Duration
	// MaxRetries is how often go-redis retries a command that failed on the
	// network; default 1 (a retry of a script whose reply was lost counts
	// its hits twice, which errs on the safe side but should stay rare). -1
	// disables retries.
	MaxRetries int

	// BreakerFailures is how many outage errors in a row (network errors,
	// timeouts, LOADING, MASTERDOWN, CLUSTERDOWN) mark Redis down; default
	// DefaultBreakerFailures. While it is down, Take and Ping fail at once
	// with ErrUnavailable and a probe pings Redis every ProbeInterval
	// (default DefaultProbeInterval) until it answers.
	BreakerFailures int
	ProbeInterval   time.Duration
	// OnStateChange, when set, is called (from the goroutine that saw it)
	// each time the store marks Redis down (up false, with the error that
	// tripped it) or up again; e.g. to log it.
	OnStateChange func(up bool, err error)

	// BatchMax is the most script calls of concurrent Takes sent together
	// as one pipeline; default DefaultBatchMax; 1 turns batching off (each
	// Take its own round trip). A Take that finds no other call in flight,
	// or just one, is sent at once, alone; Takes that arrive while more are
	// in flight queue up and go together when a flush ends, or when BatchMax
	// of them are queued, or, if BatchWindow is set, when the first has
	// waited that long, whichever comes first (the last two in parallel with
	// the flushes in flight, on another connection). The default
	// BatchWindow, 0, sets no time bound: measured on 2 cores, windows of
	// 50µs and 200µs made decisions cost more CPU (a window that elapses
	// splits batches) and did not lower p99 (see docs/benchmarks.md).
	// Batching changes no answer: each Take is still one script call that
	// decides its hits atomically, and fails or succeeds on its own.
	BatchMax    int
	BatchWindow time.Duration

	// Now, for tests only, pins the time the scripts decide at instead of
	// Redis's TIME. In production it must stay nil, so that every sidecar
	// decides on the one clock of Redis.
	Now func() time.Time
}

// ErrOptions is wrapped by every error New returns for bad options.
var ErrOptions = errors.New("redisstore: bad options")

func optErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...)
}

// tune applies the settings every client kind shares, in place over the
// values its URL gave: a field set in Options wins, then the URL, then our
// default.
func (o *Options) tune(pool, retries, dialerRetries *int, dial, read, write *time.Duration) {
	*pool = pick(o.PoolSize, *pool, 0)
	*retries = pick(o.MaxRetries, *retries, 1)
	*dialerRetries = pick(0, *dialerRetries, 1)
	*dial = pick(o.DialTimeout, *dial, DefaultDialTimeout)
	*read = pick(o.ReadTimeout, *read, DefaultReadTimeout)
	*write = pick(o.WriteTimeout, *write, DefaultWriteTimeout)
}

// newClient builds the go-redis client the options describe.
func newClient(o *Options) (redis.UniversalClient, error) {
	if o.Cluster && o.SentinelMaster != "" {
		return nil, optErr("Cluster and SentinelMaster exclude each other")
	}
	if o.SentinelMaster == "" && len(o.SentinelAddrs) > 0 {
		return nil, optErr("SentinelAddrs needs SentinelMaster")
	}
	if o.SentinelMaster == "" && o.URL == "" {
		return nil, optErr("URL is required (redis://host:port)")
	}
	var u *url.URL
	if o.URL != "" {
		var err error
		if u, err = url.Parse(o.URL); err != nil {
			return nil, optErr("URL: %v", err)
		}
		if u.Scheme != "redis" && u.Scheme != "rediss" {
			return nil, optErr("URL %q: scheme must be redis:// or rediss://", redact(u))
		}
		if o.TLSConfig != nil && u.Scheme != "rediss" {
			return nil, optErr("TLSConfig needs a rediss:// URL")
		}
	} else if o.TLSConfig != nil {
		return nil, optErr("TLSConfig needs a rediss:// URL")
	}

	switch {
	case o.Cluster:
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, optErr("URL %q: a cluster has no database %q", redact(u), p)
		}
		// ParseClusterURL does not accept a path: strip the "/0" allowed above.
		cu := *u
		cu.Path = ""
		opt, err := redis.ParseClusterURL(cu.String())
		if err != nil {
			return nil, optErr("URL %q: %v", redact(u), err)
		}
		if o.TLSConfig != nil {
			opt.TLSConfig = o.TLSConfig
		}
		o.tune(&opt.PoolSize, &opt.MaxRetries, &opt.DialerRetries, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		opt.ContextTimeoutEnabled = true
		return redis.NewClusterClient(opt), nil

	case o.SentinelMaster != "":
		if len(o.SentinelAddrs) == 0 {
			return nil, optErr("SentinelMaster needs SentinelAddrs")
		}
		base := &redis.Options{}
		if u != nil {
			if u.Host != "" {
				return nil, optErr("URL %q: with SentinelMaster the URL may not name a host: the sentinels are SentinelAddrs", redact(u))
			}
			hu := *u
			hu.Host = "sentinel-master" // ParseURL needs a host; it is not used
			var err error
			if base, err = redis.ParseURL(hu.String()); err != nil {
				return nil, optErr("URL %q: %v", redact(u), err)
			}
			if base.TLSConfig != nil {
				// The server name is the master's, which only Sentinel knows.
				base.TLSConfig.ServerName = ""
			}
		}
		if o.TLSConfig != nil {
			base.TLSConfig = o.TLSConfig
		}
		o.tune(&base.PoolSize, &base.MaxRetries, &base.DialerRetries, &base.DialTimeout, &base.ReadTimeout, &base.WriteTimeout)
		opt := &redis.FailoverOptions{
			MasterName:       o.SentinelMaster,
			SentinelAddrs:    o.SentinelAddrs,
			SentinelUsername: o.SentinelUsername,
			SentinelPassword: o.SentinelPassword,
			Username:         base.Username,
			Password:         base.Password,
			DB:               base.DB,
			TLSConfig:        base.TLSConfig,
			PoolSize:         base.PoolSize,
			DialTimeout:      base.DialTimeout,
			ReadTimeout:      base.ReadTimeout,
			WriteTimeout:     base.WriteTimeout,
			MaxRetries:       base.MaxRetries,
			DialerRetries:    base.DialerRetries,

			ContextTimeoutEnabled: true,
		}
		return redis.NewFailoverClient(opt), nil

	default:
		opt, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, optErr("URL %q: %v", redact(u), err)
		}
		if o.TLSConfig != nil {
			opt.TLSConfig = o.TLSConfig
		}
		o.tune(&opt.PoolSize, &opt.MaxRetries, &opt.DialerRetries, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		opt.ContextTimeoutEnabled = true
		return redis.NewClient(opt), nil
	}
}

// pick returns the first of set (an Options field), fromURL and def that is
// not zero.
func pick[T comparable](set, fromURL, def T) T {
	var zero T
	if set != zero {
		return set
	}
	if fromURL != zero {
		return fromURL
	}
	return def
}

// redact hides a URL's password, for error messages.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}
