package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/memcachestore"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/nearcache"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/redisstore"
)

// backend is what --backend built: the limiter, and for Redis the client
// that the response cache's store shares.
type backend struct {
	limiter quota.Limiter
	redis   redis.UniversalClient // nil for memory
	close   func() error
	// health tells each Redis node's breaker state (nil for the other
	// backends).
	health func() []redisstore.NodeHealth
}

// nodeHealthDesc is floodgate_redis_node_up: one series per Redis node the
// store has sent calls to (per master on a cluster, whose breakers are
// per node).
var nodeHealthDesc = prometheus.NewDesc("floodgate_redis_node_up",
	"1 while the Redis node answers, 0 while its breaker has it down (node: a cluster master's address, empty for a standalone or Sentinel Redis).",
	[]string{"node"}, nil)

type nodeHealthCollector struct{ st *redisstore.Store }

func (c nodeHealthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- nodeHealthDesc }

func (c nodeHealthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.st.Health() {
		v := 0.0
		if n.Up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(nodeHealthDesc, prometheus.GaugeValue, v, n.Addr)
	}
}

// newBackend builds the backend that s selects, with its metrics in reg.
func newBackend(s Settings, reg prometheus.Registerer, log *slog.Logger) (backend, error) {
	switch s.Backend {
	case "memory":
		lim, closeFn, err := newMemoryLimiter(s, reg)
		return backend{limiter: lim, close: closeFn}, err
	case "redis":
		return newRedisBackend(s, reg, log)
	case "memcache":
		st, err := memcachestore.New(memcachestore.Options{
			Addrs:        strings.Split(s.Memcache.Addrs, ","),
			MaxIdleConns: s.Memcache.MaxIdleConns,
			Prefix:       s.Memcache.KeyPrefix,
		})
		if err != nil {
			return backend{}, err
		}
		lim, err := withNearCache(st, s, reg)
		if err != nil {
			st.Close()
			return backend{}, err
		}
		return backend{limiter: lim, close: st.Close}, nil
	}
	return backend{}, fmt.Errorf("unknown backend %q", s.Backend)
}

func newMemoryLimiter(s Settings, reg prometheus.Registerer) (quota.Limiter, func() error, error) {
	evictions := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "floodgate", Subsystem: "memory", Name: "evictions_total",
		Help: "Live counters dropped because --memory-max-keys was reached.",
	})
	reg.MustRegister(evictions)
	st, err := memstore.New(memstore.Options{
		MaxKeys: s.MemoryMaxKeys,
		OnEvict: func(n int) { evictions.Add(float64(n)) },
	})
	if err != nil {
		return nil, nil, err
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Subsystem: "memory", Name: "keys",
		Help: "Counters held by the memory backend.",
	}, func() float64 { return float64(st.Len()) }))
	return st, func() error { return nil }, nil
}

// redisLog routes go-redis's own messages (dial failures and the like) into
// our JSON log, so stderr stays one JSON object per line.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

