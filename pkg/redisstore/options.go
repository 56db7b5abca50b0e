package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Options and ClientOptions: a field left zero takes these.
const (
	DefaultKeyPrefix       = "floodgate:"
	DefaultProbeInterval   = 250 * time.Millisecond
	DefaultBreakerFailures = 3
	DefaultBatchMax        = 64
	// DefaultBatchWindow sets no time bound on a queued call (see
	// Options.BatchWindow).
	DefaultBatchWindow time.Duration = 0

	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = 500 * time.Millisecond
	DefaultWriteTimeout = 500 * time.Millisecond
	// DefaultPoolSizePerCPU times GOMAXPROCS is the default PoolSize: the
	// connections per Redis node go-redis itself opens by default for a
	// standalone Redis.
	DefaultPoolSizePerCPU = 10
	// DefaultMaxRetries is how often a command that failed on the network
	// is retried (a retry of a script whose reply was lost counts its hits
	// twice, which errs on the safe side but should stay rare).
	DefaultMaxRetries = 1
)

// Options configure a Store's behaviour; the connection is the client's
// (see ClientOptions). The zero value of every field is its documented
// default; a negative number or duration is an error.
type Options struct {
	// KeyPrefix starts every counter key; default DefaultKeyPrefix. It may
	// not contain '{' or '}', which would move the Redis Cluster hash tag.
	KeyPrefix string

	// BreakerFailures is how many outage errors in a row (network errors,
	// timeouts, LOADING, MASTERDOWN, CLUSTERDOWN) mark a Redis node down;
	// default DefaultBreakerFailures. While it is down, the Takes whose
	// keys live on it (every Take, but on a cluster) fail at once with
	// ErrUnavailable and a probe pings it every ProbeInterval (default
	// DefaultProbeInterval) until it answers; on a cluster the probe also
	// reloads the slots, and a master that lost its slots to a replica is
	// dropped, its keys going to the new master.
	BreakerFailures int
	ProbeInterval   time.Duration
	// OnStateChange, when set, is called (from the goroutine that saw it)
	// each time the store marks a Redis node down (up false, with the
	// error that tripped it) or up again; e.g. to log it. node is a
	// cluster master's address, "" for a standalone or Sentinel client.
	OnStateChange func(node string, up bool, err error)

	// Timeout bounds each decision's wait for Redis: the wait for a
	// pipeline to leave, for a connection, and for the reply, retries
	// included; default the client's read timeout. A decision that runs
	// out of it fails (and counts towards the breaker), even if the
	// caller would wait longer; one whose caller gives up first still
	// runs to its answer, so that the breaker sees a Redis that stalls.
	Timeout time.Duration

	// BatchMax is the most Takes whose script calls are sent together as
	// one pipeline; default DefaultBatchMax; 1 turns batching off (each
	// Take its own write). A Take that finds no other in flight, or just
	// one, is sent at once, alone; Takes that arrive while more are in
	// flight queue up and go together when a flush ends, or when BatchMax
	// of them are queued, or, if BatchWindow is set, when the first has
	// waited that long, whichever comes first (the last two in parallel
	// with the flushes in flight, on another connection). The default
	// BatchWindow, DefaultBatchWindow (0), sets no time bound: measured on
	// 2 cores, windows of 50µs and 200µs made decisions cost more CPU (a
	// window that elapses splits batches) and did not lower p99 (see
	// docs/benchmarks.md). Batching changes no answer: each Take's calls
	// still decide its hits atomically, and fail or succeed on their own.
	BatchMax    int
	BatchWindow time.Duration

	// Now, for tests only, pins the time the scripts decide at instead of
	// Redis's TIME. In production it must stay nil, so that every sidecar
	// decides on the one clock of Redis.
	Now func() time.Time
}

