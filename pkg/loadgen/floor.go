package loadgen

import (
	"context"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// floorOK and floorCheckOK are the replies FloorServer gives. Sharing them
// across goroutines is safe: gRPC only marshals them, and proto marshalling
// only reads a message (its size cache is updated atomically).
var (
	floorOK      = &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
	floorCheckOK = &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
)

// FloorServer is an RLS v3 service, and an ext_authz v3 Authorization
// service, that answers OK to every request without looking at it. Served
// by a grpc.Server with default options, it is the floor a real service is
// compared against: what gRPC itself costs per call on this machine.
// Register it as both (rlsv3.RegisterRateLimitServiceServer and
// authv3.RegisterAuthorizationServer).
type FloorServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	authv3.UnimplementedAuthorizationServer
	served atomic.Uint64
}

var (
	_ rlsv3.RateLimitServiceServer = (*FloorServer)(nil)
	_ authv3.AuthorizationServer   = (*FloorServer)(nil)
)

// ShouldRateLimit answers OK. The one atomic increment is the only work, so
// that CPU time can be divided by calls served.
func (f *FloorServer) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	f.served.Add(1)
	return floorOK, nil
}

// Check answers OK (an empty ok_response), counted with the
// ShouldRateLimit calls in Served.
func (f *FloorServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.served.Add(1)
	return floorCheckOK, nil
}

// Served is the number of calls (ShouldRateLimit and Check) answered so far.
func (f *FloorServer) Served() uint64 { return f.served.Load() }
