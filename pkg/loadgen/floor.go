package loadgen

import (
	"context"
	"sync/atomic"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// floorOK is the one reply FloorServer gives. Sharing it across goroutines
// is safe: gRPC only marshals it, and proto marshalling only reads a message
// (its size cache is updated atomically).
var floorOK = &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}

// FloorServer is an RLS v3 service that answers OK to every request without
// looking at it. Served by a grpc.Server with default options, it is the
// floor a real rate-limit service is compared against: what gRPC itself
// costs per call on this machine.
type FloorServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	served atomic.Uint64
}

var _ rlsv3.RateLimitServiceServer = (*FloorServer)(nil)

// ShouldRateLimit answers OK. The one atomic increment is the only work, so
// that CPU time can be divided by calls served.
func (f *FloorServer) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	f.served.Add(1)
	return floorOK, nil
}

// Served is the number of calls answered so far.
func (f *FloorServer) Served() uint64 { return f.served.Load() }
