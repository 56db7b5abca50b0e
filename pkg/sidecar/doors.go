package sidecar

import (
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/pkg/quota"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
)

// A door is one service on the gRPC listener: how it registers, and the
// grpc.health.v1 names that report it. Every door shares the listener, the
// health server and one lifecycle (Start, Shutdown); the list is in
// Main.doors.
type door struct {
	register func(*grpc.Server)
	health   []string
}

// referenceHealthName is the grpc.health.v1 name envoyproxy/ratelimit
// reports itself under; probes written for it ask for that name.
const referenceHealthName = "ratelimit"

// rateLimitDoor serves Envoy's rate-limit API.
func rateLimitDoor(svc *ratelimitsvc.Service) door {
	return door{
		register: func(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, svc) },
		health:   []string{rlsv3.RateLimitService_ServiceDesc.ServiceName, referenceHealthName},
	}
}

// newRateLimitService is the one place the rate-limit engine is built from
// the settings.
func newRateLimitService(s Settings, limiter quota.Limiter, metrics *ratelimitsvc.Metrics) *ratelimitsvc.Service {
	return ratelimitsvc.New(ratelimitsvc.Options{
		Limiter:         limiter,
		FailOpen:        s.FailOpen,
		NoHeaders:       !s.Headers,
		MaxDescriptors:  s.MaxDescriptors,
		MaxEntries:      s.MaxEntries,
		MaxValueBytes:   s.MaxValueBytes,
		Metrics:         metrics,
		ShadowMode:      s.ShadowMode,
		QuotaMode:       s.QuotaMode,
		DynamicMetadata: s.DynamicMetadata,
	})
}