func newRedisBackend(s Settings, reg prometheus.Registerer, log *slog.Logger) (backend, error) {
	// go-redis has one process-wide logger.
	redis.SetLogger(redisLog{log})
	r := s.Redis
	var sentinels []string
	if r.SentinelAddrs != "" {
		sentinels = strings.Split(r.SentinelAddrs, ",")
	}
	tlsConfig, err := redisTLS(r)
	if err != nil {
		return backend{}, err
	}
	client, err := redisstore.NewClient(redisstore.ClientOptions{
		URL:              r.URL,
		TLSConfig:        tlsConfig,
		SentinelPassword: r.SentinelPassword,
		Cluster:          r.Cluster,
		SentinelMaster:   r.SentinelMaster,
		SentinelAddrs:    sentinels,
		PoolSize:         r.PoolSize,
		DialTimeout:      r.DialTimeout,
		ReadTimeout:      r.ReadTimeout,
		WriteTimeout:     r.WriteTimeout,
	})
	if err != nil {
		return backend{}, err
	}
	st, err := redisstore.New(client, redisstore.Options{
		KeyPrefix:   r.KeyPrefix,
		BatchMax:    r.BatchMax,
		BatchWindow: r.BatchWindow,
		OnStateChange: func(node string, up bool, err error) {
			args := []any{}
			if node != "" {
				args = append(args, "node", node)
			}
			if up {
				log.Info("redis is back: deciding again", args...)
			} else {
				log.Error("redis is down: failing fast until it answers", append(args, "err", err.Error())...)
			}
		},
	})
	if err != nil {
		client.Close()
		return backend{}, err
	}
	// The store does not own the client: stop the store, then close the
	// connections.
	closeAll := func() error { return errors.Join(st.Close(), client.Close()) }
	stat := func(name, help string, value func(redisstore.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "redis", Name: name, Help: help,
		}, func() float64 { return float64(value(st.Stats())) }))
	}
	stat("script_calls_total", "Script calls sent to Redis (one per decision, more on a cluster when a request spans slots).", func(x redisstore.Stats) uint64 { return x.Calls })
	stat("flushes_total", "Writes of script calls to Redis: one call, or a pipeline of concurrent ones (round trips on a standalone Redis).", func(x redisstore.Stats) uint64 { return x.Flushes })
	stat("errors_total", "Decisions the Redis backend failed to make.", func(x redisstore.Stats) uint64 { return x.Errors })
	stat("fast_fails_total", "Decisions refused at once while Redis was marked down.", func(x redisstore.Stats) uint64 { return x.FastFails })
	stat("down_total", "Times Redis was marked down.", func(x redisstore.Stats) uint64 { return x.Trips })
	stat("refunds_total", "Refund calls on a cluster (a request whose slots disagreed).", func(x redisstore.Stats) uint64 { return x.Refunds })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Subsystem: "redis", Name: "up",
		Help: "1 while every Redis node answers, 0 while one is marked down (see floodgate_redis_node_up).",
	}, func() float64 {
		if st.Stats().Up {
			return 1
		}
		return 0
	}))
	reg.MustRegister(nodeHealthCollector{st})
	lim, err := withNearCache(st, s, reg)
	if err != nil {
		closeAll()
		return backend{}, err
	}
	return backend{limiter: lim, redis: client, close: closeAll, health: st.Health}, nil
}

// redisTLS is the TLS config of --redis-tls-cert, --redis-tls-key and
// --redis-tls-ca, or nil when none is set (a rediss:// URL then trusts the
// system's roots). The server name is left empty, so that each connection
// checks the name it dialled (every node of a cluster).
func redisTLS(r RedisSettings) (*tls.Config, error) {
	if r.TLSCert == "" && r.TLSCA == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(r.TLSCert, r.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-cert/--redis-tls-key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	if r.TLSCA != "" {
		pem, err := os.ReadFile(r.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--redis-tls-ca %s: no PEM certificate in it", r.TLSCA)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// withNearCache puts the over-limit near-cache in front of a remote backend,
// unless --near-cache-size is 0.
func withNearCache(inner quota.Limiter, s Settings, reg prometheus.Registerer) (quota.Limiter, error) {
	if s.NearCacheSize == 0 {
		return inner, nil
	}
	hits := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "floodgate", Subsystem: "nearcache", Name: "hits_total",
		Help: "Hits answered over-limit from the near-cache, without a backend call.",
	})
	c, err := nearcache.New(inner, nearcache.Options{
		MaxEntries: s.NearCacheSize,
		MaxBytes:   s.NearCacheMaxBytes,
		OnHit:      func(n int) { hits.Add(float64(n)) },
	})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(hits, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Subsystem: "nearcache", Name: "entries",
		Help: "Over-limit counters held by the near-cache.",
	}, func() float64 { return float64(c.Len()) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Subsystem: "nearcache", Name: "bytes",
		Help: "Bytes of the counter keys held by the near-cache (bounded by --near-cache-max-bytes).",
	}, func() float64 { return float64(c.Bytes()) }))
	return c, nil
}
