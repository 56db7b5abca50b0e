package jwtauth

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the package's Prometheus collectors. Create them once per
// process and pass them to every Verifier (each auth config reload builds
// a new Verifier), so counts carry on across reloads.
type Metrics struct {
	loads       *prometheus.CounterVec
	refreshes   *prometheus.CounterVec
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
}

// Label values of floodgate_auth_jwks_loads_total{result} and
// floodgate_auth_jwks_refreshes_total{reason}.
const (
	resultOK    = "ok"
	resultError = "error"

	reasonInterval   = "interval"
	reasonUnknownKID = "unknown_kid"
)

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered):
//
//   - floodgate_auth_jwks_loads_total{issuer,result}: JWKS file loads and
//     URL fetches, result ok or error;
//   - floodgate_auth_jwks_refreshes_total{issuer,reason}: URL fetches
//     started after the first, reason interval or unknown_kid;
//   - floodgate_auth_token_cache_hits_total and
//     floodgate_auth_token_cache_misses_total: Verify calls answered from
//     the verified-token cache, or not.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "auth", Name: "jwks_loads_total",
			Help: "JWKS file loads and URL fetches, by issuer and result (ok, error).",
		}, []string{"issuer", "result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "auth", Name: "jwks_refreshes_total",
			Help: "JWKS URL fetches after the first, by issuer and reason (interval, unknown_kid).",
		}, []string{"issuer", "reason"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "auth", Name: "token_cache_hits_total",
			Help: "JWT verifications answered from the verified-token cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "auth", Name: "token_cache_misses_total",
			Help: "JWT verifications not found in the verified-token cache.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.loads, m.refreshes, m.cacheHits, m.cacheMisses)
	}
	return m
}