// ClientOptions describe the go-redis client NewClient builds. The zero
// value of every field but the address (URL, or SentinelAddrs) is a
// documented default; a negative number or duration is an error. A field
// set here wins over the same setting given as a URL query parameter
// (go-redis's dial_timeout=, pool_size=, max_retries=, ...), which wins
// over the default; a setting that has no field, such as max_retries=-1
// (no retries), is only given in the URL.
type ClientOptions struct {
	// URL is the Redis to use: redis://[user:pass@]host:port[/db], or
	// rediss:// for TLS, or unix://[user:pass@]/path[?db=N] for one Redis
	// on a Unix socket. With Cluster, it lists seed nodes as go-redis does:
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

	// PoolSize is the number of connections per Redis node; default
	// DefaultPoolSizePerCPU × GOMAXPROCS.
	PoolSize int
	// DialTimeout bounds connecting; default DefaultDialTimeout. A failed
	// dial is not retried by go-redis itself (its default is 5 tries): the
	// store's breaker deals with a Redis that cannot be reached.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound each command on the socket;
	// default DefaultReadTimeout and DefaultWriteTimeout. The read timeout
	// is also a Store's default Options.Timeout: the most a decision waits
	// for Redis in all (queue, connection, reply and retry), and the wait
	// for a free connection (go-redis's PoolTimeout, unless the URL sets
	// pool_timeout).
	ReadTimeout, WriteTimeout time.Duration
	// MaxRetries is how often go-redis retries a command that failed on the
	// network; default DefaultMaxRetries (max_retries=-1 in the URL turns
	// retries off).
	MaxRetries int
}

// ErrOptions is wrapped by every error New and NewClient return for bad
// options.
var ErrOptions = errors.New("redisstore: bad options")

func optErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...)
}

// check rejects bad Options, naming the field.
func (o *Options) check() error {
	switch {
	case strings.ContainsAny(o.KeyPrefix, "{}"):
		return optErr("KeyPrefix %q may not contain '{' or '}': they would change the Redis Cluster hash tag", o.KeyPrefix)
	case o.BreakerFailures < 0:
		return optErr("BreakerFailures is %d: want 0 (default %d) or more", o.BreakerFailures, DefaultBreakerFailures)
	case o.ProbeInterval < 0:
		return optErr("ProbeInterval is %v: want 0 (default %v) or more", o.ProbeInterval, DefaultProbeInterval)
	case o.BatchMax < 0:
		return optErr("BatchMax is %d: want 0 (default %d), 1 (no batching) or more", o.BatchMax, DefaultBatchMax)
	case o.Timeout < 0:
		return optErr("Timeout is %v: want 0 (the client's read timeout) or more", o.Timeout)
	case o.BatchWindow < 0:
		return optErr("BatchWindow is %v: want 0 (no bound) or more", o.BatchWindow)
	}
	return nil
}

// check rejects bad ClientOptions, naming the field.
func (o *ClientOptions) check() error {
	for _, f := range []struct {
		name string
		v    time.Duration
		def  time.Duration
	}{
		{"DialTimeout", o.DialTimeout, DefaultDialTimeout},
		{"ReadTimeout", o.ReadTimeout, DefaultReadTimeout},
		{"WriteTimeout", o.WriteTimeout, DefaultWriteTimeout},
	} {
		if f.v < 0 {
			return optErr("%s is %v: want 0 (default %v) or more", f.name, f.v, f.def)
		}
	}
	switch {
	case o.PoolSize < 0:
		return optErr("PoolSize is %d: want 0 (default %d per CPU) or more", o.PoolSize, DefaultPoolSizePerCPU)
	case o.MaxRetries < 0:
		return optErr("MaxRetries is %d: want 0 (default %d) or more; max_retries=-1 in the URL turns retries off", o.MaxRetries, DefaultMaxRetries)
	case o.Cluster && o.SentinelMaster != "":
		return optErr("Cluster and SentinelMaster exclude each other")
	case o.SentinelMaster == "" && len(o.SentinelAddrs) > 0:
		return optErr("SentinelAddrs needs SentinelMaster")
	case o.SentinelMaster != "" && len(o.SentinelAddrs) == 0:
		return optErr("SentinelMaster needs SentinelAddrs")
	case o.SentinelMaster == "" && o.URL == "":
		return optErr("URL is required (redis://host:port)")
	}
	return nil
}

