package engine

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/quota"
)

// Metrics are the engine's Prometheus collectors. Per-rule counters are
// resolved once per config load, so a decision only adds to atomics.
type Metrics struct {
	totalHits     *prometheus.CounterVec
	overLimit     *prometheus.CounterVec
	nearLimit     *prometheus.CounterVec
	withinLimit   *prometheus.CounterVec
	shadowMode    *prometheus.CounterVec
	latency       prometheus.Histogram
	exemplars     prometheus.ExemplarObserver // latency, with exemplars
	backendErrs   prometheus.Counter
	failOpen      prometheus.Counter
	invalid       prometheus.Counter
	unknownDomain prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"domain", "rule"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "ratelimit", Name: name, Help: help,
		}, labels)
	}
	m := &Metrics{
		totalHits:   counter("total_hits", "Hits asked of each rule (the sum of hits_addend)."),
		overLimit:   counter("over_limit", "Hits rejected because the rule was over its limit."),
		nearLimit:   counter("near_limit", "Hits admitted while the rule was above its near-limit ratio (default 80%) of its limit."),
		withinLimit: counter("within_limit", "Hits admitted within the rule's limit."),
		shadowMode:  counter("shadow_mode", "Hits over a shadow-mode rule's limit that were admitted anyway."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "floodgate", Subsystem: "ratelimit", Name: "decision_seconds",
			Help: "Time to decide one request, backend included; one call in 8, drawn at random, is timed. " +
				"With tracing on, a timed call of a sampled trace carries its trace_id as an exemplar (OpenMetrics).",
			// Up to 5 s, so that a stalled backend (calls held until its
			// read timeout) shows in its own buckets instead of +Inf.
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 0.25, 0.5, 1, 2.5, 5},
		}),
		backendErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "ratelimit", Name: "backend_errors_total",
			Help: "Calls whose backend failed to decide.",
		}),
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "ratelimit", Name: "fail_open_total",
			Help: "Calls answered OK because the backend failed and --fail-open is set.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "ratelimit", Name: "invalid_requests_total",
			Help: "Calls rejected with INVALID_ARGUMENT.",
		}),
		unknownDomain: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "ratelimit", Name: "unknown_domain_total",
			Help: "Calls for a domain that no config file defines (answered OK).",
		}),
	}
	m.exemplars = m.latency.(prometheus.ExemplarObserver) // client_golang's histograms are
	if reg != nil {
		reg.MustRegister(m.totalHits, m.overLimit, m.nearLimit, m.withinLimit, m.shadowMode,
			m.latency, m.backendErrs, m.failOpen, m.invalid, m.unknownDomain)
	}
	return m
}

// exemplarLabel names the trace ID in a latency exemplar, as Prometheus
// and Grafana look it up.
const exemplarLabel = "trace_id"

// observeLatency records one timed decision; traceID (nil without
// tracing) gives the sampled trace of ctx, recorded as the exemplar.
func (m *Metrics) observeLatency(ctx context.Context, d time.Duration, traceID func(context.Context) (string, bool)) {
	if traceID != nil {
		if id, ok := traceID(ctx); ok {
			m.exemplars.ObserveWithExemplar(d.Seconds(), prometheus.Labels{exemplarLabel: id})
			return
		}
	}
	m.latency.Observe(d.Seconds())
}

// Invalid counts a request a door refused as malformed.
func (m *Metrics) Invalid() { m.invalid.Inc() }

// ruleCounters are one rule's counters, resolved at config load.
type ruleCounters struct {
	total, over, near, within, shadow prometheus.Counter
}

func (m *Metrics) forRule(domain, rule string) ruleCounters {
	return ruleCounters{
		total:  m.totalHits.WithLabelValues(domain, rule),
		over:   m.overLimit.WithLabelValues(domain, rule),
		near:   m.nearLimit.WithLabelValues(domain, rule),
		within: m.withinLimit.WithLabelValues(domain, rule),
		shadow: m.shadowMode.WithLabelValues(domain, rule),
	}
}

// drop deletes a rule's series (its rule is gone after a reload). Calls in
// flight on the old config still add to the detached counters, unseen.
func (m *Metrics) drop(domain, rule string) {
	for _, v := range []*prometheus.CounterVec{m.totalHits, m.overLimit, m.nearLimit, m.withinLimit, m.shadowMode} {
		v.DeleteLabelValues(domain, rule)
	}
}

// count records one hit's outcome; notTaken says it fitted but was not
// taken. An admitted hit is near the limit when
// the capacity used after it exceeds nearRatio of the capacity, rounded
// down, computed in float32 as the reference computes its threshold.
func (c ruleCounters) count(hit *quota.Hit, dec *quota.Decision, notTaken bool, nearRatio float32) {
	n := float64(hit.N)
	c.total.Add(n)
	switch {
	case !dec.Fits && hit.Shadow:
		c.shadow.Add(n)
	case !dec.Fits:
		c.over.Add(n)
	case notTaken:
		// This rule had room, but another rejected the request (or was
		// over, under --stop-increment-over-limit).
	case nearLimit(hit.Limit.Capacity(), dec.Remaining, nearRatio):
		c.near.Add(n)
	default:
		c.within.Add(n)
	}
}

// nearLimit reports whether remaining left of capacity is past the near
// limit: used > floor(capacity × ratio).
func nearLimit(capacity, remaining uint64, ratio float32) bool {
	if remaining >= capacity {
		return false
	}
	threshold := uint64(math.Floor(float64(float32(capacity) * ratio)))
	return capacity-remaining > threshold
}
