package respcache

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/cachestore"
)

// Results of floodgate_cache_requests_total.
const (
	resultHit       = "hit"
	resultCollapsed = "collapsed"
	resultMiss      = "miss"
	resultBypass    = "bypass"
)

// statsTimeout bounds the store's Stats on a scrape.
const statsTimeout = time.Second

type metrics struct {
	requests      *prometheus.CounterVec
	stores        *prometheus.CounterVec
	invalidations *prometheus.CounterVec
	errors        *prometheus.CounterVec
	purged        prometheus.Counter

	mu    sync.Mutex
	names map[string]bool // rules with series
}

// ruleMetrics are one rule's series, resolved once per config.
type ruleMetrics struct {
	hit, collapsed, miss, bypass prometheus.Counter
	stores, invalidations        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, store cachestore.Store, up func() bool) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_cache_requests_total",
			Help: "Requests on a cache rule, by result: hit (a 304 from cache included), collapsed (served after waiting for another request's miss), miss (forwarded, storable) or bypass.",
		}, []string{"rule", "result"}),
		stores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_cache_stores_total",
			Help: "Responses stored, by rule.",
		}, []string{"rule"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_cache_invalidations_total",
			Help: "Entries removed by writes on the rule.",
		}, []string{"rule"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_cache_errors_total",
			Help: "Storage errors, by operation; the request passed through uncached.",
		}, []string{"op"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floodgate_cache_purged_total",
			Help: "Entries removed by POST /cache/purge.",
		}),
		names: make(map[string]bool),
	}
	// Every op's series from the start, so that alerts see 0, not nothing.
	for _, op := range []string{"get", "put", "invalidate", "purge", "stats"} {
		m.errors.WithLabelValues(op)
	}
	if reg == nil {
		return m, nil
	}
	storeUp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "floodgate_cache_store_up",
		Help: "1 while the cache store is deemed able to serve, 0 while its breaker is open (a Redis store that failed): requests then pass through uncached.",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.requests, m.stores, m.invalidations, m.errors, m.purged, storeUp, &statsCollector{store: store, errors: m.errors}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) rule(name string) ruleMetrics {
	m.mu.Lock()
	m.names[name] = true
	m.mu.Unlock()
	return ruleMetrics{
		hit:           m.requests.WithLabelValues(name, resultHit),
		collapsed:     m.requests.WithLabelValues(name, resultCollapsed),
		miss:          m.requests.WithLabelValues(name, resultMiss),
		bypass:        m.requests.WithLabelValues(name, resultBypass),
		stores:        m.stores.WithLabelValues(name),
		invalidations: m.invalidations.WithLabelValues(name),
	}
}

// keepOnly drops the series of rules not in keep.
func (m *metrics) keepOnly(keep map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.names {
		if keep[name] {
			continue
		}
		delete(m.names, name)
		for _, v := range []*prometheus.CounterVec{m.requests, m.stores, m.invalidations} {
			v.DeletePartialMatch(prometheus.Labels{"rule": name})
		}
	}
}

var (
	entriesDesc = prometheus.NewDesc("floodgate_cache_entries", "Responses the cache store holds now.", nil, nil)
	bytesDesc   = prometheus.NewDesc("floodgate_cache_bytes", "Bytes of responses the cache store holds now.", nil, nil)
)

// statsCollector reads the store's Stats on each scrape.
type statsCollector struct {
	store  cachestore.Store
	errors *prometheus.CounterVec
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- entriesDesc
	ch <- bytesDesc
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	st, err := c.store.Stats(ctx)
	if err != nil {
		c.errors.WithLabelValues("stats").Inc()
		return
	}
	ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(st.Bytes))
}
