package sidecar

import (
	"context"
	"errors"
	"log/slog"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/authsvc"
	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/jwtauth"
	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
)

// A door is one service on the gRPC listener: how it registers, the
// grpc.health.v1 names that report it, what it runs beside (its config
// sources) and when it is ready. Every door shares the listener, the
// health server and one lifecycle (Start, Shutdown); the list is in
// Main.doors.
type door struct {
	register func(*grpc.Server)
	health   []string
	// run is background work the door needs while it serves, each until
	// its context ends; stopped before in-flight calls are waited for.
	run []func(context.Context) error
	// ready is nil when the door can answer (default: always); /readyz
	// says why not.
	ready func() error
}

// referenceHealthName is the grpc.health.v1 name envoyproxy/ratelimit
// reports itself under; probes written for it ask for that name.
const referenceHealthName = "ratelimit"

// rateLimitDoor serves Envoy's rate-limit API with the limits that come
// from limits (which svc follows: see Main.build). With forceStart it is
// ready without a config (and answers UNAVAILABLE until one is in force).
func rateLimitDoor(svc *ratelimitsvc.Service, limits *configsource.Source[*descriptors.Config], forceStart bool) door {
	return door{
		register: func(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, svc) },
		health:   []string{rlsv3.RateLimitService_ServiceDesc.ServiceName, referenceHealthName},
		run:      []func(context.Context) error{limits.Run},
		ready: func() error {
			if !forceStart && !limits.Snapshot().Loaded {
				return errors.New("no config loaded")
			}
			return nil
		},
	}
}

// newRateLimitService is the one place the rate-limit engine and its
// door are built from the settings.
func newRateLimitService(s Settings, limiter quota.Limiter, metrics *engine.Metrics, obs engine.Observer, log *slog.Logger) (*engine.Engine, *ratelimitsvc.Service, error) {
	eng, err := engine.New(engine.Options{
		Limiter:                limiter,
		FailOpen:               s.FailOpen,
		ShadowMode:             s.ShadowMode,
		QuotaMode:              s.QuotaMode,
		CountRejected:          s.CountRejected,
		StopIncrementOverLimit: s.StopIncrementOverLimit,
		NearLimitRatio:         s.NearLimitRatio,
		Metrics:                metrics,
		Observer:               obs,
		Log:                    log,
		TraceID:                traceIDs(s),
	})
	if err != nil {
		return nil, nil, err
	}
	svc, err := ratelimitsvc.New(eng, ratelimitsvc.Options{
		NoHeaders:        !s.Headers,
		MaxDescriptors:   s.MaxDescriptors,
		MaxEntries:       s.MaxEntries,
		MaxValueBytes:    s.MaxValueBytes,
		DynamicMetadata:  s.DynamicMetadata,
		ReferenceHeaders: referenceHeaders(s),
	})
	if err != nil {
		return nil, nil, err
	}
	return eng, svc, nil
}

// authDoor serves Envoy's ext_authz Check with the auth configs that come
// from source. Without --auth-config (svc nil) it is no door at all:
// nothing registers, so Check is UNIMPLEMENTED and its health name unknown.
func authDoor(svc *authsvc.Service, source *configsource.Source[*authBundle]) door {
	if svc == nil {
		return door{}
	}
	return door{
		register: func(g *grpc.Server) { authv3.RegisterAuthorizationServer(g, svc) },
		health:   []string{authv3.Authorization_ServiceDesc.ServiceName},
		run:      []func(context.Context) error{source.Run},
		ready: func() error {
			if !source.Snapshot().Loaded {
				return errors.New("no auth config loaded")
			}
			return nil
		},
	}
}

// authBundle is an auth config with the verifier of its JWT issuers (nil
// without any).
type authBundle struct {
	cfg *authconfig.Config
	jwt *jwtauth.Verifier
}

// tokenVerifier is the bundle's verifier for the door: a nil interface,
// not a nil *jwtauth.Verifier, without issuers.
func (b *authBundle) tokenVerifier() authsvc.TokenVerifier {
	if b.jwt == nil {
		return nil
	}
	return b.jwt
}

