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
// from limits (which svc follows: see Main.build).
func rateLimitDoor(svc *ratelimitsvc.Service, limits *configsource.Source[*descriptors.Config]) door {
	return door{
		register: func(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, svc) },
		health:   []string{rlsv3.RateLimitService_ServiceDesc.ServiceName, referenceHealthName},
		run:      []func(context.Context) error{limits.Run},
		ready: func() error {
			if !limits.Snapshot().Loaded {
				return errors.New("no config loaded")
			}
			return nil
		},
	}
}

// newRateLimitService is the one place the rate-limit engine and its
// door are built from the settings.
func newRateLimitService(s Settings, limiter quota.Limiter, metrics *engine.Metrics, log *slog.Logger) (*engine.Engine, *ratelimitsvc.Service, error) {
	eng, err := engine.New(engine.Options{
		Limiter:    limiter,
		FailOpen:   s.FailOpen,
		ShadowMode: s.ShadowMode,
		QuotaMode:  s.QuotaMode,
		Metrics:    metrics,
		Log:        log,
	})
	if err != nil {
		return nil, nil, err
	}
	svc, err := ratelimitsvc.New(eng, ratelimitsvc.Options{
		NoHeaders:       !s.Headers,
		MaxDescriptors:  s.MaxDescriptors,
		MaxEntries:      s.MaxEntries,
		MaxValueBytes:   s.MaxValueBytes,
		DynamicMetadata: s.DynamicMetadata,
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

// authBundle is an auth config with the verifier of its JWT issuers.
type authBundle struct {
	cfg      *authconfig.Config
	verifier authsvc.TokenVerifier
}

// loadAuth reads an auth config: authconfig.Load once it is merged.
func loadAuth(path string) (*authconfig.Config, error) {
	return nil, errors.New("this build has no auth config loader yet (pkg/authconfig.Load)")
}

// newVerifier builds the verifier of cfg's JWT issuers (nil without
// any): jwtauth.New once it is merged.
func newVerifier(cfg *authconfig.Config) (authsvc.TokenVerifier, error) {
	if len(cfg.JWT) == 0 {
		return nil, nil
	}
	return nil, errors.New("this build has no JWT verifier yet (pkg/jwtauth.New)")
}

// newAuthSource is the auth config's source: the path, and every keys and
// JWKS file the last good config was read from (its Files), polled.
func (m *Main) newAuthSource(metrics *configsource.Metrics) *configsource.Source[*authBundle] {
	s := m.settings
	load := func(path string) (*authBundle, error) {
		cfg, err := m.loadAuth(path)
		if err != nil {
			return nil, err
		}
		v, err := m.newVerifier(cfg)
		if err != nil {
			return nil, err
		}
		return &authBundle{cfg: cfg, verifier: v}, nil
	}
	files := func(b *authBundle) []string { return b.cfg.Files }
	return configsource.New(configsource.NewFiles(s.AuthConfig, s.ReloadEvery, load, files), configsource.Options[*authBundle]{
		// Keys are held as digests, but the config is not shown: nothing
		// in it is for /debug/config to tell.
		Describe: func(b *authBundle) any { return map[string]int{"policies": len(b.cfg.Policies)} },
		Summary:  func(b *authBundle) []any { return []any{"policies", len(b.cfg.Policies)} },
		Metrics:  metrics,
		Log:      m.log,
	})
}
