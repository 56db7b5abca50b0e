package sidecar

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// maxJSONBody bounds a /json request body: far beyond any real
// RateLimitRequest (the descriptor bounds cap what is decided anyway).
const maxJSONBody = 1 << 20

// jsonHandler is envoyproxy/ratelimit's /json: a RateLimitRequest in
// protojson, answered with the RateLimitResponse in protojson, 200 when OK
// and 429 when over the limit. A body that is not a request, and a request
// the service refuses (INVALID_ARGUMENT, UNAVAILABLE, ...), get 400 with
// the status text, as there. Any method is answered, as there.
func (m *Main) jsonHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		m.log.Warn("/json: cannot read the body", "err", err.Error())
		httpStatus(w, http.StatusBadRequest)
		return
	}
	var req rlsv3.RateLimitRequest
	if err := protojson.Unmarshal(body, &req); err != nil {
		m.log.Warn("/json: not a RateLimitRequest", "err", err.Error())
		httpStatus(w, http.StatusBadRequest)
		return
	}
	resp, err := m.svc.ShouldRateLimit(r.Context(), &req)
	if err != nil {
		m.log.Warn("/json: request refused", "err", err.Error())
		httpStatus(w, http.StatusBadRequest)
		return
	}
	out, err := protojson.Marshal(resp)
	if err != nil {
		m.log.Error("/json: cannot encode the response", "err", err.Error())
		httpStatus(w, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch resp.GetOverallCode() {
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		w.WriteHeader(http.StatusTooManyRequests)
	case rlsv3.RateLimitResponse_UNKNOWN:
		w.WriteHeader(http.StatusInternalServerError)
	}
	w.Write(out)
}

func httpStatus(w http.ResponseWriter, code int) {
	http.Error(w, http.StatusText(code), code)
}

// debugHandler is the --debug-addr listener: GET /rlconfig, and an index
// of what it serves at /.
func (m *Main) debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rlconfig", m.rlconfig)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "/rlconfig: print out the currently loaded configuration for debugging\n")
	})
	return mux
}

// rlconfig writes the limits in force in envoyproxy/ratelimit's debug
// format, one limit a line (the empty body while no config is in force).
func (m *Main) rlconfig(w http.ResponseWriter, r *http.Request) {
	snap := m.limits.Snapshot()
	if !snap.Loaded {
		return
	}
	io.WriteString(w, RLConfig(snap.Config))
}

// RLConfig renders a config as the reference's /rlconfig does: for every
// rule, DOMAIN.KEY[_VALUE][.KEY[_VALUE]...]: unit=UNIT requests_per_unit=N,
// shadow_mode: BOOL, quota_mode: BOOL. UNIT is the upper-case unit name,
// UNKNOWN for an unlimited rule (whose requests_per_unit is 0). The
// reference walks maps, in no fixed order; here domains come sorted by
// name and each domain's rules in file order.
func RLConfig(c *descriptors.Config) string {
	var b strings.Builder
	for _, d := range c.Domains() {
		for _, rule := range d.Rules() {
			b.WriteString(d.Name)
			for _, p := range rule.Path {
				b.WriteByte('.')
				b.WriteString(p.Key)
				if p.Value != "" {
					b.WriteByte('_')
					b.WriteString(p.Value)
				}
			}
			unit := "UNKNOWN"
			if !rule.Unlimited {
				unit = strings.ToUpper(rule.UnitName)
			}
			b.WriteString(": unit=")
			b.WriteString(unit)
			b.WriteString(" requests_per_unit=")
			b.WriteString(strconv.FormatUint(rule.Limit.Requests, 10))
			b.WriteString(", shadow_mode: ")
			b.WriteString(strconv.FormatBool(rule.Shadow))
			b.WriteString(", quota_mode: ")
			b.WriteString(strconv.FormatBool(rule.QuotaMode))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// configHealthy is false when --healthy-needs-config is set and the config
// in force has no domain (the reference's
// HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED).
func (m *Main) configHealthy() bool {
	if !m.settings.Ref.HealthyNeedsConfig {
		return true
	}
	snap := m.limits.Snapshot()
	return snap.Loaded && hasDomain(snap.Config)
}

// hasDomain says whether c defines a domain.
func hasDomain(c *descriptors.Config) bool { return c != nil && len(c.Domains()) > 0 }

// serveDebug is the debug listener's actor pair; nil without --debug-addr.
func (m *Main) serveDebug() (func() error, func()) {
	srv := &http.Server{Handler: m.debugHandler(), ReadHeaderTimeout: httpHeaderTimeout}
	return func() error {
			if err := srv.Serve(m.debugLn); err != http.ErrServerClosed {
				return err
			}
			return nil
		}, func() {
			ctx, cancel := context.WithDeadline(context.Background(), m.hardStop)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		}
}

// referenceHealth sets the reference's grpc.health.v1 name by whether a
// domain is loaded, as it does with HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED
// (the shutdown turns every name NOT_SERVING for good).
func (m *Main) referenceHealth(c *descriptors.Config) {
	if m.health == nil {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if hasDomain(c) {
		st = healthpb.HealthCheckResponse_SERVING
	}
	m.health.SetServingStatus(referenceHealthName, st)
}