// loadAuth reads an auth config.
func loadAuth(path string) (*authconfig.Config, error) { return authconfig.Load(path) }

// newVerifier builds the verifier of cfg's JWT issuers (nil without any)
// from prev, the one in force, so that a reload keeps its fetched key sets
// and fetch times (jwtauth.NewFrom).
func (m *Main) newVerifier(prev *jwtauth.Verifier, cfg *authconfig.Config) (*jwtauth.Verifier, error) {
	if len(cfg.JWT) == 0 {
		return nil, nil
	}
	return jwtauth.NewFrom(prev, cfg.JWT, jwtauth.Options{Metrics: m.jwtMetrics, Log: m.log})
}

// newAuthSource is the auth config's source: the path, and every keys and
// JWKS file the last good config was read from (its Files), polled. A
// config whose policies name a domain the limits config in force lacks
// does not load.
func (m *Main) newAuthSource(metrics *configsource.Metrics) *configsource.Source[*authBundle] {
	s := m.settings
	load := func(path string) (*authBundle, error) {
		cfg, err := m.loadAuth(path)
		if err != nil {
			return nil, err
		}
		// Checked against the limits in force, when there are any yet
		// (over xDS they may come after the auth config; the limits'
		// subscriber in Main.build checks again then).
		if limits := m.limits.Snapshot(); limits.Loaded {
			if err := cfg.CheckDomains(limits.Config); err != nil {
				return nil, err
			}
		}
		m.vmu.Lock()
		prev, built := m.verifier, m.built
		m.vmu.Unlock()
		if built != nil && built != prev {
			// Built by a load that never came into force (its publish
			// failed): nothing else will close it.
			built.Close()
		}
		v, err := m.newVerifier(prev, cfg)
		if err != nil {
			return nil, err
		}
		m.vmu.Lock()
		m.built = v
		m.vmu.Unlock()
		return &authBundle{cfg: cfg, jwt: v}, nil
	}
	files := func(b *authBundle) []string { return b.cfg.Files }
	return configsource.New(configsource.NewFiles(s.AuthConfig, s.ReloadEvery, load, files), configsource.Options[*authBundle]{
		Describe: func(b *authBundle) any { return describeAuth(b.cfg) },
		Summary: func(b *authBundle) []any {
			return []any{"policies", len(b.cfg.Policies), "api_keys", b.cfg.APIKeys.Keys.Len(), "jwt_issuers", len(b.cfg.JWT)}
		},
		Metrics: metrics,
		Name:    "auth",
		Log:     m.log,
	})
}

// useAuth makes b the door's config, then closes the verifier it replaces
// (in the background: a subscriber must not block, and Close waits for a
// fetch in flight to end).
func (m *Main) useAuth(b *authBundle) {
	m.auth.SetConfig(b.cfg, b.tokenVerifier())
	m.vmu.Lock()
	old := m.verifier
	m.verifier = b.jwt
	m.vmu.Unlock()
	if old != nil && old != b.jwt {
		go old.Close()
	}
}

// closeVerifiers closes the verifier in force and any built since, once
// nothing loads any more (Shutdown, or a failed Start).
func (m *Main) closeVerifiers() {
	m.vmu.Lock()
	v, built := m.verifier, m.built
	m.verifier, m.built = nil, nil
	m.vmu.Unlock()
	if v != nil {
		v.Close()
	}
	if built != nil && built != v {
		built.Close()
	}
}

// referenceHeaders is --ratelimit-header-style=reference's header set, or
// nil for the IETF ones.
func referenceHeaders(s Settings) *ratelimitsvc.ReferenceHeaders {
	if s.Ref.HeaderStyle != "reference" {
		return nil
	}
	return &ratelimitsvc.ReferenceHeaders{
		Limit: s.Ref.HeaderLimit, Remaining: s.Ref.HeaderRemaining, Reset: s.Ref.HeaderReset,
		QuotaMode: s.QuotaMode,
	}
}
