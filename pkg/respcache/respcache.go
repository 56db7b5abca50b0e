// Package respcache is the response cache's engine: for one HTTP request
// and its response it decides, by the cache rules in force, whether the
// request is served from the store, forwarded, stored or bypassed, what
// a write invalidates, and it collapses concurrent misses for one key. It
// speaks its own types (Request, Reply, Header); pkg/extprocsvc is the
// Envoy ext_proc door that converts to and from them. Storage is behind
// cachestore.Store; HTTP caching rules come from pkg/httpcache.
package respcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/breaker"
	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/cachestore"
)

// Defaults of Options.
const (
	DefaultMaxEntryBytes = 1 << 20
	DefaultCollapseWait  = 150 * time.Millisecond
	// storeTimeout bounds one storage call, so a stalled backend costs a
	// request at most this much before it passes through uncached.
	storeTimeout = 500 * time.Millisecond
)

// Header is a header field; names are lower case.
type Header = cachestore.Header

// Options configure an Engine. The zero value of each number is its
// default; a negative one is an error naming it.
type Options struct {
	Store cachestore.Store
	// MaxEntryBytes is the largest body stored (--cache-max-entry-bytes).
	MaxEntryBytes int
	// CollapseWait is the longest a request waits behind a miss for its
	// key (--cache-collapse-wait).
	CollapseWait time.Duration
	// Registerer receives the floodgate_cache_* metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
	// Log receives storage errors (at most one line a second); nil
	// discards them.
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine decides cache requests. It is safe for concurrent use; SetConfig
// swaps the rules while requests are in flight (a request keeps the rule
// it began with).
type Engine struct {
	store         cachestore.Store
	maxEntryBytes int
	collapseWait  time.Duration
	now           func() time.Time
	log           *slog.Logger
	metrics       *metrics

	cfg atomic.Pointer[compiled]

	fmu     sync.Mutex
	flights map[flightKey]*flight
	waiting atomic.Int64 // requests waiting behind flights

	lastLog atomic.Int64 // unix nanos of the last storage error logged
	dropped atomic.Int64 // storage errors not logged since

	// For a store in another process: its breaker (nil otherwise). While
	// it is open, requests pass through without asking the store, but for
	// one trial call every breakerInterval.
	remote cachestore.Remote
	brk    *breaker.Breaker
}

// breakerInterval is how often an open breaker lets a trial call through
// to a remote store.
const breakerInterval = 500 * time.Millisecond

// New returns an Engine over opts.Store. Until SetConfig every request
// passes through.
func New(opts Options) (*Engine, error) {
	if opts.Store == nil {
		return nil, errors.New("respcache: no Store")
	}
	if opts.MaxEntryBytes < 0 {
		return nil, fmt.Errorf("respcache: MaxEntryBytes %d is negative", opts.MaxEntryBytes)
	}
	if opts.CollapseWait < 0 {
		return nil, fmt.Errorf("respcache: CollapseWait %s is negative", opts.CollapseWait)
	}
	e := &Engine{
		store:         opts.Store,
		maxEntryBytes: opts.MaxEntryBytes,
		collapseWait:  opts.CollapseWait,
		now:           opts.Now,
		log:           opts.Log,
		flights:       make(map[flightKey]*flight),
	}
	if e.maxEntryBytes == 0 {
		e.maxEntryBytes = DefaultMaxEntryBytes
	}
	if e.collapseWait == 0 {
		e.collapseWait = DefaultCollapseWait
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if r, ok := opts.Store.(cachestore.Remote); ok {
		e.remote = r
		e.brk = breaker.New(breaker.Options{
			Name:     "cache store",
			Interval: breakerInterval,
			OnChange: func(up bool, err error) {
				if up {
					e.log.Info("cache store answers again: caching resumes")
				} else {
					e.log.Error("cache store unavailable: requests pass through uncached until it answers", "err", err.Error())
				}
			},
		})
	}
	m, err := newMetrics(opts.Registerer, opts.Store, e.storeUp)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	return e, nil
}

// storeUp reports whether the store is deemed able to serve: always for a
// store in this process, else while its breaker is closed.
func (e *Engine) storeUp() bool { return e.brk == nil || e.brk.Up() }

// guard says whether a storage call of op may go: false while the remote
// store's breaker is open, counting and logging it as a storage error.
func (e *Engine) guard(op string) bool {
	if e.brk == nil {
		return true
	}
	if err := e.brk.Allow(); err != nil {
		e.storageError(op, err)
		return false
	}
	return true
}

// heard tells the remote store's breaker how a storage call went.
func (e *Engine) heard(err error) {
	if e.brk != nil {
		e.brk.Record(err, err != nil && e.remote.Outage(err))
	}
}

// MaxEntryBytes is the largest body the engine stores.
func (e *Engine) MaxEntryBytes() int { return e.maxEntryBytes }

// compiled is a config with what requests need precomputed.
type compiled struct {
	cfg   *cacheconfig.Config
	rules map[*cacheconfig.Rule]*rule
}

// rule is a cache rule with its metric series.
type rule struct {
	*cacheconfig.Rule
	m ruleMetrics
}

// SetConfig makes cfg the rules in force. Series of rules it no longer has
// are dropped.
func (e *Engine) SetConfig(cfg *cacheconfig.Config) {
	c := &compiled{cfg: cfg, rules: make(map[*cacheconfig.Rule]*rule, len(cfg.Rules))}
	keep := make(map[string]bool, len(cfg.Rules))
	for _, r := range cfg.Rules {
		c.rules[r] = &rule{Rule: r, m: e.metrics.rule(r.Name)}
		keep[r.Name] = true
	}
	e.cfg.Store(c)
	e.metrics.keepOnly(keep)
}

// match is the rule in force for host and path, or nil.
func (e *Engine) match(host, path string) *rule {
	c := e.cfg.Load()
	if c == nil {
		return nil
	}
	r := c.cfg.Match(host, path)
	if r == nil {
		return nil
	}
	return c.rules[r]
}

// Purge removes the entries sel selects (POST /cache/purge).
func (e *Engine) Purge(ctx context.Context, sel cachestore.Selector) (int, error) {
	// A purge is an operator's: it is tried even while the breaker is
	// open, and heard by it.
	n, err := e.store.Invalidate(ctx, sel)
	e.heard(err)
	if err != nil {
		e.storageError("purge", err)
		return n, err
	}
	e.metrics.purged.Add(float64(n))
	return n, nil
}

// storageError counts a storage failure and logs it, at most once a
// second with the number of lines left out.
func (e *Engine) storageError(op string, err error) {
	e.metrics.errors.WithLabelValues(op).Inc()
	now := time.Now().UnixNano()
	last := e.lastLog.Load()
	if now-last < int64(time.Second) || !e.lastLog.CompareAndSwap(last, now) {
		e.dropped.Add(1)
		return
	}
	e.log.Warn("cache storage error: request passed through uncached", "op", op, "err", err.Error(), "not_logged", e.dropped.Swap(0))
}

// storeCtx bounds one storage call.
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeTimeout)
}
