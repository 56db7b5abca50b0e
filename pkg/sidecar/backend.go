package sidecar

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
)

// newLimiter builds the backend that s selects, with its metrics in reg.
func newLimiter(s Settings, reg prometheus.Registerer, log *slog.Logger) (ratelimitsvc.Limiter, func() error, error) {
	switch s.Backend {
	case "memory":
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
	case "redis":
		return newRedisLimiter(s, reg, log)
	}
	return nil, nil, fmt.Errorf("unknown backend %q", s.Backend)
}

func newRedisLimiter(s Settings, reg prometheus.Registerer, log *slog.Logger) (ratelimitsvc.Limiter, func() error, error) {
	return nil, nil, fmt.Errorf("redis backend not wired yet")
}
