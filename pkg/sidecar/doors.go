package sidecar

import (
	"context"
	"errors"
	"log/slog"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

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