// tune applies the settings every client kind shares, in place over the
// values its URL gave: a field set in ClientOptions wins, then the URL,
// then our default.
func (o *ClientOptions) tune(pool, retries, dialerRetries *int, dial, read, write, poolWait *time.Duration) {
	*pool = pick(o.PoolSize, *pool, DefaultPoolSizePerCPU*runtime.GOMAXPROCS(0))
	*retries = pick(o.MaxRetries, *retries, DefaultMaxRetries)
	*dialerRetries = pick(0, *dialerRetries, 1)
	*dial = pick(o.DialTimeout, *dial, DefaultDialTimeout)
	*read = pick(o.ReadTimeout, *read, DefaultReadTimeout)
	*write = pick(o.WriteTimeout, *write, DefaultWriteTimeout)
	// go-redis waits read timeout + 1s for a free connection by default;
	// a decision's own deadline (Options.Timeout) ends the wait sooner.
	*poolWait = pick(0, *poolWait, *read)
}

// NewClient builds the go-redis client o describes: a *redis.Client for a
// standalone Redis, a *redis.ClusterClient with Cluster, a failover
// *redis.Client (through Sentinel) with SentinelMaster. It does not
// connect: go-redis dials on first use. The caller owns the client and
// closes it, after closing any Store that uses it.
func NewClient(o ClientOptions) (redis.UniversalClient, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	var u *url.URL
	if o.URL != "" {
		var err error
		if u, err = url.Parse(o.URL); err != nil {
			return nil, optErr("URL: %v", err)
		}
		switch {
		case u.Scheme == "unix" && !o.Cluster && o.SentinelMaster == "":
			// One Redis on a Unix socket: unix://[user:pass@]/path[?db=N].
		case u.Scheme != "redis" && u.Scheme != "rediss":
			return nil, optErr("URL %q: scheme must be redis:// or rediss:// (or unix:// for one Redis)", redact(u))
		}
	}
	if o.TLSConfig != nil && (u == nil || u.Scheme != "rediss") {
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
		o.tune(&opt.PoolSize, &opt.MaxRetries, &opt.DialerRetries, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		opt.ContextTimeoutEnabled = true
		return redis.NewClusterClient(opt), nil

	case o.SentinelMaster != "":
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
		o.tune(&base.PoolSize, &base.MaxRetries, &base.DialerRetries, &base.DialTimeout, &base.ReadTimeout, &base.WriteTimeout, &base.PoolTimeout)
		return redis.NewFailoverClient(&redis.FailoverOptions{
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
			PoolTimeout:      base.PoolTimeout,

			ContextTimeoutEnabled: true,
		}), nil

	default:
		opt, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, optErr("URL %q: %v", redact(u), err)
		}
		if o.TLSConfig != nil {
			opt.TLSConfig = o.TLSConfig
		}
		o.tune(&opt.PoolSize, &opt.MaxRetries, &opt.DialerRetries, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		opt.ContextTimeoutEnabled = true
		return redis.NewClient(opt), nil
	}
}

// timeouts returns the dial, read and write timeouts of a client, for the
// store's own deadlines (probe, refunds): the client's for the kinds
// NewClient builds, where it sets them, else the defaults.
func timeouts(c redis.UniversalClient) (dial, read, write time.Duration) {
	switch c := c.(type) {
	case *redis.Client:
		o := c.Options()
		dial, read, write = o.DialTimeout, o.ReadTimeout, o.WriteTimeout
	case *redis.ClusterClient:
		o := c.Options()
		dial, read, write = o.DialTimeout, o.ReadTimeout, o.WriteTimeout
	}
	// go-redis marks "no timeout" with negative values: the store's own
	// deadlines then use the defaults.
	if dial <= 0 {
		dial = DefaultDialTimeout
	}
	if read <= 0 {
		read = DefaultReadTimeout
	}
	if write <= 0 {
		write = DefaultWriteTimeout
	}
	return dial, read, write
}

// pick returns the first of set (an options field), fromURL and def that is
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
